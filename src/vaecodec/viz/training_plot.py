"""Training curves of a codec run, drawn from its ``metrics.jsonl``.

``vaecodec train-codec`` writes ``training.png`` next to ``metrics.jsonl`` after every
validation. Three panels:

1. the rate-distortion loss ``bpp + lmbda * 255^2 * MSE`` (bits per pixel) against the step:
   training (averaged over each logging interval) and validation, with the learning-rate
   changes marked;
2. validation PSNR (dB, RGB) against the step, one line per quality level (a fixed-rate run has
   one);
3. the validation rate-distortion curve (PSNR against bpp over the levels) at each validation,
   coloured from early (light) to late (dark): where a variable-rate model is still improving.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display needed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vaecodec.errors import DatasetError


def read_metrics(path: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """The ``(train, val)`` records of a run's ``metrics.jsonl``, each sorted by step.

    Raises:
        DatasetError: the file is missing or a line is not JSON (names the line).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such metrics file (a train-codec run writes one)")
    train, val = [], []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}, line {i}: not JSON ({e.msg})") from None
        if rec.get("split") == "train":
            train.append(rec)
        elif rec.get("split") == "val":
            val.append(rec)
    return sorted(train, key=lambda r: r["step"]), sorted(val, key=lambda r: r["step"])


def _levels(rec: dict) -> list[dict]:
    """Per-level validation results; a fixed-rate run's record is its own single level."""
    return rec.get("levels") or [{"level": 0, "bpp": rec["bpp"], "psnr": rec["psnr"]}]


def plot_codec_training(
    metrics: str | os.PathLike, path: str | os.PathLike, title: str | None = None
) -> Path:
    """Draw a codec run's training curves (see the module docstring) and save them as a PNG.

    Args:
        metrics: the run's ``metrics.jsonl`` (``split`` "train" / "val" records as written by
            :func:`vaecodec.train.codec_trainer.train_codec`).
        path: output PNG (parent folders are created).
        title: figure title (default: the run folder's name).

    Returns:
        The path written.

    Raises:
        DatasetError: unreadable metrics, or no training record yet.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    train, val = read_metrics(metrics)
    if not train:
        raise DatasetError(f"{metrics}: no training records yet; nothing to plot")
    fig = Figure(figsize=(16, 4.6), layout="tight")
    ax_loss, ax_psnr, ax_rd = fig.subplots(1, 3)

    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train],
                 lw=0.8, alpha=0.6, label="train")  # fmt: skip
    if val:
        ax_loss.plot([r["step"] for r in val], [r["loss"] for r in val], "o-", ms=3,
                     label="validation")  # fmt: skip
    for prev, cur in zip(train, train[1:]):
        if "lr" in cur and "lr" in prev and cur["lr"] != prev["lr"]:
            ax_loss.axvline(cur["step"], color="grey", ls=":", lw=1)
            ax_loss.annotate(f"lr {cur['lr']:.0e}", (cur["step"], 1),
                             xycoords=("data", "axes fraction"), fontsize=7, ha="left",
                             va="top", rotation=90)  # fmt: skip
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss: bpp + λ·255²·MSE")
    ax_loss.legend(fontsize=8)

    if val:
        n_levels = max(len(_levels(r)) for r in val)
        level_colors = colormaps["viridis"]
        for k in range(n_levels):
            pts = [(r["step"], lv) for r in val for lv in _levels(r) if lv["level"] == k]
            if not pts:
                continue
            lm = pts[0][1].get("lmbda")
            ax_psnr.plot([s for s, _ in pts], [lv["psnr"] for _, lv in pts], "o-", ms=2.5,
                         color=level_colors(k / max(1, n_levels - 1)),
                         label=f"λ={lm}" if lm is not None else f"level {k}")  # fmt: skip
        ax_psnr.legend(fontsize=7, ncol=2)
        step_colors = colormaps["Blues"]
        for i, r in enumerate(val):
            lvs = sorted(_levels(r), key=lambda lv: lv["bpp"])
            shade = 0.25 + 0.75 * i / max(1, len(val) - 1)
            ax_rd.plot([lv["bpp"] for lv in lvs], [lv["psnr"] for lv in lvs], "o-", ms=2.5,
                       color=step_colors(shade), lw=1.6 if i == len(val) - 1 else 0.8,
                       label=f"step {r['step']}" if i in (0, len(val) - 1) else None)  # fmt: skip
        ax_rd.legend(fontsize=8, loc="lower right")
    ax_psnr.set_xlabel("step")
    ax_psnr.set_ylabel("validation PSNR (dB, RGB)")
    ax_rd.set_xlabel("validation rate (bpp, from the likelihoods)")
    ax_rd.set_ylabel("validation PSNR (dB, RGB)")
    for ax in (ax_loss, ax_psnr, ax_rd):
        ax.grid(True, alpha=0.3)
    fig.suptitle(title if title is not None else Path(metrics).parent.name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, format="png")
    return path
