"""Encode / decode time of the learned codecs on one Kodak-sized image (768x512).

Usage::

    python benchmarks/codec_speed.py [--threads 2] [--image kodak/kodim01.png] \
        [--model RUN_DIR ...] [--sizes 64x96,128x192] [--repeat 3] [--profile]
    python benchmarks/codec_speed.py --sizes "" --family cb-mix11 [--qualities 6-11] \
        [--image A.png --image B.png]

For each model (random-weight mean-scale models of the given N x M, and any trained run
directories given with ``--model``) it times, with the model loaded and its coding tables
built once (a warm-up call), the best of ``--repeat`` runs of

- ``encode``: ``encode_image`` (uint8 image -> ``.vcz`` bytes), and its analysis transform g_a;
- ``decode``: ``decode_image`` (bytes -> uint8 image), split into entropy decoding + exact
  hyper-synthesis (``latents``) and the synthesis transform g_s;

and prints a table (seconds, bpp of the real file). The issue target is <= 0.5 s each for a
768x512 image at 2 threads. Random weights give an unrealistic rate (entropy coding time
depends on it), so time a trained model too. ``--family NAME`` times every quality of a zoo
family (``--qualities`` picks some: ``6-11`` or ``2,5,8``) on every ``--image``, and adds the
worst quality's decode time per image, the number the "every quality" target is about.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from vaecodec.cli.codec import keep_freed_memory
from vaecodec.coding.container import unpack
from vaecodec.compression.lossy import codec_id, decode_image, encode_image
from vaecodec.data import read_image, to_tensor
from vaecodec.models.registry import build_model

DEFAULT_IMAGE = Path(__file__).resolve().parents[1] / "../shared/data/kodak/kodim01.png"


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _stages(model, image: np.ndarray, repeat: int) -> dict:
    """Best-of-``repeat`` seconds of the stages: the analysis ``g_a``, the entropy decoding
    of the latents (with the exact integer ``h_s`` and context; ``decompress_latents``) and the
    synthesis ``g_s``."""
    x = to_tensor(image)[None]
    xp, _ = model._prepare(x)  # padded, in the memory format compress() uses
    out = {}
    with torch.no_grad():
        out["g_a"] = _best(lambda: model.g_a(xp), repeat)
        strings = [[s] for s in unpack(encode_image(model, image))[1]]
        shape = model.latent_shape(*image.shape[:2])
        out["latents"] = _best(lambda: model.decompress_latents(strings, shape), repeat)
        y_in = model.ungain(model.decompress_latents(strings, shape))
        out["g_s"] = _best(lambda: model.synthesize(y_in), repeat)
    return out


def time_model(name: str, model, image: np.ndarray, repeat: int) -> dict:
    model.eval()
    h, w = image.shape[:2]
    data = encode_image(model, image)  # warm-up: builds the coding tables
    decode_image(data, model)
    enc = _best(lambda: encode_image(model, image), repeat)
    dec = _best(lambda: decode_image(data, model), repeat)
    row = {"model": name, "bpp": 8 * len(data) / (h * w), "encode": enc, "decode": dec}
    row.update(_stages(model, image, repeat))
    return row


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--image", action="append", default=[],
                   help=f"image to code (repeatable; default {DEFAULT_IMAGE.name})")
    p.add_argument("--sizes", default="64x96,128x192", help="random-weight mean-scale N x M")
    p.add_argument("--model", action="append", default=[], help="trained run directory")
    p.add_argument("--family", help="zoo family: time each of its qualities")
    p.add_argument("--qualities", help="with --family: e.g. 6-11 or 2,5,8 (default: all)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--profile", action="store_true", help="cProfile one encode and decode")
    p.add_argument("--no-malloc-tuning", action="store_true", help="glibc malloc defaults")
    args = p.parse_args(argv)
    if not args.no_malloc_tuning:
        keep_freed_memory()  # as the vaecodec CLI does
    torch.set_num_threads(args.threads)
    for path in args.image or [str(DEFAULT_IMAGE)]:
        _report(args, path)


def _qualities(spec: str | None, family: str) -> list[int]:
    from vaecodec.zoo.codecs import codec_summary

    if not spec:
        return list(codec_summary()["codecs"][family]["qualities"])
    if "-" in spec:
        lo, hi = (int(v) for v in spec.split("-"))
        return list(range(lo, hi + 1))
    return [int(v) for v in spec.split(",")]


def _report(args, path: str) -> None:
    image = read_image(path)[0]
    models = []
    for s in filter(None, args.sizes.split(",")):
        n, m = (int(v) for v in s.lower().split("x"))
        torch.manual_seed(0)
        mdl = build_model("mean-scale", {"N": n, "M": m}).eval()
        mdl.codec_id = codec_id(mdl)  # hash the weights once, as load_codec does
        models.append((f"mean-scale {n}x{m} (random)", mdl))
    if args.model:
        from vaecodec.zoo.codecs import load_codec

        for d in args.model:
            models.append((f"{Path(d).name} (trained)", load_codec(d)))
    if args.family:
        from vaecodec.zoo.codecs import load_codec

        for q in _qualities(args.qualities, args.family):
            models.append((f"{args.family} q{q}", load_codec(args.family, q)))
    rows = [time_model(name, mdl, image, args.repeat) for name, mdl in models]
    h, w = image.shape[:2]
    print(f"{Path(path).name} {w}x{h}, {args.threads} thread(s), best of {args.repeat}")
    cols = ["encode", "decode", "g_a", "latents", "g_s"]
    print(f"| model | bpp | {' | '.join(c + ' (s)' for c in cols)} |")
    print("|---|---|" + "---|" * len(cols))
    for r in rows:
        cells = " | ".join(f"{r[c]:.3f}" if c in r else "-" for c in cols)
        print(f"| {r['model']} | {r['bpp']:.3f} | {cells} |")
    if args.family:
        worst = max(rows, key=lambda r: r["decode"])
        print(f"slowest decode: {worst['model']} {worst['decode']:.3f} s")
    if args.profile:
        import cProfile
        import pstats

        name, mdl = models[-1]
        data = encode_image(mdl, image)
        for what, fn in (("encode", lambda: encode_image(mdl, image)),
                         ("decode", lambda: decode_image(data, mdl))):  # fmt: skip
            pr = cProfile.Profile()
            pr.enable()
            fn()
            pr.disable()
            print(f"--- {what} {name}")
            pstats.Stats(pr).sort_stats("cumulative").print_stats(18)


if __name__ == "__main__":
    main()
