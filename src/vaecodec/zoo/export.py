"""Copy a trained run into the bundled zoo, with its recipe recorded next to the weights.

Usage::

    python -m vaecodec.zoo.export runs/zoo-mnist-vae mnist-vae \\
        --description "MLP VAE, d=32, binarised MNIST" [--fp16]

writes ``src/vaecodec/zoo/weights/<name>/``: ``model.safetensors`` (fp16 storage with
``--fp16``; tensors are cast back to the model's dtype on load), ``config.json`` (the run's
config.json plus ``name``, ``description``, ``storage_dtype``, the run's training log summary)
and ``RECIPE.md`` (the training command, data, epochs, git commit, wall time, metrics).
Metrics of a fp16-stored model must be measured on the exported entry (``vaecodec eval NAME``),
since rounding the weights changes them slightly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from vaecodec.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    atomic_save_tensors,
    load_tensors,
    read_json,
)
from vaecodec.fileio import atomic_write_json
from vaecodec.zoo import ZOO_DIR


def export_run(run_dir: str | Path, name: str, description: str, fp16: bool = False,
               zoo_dir: Path = ZOO_DIR, notes: str = "") -> Path:  # fmt: skip
    """Export ``run_dir`` as zoo entry ``name``; returns the entry's directory."""
    run_dir = Path(run_dir)
    meta = read_json(run_dir / CONFIG_FILE)
    tensors = load_tensors(run_dir / WEIGHTS_FILE)
    if fp16:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    dest = Path(zoo_dir) / name
    dest.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(dest / WEIGHTS_FILE, tensors)
    log = []
    if (run_dir / "metrics.jsonl").exists():
        log = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    wall = sum(r.get("seconds", 0.0) for r in log)
    meta = {
        **meta,
        "name": name,
        "description": description,
        "storage_dtype": "float16" if fp16 else "float32",
        "train_wall_seconds": round(wall, 1),
        "epochs_trained": len(log),
    }
    meta.pop("metrics", None)  # re-measured on the exported weights
    atomic_write_json(dest / CONFIG_FILE, meta)
    train = meta.get("train", {})
    n_params = sum(v.numel() for v in tensors.values())
    recipe = [
        f"# {name}",
        "",
        description,
        "",
        "Produced by this project's own training command:",
        "",
        "```",
        meta.get("command", "?"),
        "```",
        "",
        f"- data: {meta.get('dataset')} (train split; binarize={train.get('binarize')})",
        f"- epochs: {len(log)}; batch size {train.get('batch_size')}; Adam lr {train.get('lr')} "
        f"with cosine decay to x{train.get('lr_min_factor')}",
        f"- git commit of the training code: {meta.get('git_commit')}",
        f"- torch {meta.get('torch_version')}, vaecodec {meta.get('vaecodec_version')}",
        f"- wall time of the epochs: {wall / 60:.1f} min on a 2-core CPU (shared machine)",
        f"- parameters: {n_params}; stored as {meta['storage_dtype']}",
    ]
    if notes:
        recipe += ["", notes]
    (dest / "RECIPE.md").write_text("\n".join(recipe) + "\n")
    return dest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("name")
    p.add_argument("--description", required=True)
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--notes", default="", help="extra Markdown appended to RECIPE.md")
    a = p.parse_args(argv)
    dest = export_run(a.run_dir, a.name, a.description, fp16=a.fp16, notes=a.notes)
    print(f"exported {a.run_dir} -> {dest}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    torch.set_num_threads(1)
    raise SystemExit(main())
