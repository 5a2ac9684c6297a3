"""``vaecodec serve`` against its targets: compare latency, slider redraw, 20 concurrent compares.

Usage (from the repository root)::

    python benchmarks/serve_load.py [--image ../shared/data/kodak/kodim23.png] [--workers 2]
        [--threads 1] [--repeats 5] [--rounds 3] [--no-browser] [-o benchmarks/results/serve_load.json]

Starts ``vaecodec serve --port 0`` (a subprocess on 127.0.0.1, the command users run), uploads
the image (768x512 Kodak by default; a synthetic 768x512 image where Kodak is absent), then
measures, from the client side, over HTTP:

0. **reference**: the same coding without the server, in this process (ours' encode and
   decode, WebP q75 encode + decode, one MS-SSIM), to show how busy the machine is;
1. **compare latency**: ``--repeats`` sequential compare requests of ours (``cb-vr10`` quality
   5, the default) against WebP q75 and against JPEG q75, and with the equal-bytes switch
   (WebP and AVIF matched to ours): wall time of the whole request (both encodes, both
   decodes, PSNR, MS-SSIM, PNG files written), after one warm-up request;
2. **slider redraw**: 200 sequential ``/api/vae/decode`` requests with random z (HTTP round
   trip), and, unless ``--no-browser`` or no Chromium, 50 slider moves in headless Chromium
   (the page's own timer: request + decode + drawing on the canvas);
3. **load**: ``--rounds`` rounds of 20 concurrent compare requests (ours at qualities 1-10
   against the five classical codecs in turn): each answer's decoded PNG is checked against
   the source (PSNR recomputed and equal to the reported one; bytes equal the file's size);
   wall time, per-request latency, and the server's resident memory (VmRSS after each round,
   VmHWM peak).

Prints a summary and writes every number to ``-o`` (JSON).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _common import KODAK, RESULTS
from PIL import Image

CLASSICAL = ("jpeg", "webp", "avif", "jpeg2000", "jpegxl")


def _post(base, path, data, timeout=300):
    req = urllib.request.Request(base + path, data=data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def _get(base, path, timeout=60):
    with urllib.request.urlopen(base + path, timeout=timeout) as r:
        return r.read()


def _mem(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        s = f.read()
    get = lambda k: int(re.search(rf"{k}:\s+(\d+)", s).group(1)) / 1024  # noqa: E731
    return {"rss_mib": get("VmRSS"), "peak_rss_mib": get("VmHWM")}


def _stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"n": len(xs), "median": statistics.median(xs), "min": xs[0], "max": xs[-1],
            "p95": xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]}  # fmt: skip


def _source(path: str | None) -> tuple[np.ndarray, str]:
    p = Path(path) if path else KODAK / "kodim23.png"
    if p.is_file():
        return np.asarray(Image.open(p).convert("RGB")), str(p)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:768]
    a = np.stack([xx / 3, yy / 2, 128 + 100 * np.sin(xx / 9 + yy / 13)], -1)
    a = np.clip(a + rng.normal(0, 8, a.shape), 0, 255).astype(np.uint8)
    return a, "synthetic 768x512 (Kodak not found)"


def _compare(base, image_id, left, right, equal=False) -> tuple[float, dict]:
    body = json.dumps({"image": image_id, "left": left, "right": right, "equal_bytes": equal})
    t0 = time.perf_counter()
    status, raw, _ = _post(base, "/api/compare", body.encode())
    dt = time.perf_counter() - t0
    r = json.loads(raw)
    if status != 200:
        raise RuntimeError(f"compare failed ({status}): {r}")
    return dt, r


def _check(base, src: np.ndarray, r: dict) -> bool:
    from vaecodec.evaluate.metrics import psnr

    ok = True
    for side in ("left", "right"):
        s = r[side]
        dec = np.asarray(Image.open(io.BytesIO(_get(base, f"/api/file/{s['image']}")))
                         .convert("RGB"))  # fmt: skip
        ok &= abs(psnr(src, dec) - s["psnr_db"]) < 1e-9
        ok &= len(_get(base, f"/api/file/{s['file']}")) == s["bytes"]
    return bool(ok)


def _browser_redraw(base: str, moves: int = 50) -> dict | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not os.path.exists("/usr/bin/chromium"):
        return None
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path="/usr/bin/chromium", headless=True, args=args)
        page = ctx.new_page()
        page.goto(base + "/explore")
        page.wait_for_function("document.body.dataset.ready === '1'", timeout=60_000)
        slider = page.locator("#sliders input[type=range]").first
        box = slider.bounding_box()
        times = []
        for i in range(moves):
            n = int(page.get_attribute("#decoded", "data-redraws"))
            frac = 0.05 + 0.9 * ((i * 7) % moves) / moves
            page.mouse.click(box["x"] + box["width"] * frac, box["y"] + box["height"] / 2)
            page.wait_for_function(f"Number(document.getElementById('decoded').dataset.redraws)"
                                   f" > {n} && !window.vaecodecExplore.inFlight")  # fmt: skip
            times.append(page.evaluate("window.vaecodecExplore.lastMs") / 1000)
        ctx.close()
    return _stats(times)


def _in_process(src: np.ndarray, threads: int, repeats: int = 3) -> dict:
    """The same work without the server, in this process (the contention reference): median
    seconds of ours' encode_image / decode_image (cb-vr10 q5), WebP q75 encode + decode, and
    one MS-SSIM, at ``threads`` torch threads."""
    import torch

    from vaecodec.compression.lossy import decode_image, encode_image
    from vaecodec.evaluate import classical
    from vaecodec.evaluate.metrics import ms_ssim
    from vaecodec.zoo.codecs import load_codec

    torch.set_num_threads(threads)
    model = load_codec("cb-vr10", 5)
    times: dict[str, list[float]] = {"ours_enc": [], "ours_dec": [], "webp": [], "ms_ssim": []}
    for _ in range(repeats + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        data = encode_image(model, src)
        t1 = time.perf_counter()
        dec, _ = decode_image(data, model)
        t2 = time.perf_counter()
        classical.decode("webp", classical.encode("webp", src, 75))
        t3 = time.perf_counter()
        ms_ssim(src, dec)
        t4 = time.perf_counter()
        for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[k].append(dt)
    return {k: statistics.median(v[1:]) for k, v in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image", help="image to compare (default: Kodak kodim23)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-browser", action="store_true")
    p.add_argument("-o", "--output", default=str(RESULTS / "serve_load.json"))
    args = p.parse_args(argv)

    src, src_name = _source(args.image)
    ref = _in_process(src, args.threads)
    print("in-process reference (no server, " + f"{args.threads} thread(s)): " + ", ".join(
        f"{k} {v:.3f} s" for k, v in ref.items()))  # fmt: skip
    cmd = [sys.executable, "-m", "vaecodec.cli", "serve", "--port", "0", "--workers",
           str(args.workers), "--threads", str(args.threads)]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    out: dict = {"command": " ".join(["python", "benchmarks/serve_load.py", *(argv or sys.argv[1:])]),
                 "server": " ".join(cmd[1:]), "image": src_name,
                 "size": [int(src.shape[1]), int(src.shape[0])],
                 "machine": f"{platform.processor() or platform.machine()}, "
                            f"{os.cpu_count()} CPUs",
                 "date": time.strftime("%Y-%m-%d %H:%M"),
                 "load_average_at_start": os.getloadavg(), "in_process_reference_s": ref}  # fmt: skip
    try:
        base = re.search(r"open (http://[\d.]+:\d+)/ ", proc.stdout.readline()).group(1)
        buf = io.BytesIO()
        Image.fromarray(src).save(buf, format="PNG")
        status, raw, _ = _post(base, "/api/upload?name=bench.png", buf.getvalue())
        image_id = json.loads(raw)["image"]
        ours = {"codec": "ours", "family": "cb-vr10", "quality": 5}
        _compare(base, image_id, ours, {"codec": "webp", "setting": 75})  # warm-up
        print(f"{src_name} {src.shape[1]}x{src.shape[0]}; server: {' '.join(cmd[1:])}")

        # 1. compare latency
        latency = {}
        for name, right, equal in (("ours_q5+webp_q75", {"codec": "webp", "setting": 75}, False),
                                   ("ours_q5+jpeg_q75", {"codec": "jpeg", "setting": 75}, False),
                                   ("ours_q5+webp_equal_bytes", {"codec": "webp"}, True),
                                   ("ours_q5+avif_equal_bytes", {"codec": "avif"}, True)):  # fmt: skip
            times, parts = [], []
            for _ in range(args.repeats):
                dt, r = _compare(base, image_id, ours, right, equal)
                times.append(dt)
                parts.append({"ours_enc": r["left"]["encode_s"], "ours_dec": r["left"]["decode_s"],
                              "cl_enc": r["right"]["encode_s"], "cl_dec": r["right"]["decode_s"]})  # fmt: skip
            med = {k: statistics.median(x[k] for x in parts)
                   for k in ("ours_enc", "ours_dec", "cl_enc", "cl_dec")}  # fmt: skip
            latency[name] = {"wall_s": _stats(times), "median_parts_s": med,
                             "bytes": [r["left"]["bytes"], r["right"]["bytes"]],
                             "psnr_db": [r["left"]["psnr_db"], r["right"]["psnr_db"]],
                             "right_setting": r["right"].get("setting")}  # fmt: skip
            w = latency[name]["wall_s"]
            print(f"compare {name:26s} median {w['median']:.3f} s (min {w['min']:.3f}, max "
                  f"{w['max']:.3f}); ours enc {med['ours_enc']:.3f} dec {med['ours_dec']:.3f}, "
                  f"classical enc {med['cl_enc']:.3f} dec {med['cl_dec']:.3f} s")  # fmt: skip
        out["compare"] = latency

        # 2. slider redraw
        rng = np.random.default_rng(0)
        times = []
        for _ in range(200):
            z = json.dumps({"z": rng.normal(size=32).round(3).tolist()}).encode()
            t0 = time.perf_counter()
            status, png, _ = _post(base, "/api/vae/decode", z)
            times.append(time.perf_counter() - t0)
            assert status == 200 and png[:4] == b"\x89PNG"
        out["slider_http"] = _stats(times)
        print(f"slider redraw over HTTP: median {1000 * out['slider_http']['median']:.1f} ms, "
              f"p95 {1000 * out['slider_http']['p95']:.1f} ms, max "
              f"{1000 * out['slider_http']['max']:.1f} ms (200 requests)")  # fmt: skip
        if not args.no_browser:
            out["slider_browser"] = _browser_redraw(base)
            b = out["slider_browser"]
            if b:
                print(f"slider redraw in Chromium (request + decode + draw): median "
                      f"{1000 * b['median']:.1f} ms, p95 {1000 * b['p95']:.1f} ms, max "
                      f"{1000 * b['max']:.1f} ms ({b['n']} moves)")  # fmt: skip

        # 3. load: rounds of 20 concurrent compares
        out["memory_before_load"] = _mem(proc.pid)
        rounds = []
        for k in range(args.rounds):
            plans = [(1 + i % 10, CLASSICAL[i % 5]) for i in range(20)]
            t0 = time.perf_counter()
            with ThreadPoolExecutor(20) as pool:
                res = list(pool.map(lambda pl: _compare(
                    base, image_id, {"codec": "ours", "quality": pl[0]}, {"codec": pl[1]}), plans))
            wall = time.perf_counter() - t0
            correct = sum(_check(base, src, r) and r["left"]["quality"] == q
                          and r["right"]["codec"] == c for (q, c), (_, r) in zip(plans, res))  # fmt: skip
            mem = _mem(proc.pid)
            lat = _stats([dt for dt, _ in res])
            rounds.append({"wall_s": wall, "latency_s": lat, "succeeded": len(res),
                           "correct": int(correct), **mem})  # fmt: skip
            print(f"load round {k + 1}: 20 concurrent compares, {len(res)} answered, {correct} "
                  f"correct, wall {wall:.1f} s, latency median {lat['median']:.1f} s max "
                  f"{lat['max']:.1f} s; server RSS {mem['rss_mib']:.0f} MiB (peak "
                  f"{mem['peak_rss_mib']:.0f})")  # fmt: skip
        out["load"] = rounds
        out["load_average_at_end"] = os.getloadavg()
    finally:
        proc.terminate()
        proc.wait(20)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
