"""Side-by-side crops: the learned codec against JPEG, WebP and AVIF at (about) the same bpp.

Usage (from the repository root)::

    python benchmarks/codec_visual.py [--image ../shared/data/kodak/kodim23.png]
        [--model FAMILY_OR_RUN] [--quality Q] [--crop X Y W H] [-o docs/img/codec_crops.png]

Codes the whole image with the learned codec at ``--quality`` (real ``.vcz`` bytes), then
gives each classical codec the setting whose real file is closest in size to ours (a bisection
on the codec's quality knob), and shows the same crop of every decoded image, each titled with
its bpp and PSNR (dB, whole image). The classical codecs use the options of
``vaecodec.evaluate.classical``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _common import KODAK, ROOT

KNOBS = {"jpeg": (1, 95, int), "webp": (0, 100, int), "avif": (0, 100, int)}


def _match(codec: str, rgb: np.ndarray, target_bytes: int):
    """(bytes, decoded) of the ``codec`` setting whose file size is closest to ``target``."""
    from vaecodec.evaluate import classical

    lo, hi, cast = KNOBS[codec]
    best = None
    seen = {}
    while hi - lo > 1:
        mid = cast((lo + hi) / 2)
        data = seen.setdefault(mid, classical.encode(codec, rgb, mid))
        if len(data) > target_bytes:
            hi = mid
        else:
            lo = mid
    for s in (lo, hi):
        data = seen.get(s) or classical.encode(codec, rgb, s)
        if best is None or abs(len(data) - target_bytes) < abs(len(best) - target_bytes):
            best = data
    return best, classical.decode(codec, best)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image", default=str(KODAK / "kodim23.png"))
    p.add_argument("--model", help="codec family or run directory (default: the zoo default)")
    p.add_argument("--quality", type=int, default=2)
    p.add_argument(
        "--crop", type=int, nargs=4, default=(280, 60, 256, 192), metavar=("X", "Y", "W", "H")
    )
    p.add_argument("-o", "--output", default=str(ROOT / "docs" / "img" / "codec_crops.png"))
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vaecodec.compression.lossy import decode_image, encode_image
    from vaecodec.data import read_image
    from vaecodec.evaluate.metrics import psnr
    from vaecodec.zoo.codecs import load_codec

    rgb = read_image(args.image, mode="RGB")[0]
    h, w = rgb.shape[:2]
    model = load_codec(args.model, args.quality)
    ours = encode_image(model, rgb)
    panels = [("original", rgb, None)]
    dec = decode_image(ours, model)[0]
    panels.append((f"ours q{args.quality}", dec, len(ours)))
    for codec in ("jpeg", "webp", "avif"):
        data, img = _match(codec, rgb, len(ours))
        panels.append((codec.upper() if codec != "webp" else "WebP", img, len(data)))
    x, y, cw, ch = args.crop
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2 * ch / cw + 0.6))
    for ax, (name, img, nbytes) in zip(axes, panels):
        ax.imshow(img[y : y + ch, x : x + cw], interpolation="nearest")
        title = name
        if nbytes is not None:
            title += f"\n{8 * nbytes / (h * w):.3f} bpp, {psnr(rgb, img):.2f} dB"
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.suptitle(f"{Path(args.image).name}: crop {cw}x{ch} at ({x}, {y}); PSNR of the whole image",
                 fontsize=10)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")
    for name, img, nbytes in panels[1:]:
        print(f"{name:>8}: {8 * nbytes / (h * w):.4f} bpp  {psnr(rgb, img):.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
