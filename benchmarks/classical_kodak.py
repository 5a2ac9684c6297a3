"""Classical codecs on the 24 Kodak images: the anchors every learned codec is compared with.

Usage (from the repository root; lowers its own priority to nice 10, MS-SSIM on 1 thread)::

    python benchmarks/classical_kodak.py [--data ../shared/data/kodak] [--out benchmarks/results]

Runs ``vaecodec bench-codec`` with JPEG, WebP, AVIF, JPEG 2000 and JPEG XL at their default
eight-point sweeps (``vaecodec.evaluate.classical.DEFAULT_SETTINGS``) and writes
``classical_kodak.csv`` (per image), ``classical_kodak.json`` (mean curves, PSNR at
0.25/0.5/1 bpp, BD-rate tables, timings, library versions), ``classical_kodak_bdrate.md`` and
``classical_kodak_rd.png``. Extra arguments are passed on to ``bench-codec``.
"""

from __future__ import annotations

import argparse
import sys

from _common import RESULTS, kodak_dir, lower_priority


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=kodak_dir())
    p.add_argument("--out", default=str(RESULTS))
    args, rest = p.parse_known_args(argv)
    lower_priority()
    from vaecodec.cli.bench_codec import main as bench

    return bench(
        ["--data", args.data, "--out", args.out, "--name", "classical_kodak"]
        + ["--codecs", "jpeg,webp,avif,jpeg2000,jpegxl", "--threads", "1", *rest]
    )


if __name__ == "__main__":
    sys.exit(main())
