"""What of a lossy round trip is identical across CPU kernels, and how far the pixels move.

Runs the golden cases of ``tests/test_golden.py`` (two Kodak images x three qualities x every
bundled lossy codec) once per *variant* of this machine's CPU kernels, each in a fresh
process: torch's ATen kernels limited with ``ATEN_CPU_CAPABILITY`` (``avx2``, ``default`` =
no explicit vector code), oneDNN's convolutions limited with ``ONEDNN_MAX_CPU_ISA`` (``AVX2``,
``SSE41``), both at once, and two torch threads. Every variant encodes each image itself and
decodes the reference variant's ``.vcz`` bytes, so it reports, against the reference (this
machine's default kernels, one thread):

- whether the ``.vcz`` bytes it writes are identical,
- whether the decoded integer latents (y^ in units of 1/64, z^: what a file's symbols check
  covers) are identical,
- how far the decoded 8-bit pixels are: the largest absolute difference, how many differ,
  the change of PSNR against the original and the largest change of a 64x64 block's mean
  (what the golden test pins).

This is what ``tests/test_golden.py``'s pixel tolerance is measured with (BENCHMARKS.md
"Golden files across CPUs"; ``docs/format.md`` "What is identical where")::

    nice python benchmarks/golden_across_cpus.py   # 21 min on the loaded 2-core machine
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

VARIANTS = {
    "reference": {},
    "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "onednn-avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "onednn-sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "aten-default+onednn-sse41": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "2-threads": {"VAECODEC_GOLDEN_THREADS": "2"},
}


def _sha(a) -> str:
    return hashlib.sha256(bytes(a)).hexdigest()


def worker(out_dir: Path, ref_dir: Path | None) -> None:
    """Encode and decode every golden case; write ``<case>.vcz``, ``<case>.npy`` (pixels) and
    ``summary.json`` (hashes) into ``out_dir``; decode ``ref_dir``'s files if given."""
    import torch

    torch.set_num_threads(int(os.environ.get("VAECODEC_GOLDEN_THREADS", "1")))
    import test_golden as g
    import vaecodec
    from vaecodec.coding.container import unpack
    from vaecodec.compression.lossy import latent_symbols

    summary = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "cases": {}}
    for c, image, q in g.lossy_cases():
        key = f"{c}-{image[:-4]}-q{q}"
        model = g._codec(c).set_level(q - 1)
        data = vaecodec.encode_image(model, g._kodak(image))
        (out_dir / f"{key}.vcz").write_bytes(data)
        if ref_dir is not None:
            data = (ref_dir / f"{key}.vcz").read_bytes()
        header, streams = unpack(data)
        shape = model.latent_shape(header.height, header.width)
        strings = [[s] for s in streams]
        y_hat = model.decompress_latents(strings, shape)
        decoded = vaecodec.decode_image(data, model).image
        np.save(out_dir / f"{key}.npy", decoded)
        symbols = latent_symbols(model, y_hat, strings, shape)
        summary["cases"][key] = {
            "vcz_sha256": _sha((out_dir / f"{key}.vcz").read_bytes()),
            "symbols_sha256": _sha(b"".join(np.ascontiguousarray(a).tobytes() for a in symbols)),
        }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/golden_across_cpus.json"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--ref", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(Path(args.worker), Path(args.ref) if args.ref else None)
        return 0
    from _common import lower_priority

    lower_priority()
    import test_golden as g

    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for name, env in VARIANTS.items():
            d = Path(tmp) / name
            d.mkdir()
            cmd = [sys.executable, __file__, "--worker", str(d)]
            if name != "reference":
                cmd += ["--ref", str(dirs["reference"])]
            subprocess.run(cmd, env={**os.environ, **env}, check=True)
            dirs[name] = d
            print(f"{name}: done", flush=True)
        ref = json.loads((dirs["reference"] / "summary.json").read_text())
        report = {"variants": {}, "reference_cpu_capability": ref["cpu_capability"]}
        for name, d in dirs.items():
            s = json.loads((d / "summary.json").read_text())
            rows = {}
            for key, case in s["cases"].items():
                r = ref["cases"][key]
                a, b = np.load(dirs["reference"] / f"{key}.npy"), np.load(d / f"{key}.npy")
                diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
                c, image, q = key.rsplit("-", 2)
                orig = g._kodak(image + ".png")
                rows[key] = {
                    "vcz_identical": case["vcz_sha256"] == r["vcz_sha256"],
                    "symbols_identical": case["symbols_sha256"] == r["symbols_sha256"],
                    "pixels_max_abs_diff": int(diff.max()),
                    "pixels_differing": int((diff > 0).sum()),
                    "psnr_change_db": _psnr(orig, b) - _psnr(orig, a),
                    "block_mean_max_change": float(np.abs(g.block_means(a)
                                                          - g.block_means(b)).max()),
                }
            report["variants"][name] = {
                "env": VARIANTS[name], "cpu_capability": s["cpu_capability"],
                "all_vcz_identical": all(v["vcz_identical"] for v in rows.values()),
                "all_symbols_identical": all(v["symbols_identical"] for v in rows.values()),
                "max_abs_diff": max(v["pixels_max_abs_diff"] for v in rows.values()),
                "max_pixels_differing": max(v["pixels_differing"] for v in rows.values()),
                "max_abs_psnr_change_db": max(abs(v["psnr_change_db"]) for v in rows.values()),
                "max_block_mean_change": max(v["block_mean_max_change"] for v in rows.values()),
                "cases": rows,
            }  # fmt: skip
            v = report["variants"][name]
            print(f"{name:28s} vcz identical {v['all_vcz_identical']!s:5s} "
                  f"latents identical {v['all_symbols_identical']!s:5s} "
                  f"max |dpixel| {v['max_abs_diff']} "
                  f"pixels differing <= {v['max_pixels_differing']} "
                  f"|dPSNR| <= {v['max_abs_psnr_change_db']:.2e} dB "
                  f"|d block mean| <= {v['max_block_mean_change']:.2e}")  # fmt: skip
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
