"""``vaecodec serve``: the web application, over HTTP and in a real headless browser.

One server (``vaecodec serve --port 0`` in a subprocess, the command a user runs) serves the
whole module. The HTTP tests check uploads, refusals, the bytes and metrics of a compare, the
equal-bytes match, path safety and a bounded load test (20 concurrent compares on 127.0.0.1).
The browser tests drive Debian's Chromium through Playwright (never a downloaded browser) over
both pages; they are skipped, with the reason, only where no browser or Playwright is installed
(``VAECODEC_CHROMIUM`` names another Chromium binary); an installed browser that does not
start fails them.

``VAECODEC_UPDATE_SCREENSHOTS=1 pytest tests/test_serve.py`` also writes the README's
screenshots ``docs/img/serve-compare.png`` and ``docs/img/serve-explore.png``.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaecodec.evaluate import classical
from vaecodec.evaluate.metrics import psnr

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("VAECODEC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
MAX_PIXELS = 200_000
MAX_UPLOAD_MB = 1
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip


def _image(h=96, w=128, seed=0) -> np.ndarray:
    """A small synthetic photo-like RGB image (gradients, an edge, noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 200 / w + 30 * seed, yy * 180 / h,
                     128 + 80 * np.sin(xx / (4.0 + seed))], axis=-1)  # fmt: skip
    base[h // 3 : h // 2, w // 4 : w // 2] = (240, 40 + 50 * seed, 40)
    return np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def _png(a: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", **kw)
    return buf.getvalue()


def _bomb_png(w=20000, h=20000) -> bytes:
    """A 60-byte PNG whose header claims ``w x h`` pixels (no image data)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) \
        + chunk(b"IEND", b"")  # fmt: skip


class Client:
    """A tiny HTTP client on the standard library (``urllib``)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def request(self, path, data=None, method=None, timeout=120):
        req = urllib.request.Request(self.base + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, path, payload=None, data=None):
        body = json.dumps(payload).encode() if payload is not None else data
        status, _, raw = self.request(path, body, "POST" if body is not None else "GET")
        return status, json.loads(raw)

    def upload(self, png: bytes, name="img.png"):
        return self.json(f"/api/upload?name={name}", data=png)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``vaecodec serve --port 0`` (small limits: 1 MiB, 200k pixels); yields (url, pid)."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               VAECODEC_CACHE=str(tmp_path_factory.mktemp("serve-cache")))  # fmt: skip
    cmd = [sys.executable, "-m", "vaecodec.cli", "serve", "--port", "0", "--max-pixels",
           str(MAX_PIXELS), "--max-upload-mb", str(MAX_UPLOAD_MB)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)  # fmt: skip
    try:
        line = proc.stdout.readline()
        m = re.search(r"open (http://[\d.]+:\d+)/ ", line)
        assert m, f"serve printed no address: {line!r} {proc.poll()}"
        url = m.group(1)
        deadline = time.time() + 60
        while True:
            try:
                if Client(url).request("/api/info", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline and proc.poll() is None, "the server did not start"
            time.sleep(0.2)
        yield url, proc.pid, line
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def client(server):
    return Client(server[0])


# --------------------------------------------------------------------------------- HTTP
def test_prints_a_localhost_address_and_lists_codecs(server, client):
    url, _, line = server
    assert url.startswith("http://127.0.0.1:") and "/explore" in line  # localhost by default
    status, info = client.json("/api/info")
    assert status == 200
    assert info["ours"]["default"] == "cb-mix11"
    assert info["ours"]["families"]["cb-mix11"]["qualities"] == list(range(1, 12))
    assert info["ours"]["efforts"] == [0, 1, 2]
    assert set(info["classical"]) == set(classical.CLASSICAL_CODECS)
    assert len(info["examples"]) >= 3
    assert info["limits"] == {"max_upload_bytes": MAX_UPLOAD_MB << 20, "max_pixels": MAX_PIXELS}
    for page in ("/", "/explore", "/static/compare.js", "/static/app.css"):
        status, headers, body = client.request(page)
        assert status == 200 and body, page
        assert b"http://" not in body and b"https://" not in body, f"{page} loads from outside"


@pytest.mark.parametrize(
    "data, status, words",
    [
        (b"", 400, "empty"),
        (b"hello, this is text", 415, "not an image"),
        (_bomb_png(), 413, "too many pixels"),  # 400 megapixels claimed in 60 bytes
        (_png(np.zeros((500, 500, 3), np.uint8)), 413, "250,000 pixels"),  # over --max-pixels
        (b"\x00" * ((MAX_UPLOAD_MB << 20) + 1), 413, "larger than"),
        (_png(np.full((40, 40, 4), 128, np.uint8)), 400, "transparent"),
        (_png(np.zeros((40, 40, 3), np.uint8))[:60], 400, "cannot read"),  # truncated PNG
    ],
    ids=["empty", "text", "bomb", "pixels", "bytes", "alpha", "truncated"],
)
def test_bad_uploads_are_refused_clearly(client, data, status, words):
    got, body = client.upload(data)
    assert got == status, body
    assert words in body["error"]
    assert "\n" not in body["error"]


def test_a_header_only_png_says_its_pixels_are_missing(tmp_path):
    """Issue 27 point 8: a PNG with a header and no pixel data was "cannot read the PNG file:
    cannot read image: cannot load this image"."""
    from vaecodec.serve.compare import RequestError, load_upload

    png = _png(np.zeros((8, 8, 3), np.uint8))
    header_only = png[:33] + png[-12:]  # signature, IHDR, IEND: no IDAT
    with pytest.raises(RequestError) as e:
        load_upload(header_only, MAX_PIXELS, tmp_path)
    msg = str(e.value)
    assert msg.startswith("cannot read the uploaded PNG file: the PNG file's pixel data is "
                          "missing, truncated or damaged"), msg  # fmt: skip
    assert msg.count("cannot") == 2 and "\n" not in msg  # Pillow's own words in brackets


def test_the_first_view_is_fair_and_the_page_keeps_its_layout(tmp_path):
    """Issue 27 point 9: the page opened on a synthetic image with "Equal bytes" off (where WebP
    is smaller and better); now it opens at equal bytes, on a photo when `serve --examples DIR`
    gives some (none may be bundled), and reserves the place of the numbers and of an error
    line and hides empty label pills (the viewer jumped ~80 px and ~44 px). The browser test
    below checks the layout in Chromium where one is installed."""
    from vaecodec.serve.app import Server
    from vaecodec.serve.config import ServeConfig

    static = ROOT / "src" / "vaecodec" / "serve" / "static"
    html, css = (static / "compare.html").read_text(), (static / "app.css").read_text()
    assert re.search(r'<input id="equal" type="checkbox" checked>', html)
    assert ".tag:empty { display: none; }" in css and ".error.empty { visibility: hidden; }" in css
    assert re.search(r"\.side \.stats \{[^}]*min-height", css)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(_image(64, 96, 3)).save(photos / "beach.png")
    app = Server(ServeConfig(examples=str(photos), workers=1))
    try:
        first = app.examples[0]
        assert first["photo"] and first["name"] == "beach" and (first["width"], first["height"]) == (96, 64)
        assert not any(e["photo"] for e in app.examples[1:])
    finally:
        app.close()


def test_compare_bytes_and_metrics_are_real(client):
    from vaecodec.coding.container import unpack
    from vaecodec.compression.lossy import decode_image
    from vaecodec.zoo.codecs import load_codec

    src = _image(168, 192, seed=1)  # >= 161 px: MS-SSIM is defined
    status, up = client.upload(_png(src), "scene.png")
    assert status == 200 and (up["width"], up["height"]) == (192, 168)
    status, r = client.json("/api/compare", {
        "image": up["image"], "left": {"codec": "ours", "quality": 3},
        "right": {"codec": "jpeg", "setting": 40}})  # fmt: skip
    assert status == 200, r
    for side in ("left", "right"):
        s = r[side]
        _, headers, coded = client.request(f"/api/file/{s['file']}?download=1")
        _, _, png = client.request(f"/api/file/{s['image']}")
        decoded = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        assert s["bytes"] == len(coded)
        assert s["bpp"] == pytest.approx(8 * len(coded) / (192 * 168))
        assert s["psnr_db"] == pytest.approx(psnr(src, decoded), abs=1e-9)
        assert 0 < s["ms_ssim"] <= 1
        assert "attachment" in headers["content-disposition"]
    vcz = client.request(f"/api/file/{r['left']['file']}")[2]
    header = unpack(vcz)[0]
    assert (header.codec.name, header.codec.quality) == ("cb-vr10", 3)
    # the page's decoded PNG is what `vaecodec decompress` makes of the .vcz
    png = client.request(f"/api/file/{r['left']['image']}")[2]
    ref, _ = decode_image(vcz, load_codec("cb-vr10", 3))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), ref)
    jpg = client.request(f"/api/file/{r['right']['file']}")[2]
    assert jpg == classical.encode("jpeg", src, 40)


def test_compare_with_encoder_effort(client):
    """The page's effort selector: the file is refined for the image (smaller or better than
    effort 0's) and decodes as any other."""
    src = _image(64, 96, seed=4)
    _, up = client.upload(_png(src))
    out = {}
    for effort in (0, 1):
        status, r = client.json("/api/compare", {
            "image": up["image"], "left": {"codec": "ours", "quality": 2, "effort": effort},
            "right": {"codec": "jpeg", "setting": 40}})  # fmt: skip
        assert status == 200, r
        assert r["left"]["effort"] == effort
        out[effort] = r["left"]
    assert out[1]["label"].endswith(" e1") and out[1]["bytes"] != out[0]["bytes"]


def test_equal_bytes_picks_the_nearest_size(client):
    src = _image(96, 128, seed=2)
    _, up = client.upload(_png(src))
    status, r = client.json("/api/compare", {
        "image": up["image"], "left": {"codec": "webp", "setting": 10},
        "right": {"codec": "ours", "quality": 2}, "equal_bytes": True})  # fmt: skip
    assert status == 200, r
    assert r["equal_bytes"] == {"matched": "left", "target_bytes": r["right"]["bytes"]}
    q, target = r["left"]["setting"], r["right"]["bytes"]
    assert r["left"]["matched"] and q != 10
    err = abs(r["left"]["bytes"] - target)
    for other in (q - 1, q + 1):  # no neighbouring quality is nearer
        if 0 <= other <= 100:
            assert abs(len(classical.encode("webp", src, other)) - target) >= err
    status, r = client.json("/api/compare", {
        "image": up["image"], "left": {"codec": "ours"}, "right": {"codec": "ours"},
        "equal_bytes": True})  # fmt: skip
    assert status == 400 and "classical" in r["error"]


@pytest.mark.parametrize(
    "payload, words",
    [
        ({"image": "nope", "left": {"codec": "ours"}, "right": {"codec": "jpeg"}}, "unknown image"),
        ({"left": {"codec": "ours", "quality": 12}}, "qualities 1 to 11"),
        ({"left": {"codec": "ours", "effort": 3}}, "effort must be an integer from 0 to 2"),
        ({"left": {"codec": "jpeg", "setting": 500}}, "from 1 to 95"),
        ({"left": {"codec": "gif"}}, "unknown codec"),
        ({"left": {"codec": "ours", "family": "../../etc"}}, "unknown codec family"),
    ],
)
def test_bad_compare_requests(client, payload, words):
    body = {"image": "example-landscape", "left": {"codec": "ours"},
            "right": {"codec": "jpeg"}, **payload}  # fmt: skip
    status, r = client.json("/api/compare", body)
    assert status in (400, 404) and words in r["error"], r


@pytest.mark.parametrize(
    "path",
    ["/api/file/../../../etc/passwd", "/api/file/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
     "/api/file/" + "0" * 32, "/api/file/../../pyproject.toml", "/static/../../pyproject.toml",
     "/static/%2e%2e/app.py", "/static/../serve/app.py", "/static//etc/passwd"],
)  # fmt: skip
def test_no_file_outside_the_servers_own_is_served(server, path):
    host, port = server[0].removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path)  # sent as written, not normalised by a client
    r = conn.getresponse()
    body = r.read()
    conn.close()
    assert r.status == 404, (path, r.status)
    assert b"root:" not in body and b"[project]" not in body and b"import" not in body


def test_explore_api(client):
    status, info = client.json("/api/vae")
    assert status == 200 and info["latent_dim"] == 32 and info["digits_available"]
    assert sorted(info["order"]) == list(range(32))
    assert info["score"] == sorted(info["score"], reverse=True) and info["score_name"] == "KL (nats)"
    z = [0.0] * 32
    _, h, zero = client.request("/api/vae/decode", json.dumps({"z": z}).encode(), "POST")
    z[info["order"][0]] = 2.5
    _, _, moved = client.request("/api/vae/decode", json.dumps({"z": z}).encode(), "POST")
    a, b = (np.asarray(Image.open(io.BytesIO(p)), np.float64) for p in (zero, moved))
    assert a.shape == (28, 28) and np.abs(a - b).mean() > 2  # the top dimension moves the image
    assert float(h["X-Decode-Ms"]) >= 0
    status, r = client.json("/api/vae/decode", {"z": [0.0] * 5})
    assert status == 400 and "32 finite numbers" in r["error"]
    status, r = client.json("/api/vae/decode", data=b"[" * 100_000)
    assert status == 413 and "larger than" in r["error"]
    status, d = client.json("/api/vae/digits?n=4&seed=3")
    assert status == 200 and len(d["index"]) == len(d["images"]) == len(d["z"]) == 4
    status, headers, strip = client.request(
        f"/api/vae/interpolate?a={d['index'][0]}&b={d['index'][1]}&steps=6")
    im = Image.open(io.BytesIO(strip))
    assert status == 200 and im.size == (8 * 30 + 2, 32)  # 8 tiles of 28 + 2 px padding
    assert client.json("/api/vae/interpolate?a=0&b=99999")[0] == 400


def test_codec_pool_shares_one_model_across_qualities_with_the_same_bytes():
    from vaecodec.coding.container import unpack
    from vaecodec.compression.lossy import encode_image
    from vaecodec.serve.compare import CodecPool
    from vaecodec.zoo.codecs import load_codec

    src = _image(64, 96, seed=4)
    pool = CodecPool()
    for q in (7, 2, 7):
        with pool.borrow("cb-vr10", q) as model:
            data = encode_image(model, src)
        assert data == encode_image(load_codec("cb-vr10", q), src)
        assert unpack(data)[0].codec.quality == q
    assert pool.instances() == 1  # one variable-rate model serves every quality
    with pool.borrow("cb-vr10", 1) as a, pool.borrow("cb-vr10", 1) as b:
        assert a is not b  # two threads at once never share a module
    assert pool.instances() == 2


def test_codec_pool_lends_the_model_each_default_quality_comes_from():
    """cb-mix11 takes qualities 6-11 from cb128-vr10: the pool lent cb-vr10 for them (it
    reloaded the family at the other family's quality number)."""
    from vaecodec.serve.compare import CodecPool
    from vaecodec.zoo.codecs import load_codec

    pool = CodecPool()
    for q in (5, 6, 7, 5):
        with pool.borrow("cb-mix11", q) as model:
            want = load_codec("cb-mix11", q)
            assert (model.codec_id, model.level) == (want.codec_id, want.level), q
    assert pool.instances() == 2  # one per weights folder


def test_explorer_without_the_test_split_says_so():
    from vaecodec.serve.compare import RequestError
    from vaecodec.serve.explore import Explorer

    e = Explorer("mnist-vae", dataset="/nonexistent-mnist-folder")
    info = e.info()
    assert not info["digits_available"] and "unavailable" in info["note"]
    assert info["score_name"] == "decoder sensitivity" and sorted(info["order"]) == list(range(32))
    with pytest.raises(RequestError, match="test digits are unavailable") as exc:
        e.digits()
    assert exc.value.status == 503
    assert e.decode([0.0] * 32)[:4] == b"\x89PNG"  # sliders still work


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def test_load_20_concurrent_compares_all_correct(server, client):
    """20 compares at once over four different images: all succeed and each answer belongs to
    its own image (its decoded PNG is nearest its own source, sizes match the files)."""
    sources = [_image(96, 128, seed=s) for s in range(4)]
    ids = [client.upload(_png(a), f"load{s}.png")[1]["image"] for s, a in enumerate(sources)]
    plans = [(i % 4, ["jpeg", "webp", "avif", "jpeg2000", "jpegxl"][i % 5], 1 + i % 4)
             for i in range(20)]  # fmt: skip

    def one(plan):
        k, codec, q = plan
        return client.json("/api/compare", {
            "image": ids[k], "left": {"codec": "ours", "quality": q},
            "right": {"codec": codec}, "equal_bytes": q == 1})  # fmt: skip

    t0 = time.time()
    with ThreadPoolExecutor(20) as pool:
        running = [pool.submit(one, plan) for plan in plans]
        time.sleep(0.2)
        busy = sum(f.done() for f in running) < 20
        # meanwhile the pages and the sliders still answer at once (the compares queue in
        # the coding pool, not in the event loop or the VAE's thread)
        for path, body in (("/", None), ("/api/vae/decode", json.dumps({"z": [0.5] * 32}))):
            t1 = time.time()
            status = client.request(path, body and body.encode(), body and "POST")[0]
            assert status == 200 and time.time() - t1 < 2.0, (path, time.time() - t1)
        if not busy:
            print("note: the 20 compares had all finished before the page was probed")
        answers = [f.result() for f in running]
    wall = time.time() - t0
    for (k, codec, q), (status, r) in zip(plans, answers):
        assert status == 200, r
        assert r["left"]["quality"] == q and r["right"]["codec"] == codec
        for side in ("left", "right"):
            png = client.request(f"/api/file/{r[side]['image']}")[2]
            dec = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
            scores = [psnr(s, dec) for s in sources]
            assert int(np.argmax(scores)) == k, (k, codec, q, side, scores)
            assert r[side]["psnr_db"] == pytest.approx(scores[k], abs=1e-9)
            assert r[side]["bytes"] == len(client.request(f"/api/file/{r[side]['file']}")[2])
    print(f"20 concurrent compares in {wall:.1f} s; server RSS {_rss_mib(server[1]):.0f} MiB")
    assert _rss_mib(server[1]) < 3000


# --------------------------------------------------------------------------------- browser
def _browser():
    """A Playwright Chromium context on Debian's chromium, or pytest.skip with the reason."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed (pip install playwright; no browser download "
                    "needed: the test uses Debian's chromium)")  # fmt: skip
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    return sync_playwright


@pytest.fixture(scope="module")
def page_factory(server, tmp_path_factory):
    sync_playwright = _browser()
    pw = sync_playwright().start()
    profile = tempfile.mkdtemp(prefix="vaecodec-chromium-")
    try:  # an installed browser that does not start is a failure, not a skip
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": 800}, accept_downloads=True)  # fmt: skip
    except Exception:
        pw.stop()
        shutil.rmtree(profile, ignore_errors=True)
        raise
    pages = []

    def new_page():
        p = ctx.new_page()
        p.errors = []
        p.on("pageerror", lambda e: p.errors.append(str(e)))
        pages.append(p)
        return p

    yield new_page
    ctx.close()
    pw.stop()
    shutil.rmtree(profile, ignore_errors=True)


def _screenshot(page, name: str, tmp_path: Path) -> None:
    """Save a screenshot; with VAECODEC_UPDATE_SCREENSHOTS=1 also into docs/img, as a
    256-colour PNG (small enough for the repository)."""
    path = tmp_path / name
    page.screenshot(path=str(path))
    if os.environ.get("VAECODEC_UPDATE_SCREENSHOTS") == "1":
        with Image.open(path) as im:
            im.convert("RGB").quantize(256, dither=Image.Dither.NONE).save(
                ROOT / "docs" / "img" / name, optimize=True)


def _wait_compare(page, previous_seq: int) -> None:
    page.wait_for_function(
        f"window.vaecodecCompare.seq > {previous_seq} && "
        "['done', 'error'].includes(document.body.dataset.state) && "
        "document.getElementById('busy').textContent.startsWith('answered')", timeout=60_000)  # fmt: skip


def test_browser_compare_page(server, page_factory, tmp_path):
    page = page_factory()
    page.goto(server[0] + "/")
    page.wait_for_selector("#viewer")
    viewer_top = "document.getElementById('viewer').getBoundingClientRect().top + window.scrollY"
    top = page.evaluate(viewer_top)  # in the document, before any number arrives
    empty_pill = ("(() => { const t = document.createElement('div'); t.className = 'tag'; "
                  "document.getElementById('viewer').appendChild(t); "
                  "const d = getComputedStyle(t).display; t.remove(); return d; })()")  # fmt: skip
    assert page.evaluate(empty_pill) == "none"  # no empty label pills before a result
    page.wait_for_function("document.body.dataset.state === 'done'", timeout=60_000)
    assert page.evaluate(viewer_top) == top  # the numbers do not push it down
    left = page.inner_text("#sideL .stats")
    ours = page.evaluate("window.vaecodecCompare.info.ours")
    default_q = ours["families"][ours["default"]]["default_quality"]
    assert f"{ours['default']} q{default_q}" in left
    assert "bytes" in left and "bpp" in left and "PSNR" in left
    assert re.search(r"MS-SSIM 0\.\d{4}", left)
    # the first view compares at equal bytes (ours against WebP's nearest size)
    assert page.is_checked("#equal")
    assert page.evaluate("window.vaecodecCompare.result")["equal_bytes"]["matched"] == "right"
    # pick another classical codec on the right: equal bytes sets its quality
    seq = page.evaluate("window.vaecodecCompare.seq")
    page.select_option("#sideR .codec", "jpeg")
    _wait_compare(page, seq)
    assert "JPEG q" in page.inner_text("#sideR .stats")
    r = page.evaluate("window.vaecodecCompare.result")
    assert r["equal_bytes"]["matched"] == "right" and r["right"]["matched"]
    assert "(equal bytes)" in page.inner_text("#sideR .stats")
    assert page.is_disabled("#sideR .setting")
    assert page.input_value("#sideR .settingNum") == str(r["right"]["setting"])
    # drag the divider to a quarter of the viewer
    view = page.locator("#viewer").bounding_box()
    handle = page.locator("#handle").bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(view["x"] + view["width"] * 0.25, handle["y"], steps=8)
    page.mouse.up()
    split = float(page.get_attribute("#viewer", "data-split"))
    assert split == pytest.approx(0.25, abs=0.02)
    clip = page.evaluate("document.getElementById('layerR').style.clipPath")
    assert clip == f"inset(0px 0px 0px {round(split * view['width'])}px)"
    # zoom in: the images scale, the divider stays put
    before = page.evaluate("window.vaecodecCompare.scale")
    page.click("#zoomIn")
    assert page.evaluate("window.vaecodecCompare.scale") == pytest.approx(before * 1.5)
    assert float(page.get_attribute("#viewer", "data-split")) == split
    # both images are the decoded files, and the downloads are offered
    for img, side in (("#imgL", "left"), ("#imgR", "right")):
        assert page.get_attribute(img, "src").endswith(r[side]["image"])
        assert page.evaluate(f"document.querySelector('{img}').naturalWidth") == r["width"]
    with page.expect_download() as dl:
        page.click("#sideL .dl-file")
    assert dl.value.suggested_filename.endswith(".vcz")
    _screenshot(page, "serve-compare.png", tmp_path)
    # a bad upload: a clear message on the page, no crash
    page.set_input_files("#upload", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                             "buffer": b"not an image at all"}])  # fmt: skip
    page.wait_for_selector("#error:not(.empty)")
    assert "Upload refused" in page.inner_text("#error")
    assert "not an image" in page.inner_text("#error")
    assert page.evaluate(viewer_top) == top  # the error line has its place
    # a good upload replaces the image and is compared
    seq = page.evaluate("window.vaecodecCompare.seq")
    page.set_input_files("#upload", files=[{"name": "mine.png", "mimeType": "image/png",
                                             "buffer": _png(_image(96, 128, 3))}])  # fmt: skip
    _wait_compare(page, seq)
    assert page.is_hidden("#error")
    r = page.evaluate("window.vaecodecCompare.result")
    assert (r["width"], r["height"]) == (128, 96) and r["left"]["ms_ssim"] is None
    assert "MS-SSIM needs" in page.inner_text("#sideL .stats")
    assert page.errors == []


def test_browser_explore_page(server, page_factory, tmp_path):
    page = page_factory()
    page.goto(server[0] + "/explore")
    page.wait_for_function("document.body.dataset.ready === '1'", timeout=60_000)
    sliders = page.locator("#sliders input[type=range]")
    assert sliders.count() == 32
    info = page.evaluate("window.vaecodecExplore.info")
    assert sliders.first.get_attribute("data-dim") == str(info["order"][0])  # highest KL first
    # move the top slider with the mouse: the decoded image changes
    canvas = "document.getElementById('decoded')"
    before = page.evaluate(f"{canvas}.toDataURL()")
    redraws = int(page.get_attribute("#decoded", "data-redraws"))
    box = sliders.first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.95, box["y"] + box["height"] / 2)
    page.wait_for_function(f"Number({canvas}.dataset.redraws) > {redraws} && "
                           "!window.vaecodecExplore.inFlight")  # fmt: skip
    assert float(sliders.first.input_value()) > 2
    assert page.evaluate(f"{canvas}.toDataURL()") != before
    # a new draw of samples on click
    seed = page.get_attribute("#samples", "data-seed")
    first = page.get_attribute("#samples img >> nth=0", "src")
    page.click("#samples")
    page.wait_for_function(f"document.getElementById('samples').dataset.seed !== '{seed}'")
    assert page.get_attribute("#samples img >> nth=0", "src") != first
    # interpolation between two digits the user picks
    page.click("#digits img >> nth=0")
    page.click("#digits img >> nth=3")
    page.wait_for_selector("#strip:not(.hidden)")
    page.wait_for_function("document.getElementById('strip').naturalWidth > 0")
    d = page.evaluate("window.vaecodecExplore.digits")
    assert page.get_attribute("#strip", "data-pair") == f"{d['index'][0]}-{d['index'][3]}"
    assert page.evaluate("document.getElementById('strip').naturalWidth") == 12 * 30 + 2
    _screenshot(page, "serve-explore.png", tmp_path)
    assert page.errors == []
