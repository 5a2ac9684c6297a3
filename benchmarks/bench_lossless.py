"""Lossless compression of the 10 000 MNIST test images: bits-back ANS vs classical codecs.

Usage (from the repository root)::

    python benchmarks/bench_lossless.py [--models mnist-vae mnist-vae-8bit] [--max-images N]
        [--out benchmarks/results]

Runs ``vaecodec bench-lossless --json`` once per model (binarised MNIST, static binarisation with
the fixed seed, for the Bernoulli ``mnist-vae``; 8-bit MNIST for ``mnist-vae-8bit``) and writes
``lossless_mnist.json`` (all numbers) and ``lossless_mnist.md`` (the table for BENCHMARKS.md).
One run each; throughput depends on the machine's load (the runs are niced to 10).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

from _common import RESULTS, lower_priority


def table(results: dict[str, dict]) -> str:
    lines = []
    for name, r in results.items():
        b = r["bbans"]
        data = "binarised MNIST" if r["binarized"] else "MNIST (8-bit)"
        lines += [
            f"### {data}, {r['n_images']} test images — model `{name}` ({r['likelihood']}, "
            f"d={r['latent_dim']})",
            "",
            "| codec | bits/dim | notes |",
            "|---|---|---|",
            f"| **BB-ANS (`{name}`)** | **{b['bits_per_dim']:.4f}** | the real VCZL stream "
            f"({b['bytes']} bytes, {b['lanes']} lanes, P={b['latent_prec']}); exact round trip |",
            f"| model −ELBO | {r['neg_elbo']['bits_per_dim']:.4f} | "
            f"{r['neg_elbo']['nats_per_image']:.2f} nats/image; gap {r['gap_percent']:+.2f} % |",
        ]
        for cname, c in r.get("classical", {}).items():
            if "error" in c:
                lines.append(f"| {cname} | n/a | {c['error']} |")
            else:
                lines.append(f"| {cname} | {c['bits_per_dim']:.4f} | {c['how']} |")
        lines += [
            "",
            f"Encode {b['encode_images_per_s']:.0f} images/s ({b['encode_seconds']:.1f} s), decode "
            f"{b['decode_images_per_s']:.0f} images/s ({b['decode_seconds']:.1f} s); "
            f"{r['machine']}, torch threads {r['torch_threads']} (the coder runs its networks "
            "single-threaded).",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["mnist-vae", "mnist-vae-8bit"])
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    lower_priority()
    from vaecodec.cli import main as cli

    results = {}
    for name in args.models:
        cmd = ["bench-lossless", "--model", name, "--dataset", "mnist", "--json"]
        if args.max_images:
            cmd += ["--max-images", str(args.max_images)]
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = cli(cmd)
        if rc:
            return rc
        results[name] = json.loads(buf.getvalue())
        print(f"{name}: {results[name]['bbans']['bits_per_dim']:.4f} bits/dim", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lossless_mnist.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "lossless_mnist.md").write_text(table(results))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
