"""The bundled learned codec family against the classical codecs on the 24 Kodak images.

Usage (from the repository root; lowers its own priority to nice 10)::

    python benchmarks/codec_kodak.py [--data ../shared/data/kodak] [--out benchmarks/results]
        [--model FAMILY_OR_RUN] [--record]

Runs ``vaecodec bench-codec`` with ``ours`` (the default zoo codec family, or ``--model``) and
JPEG, WebP, AVIF, JPEG 2000 and JPEG XL at their default sweeps, drawing CompressAI's published
Kodak curves (``benchmarks/reference/compressai_kodak_curves.json``) dashed. Writes
``codec_kodak.csv`` / ``.json`` / ``_bdrate.md`` / ``_rd.png``. With ``--record`` the measured
Kodak mean bpp (real file bytes), PSNR and MS-SSIM of each quality are written into the zoo
family's ``family.json`` (``metrics.kodak_*``). Extra arguments go to ``bench-codec``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import RESULTS, ROOT, kodak_dir, lower_priority

REFERENCES = ROOT / "benchmarks" / "reference" / "compressai_kodak_curves.json"


def record_in_family(summary_path: Path, family: str) -> Path:
    """Write the learned codec's Kodak means per quality into the family's ``family.json``."""
    from vaecodec.fileio import atomic_write_json
    from vaecodec.zoo.codecs import FAMILY_FILE, codec_families

    summary = json.loads(summary_path.read_text())
    fams = codec_families()
    fdir = Path(fams[family]["_dir"]) if family in fams else Path(family)
    meta = json.loads((fdir / FAMILY_FILE).read_text())
    points = {int(p["setting"]): p for p in summary["codecs"]["ours"]["points"]}
    for e in meta["qualities"]:
        p = points.get(int(e["quality"]))
        if p is None:
            continue
        e.setdefault("metrics", {}).update(
            kodak_bpp=round(p["bpp"], 4),
            kodak_psnr=round(p["psnr"], 3),
            kodak_ms_ssim=None if p.get("ms_ssim") is None else round(p["ms_ssim"], 5),
            kodak_source="benchmarks/codec_kodak.py (real .vcz bytes, 24 images)",
        )
    meta["kodak_bd_rate_psnr"] = summary["bd_rate_psnr"].get("ours")
    atomic_write_json(fdir / FAMILY_FILE, meta)
    return fdir / FAMILY_FILE


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=kodak_dir())
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--model", help="codec family or run directory (default: the zoo default)")
    p.add_argument("--record", action="store_true", help="write Kodak metrics into family.json")
    args, rest = p.parse_known_args(argv)
    lower_priority()
    from vaecodec.cli.bench_codec import main as bench
    from vaecodec.zoo.codecs import codec_summary

    model = args.model or codec_summary()["default_codec"]
    if model is None:
        print("no codec family bundled and no --model given", file=sys.stderr)
        return 2
    rc = bench(
        [
            "--data",
            args.data,
            "--out",
            args.out,
            "--name",
            "codec_kodak",
            "--model",
            model,
            "--codecs",
            "jpeg,webp,avif,jpeg2000,jpegxl,ours",
            "--references",
            str(REFERENCES),
            *rest,
        ]  # fmt: skip
    )
    if rc == 0 and args.record:
        print(f"recorded in {record_in_family(Path(args.out) / 'codec_kodak.json', model)}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
