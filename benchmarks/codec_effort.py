"""Encoder effort on Kodak: what each ``--effort`` buys (BD-rate against effort 0) and costs
(encode seconds per image), on the same images and qualities, real ``.vcz`` bytes.

Usage (from the repository root)::

    python benchmarks/codec_effort.py [--model cb-mix11] [--efforts 0,1,2] [--qualities 2,5,8]
        [--images kodim01.png,kodim05.png] [--threads 2] [--out benchmarks/results/effort]

Every (effort, quality, image) is one ``encode_image(model, image, effort=E)`` (timed) and one
``decode_image`` (timed), PSNR and MS-SSIM on 8-bit RGB. Each record is appended to
``OUT/records.jsonl`` as soon as it is measured, and an interrupted run continues where it
stopped (records already there are kept), so the slow efforts can run in the background for
hours; ``--summarize`` only rewrites the summary and the plot from the records. ``OUT/summary.md`` (rewritten after each record) has, per effort, the mean encode and
decode seconds per image and the BD-rate (PSNR and MS-SSIM) against effort 0 over the images
that have every quality at both efforts; with ``--anchors CSV`` (``bench-codec``'s per-image CSV, e.g.
``benchmarks/results/classical_kodak.csv``) also against WebP, JPEG XL and AVIF on the same
images. ``OUT/rd.png`` draws the curves (mean per quality over the shared images, PSNR and
MS-SSIM in dB) of every effort and of those anchors.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from _common import RESULTS, kodak_dir, lower_priority


def _curve(records, key):
    """Mean bpp and metric per quality over the images the records share."""
    by_q = defaultdict(list)
    for r in records:
        by_q[r["setting"]].append(r)
    qs = sorted(by_q)
    return ([float(np.mean([r["bpp"] for r in by_q[q]])) for q in qs],
            [float(np.mean([r[key] for r in by_q[q]])) for q in qs])  # fmt: skip


def _mean_of(records, key) -> str:
    """Mean of ``key`` over the records that have it (older records lack CPU time)."""
    vals = [r[key] for r in records if key in r]
    return f"{np.mean(vals):.1f} ({len(vals)} of {len(records)})" if vals else "-"


def _msssim_db(v):
    return -10.0 * np.log10(max(1e-12, 1.0 - v))


def summarize(records: list[dict], anchors: list[dict]) -> str:
    from vaecodec.evaluate.bdrate import bd_rate

    by_effort = defaultdict(list)
    for r in records:
        by_effort[r["effort"]].append(r)
    base = by_effort.get(0, [])
    lines = ["| effort | images x qualities | encode s / image | encode CPU-s / image | "
             "decode s / image | "
             "BD-rate vs effort 0 (PSNR) | (MS-SSIM) | vs WebP, PSNR (effort 0) | vs JPEG XL | "
             "vs AVIF |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for e in sorted(by_effort):
        recs = by_effort[e]
        # the images that have every quality at this effort and at effort 0: each curve's
        # point is a mean over the same images
        have = {(r["image"], r["setting"]) for r in recs} & {(r["image"], r["setting"])
                                                              for r in base}  # fmt: skip
        qs = {q for _, q in have}
        images = {i for i, _ in have if all((i, q) in have for q in qs)}
        common = [r for r in base if r["image"] in images and r["setting"] in qs]
        mine = [r for r in recs if r["image"] in images and r["setting"] in qs]
        cells = [str(e), f"{len({r['image'] for r in mine})} x {len({r['setting'] for r in mine})}",
                 f"{np.mean([r['enc_s'] for r in recs]):.1f}",
                 _mean_of(recs, "enc_cpu_s"),
                 f"{np.mean([r['dec_s'] for r in recs]):.2f}"]  # fmt: skip
        for key, conv in (("psnr", float), ("ms_ssim", _msssim_db)):
            try:
                ra, pa = _curve(common, key)
                rt, pt = _curve(mine, key)
                cells.append(f"{bd_rate(ra, [conv(v) for v in pa], rt, [conv(v) for v in pt]):+.1f} %")
            except Exception as err:  # too few points, no overlap
                cells.append(f"n/a ({type(err).__name__})")
        for codec in ("webp", "jpegxl", "avif"):
            ref = [a for a in anchors if a["codec"] == codec and a["image"] in images]
            try:
                ra, pa = _curve(ref, "psnr")
                got = [bd_rate(ra, pa, *_curve(rs, "psnr")) for rs in (mine, common)]
                cells.append(f"{got[0]:+.1f} % ({got[1]:+.1f} %)")
            except Exception as err:
                cells.append(f"n/a ({type(err).__name__})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict], anchors: list[dict], path: Path) -> Path:
    """RD curves (PSNR and MS-SSIM dB against bpp) of each effort and of the anchors, means per
    quality over the images every effort has at all of its qualities."""
    from vaecodec.viz.rd_plot import plot_rd

    by_effort = defaultdict(list)
    for r in records:
        by_effort[r["effort"]].append(r)
    images = None
    for recs in by_effort.values():
        qs = {r["setting"] for r in recs}
        have = {(r["image"], r["setting"]) for r in recs}
        mine = {i for i, _ in have if all((i, q) in have for q in qs)}
        images = mine if images is None else images & mine
    images = images or set()
    curves = {}
    for e, recs in sorted(by_effort.items()):
        mine = [r for r in recs if r["image"] in images]
        if mine:
            x, y = _curve(mine, "psnr")
            _, m = _curve(mine, "ms_ssim")
            curves[f"effort {e}"] = {"bpp": x, "psnr": y, "ms_ssim_db": [_msssim_db(v) for v in m]}
    top = max((max(c["bpp"]) for c in curves.values()), default=2.0)
    for codec in ("webp", "jpegxl", "avif"):
        ref = [a for a in anchors if a["codec"] == codec and a["image"] in images]
        if ref:
            x, y = _curve(ref, "psnr")
            _, m = _curve(ref, "ms_ssim")
            keep = sorted((i for i, v in enumerate(x) if v <= 1.3 * top), key=x.__getitem__)
            curves[codec] = {"bpp": [x[i] for i in keep], "psnr": [y[i] for i in keep],
                             "ms_ssim_db": [_msssim_db(m[i]) for i in keep]}  # fmt: skip
    return plot_rd(curves, path, highlight=[k for k in curves if k.startswith("effort")],
                   title=f"encoder effort, {len(images)} Kodak images (mean per quality)",
                   max_bpp=1.3 * top)  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cb-mix11")
    p.add_argument("--efforts", default="0,1,2")
    p.add_argument("--qualities", default="2,5,8")
    p.add_argument("--images", help="comma-separated file names (default: all in --data)")
    p.add_argument("--data", default=kodak_dir())
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--anchors", help="bench-codec CSV of the classical codecs on these images")
    p.add_argument("--out", default=str(RESULTS / "effort"))
    p.add_argument("--nice", type=int, default=10, help="priority to run at (default 10)")
    p.add_argument("--shard", default="0/1",
                   help="I/N: measure only every N-th image from the I-th (0-based), so that N "
                        "processes (one --threads 1 each) share one --out; records are single "
                        "appended lines (default 0/1: all)")
    p.add_argument("--summarize", action="store_true",
                   help="measure nothing: rewrite summary.md and rd.png from OUT/records.jsonl")
    args = p.parse_args(argv)
    lower_priority(args.nice)
    import torch

    from vaecodec.compression.lossy import decode_image, encode_image
    from vaecodec.data import list_images, read_image
    from vaecodec.evaluate.metrics import bpp, ms_ssim, psnr
    from vaecodec.zoo.codecs import load_codec

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "records.jsonl"
    records = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    done = {(r["effort"], r["setting"], r["image"]) for r in records}
    anchors = []
    if args.anchors:
        with open(args.anchors) as f:
            anchors = [{**r, "bpp": float(r["bpp"]), "psnr": float(r["psnr"]),
                        "ms_ssim": float(r["ms_ssim"] or "nan")}
                       for r in csv.DictReader(f)]  # fmt: skip
    if args.summarize:
        (out / "summary.md").write_text(summarize(records, anchors))
        print((out / "summary.md").read_text() + f"{plot(records, anchors, out / 'rd.png')}")
        return 0
    paths = list_images(args.data)
    if args.images:
        wanted = args.images.split(",")
        paths = [q for q in paths if Path(q).name in wanted]
    i, n = (int(v) for v in args.shard.split("/"))
    if not 0 <= i < n:
        p.error(f"--shard I/N needs 0 <= I < N, got {args.shard}")
    images = [(Path(q).name, read_image(q, mode="RGB")[0]) for q in paths[i::n]]
    qualities = [int(v) for v in args.qualities.split(",")]
    print(f"{args.model}: efforts {args.efforts}, qualities {qualities}, {len(images)} images, "
          f"{args.threads} threads -> {out}", flush=True)  # fmt: skip
    for effort in (int(v) for v in args.efforts.split(",")):
        for q in qualities:
            model = load_codec(args.model, q)
            for name, rgb in images:
                if (effort, q, name) in done:
                    continue
                if n > 1 and log.exists():  # another shard's records, for the summary
                    records = [json.loads(x) for x in log.read_text().splitlines()]
                t0, c0 = time.perf_counter(), time.process_time()
                data = encode_image(model, rgb, effort=effort)
                t1, c1 = time.perf_counter(), time.process_time()
                dec = decode_image(data, model).image
                t2 = time.perf_counter()
                h, w = rgb.shape[:2]
                rec = {"image": name, "effort": effort, "setting": q, "bytes": len(data),
                       "bpp": bpp(len(data), h, w), "psnr": psnr(rgb, dec),
                       "ms_ssim": ms_ssim(rgb, dec), "enc_s": t1 - t0, "dec_s": t2 - t1,
                       "enc_cpu_s": c1 - c0, "threads": args.threads}  # fmt: skip
                with log.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                records.append(rec)
                print(f"effort {effort} q{q} {name}: {rec['bpp']:.4f} bpp {rec['psnr']:.3f} dB "
                      f"encode {rec['enc_s']:.1f} s ({rec['enc_cpu_s']:.1f} CPU-s)", flush=True)  # fmt: skip
                (out / "summary.md").write_text(summarize(records, anchors))
    plot(records, anchors, out / "rd.png")
    print((out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
