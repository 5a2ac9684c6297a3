"""Rate-distortion plots: PSNR and MS-SSIM (dB) against bpp, one curve per codec.

Input is the ``curves`` dict of :func:`vaecodec.evaluate.rd.curves`
(``{codec: {"bpp": [...], "psnr": [...], "ms_ssim_db": [...]}}``). Learned codecs (names in
``highlight``) are drawn bold with round markers; classical codecs thin with dots; reference
curves (e.g. CompressAI's published Kodak results, same dict layout) dashed. MS-SSIM is shown on
the dB scale ``-10 log10(1 - MS-SSIM)`` as in CompressAI's plots. Drawn with matplotlib's object
API and the Agg canvas (no pyplot, no display needed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

METRICS = {
    "psnr": "PSNR (dB, RGB)",
    "ms_ssim_db": "MS-SSIM (dB, −10·log10(1−MS-SSIM))",
}


def _finite(xs, ys):
    pts = [
        (float(x), float(y))
        for x, y in zip(xs, ys)
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
    ]
    return [p[0] for p in pts], [p[1] for p in pts]


def _draw(ax, codec_curves, metric, highlight, references, max_bpp):
    for name, c in (references or {}).items():
        if metric not in c:
            continue
        x, y = _finite(c["bpp"], c[metric])
        if x:
            ax.plot(x, y, "--", lw=1.2, alpha=0.8, label=f"{name} (ref.)")
    for name, c in codec_curves.items():
        if metric not in c:
            continue
        x, y = _finite(c["bpp"], c[metric])
        if not x:
            continue
        bold = name in highlight
        ax.plot(
            x,
            y,
            "-o" if bold else ".-",
            lw=2.8 if bold else 1.3,
            ms=5 if bold else 4,
            zorder=3 if bold else 2,
            label=name,
        )
    ax.set_xlabel("bits per pixel (bpp)")
    ax.set_ylabel(METRICS.get(metric, metric))
    if max_bpp is not None:
        ax.set_xlim(0, max_bpp)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def plot_rd(
    codec_curves: dict[str, dict],
    path: str | os.PathLike,
    metrics: Iterable[str] = ("psnr", "ms_ssim_db"),
    highlight: Iterable[str] = ("ours",),
    references: dict[str, dict] | None = None,
    title: str | None = None,
    max_bpp: float | None = 2.5,
) -> Path:
    """Draw one panel per metric (side by side) and save the figure as a PNG.

    Args:
        codec_curves: ``{codec: {"bpp": [...], metric: [...]}}``; non-finite points skipped.
        path: output PNG path (parent folders are created).
        metrics: which panels: ``"psnr"`` and/or ``"ms_ssim_db"``. A metric no curve has is
            dropped (e.g. MS-SSIM on images too small for it).
        highlight: codec names drawn bold (our learned codecs).
        references: published curves, same layout, drawn dashed.
        title: figure title.
        max_bpp: right end of the bpp axis (None: automatic).

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    highlight = set(highlight)
    all_curves = list(codec_curves.values()) + list((references or {}).values())
    metrics = [
        m for m in metrics if any(_finite(c.get("bpp", []), c.get(m, []))[0] for c in all_curves)
    ]
    if not metrics:
        metrics = ["psnr"]
    fig = Figure(figsize=(6.4 * len(metrics), 4.8), layout="tight")
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        _draw(ax, codec_curves, m, highlight, references, max_bpp)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    return path
