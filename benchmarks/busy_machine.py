"""The main job and a codec command on an idle and on a busy machine (issue 17, point 1).

Each case runs one command as a user would (``vaecodec ...``, nice 0) and reports its time:
for ``train``, the seconds each epoch line prints; for ``compress``, the command's wall time.
"busy" adds one CPU-bound process (``python -c 'while True: pass'``, nice 0) for the whole
command, "busy-from-2" only from the second epoch on (a competitor that arrives during a long
run: the thread count is chosen once, at the start). ``--codec`` also times the default codec's
encode and decode of one Kodak image in-process at 1 and 2 torch threads, interleaved, idle and
busy (the part of ``compress`` / ``decompress`` that threads change; their wall time is mostly
start-up). Before each case the script records ``/proc/loadavg`` and how many CPUs other processes
kept busy over one second (``vaecodec.runtime``'s sampler), since the machine may be shared;
``--pause PATTERN`` stops the processes whose command line matches (``pgrep -f``) for the
whole benchmark and always resumes them (``kill -CONT``), also on error or Ctrl-C.

    python benchmarks/busy_machine.py                       # all cases
    python benchmarks/busy_machine.py --cases train-idle train-busy --pause cb128-cpu-s9
    python benchmarks/busy_machine.py --cases compress-idle --codec
    python benchmarks/busy_machine.py --list

Writes ``benchmarks/results/busy_machine.json`` (one record per case) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, kodak_dir  # noqa: E402

TRAIN = ["vaecodec", "train", "--dataset", "mnist", "--eval-iw-samples", "0", "--no-progress"]
COMPRESS = ["vaecodec", "compress", "--psnr"]

# name: (command kind, extra arguments, competitor: None | "all" | "from-2")
CASES = {
    "train-idle": ("train", [], None),
    "train-busy": ("train", [], "all"),
    "train-idle-t2": ("train", ["--threads", "2"], None),
    "train-busy-t2": ("train", ["--threads", "2"], "all"),
    "train-idle-t1": ("train", ["--threads", "1"], None),
    "train-busy-t1": ("train", ["--threads", "1"], "all"),
    "train-busy-from-2": ("train", ["--epochs", "3"], "from-2"),
    "train-busy-from-2-t2": ("train", ["--threads", "2", "--epochs", "3"], "from-2"),
    "compress-idle": ("compress", [], None),
    "compress-busy": ("compress", [], "all"),
    "compress-idle-t2": ("compress", ["--threads", "2"], None),
    "compress-busy-t2": ("compress", ["--threads", "2"], "all"),
}
DEFAULT_CASES = ["train-idle", "train-idle-t2", "train-busy", "train-busy-t2", "train-idle-t1",
                 "train-busy-t1", "compress-idle", "compress-idle-t2", "compress-busy",
                 "compress-busy-t2"]  # fmt: skip
EPOCH = re.compile(r"^epoch\s+(\d+)/\d+ .* (\d+\.\d)s$")


def load() -> dict:
    from vaecodec import runtime

    a = runtime.read_sample()
    time.sleep(1.0)
    b = runtime.read_sample()
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    busy = runtime.busy_elsewhere(a, b) if a and b else None
    return {"loadavg": loadavg, "cpus_busy_elsewhere": None if busy is None else round(busy, 2)}


def spinner() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def run_case(name: str, image: str, epochs: int) -> dict:
    kind, extra, competitor = CASES[name]
    rec = {"case": name, **load()}
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "train":
            cmd = TRAIN + ["--out", f"{tmp}/run"] + extra
            if "--epochs" not in extra:
                cmd += ["--epochs", str(epochs)]
        else:
            cmd = COMPRESS + [image, "-o", f"{tmp}/x.vcz"] + extra
        rec["command"] = " ".join(cmd[:1] + cmd[1:]).replace(tmp, "TMP")
        comp = spinner() if competitor == "all" else None
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        epochs_s, lines = [], []
        try:
            for line in proc.stdout:
                line = line.rstrip()
                lines.append(line)
                print(f"  | {line}", flush=True)
                m = EPOCH.match(line)
                if m:
                    epochs_s.append(float(m.group(2)))
                    if competitor == "from-2" and comp is None:
                        comp = spinner()
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
            if comp is not None:
                comp.kill()
                comp.wait()
        rec["wall_s"] = round(time.monotonic() - t0, 2)
        rec["epoch_s"] = epochs_s
        rec["rc"] = proc.returncode
        rec["threads_lines"] = [s for s in lines if "torch thread" in s]
    return rec


CODEC_CHILD = """
import json, sys, time
import torch
from vaecodec.cli.codec import keep_freed_memory
from vaecodec.compression.lossy import decode_image, encode_image
from vaecodec.data import read_image
from vaecodec.zoo.codecs import codec_summary, load_codec
keep_freed_memory()
model = load_codec(codec_summary()["default_codec"])
image = read_image(sys.argv[1])[0]
times = {1: [], 2: []}
for _ in range(int(sys.argv[2])):
    for n in (1, 2):
        torch.set_num_threads(n)
        t = time.perf_counter()
        data = encode_image(model, image)
        t1 = time.perf_counter()
        decode_image(data, model)
        times[n].append([round(t1 - t, 3), round(time.perf_counter() - t1, 3)])
print(json.dumps(times))
"""


def codec_in_process(image: str, busy: bool, rounds: int = 3) -> dict:
    """Encode and decode seconds of ``image`` at 1 and 2 threads, ``rounds`` times each,
    interleaved, in one process (nice 0), next to a competitor when ``busy``."""
    rec = {"case": f"codec-in-process-{'busy' if busy else 'idle'}", **load()}
    comp = spinner() if busy else None
    try:
        out = subprocess.run([sys.executable, "-c", CODEC_CHILD, image, str(rounds)],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    finally:
        if comp is not None:
            comp.kill()
            comp.wait()
    rec["encode_decode_s_by_threads"] = json.loads(out.strip().splitlines()[-1])
    return rec


def paused(pattern: str | None) -> list[int]:
    if not pattern:
        return []
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if int(p) != os.getpid()]


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, choices=sorted(CASES))
    p.add_argument("--epochs", type=int, default=1, help="epochs of the train cases")
    p.add_argument("--image", default=str(Path(kodak_dir()) / "kodim01.png"))
    p.add_argument("--pause", help="pgrep -f pattern of processes to stop while measuring")
    p.add_argument("--out", default=str(RESULTS / "busy_machine.json"))
    p.add_argument("--codec", action="store_true",
                   help="also time encode / decode in-process at 1 and 2 threads, idle and busy")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    args = p.parse_args(argv)
    if args.list:
        for name, (kind, extra, comp) in CASES.items():
            print(f"{name:24s} {kind} {' '.join(extra)} competitor={comp}")
        return 0
    pids = paused(args.pause)

    def resume(*_):
        signal_all(pids, signal.SIGCONT)
        raise SystemExit(130)

    records = []
    old = {s: signal.signal(s, resume) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        signal_all(pids, signal.SIGSTOP)
        if pids:
            print(f"stopped {pids} ({args.pause}) while measuring")
        for name in args.cases:
            print(f"{name}:", flush=True)
            rec = run_case(name, args.image, args.epochs)
            rec["paused"] = pids
            rec["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
            records.append(rec)
            print(f"  -> {json.dumps(rec)}", flush=True)
        for busy in (False, True) if args.codec else ():
            rec = codec_in_process(args.image, busy)
            rec["paused"] = pids
            rec["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
            records.append(rec)
            print(f"  -> {json.dumps(rec)}", flush=True)
    finally:
        signal_all(pids, signal.SIGCONT)
        for s, h in old.items():
            signal.signal(s, h)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(records, indent=1) + "\n")
    print(f"\n{'case':24s} {'loadavg':16s} busy  epochs (s) / wall (s)   threads")
    for r in records:
        t = r.get("epoch_s") or r.get("wall_s") or r.get("encode_decode_s_by_threads")
        print(f"{r['case']:24s} {r['loadavg']:16s} {r['cpus_busy_elsewhere']}  {t}  "
              f"{'; '.join(r.get('threads_lines', []))}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
