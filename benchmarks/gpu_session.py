"""Continue a codec on a GPU lent (or rented) for a fixed number of minutes, and bring it back.

Usage, on the GPU machine (repository root; the project importable, e.g. ``PYTHONPATH=src``)::

    python benchmarks/gpu_session.py train --minutes 10 --pieces OUT_DIR -- \
        --model checkerboard --init-from cb128-vr10 --data photos/train --val-data photos/val \
        --lmbda 0.00045 0.0009 0.0018 0.0035 0.0067 0.013 0.025 0.0483 0.0932 0.18 \
        --crop 256 --batch-size 16 --lr 1e-4 --level-weighting inverse-lmbda

and back home::

    python benchmarks/gpu_session.py unpack OUT_DIR runs/cb128-gpu     # checks, joins, extracts
    python -m vaecodec.zoo.export --family ... runs/cb128-gpu           # or --init-from it

``train`` runs ``vaecodec train-codec`` (everything after ``--``) with ``--hours`` set so that
training, the final validation and the packing end within ``--minutes`` (``--reserve``
minutes are kept for the last two), ``--device cuda`` unless given, a huge ``--steps`` unless
given, and ``--no-progress``; the trainer's defaults on CUDA apply (bf16 transforms, crops cut
on the GPU, no per-step host reads; add ``--compile`` to compile). Its output is also written
to ``train-log.txt`` in the run directory. Then the run directory's weights (float32, what
``--init-from`` continues from), config, metrics, curves and log are packed into one tar split
in pieces of at most ``--piece-mib`` MiB, with a ``SHA256SUMS`` file: a machine that returns
files of a limited size (16 MiB here) returns them whole. The optimizer state (``last/``) is
packed only with ``--with-state`` and when everything stays within ``--max-mib``; without it,
continue with ``--init-from`` (a fresh Adam) rather than ``--resume``.

``unpack`` checks every piece against ``SHA256SUMS``, joins them and extracts the run
directory (refusing paths outside it).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tarfile
import time
from pathlib import Path

RUN_FILES = ("model.safetensors", "config.json", "metrics.jsonl", "training.png", "train-log.txt")
STATE_DIR = "last"
SUMS = "SHA256SUMS"
PIECE_PREFIX = "run.tar.part"


def _train(args, rest: list[str]) -> int:
    run = Path(args.run_dir)
    budget_h = (args.minutes - args.reserve) / 60.0
    if budget_h <= 0:
        raise SystemExit(f"--minutes {args.minutes} leaves nothing after --reserve {args.reserve}")
    cmd = [sys.executable, "-m", "vaecodec.cli", "train-codec", *rest, "--out", str(run),
           "--hours", f"{budget_h:.4f}", "--no-progress"]  # fmt: skip
    if "--device" not in rest:
        cmd += ["--device", "cuda"]
    if "--steps" not in rest:
        cmd += ["--steps", "100000000"]
    run.mkdir(parents=True, exist_ok=True)
    print("running:", " ".join(cmd), flush=True)
    t0 = time.time()
    with open(run / "train-log.txt", "a") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            log.write(line)
            log.flush()
        rc = proc.wait()
    print(f"train-codec exited with {rc} after {(time.time() - t0) / 60:.1f} min", flush=True)
    if (run / "model.safetensors").is_file():
        pack(run, Path(args.pieces), args.piece_mib, args.max_mib, args.with_state)
    return rc


def pack(run: Path, pieces: Path, piece_mib: float, max_mib: float, with_state: bool) -> None:
    """Tar the run directory's files (and ``last/`` when asked and it fits) into pieces."""
    names = [n for n in RUN_FILES if (run / n).is_file()]
    size = sum((run / n).stat().st_size for n in names)
    if with_state and (run / STATE_DIR).is_dir():
        state = sorted(p for p in (run / STATE_DIR).rglob("*") if p.is_file())
        extra = sum(p.stat().st_size for p in state)
        if size + extra <= max_mib * 2**20 * 0.98:
            names += [str(p.relative_to(run)) for p in state]
        else:
            print(f"note: the optimizer state ({extra / 2**20:.0f} MiB) does not fit in "
                  f"--max-mib {max_mib:g} with the weights: continue with --init-from")  # fmt: skip
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for n in names:
            tar.add(run / n, arcname=n)
    data = buf.getvalue()
    step = int(piece_mib * 2**20)
    pieces.mkdir(parents=True, exist_ok=True)
    sums = []
    for i in range(0, len(data), step):
        name = f"{PIECE_PREFIX}{i // step:02d}"
        chunk = data[i : i + step]
        (pieces / name).write_bytes(chunk)
        sums.append(f"{hashlib.sha256(chunk).hexdigest()}  {name}\n")
    (pieces / SUMS).write_text("".join(sums))
    print(f"packed {', '.join(names)} ({len(data) / 2**20:.1f} MiB) into {len(sums)} piece(s) "
          f"of <= {piece_mib:g} MiB in {pieces}")  # fmt: skip


def unpack(pieces: Path, run: Path) -> None:
    """Check the pieces against ``SHA256SUMS``, join them, extract into ``run``."""
    lines = (pieces / SUMS).read_text().split("\n")
    data = bytearray()
    for line in filter(None, lines):
        digest, name = line.split("  ", 1)
        chunk = (pieces / name).read_bytes()
        if hashlib.sha256(chunk).hexdigest() != digest:
            raise SystemExit(f"{pieces / name} is damaged (its SHA-256 does not match {SUMS})")
        data += chunk
    run.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(bytes(data)), mode="r") as tar:
        tar.extractall(run, filter="data")  # refuses absolute paths, '..' and links out
        names = tar.getnames()
    print(f"unpacked {', '.join(names)} into {run}")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, rest = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    t = sub.add_parser("train", help="train-codec for a fixed time, then pack the run")
    t.add_argument("--minutes", type=float, required=True, help="wall-clock minutes in all")
    t.add_argument("--reserve", type=float, default=1.5,
                   help="minutes kept for the final validation and the packing")  # fmt: skip
    t.add_argument("--run-dir", default="/tmp/gpu-run", help="the run directory on this machine")
    t.add_argument("--pieces", required=True, help="folder for the pieces (e.g. $OUT)")
    t.add_argument("--piece-mib", type=float, default=15.5)
    t.add_argument("--max-mib", type=float, default=60.0, help="most MiB to bring back in all")
    t.add_argument("--with-state", action="store_true", help="also pack last/ if it fits")
    u = sub.add_parser("unpack", help="check, join and extract the pieces")
    u.add_argument("pieces")
    u.add_argument("run_dir")
    args = p.parse_args(argv)
    if args.verb == "train":
        return _train(args, rest)
    unpack(Path(args.pieces), Path(args.run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
