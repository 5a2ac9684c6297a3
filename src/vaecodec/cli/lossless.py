"""``vaecodec bench-lossless``: bits-back ANS with a VAE against classical lossless codecs.

Usage::

    vaecodec bench-lossless --model mnist-vae --dataset mnist [--max-images N] [--json]

Prints the real stream's bits/dim, the model's −ELBO in bits/dim and the gap between them,
gzip / bz2 / lzma / PNG / WebP / JPEG XL on the same pixels, and encode / decode throughput.
(``vaecodec compress --lossless`` / ``decompress`` live in :mod:`vaecodec.cli.codec`.)
"""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "bench-lossless",
        help="lossless bits-back coding vs gzip/bz2/lzma/PNG/WebP/JPEG XL on a dataset",
        description="Compress a dataset split into one bits-back (BB-ANS) stream with a VAE, "
        "decode it back (checking every pixel), and compare its bits/dim with the model's "
        "-ELBO and with classical lossless codecs. One run.",
    )
    p.add_argument("--model", default="mnist-vae", help="zoo name or run directory (a VAE with a "
                   "discrete likelihood)")  # fmt: skip
    p.add_argument("--dataset", default="mnist", help="dataset name or directory")
    p.add_argument("--data-root", default=None, help="directory of IDX files")
    p.add_argument("--split", default="test")
    p.add_argument("--max-images", type=int, default=None, help="only the first N images")
    p.add_argument("--lanes", type=int, default=None, help="ANS lanes (default: automatic)")
    p.add_argument("--latent-prec", type=int, default=None, help="latent buckets 2**P (default 8)")
    p.add_argument("--no-classical", action="store_true", help="skip the classical codecs")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: one per "
                   "CPU that other processes leave free; the coder itself always runs its "
                   "networks single-threaded)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run)


def run(args) -> int:
    from vaecodec.errors import VaecodecError
    from vaecodec.evaluate.lossless import bench_lossless, format_report

    if args.max_images is not None and args.max_images < 1:
        raise VaecodecError("--max-images must be at least 1")
    res = bench_lossless(
        args.model,
        dataset=args.dataset,
        split=args.split,
        max_images=args.max_images,
        lanes=args.lanes,
        latent_prec=args.latent_prec,
        classical=not args.no_classical,
        data_root=args.data_root,
        progress=lambda line: print(f"vaecodec bench-lossless: {line}", file=sys.stderr,
                                    flush=True),  # fmt: skip
    )
    print(json.dumps(res) if args.json else format_report(res))
    return 0
