"""Peak memory and time of encoding / decoding big images, untiled (today's code) and tiled
(``vaecodec.nn.tiling``), with a zoo codec (issue 18, point 6).

Usage::

    nice -n 5 python benchmarks/codec_memory.py [--model cb-vr10] [--sizes 1024 2048 4096]
        [--skip-untiled-above 4096] [--out benchmarks/results/codec_memory.json]

Every case runs in a fresh subprocess (``torch.set_num_threads(1)``, the CLI's
``keep_freed_memory`` malloc settings, as ``vaecodec compress`` / ``decompress`` run); its peak
RSS is the child's own ``getrusage(RUSAGE_SELF).ru_maxrss``, reported with the RSS after the
model was loaded and the seconds of the encode / decode call alone.

- images: a Kodak image (kodim23) resized to S x S with Lanczos: smooth, so the files have a
  realistic size (tens of KB), written as PNG; encode reads the PNG as ``vaecodec compress``
  does.
- encode untiled: ``encode_image(model, image)``. Encode tiled: ``analyze_tiled(model.g_a,
  uint8 image, multiple=model.multiple)``, then the model's own ``_compress`` on that ``y`` (its
  ``g_a`` replaced by the precomputed result) and the same header: what ``encode_image`` will
  do once wired.
- decode untiled: ``decode_image(data, model)``. Decode tiled: ``model.decompress_latents``,
  ``model._ungain_y``, ``synthesize_tiled(model.g_s, ..., image_size)`` into uint8.
- transform: the peak of ``g_s`` / ``g_a`` alone on one window (the RSS high-water mark reset
  through ``/proc/self/clear_refs`` just before it), per pixel: what
  ``tiling.SYNTHESIS_BYTES_PER_PIXEL`` / ``ANALYSIS_BYTES_PER_PIXEL`` are fitted to.

The tiled and untiled outputs are compared (same ``.vcz`` bytes; decoded pixels that differ).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
KODAK = Path(os.environ.get("VAECODEC_KODAK", ROOT.parent / "shared" / "data" / "kodak"))


# ---------------------------------------------------------------------------------------------
# In the child
# ---------------------------------------------------------------------------------------------
def _status(key: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process, bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def _load(model_name: str, quality: int | None):
    import torch

    from vaecodec.cli.codec import keep_freed_memory
    from vaecodec.zoo.codecs import load_codec

    torch.set_num_threads(1)
    keep_freed_memory()
    return load_codec(model_name, quality)


def _lossy():
    """``check_codec, decode_image, encode_image, header_level, codec_id``."""
    from vaecodec.compression import lossy as m

    return m.check_codec, m.decode_image, m.encode_image, m.header_level, m.codec_id


def child(args) -> dict:
    import numpy as np
    import torch

    from vaecodec.nn import tiling

    model = _load(args.model, args.quality)
    model.coding_tables()  # built once, as every real encode / decode does
    rss0 = _status("VmRSS")
    res: dict = {"case": args.case, "mode": args.mode, "rss_after_load": rss0}
    t = time.perf_counter()
    if args.case == "transform":
        side = args.size
        with torch.no_grad():
            if args.mode == "g_s":
                y = torch.randn(1, model.M, side // 16, side // 16)
                _reset_peak()
                base = _status("VmRSS")
                out = tiling.synthesize_tiled(model.g_s, y, (side // 16, side // 16))
            else:
                x = torch.randint(0, 256, (1, 3, side, side), dtype=torch.uint8)
                _reset_peak()
                base = _status("VmRSS")
                out = tiling.analyze_tiled(model.g_a, x, (side // 16, side // 16))
        res["transform_bytes_per_pixel"] = (_status("VmHWM") - base) / side**2
        res["N"] = model.N
        del out
    elif args.case == "decode":
        from vaecodec.coding.container import unpack

        check_codec, decode_image, _encode, header_level, _cid = _lossy()

        data = Path(args.input).read_bytes()
        if args.mode == "untiled":
            img = decode_image(data, model).image
        else:
            header, streams = unpack(data)
            check_codec(header, model)
            size = (header.height, header.width)
            tiling.check_memory(*size, model.g_s, decode=True)
            with torch.no_grad():
                y = model._ungain_y(
                    model.decompress_latents([[s] for s in streams], model.latent_shape(*size)),
                    header_level(header, model),
                )
                x = tiling.synthesize_tiled(model.g_s, y, image_size=size)
            del y
            img = x[0].permute(1, 2, 0).numpy()
        res["seconds"] = time.perf_counter() - t
        res["sha256"] = hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()
        np.save(args.output, img)
    else:  # encode
        from vaecodec.coding.container import Header, pack
        from vaecodec.compression.lossy import latent_symbols
        from vaecodec.data import read_image

        _check, _decode, encode_image, _level, codec_id = _lossy()

        img = read_image(args.input)[0]
        t = time.perf_counter()
        if args.mode == "untiled":
            data = encode_image(model, img)
        else:
            h, w = img.shape[:2]
            tiling.check_memory(h, w, model.g_a, decode=False)
            x = torch.from_numpy(img).permute(2, 0, 1)[None]  # uint8 view, no copy
            y = tiling.analyze_tiled(model.g_a, x, multiple=model.multiple)
            out = model.compress_analyzed(y, (h, w))
            symbols = latent_symbols(model, out["y_hat"], out["strings"], out["shape"])
            data = pack(Header(codec_id(model), h, w, "RGB"), [s[0] for s in out["strings"]],
                        symbols)  # fmt: skip
        res["seconds"] = time.perf_counter() - t
        res["bytes"] = len(data)
        res["sha256"] = hashlib.sha256(data).hexdigest()
        Path(args.output).write_bytes(data)
    res["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return res


# ---------------------------------------------------------------------------------------------
# In the parent
# ---------------------------------------------------------------------------------------------
def _run(args, case: str, mode: str, size: int, inp: str = "", out: str = "",
         model: str | None = None) -> dict:  # fmt: skip
    cmd = [sys.executable, __file__, "--child", case, mode, "--model", model or args.model,
           "--size", str(size), "--input", inp, "--output", out]  # fmt: skip
    if args.quality is not None:
        cmd += ["--quality", str(args.quality)]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        print(p.stderr, file=sys.stderr)
        return {"case": case, "mode": mode, "size": size, "error": p.stderr.strip()[-500:]}
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r.update(size=size, wall_s=time.perf_counter() - t)
    return r


def _image(size: int, path: Path) -> None:
    from PIL import Image

    Image.open(KODAK / "kodim23.png").convert("RGB").resize((size, size), Image.LANCZOS).save(path)


def _fmt(r: dict) -> str:
    if "error" in r:
        return f"{r['case']:9s} {r['mode']:8s} {r['size']:5d}  ERROR"
    sec = f"{r['seconds']:7.1f} s" if "seconds" in r else ""
    return (f"{r['case']:9s} {r['mode']:8s} {r['size']:5d}  peak {r['peak_rss'] / 2**20:7.0f} MiB"
            f"  (after load {r['rss_after_load'] / 2**20:5.0f} MiB)  {sec}")  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="cb-vr10")
    p.add_argument("--quality", type=int, default=None, help="default: the family's default")
    p.add_argument("--sizes", type=int, nargs="*", default=[1024, 2048, 4096])
    p.add_argument("--skip-untiled-above", type=int, default=4096)
    p.add_argument("--transform-models", nargs="*", default=["cb-vr10", "cb128-vr10"])
    p.add_argument("--transform-sizes", type=int, nargs="*", default=[512, 1024])
    p.add_argument("--out", default=str(RESULTS / "codec_memory.json"))
    p.add_argument("--child", nargs=2, metavar=("CASE", "MODE"), help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--input", default="", help=argparse.SUPPRESS)
    p.add_argument("--output", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.case, args.mode = args.child
        print(json.dumps(child(args)))
        return 0

    import numpy as np
    import torch

    from vaecodec.nn import tiling

    results = []
    tmp = Path(tempfile.mkdtemp(prefix="codec_memory_"))
    for name in args.transform_models:
        for side in args.transform_sizes:
            for mode in ("g_s", "g_a"):
                r = _run(args, "transform", mode, side, model=name)
                r["model"] = name
                results.append(r)
                print(_fmt(r), f"{r.get('transform_bytes_per_pixel', 0):.1f} B/px (N={r.get('N')})")
    for size in args.sizes:
        png = tmp / f"img{size}.png"
        _image(size, png)
        enc = {}
        for mode in ("untiled", "tiled"):
            if mode == "untiled" and size > args.skip_untiled_above:
                continue
            enc[mode] = r = _run(
                args, "encode", mode, size, str(png), str(tmp / f"{mode}{size}.vcz")
            )
            results.append(r)
            print(_fmt(r), f"{r.get('bytes', 0)} bytes")
        if len(enc) == 2:
            same = enc["untiled"].get("sha256") == enc["tiled"].get("sha256")
            enc["tiled"]["same_bytes_as_untiled"] = same
            print(f"  encode tiled == untiled bytes: {same}")
        vcz = tmp / (("untiled" if "untiled" in enc else "tiled") + f"{size}.vcz")
        dec = {}
        for mode in ("untiled", "tiled"):
            if mode == "untiled" and size > args.skip_untiled_above:
                continue
            out = tmp / f"dec_{mode}{size}.npy"
            dec[mode] = r = _run(args, "decode", mode, size, str(vcz), str(out))
            results.append(r)
            print(_fmt(r))
        if len(dec) == 2 and "error" not in dec["tiled"] and "error" not in dec["untiled"]:
            a = np.load(tmp / f"dec_untiled{size}.npy")
            b = np.load(tmp / f"dec_tiled{size}.npy")
            d = np.abs(a.astype(np.int16) - b.astype(np.int16))
            dec["tiled"].update(pixels_differing=int((d > 0).sum()), max_difference=int(d.max()))
            print(
                f"  decode tiled vs untiled: {int((d > 0).sum())} values differ, max {int(d.max())}"
            )
            (tmp / f"dec_untiled{size}.npy").unlink()
            (tmp / f"dec_tiled{size}.npy").unlink()
    # the memory model's estimate next to what was measured
    model = _load(args.model, args.quality)
    for r in results:
        if r.get("case") in ("encode", "decode") and r.get("mode") == "tiled" and "peak_rss" in r:
            t = model.g_s if r["case"] == "decode" else model.g_a
            r["estimate"] = tiling.estimate_peak_bytes(r["size"], r["size"], t,
                                                       decode=r["case"] == "decode")  # fmt: skip
    record = {
        "command": "nice -n 5 python benchmarks/codec_memory.py " + " ".join(sys.argv[1:]),
        "machine": "2-core x86 CPU, 24 GB, shared",
        "cpu": _cpu(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "torch": torch.__version__,
        "threads": 1,
        "model": args.model,
        "quality": args.quality,
        "load_average": os.getloadavg(),
        "tile_budget": tiling.DEFAULT_TILE_BUDGET,
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print("wrote", args.out)
    return 0


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


if __name__ == "__main__":
    sys.exit(main())
