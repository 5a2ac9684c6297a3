"""``vaecodec bench-codec``: rate-distortion benchmark of a learned codec against classical ones.

Usage::

    vaecodec bench-codec --data kodak/ --out results/ \\
        [--codecs jpeg,webp,avif,jpeg2000,jpegxl,ours] [--model NAME] [--max-images N] [--json]

Every image is coded at every setting of every codec (real files, real sizes); the outputs in
``--out`` (prefix ``--name``, default ``bench``):

- ``NAME.csv``: one row per image x codec x setting (bytes, bpp, PSNR, MS-SSIM, times);
- ``NAME.json``: per-codec mean curves, library versions and options, PSNR at 0.25/0.5/1 bpp,
  BD-rate tables, timings, environment;
- ``NAME_bdrate.md``: BD-rate (PSNR and MS-SSIM) of every codec vs each classical codec;
- ``NAME_rd.png``: PSNR and MS-SSIM (dB) vs bpp, the learned codec in bold.

``ours`` is the learned codec: ``--model`` (a zoo codec family or a run directory), else the
zoo's default codec family; with neither, only the classical codecs are benchmarked and the
command says so. Classical codecs the installed libraries lack are reported and skipped.
The module exposes :func:`register_bench_codec` (hooked into the ``vaecodec`` command) and
:func:`main` (``python -m vaecodec.cli.bench_codec --data ... --out ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

from vaecodec import __version__
from vaecodec.compression.refine import EFFORT_HELP, MAX_EFFORT
from vaecodec.errors import VaecodecError

LEARNED = "ours"
DEFAULT_CODECS = "jpeg,webp,avif,jpeg2000,jpegxl,ours"
REPORT_BPP = (0.25, 0.5, 1.0)


def register_bench_codec(sub) -> None:
    """Add the ``bench-codec`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "bench-codec",
        help="rate-distortion benchmark: learned codec vs JPEG, WebP, AVIF, JPEG 2000, JPEG XL",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--data", required=True, help="folder of test images (e.g. the 24 Kodak PNGs)")
    p.add_argument("--out", required=True, help="folder for the CSV, JSON, markdown and PNG")
    p.add_argument(
        "--codecs", default=DEFAULT_CODECS, help="comma-separated list"
    )
    p.add_argument("--model", help="learned codec: zoo codec family or run directory")
    p.add_argument("--qualities", help="comma-separated qualities of --model (default: the zoo's)")
    p.add_argument("--effort", type=int, default=0, metavar="E", choices=range(MAX_EFFORT + 1),
                   help="encoder effort of --model (not of --baseline, which stays at 0: "
                        "`--baseline` the same model to see what the effort buys); "
                        + EFFORT_HELP.split(": ", 1)[1])  # fmt: skip
    p.add_argument(
        "--baseline",
        metavar="MODEL",
        help="a second learned codec (zoo family or run directory), coded in the same run at all "
        "its qualities and used as a BD-rate anchor, e.g. the current default",
    )
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="CODEC=V1,V2,...",
        help="override a classical codec's sweep, e.g. jpeg=10,50,90 (repeatable)",
    )
    p.add_argument("--max-images", type=int, help="use only the first N images (sorted by name)")
    p.add_argument("--name", default="bench", help="file-name prefix of the outputs")
    p.add_argument("--bd-method", choices=("pchip", "cubic"), default="pchip")
    p.add_argument("--no-ms-ssim", action="store_true", help="skip MS-SSIM (faster)")
    p.add_argument(
        "--threads", type=int, help="torch CPU threads for MS-SSIM and the learned codec "
        "(default: one per CPU that other processes leave free when the command starts)"
    )
    p.add_argument("--references", help="JSON {name: {bpp: [...], psnr: [...]}} drawn dashed")
    p.add_argument(
        "--anchors",
        metavar="CSV",
        help="reuse the classical codecs' per-image results of an earlier run (its NAME.csv) "
        "instead of coding them again; they must cover the same images",
    )
    p.add_argument("--json", action="store_true", help="print the summary JSON on stdout")
    p.set_defaults(func=run_bench_codec)


def _parse_list(text: str, what: str) -> list:
    out = []
    for tok in text.split(","):
        tok = tok.strip()
        if not tok:
            continue
        try:
            v = float(tok)
        except ValueError:
            raise VaecodecError(f"{what}: {tok!r} is not a number") from None
        out.append(int(v) if v.is_integer() and "." not in tok else v)
    if not out:
        raise VaecodecError(f"{what}: empty list")
    return out


def _learned_adaptor(args, say):
    from vaecodec.evaluate.rd import LearnedCodecAdaptor

    qualities = _parse_list(args.qualities, "--qualities") if args.qualities else None
    if args.model:
        return LearnedCodecAdaptor(args.model, qualities, label=LEARNED, effort=args.effort)
    from vaecodec.zoo.codecs import codec_summary

    default = codec_summary().get("default_codec")
    if not default:
        say(
            "no learned codec available (no zoo codec family and no --model): "
            "benchmarking the classical codecs only"
        )
        return None
    return LearnedCodecAdaptor(default, qualities, label=LEARNED, effort=args.effort)


def _baseline_adaptor(model: str, names: list[str]):
    """The ``--baseline`` learned codec, labelled by its family or folder name."""
    from vaecodec.evaluate import classical
    from vaecodec.evaluate.rd import LearnedCodecAdaptor

    label = Path(model).name or str(model)
    if label in names or label in classical.CLASSICAL_CODECS or label == LEARNED:
        raise VaecodecError(f"--baseline {model}: its name {label!r} is taken by another codec")
    return LearnedCodecAdaptor(model, None, label=label)


def _torch_threads() -> int | None:
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:
        return None


def _environment() -> dict:
    import imagecodecs
    import PIL

    from vaecodec.checkpoint import git_commit

    try:
        niceness = os.nice(0)
    except OSError:
        niceness = None
    return {
        "vaecodec": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "nice": niceness,
        "torch_threads": _torch_threads(),
        "pillow": PIL.__version__,
        "imagecodecs": imagecodecs.__version__,
        "command": " ".join(sys.argv),
    }


def _reused_anchors(args, images, names) -> tuple[list[dict], dict]:
    """Records and metadata of the requested classical codecs from ``--anchors`` CSV."""
    from vaecodec.evaluate import classical, rd

    records = rd.read_records_csv(args.anchors)
    wanted = [n for n in names if n in classical.CLASSICAL_CODECS]
    image_names = sorted(n for n, _ in images)
    out, meta = [], {}
    side = Path(args.anchors).with_suffix(".json")
    old = json.loads(side.read_text()).get("codecs", {}) if side.is_file() else {}
    for name in wanted:
        recs = [r for r in records if r["codec"] == name]
        if not recs:
            continue
        if sorted({r["image"] for r in recs}) != image_names:
            raise VaecodecError(
                f"--anchors {args.anchors}: its {name} results cover other images than "
                f"{args.data}; rerun without --anchors"
            )
        out += recs
        m = {k: v for k, v in old.get(name, {"codec": name}).items() if k != "points"}
        meta[name] = {**m, "reused_from": str(args.anchors)}
    return out, meta


def run_bench_codec(args) -> int:
    """Run the benchmark described by parsed ``args``; returns the exit status (0)."""
    from tqdm import tqdm

    from vaecodec.evaluate import classical, rd
    from vaecodec.viz.rd_plot import plot_rd

    t_start = time.perf_counter()
    log = sys.stderr if args.json else sys.stdout

    def say(msg: str) -> None:
        print(msg, file=log, flush=True)

    from vaecodec.cli.codec import keep_freed_memory

    keep_freed_memory()  # as compress/decompress do, so the timed codec runs as the CLI does
    names = [c.strip().lower() for c in args.codecs.split(",") if c.strip()]
    unknown = [c for c in names if c not in classical.CLASSICAL_CODECS and c != LEARNED]
    if unknown:
        raise VaecodecError(
            f"unknown codec(s) {', '.join(unknown)}; choose from "
            f"{', '.join(classical.CLASSICAL_CODECS)}, {LEARNED}"
        )
    if args.model and LEARNED not in names:
        names.append(LEARNED)
    overrides = {}
    for item in args.setting:
        codec, sep, values = item.partition("=")
        if not sep or codec.strip() not in classical.CLASSICAL_CODECS:
            raise VaecodecError(f"--setting {item!r}: expected CODEC=V1,V2,... (a classical codec)")
        overrides[codec.strip()] = _parse_list(values, f"--setting {codec}")

    images = rd.load_images(args.data, args.max_images)
    say(f"{len(images)} images from {args.data}")

    adaptors, skipped = [], {}
    reused, reused_meta = _reused_anchors(args, images, names) if args.anchors else ([], {})
    for name in names:
        if name == LEARNED or name in reused_meta:
            continue
        ok, detail = classical.codec_status(name)
        if ok:
            adaptors.append(classical.ClassicalCodec(name, overrides.get(name)))
        else:
            skipped[name] = detail
            say(f"skipping {name}: {detail}")
    learned = _learned_adaptor(args, say) if LEARNED in names else None
    if learned is not None:
        adaptors.append(learned)
    baseline = _baseline_adaptor(args.baseline, names) if args.baseline else None
    if baseline is not None:
        adaptors.append(baseline)
    if not adaptors and not reused:
        raise VaecodecError("no codec left to benchmark (all requested codecs are unavailable)")

    total = sum(len(a.qualities) for a in adaptors) * len(images)
    records, codec_meta = list(reused), dict(reused_meta)
    with tqdm(total=total, unit="img", file=sys.stderr, disable=None) as bar:
        for a in adaptors:
            bar.set_description(a.name)
            t0 = time.perf_counter()
            recs = rd.evaluate_codec(
                images, a, progress=bar.update, compute_ms_ssim=not args.no_ms_ssim
            )
            meta = a.info() if hasattr(a, "info") else {"codec": a.name}
            meta["learned"] = bool(getattr(a, "learned", False))
            meta["wall_s"] = time.perf_counter() - t0
            meta["total_enc_s"] = sum(r["enc_s"] for r in recs)
            meta["total_dec_s"] = sum(r["dec_s"] for r in recs)
            codec_meta[a.name] = meta
            records += recs
            if bar.disable:  # no live bar (not a terminal): one line per codec instead
                say(f"{a.name}: {len(recs)} images x settings in {meta['wall_s']:.1f} s")

    rows = rd.summarize(records)
    cv = rd.curves(rows)
    anchors = [*reused_meta, *(a.name for a in adaptors if not getattr(a, "learned", False))]
    if baseline is not None:
        anchors.append(baseline.name)
    at_bpp = {c: {str(b): rd.value_at_bpp(cv[c], b) for b in REPORT_BPP} for c in cv}
    bd_psnr = rd.bd_rate_table(cv, anchors, metric="psnr", method=args.bd_method)
    has_ms = not args.no_ms_ssim and all(any(v == v for v in c["ms_ssim"]) for c in cv.values())
    bd_ms = (
        rd.bd_rate_table(cv, anchors, metric="ms_ssim_db", method=args.bd_method)
        if has_ms
        else None
    )

    for name, meta in codec_meta.items():
        meta["points"] = [r for r in rows if r["codec"] == name]
    summary = {
        "dataset": str(args.data),
        "n_images": len(images),
        "images": [n for n, _ in images],
        "learned_codec": learned.info() if learned is not None else None,
        "codecs": codec_meta,
        "skipped": skipped,
        "psnr_at_bpp": at_bpp,
        "bd_method": args.bd_method,
        "bd_rate_psnr": bd_psnr,
        "bd_rate_ms_ssim": bd_ms,
        "notes": (
            "bpp = 8*file bytes/(H*W); PSNR in dB on 8-bit RGB, mean of per-image values; "
            "MS-SSIM mean of per-image values (null for images < 161 px); BD-rate in percent, "
            "negative = fewer bits than the anchor at equal quality; psnr_at_bpp interpolated "
            "(pchip in log bpp), null outside a codec's sweep; times are wall-clock seconds "
            "per image."
        ),
        "environment": _environment(),
    }

    out = Path(args.out)
    md = f"# BD-rate on {args.data} ({len(images)} images, {args.bd_method})\n\n"
    md += "Rows: codec under test; columns: anchor. Negative = fewer bits at equal quality.\n\n"
    md += rd.bd_table_markdown(bd_psnr, "BD-rate, PSNR (RGB)") + "\n"
    if bd_ms is not None:
        md += rd.bd_table_markdown(bd_ms, "BD-rate, MS-SSIM (dB)") + "\n"
    refs = None
    if args.references:
        try:
            refs = json.loads(Path(args.references).read_text())
        except (OSError, ValueError) as e:
            raise VaecodecError(f"cannot read reference curves {args.references}: {e}") from e
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # matplotlib glyph / layout chatter
        plot_rd(
            cv,
            out / f"{args.name}_rd.png",
            highlight=[LEARNED],
            references=refs,
            title=f"{Path(args.data).resolve().name} ({len(images)} images)",
        )
    summary["wall_s"] = time.perf_counter() - t_start
    rd.write_records_csv(records, out / f"{args.name}.csv")
    rd.write_text(md, out / f"{args.name}_bdrate.md")
    rd.write_json(summary, out / f"{args.name}.json")

    if args.json:
        print(json.dumps(rd.json_safe(summary), indent=2))
        return 0
    _print_report(summary, cv, md, say)
    say(f"wrote {out / args.name}.{{csv,json}}, {args.name}_bdrate.md, {args.name}_rd.png")
    return 0


def _fmt(v, spec=".2f") -> str:
    return "   n/a" if v is None or v != v else format(v, spec)


def _print_report(summary: dict, cv: dict, md: str, say) -> None:
    head = f"{'codec':<10}" + "".join(f" PSNR@{b:<5}" for b in REPORT_BPP)
    head += f" {'bpp range':>13} {'enc s/img':>9} {'dec s/img':>9}"
    say(head)
    for c, meta in summary["codecs"].items():
        pts = meta["points"]
        enc = sum(p["enc_s"] for p in pts) / max(1, len(pts))
        dec = sum(p["dec_s"] for p in pts) / max(1, len(pts))
        line = f"{c:<10}" + "".join(
            f" {_fmt(summary['psnr_at_bpp'][c][str(b)]):>10}" for b in REPORT_BPP
        )
        line += f" {cv[c]['bpp'][0]:>6.3f}-{cv[c]['bpp'][-1]:<6.3f} {enc:>9.3f} {dec:>9.3f}"
        say(line)
    say("")
    say(md.rstrip())
    say(f"total {summary['wall_s']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m vaecodec.cli.bench_codec --data D --out O ...``."""
    parser = argparse.ArgumentParser(prog="vaecodec")
    sub = parser.add_subparsers(dest="command")
    register_bench_codec(sub)
    args = parser.parse_args(["bench-codec", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except VaecodecError as e:
        print(f"vaecodec bench-codec: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
