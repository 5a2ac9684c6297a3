"""Crops per second from tar shards against the same photos read as a folder.

Usage::

    python benchmarks/shard_throughput.py [--photos /work/shared/data/photos] [--workers 2] \
        [--crops 480] [--crop 256] [--batch-size 8] [--shard-size 16MB] [--shuffle-buffer 1000] \
        [--kinds shards folder folder-cached] [--pairs 1] [--nice 10] [--shards SPEC]

Packs the photos into shards once (``vaecodec make-shards``, into a temporary folder, timed;
``--shards SPEC`` uses shards made before from the same photos instead) and waits for them to
be written out to disk (``sync``: the writing back would otherwise load the machine during the
first measurement), then, each in a fresh process with the same ``--workers`` data-loading processes, the batch
size and crop size ``train-codec`` uses, counts the 256² crops per second that reach the
training process after two warm-up batches, for:

- ``shards``: :class:`~vaecodec.data.shard_stream.ShardCrops` over the shards (each photo
  decoded when it leaves the shuffle buffer);
- ``folder``: :class:`~vaecodec.data.RandomCropImages` over the folder, shuffled by a sampler,
  each photo decoded for each crop (what a folder too large to keep in memory costs);
- ``folder-cached``: the same with ``cache=True``, what ``train-codec --data DIR`` does: each
  worker decodes each photo once and keeps it (fits only a small set: here all photos, in each
  worker).

Each line also gives the CPU time spent per crop (user + system, of the process and its data
workers, from the loader's start to its end, over the crops taken including two warm-up
batches: unlike crops/s, hardly moved by what else the machine runs) and the peak resident
memory of the largest data worker (``ru_maxrss`` of the children; the training process's own
for ``--workers 0``). Lowers its priority (``--nice``, 10 by default; 0 leaves it) and
uses one torch thread per process: the numbers are for a shared 2-core machine.

``--pairs N`` repeats the measurement N times, the kinds interleaved (their order alternating
from one round to the next, so that a change in the machine's load falls on all alike), and
ends with the median and the range of each kind's crops/s and CPU time per crop, and of the
ratio of each round's ``shards`` to its ``folder`` (crops/s; CPU per crop).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import lower_priority  # noqa: E402

PHOTOS = "/work/shared/data/photos"


def one(kind: str, args) -> dict:
    import torch

    from vaecodec.data import RandomCropImages, list_images
    from vaecodec.data.shard_stream import ShardCrops

    torch.set_num_threads(1)
    if kind == "shards":
        ds = ShardCrops(args.spec, crop=args.crop, shuffle_buffer=args.shuffle_buffer)
        loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size,
                                             num_workers=args.workers,
                                             collate_fn=ShardCrops.collate)  # fmt: skip
    else:
        files = list_images(args.photos)
        ds = RandomCropImages(files, crop=args.crop, cache=kind == "folder-cached")
        sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=10**9)
        loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, sampler=sampler,
                                             num_workers=args.workers)  # fmt: skip
    cpu0 = _cpu()
    it = iter(loader)
    for _ in range(2):
        first = next(it)
    t0, n = time.perf_counter(), 0
    while n < args.crops:
        x = next(it)
        x = x[0] if isinstance(x, (list, tuple)) else x
        n += x.shape[0]
    dt = time.perf_counter() - t0
    del it  # the workers stop, and their CPU time is counted in RUSAGE_CHILDREN
    cpu = _cpu() - cpu0
    who = resource.RUSAGE_CHILDREN if args.workers else resource.RUSAGE_SELF
    shape = tuple((first[0] if isinstance(first, (list, tuple)) else first).shape)
    return {"kind": kind, "crops": n, "seconds": dt, "crops_per_s": n / dt, "batch": shape,
            "cpu_ms_per_crop": 1000 * cpu / (n + 2 * shape[0]),
            "peak_rss_mb": resource.getrusage(who).ru_maxrss / 1024}  # fmt: skip


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its finished children."""
    return sum(r.ru_utime + r.ru_stime for r in map(resource.getrusage,
               (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))  # fmt: skip


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", default=PHOTOS)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--crops", type=int, default=480, help="crops timed per source")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--shard-size", default="16MB")
    p.add_argument("--shards", help="shards made from --photos before (skips make-shards)")
    p.add_argument("--shuffle-buffer", type=int, default=1000)
    p.add_argument("--kinds", nargs="+", default=["shards", "folder", "folder-cached"])
    p.add_argument("--pairs", type=int, default=1, help="rounds of the kinds, interleaved")
    p.add_argument("--nice", type=int, default=10, help="niceness to run at (0: leave it)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.nice:
        lower_priority(args.nice)
    if args.one:
        print(json.dumps(one(args.one, args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        spec = args.shards or _make(args, Path(tmp))
        os.sync()
        base = [sys.executable, __file__, "--photos", args.photos, "--workers", str(args.workers),
                "--crops", str(args.crops), "--crop", str(args.crop), "--batch-size",
                str(args.batch_size), "--shuffle-buffer", str(args.shuffle_buffer),
                "--spec", spec, "--nice", "0"]  # fmt: skip
        rounds = []
        for r_ in range(args.pairs):
            kinds = args.kinds if r_ % 2 == 0 else args.kinds[::-1]
            got = {}
            for kind in kinds:
                r = subprocess.run([*base, "--one", kind], capture_output=True, text=True)
                if r.returncode:
                    sys.exit(f"{kind} failed:\n{r.stderr[-2000:]}")
                res = got[kind] = json.loads(r.stdout.strip().splitlines()[-1])
                print(f"{kind:14s} {res['crops_per_s']:7.1f} crops/s ({res['crops']} crops of "
                      f"{args.crop}² in {res['seconds']:.1f} s, {args.workers} workers, batch "
                      f"{args.batch_size}); CPU {res['cpu_ms_per_crop']:.2f} ms a crop; peak "
                      f"worker RSS {res['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
            rounds.append(got)
        if args.pairs > 1:
            _summary(rounds, args.kinds)


def _make(args, tmp: Path) -> str:
    """Shards of ``args.photos`` in ``tmp`` (timed); returns their spec."""
    from vaecodec.data.shards import make_shards

    t0 = time.perf_counter()
    m = make_shards([args.photos], tmp / "s", shard_size=args.shard_size, min_side=0,
                    progress=False)  # fmt: skip
    n = len(m["shards"])
    size = sum(s["bytes"] for s in m["shards"])
    print(f"make-shards: {m['images']} photos -> {n} shards of <= {args.shard_size} "
          f"({size / 1e6:.1f} MB, mean {size / m['images'] / 1e3:.0f} kB a photo) in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
    return f"{tmp}/s/shard-{{000000..{n - 1:06d}}}.tar"


def _spread(values) -> str:
    return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"


def _summary(rounds: list[dict], kinds: list[str]) -> None:
    """Median (min-max) over the rounds of each kind's numbers and of shards / folder."""
    print(f"over {len(rounds)} rounds, median (min-max):")
    for kind in kinds:
        print(
            f"{kind:14s} {_spread([r[kind]['crops_per_s'] for r in rounds])} crops/s; "
            f"CPU {_spread([r[kind]['cpu_ms_per_crop'] for r in rounds])} ms a crop"
        )
    if "shards" in kinds and "folder" in kinds:
        speed = [r["shards"]["crops_per_s"] / r["folder"]["crops_per_s"] for r in rounds]
        cpu = [r["shards"]["cpu_ms_per_crop"] / r["folder"]["cpu_ms_per_crop"] for r in rounds]
        print(f"shards / folder: crops/s {_spread(speed)}; CPU per crop {_spread(cpu)}")


if __name__ == "__main__":
    main()
