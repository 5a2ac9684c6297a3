"""``vaecodec make-shards``: pack photos into WebDataset tar shards for streamed training.

Usage::

    vaecodec make-shards photos/ more-photos/ -o shards/ [--shard-size 256MB] [--min-side 256]
    vaecodec train-codec --data 'shards/shard-{000000..000012}.tar' --val-data kodak/ ...

Draws a progress bar on a terminal, then prints a summary (shards, photos, bytes, skipped
counts), where the manifest is and the ``--data`` pattern that trains on the shards.
"""

from __future__ import annotations


def register(sub) -> None:
    from vaecodec.data.shards import REENCODINGS

    p = sub.add_parser(
        "make-shards",
        help="pack folders of photos into WebDataset tar shards (for train-codec --data)",
        description="Pack photos into WebDataset tar shards with a manifest (counts, SHA-256). "
        "The photos are shuffled first; each is decoded once to check it, and kept in its own "
        "encoding unless --reencode. Run again with the same arguments to continue an "
        "interrupted run.",
    )
    p.add_argument("sources", nargs="+", metavar="SRC", help="folders (recursive) or image files")
    p.add_argument("-o", "--out", required=True, metavar="DIR",
                   help="folder to write (new or empty, or an unfinished run to continue)")
    p.add_argument("--shard-size", default="256MB",
                   help="bytes per shard at most (kB, MB, GB; KiB, MiB, GiB)")
    p.add_argument("--min-side", type=int, default=256,
                   help="skip photos whose shorter side is below this many pixels (0: keep all)")
    p.add_argument("--reencode", choices=REENCODINGS,
                   help="store each photo re-encoded (png, webp: lossless; jpeg: quality 95) "
                        "instead of its own bytes")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle before sharding")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_make_shards)


def run_make_shards(args) -> int:
    from pathlib import Path

    from vaecodec.data.shards import MANIFEST_FILE, make_shards

    m = make_shards(args.sources, args.out, shard_size=args.shard_size, min_side=args.min_side,
                    reencode=args.reencode, seed=args.seed, progress=not args.no_progress)  # fmt: skip
    shards = m["shards"]
    total = sum(s["bytes"] for s in shards)
    last = len(shards) - 1
    print(
        f"{len(shards)} shards ({Path(args.out) / shards[0]['name']} .. {shards[-1]['name']}), "
        f"{m['images']} photos, {total / 1e6:.1f} MB; skipped {m['skipped_small']} smaller "
        f"than {m['settings']['min_side']} px and {m['skipped_unreadable']} unreadable"
    )
    print(f"manifest: {Path(args.out) / MANIFEST_FILE}; train with "
          f"--data '{Path(args.out) / f'shard-{{000000..{last:06d}}}.tar'}'")  # fmt: skip
    return 0
