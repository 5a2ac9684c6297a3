"""Long fuzzing run of the stream parsers and decoders (issue 18, points 4 and 5).

Mutates small valid streams (bit flips, truncations, splices, insertions, header field edits
with the CRC recomputed, random bytes; ``tests/fuzz_formats.py``) and checks each input
against the property of ``tests/test_fuzz.py``: it decodes exactly to what was encoded, or
is refused with a ``FormatError`` -- no other exception, no hang (``--timeout`` seconds per
input), no allocation past ``fuzz_formats.memory_bound`` (tracemalloc, and the RSS
high-water mark). A lossy file may also decode to another well-formed image (damage behind a
valid CRC the decoder cannot see): those are counted, per kind of input (issue 18 point 5).

A supervisor process runs the fuzzing in a worker process, so that a segfault, a Rust abort
or a hang inside native code is recorded too (the worker writes each input to disk before
decoding it; the supervisor restarts it after the input that killed it). Inputs are a
function of ``(--seed, input number)``, so a run is reproducible and each finding can be
regenerated. Each finding's bytes are saved under ``--findings`` (default
``benchmarks/results/fuzz_<parser>_findings/``), the summary goes to
``benchmarks/results/fuzz_<parser>.json``, and line coverage of the parser modules is
measured with ``coverage``.

    nice -n 10 python benchmarks/fuzz_streams.py --parser vcz --minutes 30 --seed 1

Internals used (benchmark only; the tests use the public API): the lossless fast path decodes
with the stream reader's ``read_header`` / ``decode_stream`` and a model loaded once, instead
of ``vaecodec.decompress_lossless`` loading the zoo model for every input (the same code runs
on the same stream; only the model is not reloaded). Every ``--cli-every``-th input also goes
through ``vaecodec decompress`` (in process, ``vaecodec.cli.main``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import io
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

FAMILIES_LIMIT = 60  # input labels kept in the JSON (the most frequent)


def _src() -> Path:
    """The folder holding the ``vaecodec`` package that runs (the repository's ``src``, or a
    snapshot given with PYTHONPATH), found without importing it."""
    import importlib.util

    return Path(importlib.util.find_spec("vaecodec").submodule_search_locations[0]).parent


def _source() -> str:
    """Which code was fuzzed: a commit, and whether the working tree differed from it."""
    src = _src()
    if (src.parent / "COMMIT").exists():  # a snapshot: git archive COMMIT src
        return f"snapshot of {(src.parent / 'COMMIT').read_text().strip()} ({src})"
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
    except OSError:
        return str(src)
    return f"{head}" + (" with uncommitted changes under src/" if dirty else "")


def _modules(parser: str) -> list[str]:
    from fuzz_formats import VczlTarget, VczTarget

    mods = VczTarget.modules if parser == "vcz" else VczlTarget.modules
    return [str(_src() / m) for m in mods if (_src() / m).exists()]


def _family(label: str) -> str:
    """A label without the per-input details: ``bytes (bit flip+truncate), CRC fixed`` ->
    ``bytes, CRC fixed``; ``field height+quality`` stays (field names are the family)."""
    if label.startswith("bytes ("):
        return "bytes" + label[label.index(")") + 1 :]
    if " then bytes (" in label:
        return label.split(" then ")[0] + " then bytes"
    return label


# ---------------------------------------------------------------------------------------------
# Worker
# ---------------------------------------------------------------------------------------------


class _Worker:
    def __init__(self, args, state: Path, cov) -> None:
        import numpy as np
        import torch

        torch.set_num_threads(1)
        from fuzz_formats import VczlTarget, VczTarget

        self.args, self.state, self.np, self.cov = args, state, np, cov
        self.work = Path(tempfile.mkdtemp(prefix="fuzz-worker-"))
        self.target = VczTarget() if args.parser == "vcz" else VczlTarget(str(self.work))
        self.fast = self._fast_lossless() if args.parser == "lossless" else None

    def _fast_lossless(self):
        from vaecodec.coding.lossless_format import read_header
        from vaecodec.compression.lossless import decode_stream, load_lossless_model
        from vaecodec.models.bitsback import BitsBackCodec

        models, codecs = {}, {}

        def decode(data: bytes):
            header = read_header(data)  # FormatError here: decode_stream raises the same
            if header.model not in ("mnist-vae", "mnist-vae-8bit"):
                return self.target.decode(data)  # the public path (model name checks)
            if header.model not in models:
                models[header.model] = load_lossless_model(header.model)
            model, _meta, whash, _stored = models[header.model]
            key = (header.model, header.latent_prec)
            if key not in codecs:
                codecs[key] = BitsBackCodec(model, header.latent_prec)
            return decode_stream(data, model, whash, codecs[key])[1]

        return decode

    def cli(self, data: bytes, api) -> tuple[str, str]:
        """``vaecodec decompress`` on ``data``: ``(kind, detail)`` judged against the API's
        outcome ``api``."""
        import numpy as np
        from PIL import Image

        from vaecodec.cli import main

        d = Path(tempfile.mkdtemp(dir=self.work))
        src = d / ("in.vcz" if self.args.parser == "vcz" else "in.vczl")
        src.write_bytes(data)
        out = d / ("out.png" if self.args.parser == "vcz" else "out")
        err = io.StringIO()
        try:
            from fuzz_formats import time_limit

            with time_limit(self.args.timeout), contextlib.redirect_stderr(err), \
                    contextlib.redirect_stdout(io.StringIO()):  # fmt: skip
                rc = main(["decompress", str(src), "-o", str(out)])
        except Exception as e:
            shutil.rmtree(d, ignore_errors=True)
            import traceback

            from fuzz_formats import _where

            tb = "".join(traceback.format_exception(e)[-12:])
            return "exception", f"CLI: {type(e).__name__}: {str(e)[:200]} at {_where(e)}\n{tb}"
        try:
            if rc == 2:
                lines = err.getvalue().strip().splitlines()
                if len(lines) != 1:
                    return "exception", f"CLI exit 2 with {len(lines)} lines on stderr"
                return "refused", ""
            if rc != 0:
                return "exception", f"CLI exit status {rc}"
            if self.args.parser == "vcz":
                got = np.asarray(Image.open(out))
            else:
                got = np.stack([np.asarray(Image.open(p)) for p in sorted(out.iterdir())])
            if api.kind in ("exact", "decoded other"):
                ref = self.target.decode(data)
                if got.shape == ref.shape and np.array_equal(got, ref):
                    return api.kind, "CLI"
                if self.args.parser == "lossless" and sorted(map(bytes, got)) == sorted(
                    map(bytes, ref)
                ):
                    return api.kind, "CLI (file order)"
            return "mismatch", f"CLI exit 0 writes {got.shape}; the API gave {api.kind}"
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def loop(self) -> None:
        import tracemalloc

        from fuzz_formats import Outcome, RngDraw, fuzz_input, memory_bound

        args, np = self.args, self.np
        deadline = time.time() + args.seconds_left
        counts = collections.Counter()
        families: dict[str, collections.Counter] = {}
        findings = []
        k = args.start
        # warm up (every seed decodes exactly), then the RSS baseline and the memory limit
        for s in self.target.seeds:
            assert self.target.run(s, 60).kind == "exact"
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
        tracemalloc.start()
        last_flush = last_cov = 0.0
        cur = self.state / "current.bin"
        while time.time() < deadline:
            (self.state / "current.json").write_text(json.dumps({"k": k, "label": "?"}))
            label, _i, data = fuzz_input(RngDraw(np.random.default_rng([args.seed, k])),
                                         self.target.seeds, args.parser)  # fmt: skip
            cur.write_bytes(data)
            # the RSS high-water mark before decoding: what making the input took is not the
            # decoder's (a mutated image count can make the harness build a large table)
            rss0 = max(rss0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10)
            (self.state / "current.json").write_text(json.dumps({"k": k, "label": label}))
            out = self.target.run(data, args.timeout, self.fast)
            if args.cli_every and k % args.cli_every == 0 and not out.finding:
                kind, detail = self.cli(data, out)
                if kind in ("exception", "mismatch"):
                    out = Outcome(kind, detail, out.seconds, out.peak_bytes)
                counts["cli runs"] += 1
                counts[f"cli {kind}"] += 1
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
            if rss - rss0 > memory_bound(data) and not out.finding:
                out = Outcome("memory", f"RSS high-water mark {rss >> 20} MiB, "
                              f"{(rss - rss0) >> 20} MiB over the mark before it ({out.kind})",
                              out.seconds, out.peak_bytes)  # fmt: skip
                rss0 = rss  # report the next growth only
            counts["inputs"] += 1
            counts[out.kind] += 1
            fam = families.setdefault(_family(label), collections.Counter())
            fam[out.kind] += 1
            if out.finding:
                findings.append({"k": k, "label": label, "kind": out.kind, "detail": out.detail,
                                 "bytes": data.hex()})  # fmt: skip
            k += 1
            if time.time() - last_flush > 5 or out.finding:
                last_flush = time.time()
                self._flush(k, counts, families, findings)
                findings = []
                if self.cov is not None and time.time() - last_cov > 60:
                    last_cov = time.time()
                    self.cov.save()  # a worker killed later keeps what it covered
        self._flush(k, counts, families, findings)
        shutil.rmtree(self.work, ignore_errors=True)

    def _flush(self, k, counts, families, findings) -> None:
        p = self.state / f"progress-{self.args.start}.json"
        old = json.loads(p.read_text()) if p.exists() else {"findings": []}
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps({"next": k, "counts": counts,
                                   "families": {f: dict(c) for f, c in families.items()},
                                   "findings": old["findings"] + findings}))  # fmt: skip
        os.replace(tmp, p)


def worker_main(args) -> None:
    state = Path(args.state)
    cov = None
    if not args.no_coverage:  # coverage is a dev extra: --no-coverage runs without it
        import coverage

        cov = coverage.Coverage(data_file=str(state / ".coverage"), data_suffix=True,
                                include=_modules(args.parser))  # fmt: skip
        cov.start()

    def _stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        w = _Worker(args, state, cov)
        # keep a runaway allocation from taking the shared machine: 4 GiB over what it holds
        with open("/proc/self/statm") as f:
            vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (vm + (4 << 30), resource.RLIM_INFINITY))
        w.loop()
    finally:
        if cov is not None:
            cov.stop()
            cov.save()


# ---------------------------------------------------------------------------------------------
# Supervisor
# ---------------------------------------------------------------------------------------------


def _coverage(state: Path, parser: str) -> dict:
    import coverage

    cov = coverage.Coverage(data_file=str(state / ".coverage"))
    cov.combine([str(state)], keep=True)
    out = {}
    for path in _modules(parser):
        _f, stmts, _exc, missing, _fmt = cov.analysis2(path)
        rel = str(Path(path).relative_to(_src()))
        out[rel] = {"statements": len(stmts), "covered": len(stmts) - len(missing),
                    "percent": round(100 * (len(stmts) - len(missing)) / max(1, len(stmts)), 1)}  # fmt: skip
    tot = sum(v["statements"] for v in out.values())
    cvd = sum(v["covered"] for v in out.values())
    out["total"] = {"statements": tot, "covered": cvd, "percent": round(100 * cvd / tot, 1)}
    return out


def _merge(state: Path) -> tuple[dict, dict, list]:
    counts, families, findings = collections.Counter(), {}, []
    for p in sorted(state.glob("progress-*.json")):
        d = json.loads(p.read_text())
        counts.update(d["counts"])
        for f, c in d["families"].items():
            families.setdefault(f, collections.Counter()).update(c)
        findings += d["findings"]
    return counts, families, findings


def supervise(args) -> None:
    state = Path(tempfile.mkdtemp(prefix=f"fuzz-{args.parser}-"))
    findings_dir = Path(args.findings or ROOT / f"benchmarks/results/fuzz_{args.parser}_findings")
    if findings_dir.exists():
        shutil.rmtree(findings_dir)
    findings_dir.mkdir(parents=True)
    t0 = time.time()
    end = t0 + 60 * args.minutes
    start, deaths = 0, []
    print(f"fuzzing the {args.parser} parser for {args.minutes} min, seed {args.seed}; state "
          f"in {state}", flush=True)  # fmt: skip
    last_print = 0.0
    while time.time() < end - 5:
        cmd = [sys.executable, __file__, "--worker", "--parser", args.parser, "--seed",
               str(args.seed), "--start", str(start), "--state", str(state), "--timeout",
               str(args.timeout), "--cli-every", str(args.cli_every),
               "--seconds-left", str(end - time.time())]  # fmt: skip
        if args.no_coverage:
            cmd.append("--no-coverage")
        (state / "current.json").unlink(missing_ok=True)
        proc = subprocess.Popen(cmd)
        killed = False
        while proc.poll() is None:
            time.sleep(2)
            cur = state / "current.json"
            if cur.exists() and time.time() - cur.stat().st_mtime > 20 * args.timeout + 120:
                proc.kill()  # stuck in native code past the in-process alarm
                proc.wait()
                killed = True
                break
            if time.time() - last_print > 60:
                last_print = time.time()
                c, _f, fnd = _merge(state)
                n = c.get("inputs", 0)
                el = time.time() - t0
                print(f"[{el / 60:5.1f} min] {n} inputs ({n / max(el, 1):.1f}/s): "
                      f"{c.get('exact', 0)} exact, {c.get('decoded other', 0)} other image, "
                      f"{c.get('refused', 0)} refused, {len(fnd) + len(deaths)} findings",
                      flush=True)  # fmt: skip
        rc = proc.returncode
        if rc == 0 and time.time() >= end - 5:
            break
        cur = state / "current.json"
        info = json.loads(cur.read_text()) if cur.exists() else {"k": start, "label": "?"}
        if info["label"] == "?" and not killed:  # died making the input: a harness bug
            raise SystemExit(f"the worker failed while making input {info['k']} (a bug of the "
                             f"harness, see its traceback above)")  # fmt: skip
        deaths.append("hang (killed by the supervisor)" if killed
                      else f"worker died (exit status {rc})")  # fmt: skip
        blob = (state / "current.bin").read_bytes() if (state / "current.bin").exists() else b""
        name = f"{info['k']:08d}_crash"
        (findings_dir / f"{name}.bin").write_bytes(blob)
        (findings_dir / f"{name}.txt").write_text(f"{info['label']}\n{deaths[-1]}\n")
        print(f"worker died on input {info['k']} ({info['label']}): {deaths[-1]}", flush=True)
        start = info["k"] + 1
    counts, families, findings = _merge(state)
    signatures = collections.Counter()
    for f in findings:
        sig = f"{f['kind']}: {f['detail'].split(' at ')[-1] if ' at ' in f['detail'] else f['detail'][:80]}"
        signatures[sig] += 1
        if signatures[sig] <= args.keep:
            name = f"{f['k']:08d}_{f['kind'].replace(' ', '-')}"
            (findings_dir / f"{name}.bin").write_bytes(bytes.fromhex(f["bytes"]))
            (findings_dir / f"{name}.txt").write_text(f"{f['label']}\n{f['kind']}: {f['detail']}\n")
    crafted = collections.Counter()  # point 5: inputs with a valid CRC and other content
    for fam, c in families.items():
        if fam.startswith("field") or "CRC fixed" in fam:
            crafted.update(c)
    top = sorted(families.items(), key=lambda kv: -sum(kv[1].values()))[:FAMILIES_LIMIT]
    result = {
        "parser": args.parser,
        "seed": args.seed,
        "minutes": round((time.time() - t0) / 60, 1),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()} ({os.cpu_count()} CPUs, shared with other work)",
        "source": _source(),
        "command": " ".join(["python", "benchmarks/fuzz_streams.py", *sys.argv[1:]]),
        "timeout_s": args.timeout,
        "memory_bound": "256 MiB + 300 B per claimed pixel (.vcz); 256 MiB (VCZL)",
        "inputs": counts.get("inputs", 0),
        "outcomes": {k: v for k, v in counts.items() if k != "inputs"},
        "worker_deaths": deaths,
        "findings": len(findings) + len(deaths),
        "finding_signatures": dict(signatures),
        "valid_crc_crafted": dict(crafted),
        "by_kind_of_input": {f: dict(c) for f, c in top},
        "coverage": None if args.no_coverage else _coverage(state, args.parser),
        "findings_dir": str(findings_dir.relative_to(ROOT)) if findings_dir.is_relative_to(ROOT)
        else str(findings_dir),
    }  # fmt: skip
    out = Path(args.out or ROOT / f"benchmarks/results/fuzz_{args.parser}.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("inputs", "outcomes", "findings",
                                              "finding_signatures", "coverage")}, indent=1))  # fmt: skip
    print(f"-> {out}")
    shutil.rmtree(state, ignore_errors=True)


def atheris_main(args) -> None:
    """Coverage-guided fuzzing with atheris (libFuzzer): the fuzzer mutates a stream's body,
    the harness appends its CRC-32 (else nearly every input would stop at the CRC check), and
    an input that breaks the property raises, so libFuzzer saves it (the body, without the
    CRC) under ``--findings`` as ``crash-*``. Seeds: the bodies of the valid streams."""
    import atheris
    import numpy  # noqa: F401  (not instrumented: only vaecodec's own code is)
    import torch

    from fuzz_formats import VczlTarget, VczTarget, with_crc

    torch.set_num_threads(1)
    with atheris.instrument_imports(include=["vaecodec"]):
        import vaecodec.api  # noqa: F401
        import vaecodec.cli  # noqa: F401

        for name in [m[len("vaecodec/") : -3].replace("/", ".") for m in
                     (VczTarget.modules if args.parser == "vcz" else VczlTarget.modules)]:  # fmt: skip
            with contextlib.suppress(ImportError):
                __import__(f"vaecodec.{name}")

    work = Path(tempfile.mkdtemp(prefix="fuzz-atheris-"))
    target = VczTarget() if args.parser == "vcz" else VczlTarget(str(work))
    corpus = work / "corpus"
    corpus.mkdir()
    for i, s in enumerate(target.seeds):
        (corpus / f"seed{i}").write_bytes(s[:-4])
    findings = Path(args.findings or ROOT / f"benchmarks/results/fuzz_{args.parser}_atheris")
    findings.mkdir(parents=True, exist_ok=True)

    def one_input(body: bytes) -> None:
        out = target.run(with_crc(body), args.timeout)
        if out.finding:
            raise AssertionError(f"{out.kind}: {out.detail}")

    atheris.Setup([sys.argv[0], str(corpus), f"-max_total_time={int(60 * args.minutes)}",
                   f"-seed={args.seed}", "-timeout=0", "-rss_limit_mb=4096",
                   f"-artifact_prefix={findings}/", "-print_final_stats=1"], one_input)  # fmt: skip
    atheris.Fuzz()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parser", choices=("vcz", "lossless"), required=True)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=10,
                    help="CPU seconds per input (a hang); wall-clock: 10x + 60 s")  # fmt: skip
    ap.add_argument(
        "--cli-every",
        type=int,
        default=25,
        help="also run `vaecodec decompress` on every N-th input (0: never)",
    )
    ap.add_argument("--keep", type=int, default=3, help="reproducers saved per kind of finding")
    ap.add_argument("--findings", help="folder for the reproducers")
    ap.add_argument("--out", help="the JSON result (default benchmarks/results/fuzz_<parser>.json)")
    ap.add_argument("--no-coverage", action="store_true")
    ap.add_argument("--engine", choices=("mutate", "atheris"), default="mutate",
                    help="mutate: the seeded mutators of tests/fuzz_formats.py under a "
                    "supervisor (the default); atheris: coverage-guided libFuzzer, in process")  # fmt: skip
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--state", help=argparse.SUPPRESS)
    ap.add_argument("--seconds-left", type=float, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.engine == "atheris":
        atheris_main(args)
    elif args.worker:
        worker_main(args)
    else:
        supervise(args)


if __name__ == "__main__":
    main()
