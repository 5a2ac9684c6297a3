"""Copy a trained run into the bundled zoo, with its recipe recorded next to the weights.

Usage::

    python -m vaecodec.zoo.export runs/zoo-mnist-vae mnist-vae \\
        --description "MLP VAE, d=32, binarised MNIST" [--fp16]

writes ``src/vaecodec/zoo/weights/<name>/``: ``model.safetensors`` (fp16 storage with
``--fp16``; tensors are cast back to the model's dtype on load; ``--int8`` stores convolution
kernels as int8 with per-channel scales, the rest as fp16), ``config.json`` (the run's
config.json plus ``name``, ``description``, ``storage_dtype``, the run's training log summary)
and ``RECIPE.md`` (the training command, data, epochs, git commit, wall time, metrics).
Metrics of a fp16- or int8-stored model must be measured on the exported entry (``vaecodec eval NAME``),
since rounding the weights changes them slightly.

Codec families (see :mod:`vaecodec.zoo.codecs`)::

    python -m vaecodec.zoo.export --family runs/codec-vr8 ms-vr8 \\
        --description "mean-scale hyperprior, 8 rate levels" --fp16 --default \\
        --hardware "2-core CPU"

exports one variable-rate run (one weights folder ``model/``, a quality per level) or several
fixed-rate runs (ordered by lambda: ``q1/``, ``q2/``, ...), writes ``family.json`` and a
``RECIPE.md`` with each run's command, data, steps, commit and hardware.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from vaecodec.checkpoint import (
    CONFIG_FILE,
    INT8_SCALE_SUFFIX,
    WEIGHTS_FILE,
    atomic_save_tensors,
    load_tensors,
    quantize_int8,
    read_json,
)
from vaecodec.coding.container import quality_of_level
from vaecodec.fileio import atomic_write_json, atomic_write_text
from vaecodec.zoo import ZOO_DIR


def _stored_tensors(run_dir: Path, fp16: bool, int8: bool = False) -> dict:
    """The run's weights, cast to float16 for storage if ``fp16`` (cast back on load), or with
    int8 convolution kernels if ``int8`` (:func:`vaecodec.checkpoint.quantize_int8`)."""
    tensors = load_tensors(run_dir / WEIGHTS_FILE)
    if int8:
        return quantize_int8(tensors)
    if fp16:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    return tensors


def _storage_dtype(fp16: bool, int8: bool) -> str:
    if int8:
        return "int8 convolution kernels (per-channel float32 scales), float16 otherwise"
    return "float16" if fp16 else "float32"


def _n_params(tensors: dict) -> int:
    return sum(v.numel() for k, v in tensors.items() if not k.endswith(INT8_SCALE_SUFFIX))


def _training_log(run_dir: Path) -> list[dict]:
    """The run's ``metrics.jsonl`` records (empty if it has none)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x]


def _write_recipe(dest: Path, lines: list[str]) -> None:
    atomic_write_text(dest / "RECIPE.md", "\n".join(lines) + "\n")


def export_run(run_dir: str | Path, name: str, description: str, fp16: bool = False,
               zoo_dir: Path = ZOO_DIR, notes: str = "", int8: bool = False) -> Path:  # fmt: skip
    """Export ``run_dir`` as zoo entry ``name``; returns the entry's directory."""
    run_dir = Path(run_dir)
    meta = read_json(run_dir / CONFIG_FILE)
    tensors = _stored_tensors(run_dir, fp16, int8)
    dest = Path(zoo_dir) / name
    dest.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(dest / WEIGHTS_FILE, tensors)
    log = _training_log(run_dir)
    wall = sum(r.get("seconds", 0.0) for r in log)
    meta = {
        **meta,
        "name": name,
        "description": description,
        "storage_dtype": _storage_dtype(fp16, int8),
        "train_wall_seconds": round(wall, 1),
        "epochs_trained": len(log),
    }
    meta.pop("metrics", None)  # re-measured on the exported weights
    atomic_write_json(dest / CONFIG_FILE, meta)
    train = meta.get("train", {})
    n_params = _n_params(tensors)
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
    _write_recipe(dest, recipe)
    return dest


def _codec_recipe(run_dir: Path, meta: dict, log: list[dict], hardware: str) -> list[str]:
    train = meta.get("train", {})
    steps = meta.get("step")
    # "seconds" is the time since the (re)start of the training process: add up the segments
    secs, prev = 0.0, 0.0
    for r in log:
        if r.get("split") == "train":
            t = float(r.get("seconds", 0.0))
            secs, prev = (secs + prev, t) if t < prev else (secs, t)
    secs += prev
    lm = meta.get("lmbdas") or [meta.get("lmbda")]
    return [
        f"## {run_dir.name}",
        "",
        "```",
        *(meta.get("commands") or [meta.get("command", "?")]),
        "```",
        "",
        f"- model: {meta.get('model')} {meta.get('config')}; lambda {', '.join(map(str, lm))}",
        f"- data: {meta.get('dataset')} ({train.get('crop')}px random crops with flips); "
        f"validation: {train.get('val_data') or ''}{train.get('val_pattern') or ''} "
        f"(held out, at most {train.get('val_max_images')} images, {train.get('val_crop')}px "
        "central crops)",
        f"- weights exported from step {steps} (best validation loss) of {train.get('steps')}; "
        f"batch {train.get('batch_size')}; Adam lr {train.get('lr')}, /10 after "
        f"{train.get('lr_drop_at')} of the steps",
        f"- git commit of the training code: {meta.get('git_commit')}",
        f"- torch {meta.get('torch_version')}, vaecodec {meta.get('vaecodec_version')}",
        f"- hardware: {hardware or 'unrecorded'}; training wall time {secs / 3600:.2f} h "
        "(including validation)",
    ]


def export_codec_family(run_dirs, name: str, description: str, fp16: bool = False,
                        default: bool = False, hardware: str = "", notes: str = "",
                        zoo_dir: Path = ZOO_DIR, int8: bool = False) -> Path:  # fmt: skip
    """Export codec runs as the zoo family ``name``; returns the family's directory.

    Args:
        run_dirs: one variable-rate run (``config.levels``), or fixed-rate runs (any order;
            sorted by lambda into qualities 1, 2, ...).
        fp16: store the weights as float16 (coding stays exact: encoder and decoder both use
            the stored weights).
        int8: store the convolution kernels as int8 with per-channel scales, the rest as
            float16 (:func:`vaecodec.checkpoint.quantize_int8`; exact coding as with fp16).
        default: make it the zoo's default codec (clearing the flag of any other family).

    Raises:
        ModelError: a run is not a codec, or variable- and fixed-rate runs are mixed.
    """
    from vaecodec.errors import ModelError

    runs = [Path(r) for r in run_dirs]
    metas = [read_json(r / CONFIG_FILE) for r in runs]
    if any(m.get("kind") != "codec" for m in metas):
        raise ModelError("every run exported into a codec family must be a codec run")
    levels = [int(m["config"].get("levels") or 0) for m in metas]
    if any(levels) and len(runs) != 1:
        raise ModelError("a variable-rate run is exported alone (its levels are the qualities)")
    dest = Path(zoo_dir) / name
    dest.mkdir(parents=True, exist_ok=True)
    if levels[0]:
        placed = [(runs[0], metas[0], "model")]
    else:
        order = sorted(range(len(runs)), key=lambda i: float(metas[i].get("lmbda") or 0))
        placed = [(runs[i], metas[i], f"q{k + 1}") for k, i in enumerate(order)]
    entries, recipe = [], [f"# {name}", "", description, "",
                           "Produced by this project's own training command (`vaecodec "
                           "train-codec`), never trained on Kodak:", ""]  # fmt: skip
    for run, meta, sub in placed:
        tensors = _stored_tensors(run, fp16, int8)
        (dest / sub).mkdir(exist_ok=True)
        atomic_save_tensors(dest / sub / WEIGHTS_FILE, tensors)
        val = meta.get("metrics") or {}
        out_meta = {**meta, "name": f"{name}/{sub}", "description": description,
                    "storage_dtype": _storage_dtype(fp16, int8),
                    "hardware": hardware}  # fmt: skip
        atomic_write_json(dest / sub / CONFIG_FILE, out_meta)
        recipe += _codec_recipe(run, meta, _training_log(run), hardware) + [""]
        src = "validation, fp32 weights, rate from the likelihoods"
        if levels[0]:
            for lv in val.get("val_levels", []):
                entries.append({"quality": quality_of_level(lv["level"]), "lmbda": lv["lmbda"], "dir": sub,
                                "level": lv["level"],
                                "metrics": {"val_bpp": lv["bpp"], "val_psnr": lv["psnr"],
                                            "source": src}})  # fmt: skip
            if not entries:
                entries = [{"quality": quality_of_level(k), "lmbda": lm, "dir": sub, "level": k}
                           for k, lm in enumerate(meta.get("lmbdas") or [])]  # fmt: skip
        else:
            entries.append({"quality": len(entries) + 1, "lmbda": meta.get("lmbda"), "dir": sub,
                            "metrics": {"val_bpp": val.get("val_bpp"),
                                        "val_psnr": val.get("val_psnr"), "source": src}})  # fmt: skip
    recipe += [f"Parameters per model: {_n_params(tensors)}; stored as "
               f"{_storage_dtype(fp16, int8)}."]  # fmt: skip
    if notes:
        recipe += ["", notes]
    family = {
        "name": name,
        "model": metas[0]["model"],
        "description": description,
        "dataset": metas[0].get("dataset"),
        "default": bool(default),
        "default_quality": entries[(len(entries) - 1) // 2]["quality"],  # the (lower) middle
        "hardware": hardware,
        "qualities": entries,
    }
    atomic_write_json(dest / "family.json", family)
    if default:  # one default: the other families' flags are cleared
        for other in sorted(Path(zoo_dir).glob("*/family.json")):
            meta = read_json(other)
            if other.parent != dest and meta.get("default"):
                atomic_write_json(other, {**meta, "default": False})
    _write_recipe(dest, recipe)
    return dest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run_dir", nargs="+", help="run directory (several with --family)")
    p.add_argument("name")
    p.add_argument("--description", required=True)
    p.add_argument("--fp16", action="store_true", help="store float tensors as float16")
    p.add_argument("--int8", action="store_true",
                   help="store convolution kernels as int8 with a float32 scale per channel, "
                        "the rest as float16 (about half the bytes of --fp16; measure the "
                        "quality it costs)")  # fmt: skip
    p.add_argument("--family", action="store_true", help="export codec runs as a codec family")
    p.add_argument("--default", action="store_true", help="make it the default codec")
    p.add_argument("--hardware", default="", help="what trained it (recorded in RECIPE.md)")
    p.add_argument("--notes", default="", help="extra Markdown appended to RECIPE.md")
    a = p.parse_args(argv)
    if a.family:
        dest = export_codec_family(a.run_dir, a.name, a.description, fp16=a.fp16,
                                   default=a.default, hardware=a.hardware, notes=a.notes,
                                   int8=a.int8)  # fmt: skip
    else:
        if len(a.run_dir) != 1:
            p.error("one run directory (several only with --family)")
        dest = export_run(a.run_dir[0], a.name, a.description, fp16=a.fp16, notes=a.notes,
                          int8=a.int8)
    print(f"exported {' '.join(a.run_dir)} -> {dest}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    torch.set_num_threads(1)
    raise SystemExit(main())
