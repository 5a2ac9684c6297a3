"""Encoder effort: the RD gain of SGA refinement at several Adam step sizes, per image.

Usage (from the repository root)::

    python benchmarks/effort_step_size.py --effort 1 --lrs 5e-3,1e-2,2e-2 \
        --qualities 2,5 --images kodim05.png,kodim23.png [--model cb-mix11] [--threads 1]

For each quality and image: one effort-0 encode, then one encode at ``--effort`` per step size
(:func:`vaecodec.compression.refine.sga_learning_rate` replaced by the constant for the run),
each decoded, and the change of the real rate-distortion cost
``J = bpp + lmbda 255^2 MSE`` (:func:`vaecodec.models.codec_base.rd_value`, the objective the
refinement minimises) against effort 0, with the CPU seconds of the encode. Prints one line per
(quality, image) and the mean change per step size. This is how the step-size rule was chosen
(``benchmarks/results/effort_step_size.md``).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _common import kodak_dir


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cb-mix11")
    p.add_argument("--effort", type=int, default=1)
    p.add_argument("--lrs", default="5e-3,1e-2,2e-2", help="comma-separated Adam step sizes")
    p.add_argument("--qualities", default="2,5")
    p.add_argument("--images", default="kodim05.png,kodim23.png")
    p.add_argument("--data", default=kodak_dir())
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    from vaecodec.compression import refine
    from vaecodec.compression.lossy import decode_image, encode_image
    from vaecodec.data import read_image
    from vaecodec.evaluate.metrics import bpp, psnr
    from vaecodec.models.codec_base import rd_value
    from vaecodec.zoo.codecs import load_codec

    torch.set_num_threads(args.threads)
    lrs = [float(v) for v in args.lrs.split(",")]
    gains = {lr: [] for lr in lrs}
    rule = refine.sga_learning_rate
    try:
        for q in (int(v) for v in args.qualities.split(",")):
            model = load_codec(args.model, q)
            lmbda = refine.model_lmbda(model)
            for name in args.images.split(","):
                rgb = read_image(f"{args.data}/{name}", mode="RGB")[0]
                cells = []
                for lr in [None, *lrs]:
                    refine.sga_learning_rate = rule if lr is None else (lambda steps, v=lr: v)
                    c0 = time.process_time()
                    data = encode_image(model, rgb, effort=0 if lr is None else args.effort)
                    cpu = time.process_time() - c0
                    dec = decode_image(data, model).image
                    mse = float(np.mean((rgb.astype(np.float64) - dec) ** 2)) / 255.0**2
                    j = rd_value(bpp(len(data), *rgb.shape[:2]), mse, lmbda)
                    if lr is None:
                        j0 = j
                        continue
                    gains[lr].append(100.0 * (j / j0 - 1.0))
                    cells.append(f"lr {lr:g}: {gains[lr][-1]:+.2f} % ({cpu:.0f} CPU-s, "
                                 f"{psnr(rgb, dec):.2f} dB)")  # fmt: skip
                print(f"q{q} {name}: " + "; ".join(cells), flush=True)
    finally:
        refine.sga_learning_rate = rule
    print("mean RD-cost change against effort 0: "
          + ", ".join(f"lr {lr:g} {np.mean(v):+.2f} %" for lr, v in gains.items()))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
