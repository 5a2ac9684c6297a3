"""Routes of ``vaecodec serve``: a Starlette application, the worker pools, error handling.

Pages and assets: ``GET /`` (compare), ``GET /explore``, ``GET /static/NAME`` (read from the
package into memory at start-up: a name is a dictionary key, never a path).

JSON API (errors: ``{"error": "one line"}`` with a 4xx/5xx status):

=====================================  ====================================================
``GET  /api/info``                     codecs (ours: zoo families and qualities; classical:
                                       availability, setting range), examples, limits
``POST /api/upload?name=N``            body = the image file's bytes -> ``{"image": id, ...}``
``POST /api/compare``                  ``{"image", "left", "right", "equal_bytes"}`` -> both
                                       sides' bytes, bpp, PSNR, MS-SSIM, times, file ids
``GET  /api/file/ID[?download=1]``     a file the server wrote (decoded PNG, ``.vcz`` ...)
``GET  /api/vae``                      the VAE: latent size, dimension order, KL per dim
``POST /api/vae/decode``               ``{"z": [...]}`` -> PNG of the decoder mean
``GET  /api/vae/samples?n&seed``       draws z ~ N(0, I): z and PNGs (data URLs)
``GET  /api/vae/digits?n&seed``        test digits: index, label, PNG, posterior mean
``GET  /api/vae/interpolate?a&b&steps`` PNG strip between test digits ``a`` and ``b``
=====================================  ====================================================

Coding runs in a pool of ``workers`` threads (torch limited to ``threads`` threads each), the
VAE in a separate one-thread pool, so that a slow compare never delays a slider redraw and the
event loop itself only moves bytes. At most ``max_pending`` compare requests wait or run at
once; more are answered 503 at once instead of queueing without bound.

Why one module of this size: it is the web application's routing table; each route is a few
lines that call :mod:`.compare`, :mod:`.explore` or :mod:`.store`, and reading them together is
the point.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from vaecodec.errors import VaecodecError
from vaecodec.serve.compare import (
    OURS,
    CodecPool,
    ImageCache,
    RequestError,
    Side,
    SourceImage,
    encode_side,
    finish_side,
    load_upload,
    match_side,
    png_bytes,
)
from vaecodec.serve.config import ServeConfig
from vaecodec.serve.explore import Explorer, ms
from vaecodec.serve.store import FileStore

JSON_LIMIT = 64 << 10
"""Largest JSON request body (bytes)."""
DRAIN_FACTOR = 4
"""A body over its limit is still read (and dropped) up to this many times the limit."""
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".png": "image/png",
                ".svg": "image/svg+xml"}  # fmt: skip


def _init_thread(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(threads)))


def _static_files() -> dict[str, tuple[bytes, str]]:
    out = {}
    root = resources.files("vaecodec.serve") / "static"

    def walk(node, prefix=""):
        for item in node.iterdir():
            name = f"{prefix}{item.name}"
            if item.is_dir():
                walk(item, f"{name}/")
            else:
                suffix = "." + item.name.rsplit(".", 1)[-1] if "." in item.name else ""
                if suffix in STATIC_TYPES:
                    out[name] = (item.read_bytes(), STATIC_TYPES[suffix])

    walk(root)
    return out


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")



SERVE_MAX_EFFORT = 2
"""Highest encoder effort the page offers (effort 2 takes 40 s to 3 min of one core's time for a
768x512 image; 3 and 4 take many minutes, which a web request should not)."""

class Server:
    """The state behind the routes: pools, store, caches, models (see the module doc)."""

    def __init__(self, config: ServeConfig) -> None:
        from vaecodec.evaluate import classical
        from vaecodec.zoo.codecs import codec_summary

        self.config = config
        _init_thread(config.threads)
        self.static = _static_files()
        self.store = FileStore(max_bytes=config.store_bytes)
        self.images = ImageCache()
        self.models = CodecPool()
        self.coding = ThreadPoolExecutor(config.workers, "vaecodec-code", _init_thread,
                                         (config.threads,))  # fmt: skip
        self.interactive = ThreadPoolExecutor(1, "vaecodec-vae", _init_thread, (config.threads,))
        self.pending = 0
        self.explorer = Explorer(config.vae, config.vae_dataset)
        summary = codec_summary()
        self.families = {name: {"qualities": c["qualities"], "default_quality":
                                c["default_quality"], "description": c.get("description")}
                         for name, c in summary["codecs"].items()}  # fmt: skip
        from vaecodec.zoo.codecs import codec_offer

        for path in config.codecs:  # --codec DIR: named by the path, which resolve_codec takes
            self.families[str(path)] = codec_offer(str(path))
        self.default_family = summary["default_codec"] or next(iter(self.families), None)
        self.classical = {}
        for name, why in classical.available_codecs().items():
            lo, hi, integer = classical.SETTING_RANGES[name]
            info = classical.codec_info(name)
            defaults = info["default_settings"]
            self.classical[name] = {
                "available": why is None, "reason": why, "setting": info["setting"],
                "min": lo, "max": hi, "integer": integer, "default": defaults[len(defaults) // 2],
                "higher_is_better": name in ("jpeg", "webp", "avif"),
            }  # fmt: skip
        self.examples = []
        if config.examples:
            self._add_photos(Path(config.examples))
        for key in sorted(self.static):
            if key.startswith("examples/") and key.endswith(".png"):
                self._add_example(key)

    MAX_PHOTOS = 12
    """Photos taken from ``--examples`` (the first, by name)."""

    def _add_photos(self, folder: Path) -> None:
        """The photos of ``folder`` as the first examples (the page opens on the first):
        a fair first view, where the bundled synthetic images favour WebP (issue 27 point 9).
        Images over ``max_pixels`` are skipped, with a note.

        Raises:
            VaecodecError: the folder holds no image.
        """
        import numpy as np

        from vaecodec.data import list_images, read_image
        from vaecodec.serve.compare import png_bytes

        files = list_images(folder)[: self.MAX_PHOTOS]
        for path in files:
            rgb, _ = read_image(path, mode="RGB")
            h, w = rgb.shape[:2]
            if h * w > self.config.max_pixels:
                print(f"vaecodec serve: note: {path} has {w}x{h} pixels, more than "
                      f"--max-pixels: not offered")  # fmt: skip
                continue
            name = Path(path).stem
            img = SourceImage(np.ascontiguousarray(rgb), "RGB", name)
            img.preview_id = self.store.put(png_bytes(rgb), ".png", f"{name}.png")
            image_id = f"photo-{len(self.examples)}-{name}"
            self.images.put(image_id, img, pinned=True)
            self.examples.append({"image": image_id, "name": name, "width": w, "height": h,
                                  "preview": img.preview_id, "photo": True})  # fmt: skip

    def _add_example(self, key: str) -> None:
        import io

        import numpy as np
        from PIL import Image

        with Image.open(io.BytesIO(self.static[key][0])) as im:
            rgb = np.asarray(im.convert("RGB"))
        name = key.split("/", 1)[1].rsplit(".", 1)[0]
        img = SourceImage(np.ascontiguousarray(rgb), "RGB", name)
        img.preview_id = self.store.put(self.static[key][0], ".png", f"{name}.png")
        image_id = f"example-{name}"
        self.images.put(image_id, img, pinned=True)
        self.examples.append({"image": image_id, "name": name, "width": img.width,
                              "height": img.height, "preview": img.preview_id,
                              "photo": False})  # fmt: skip

    def close(self) -> None:
        self.coding.shutdown(wait=False, cancel_futures=True)
        self.interactive.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    async def run(self, pool, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(pool, partial(fn, *args))

    # ----------------------------------------------------------------- pages and assets
    async def page_compare(self, request: Request) -> Response:
        return self._asset("compare.html")

    async def page_explore(self, request: Request) -> Response:
        return self._asset("explore.html")

    async def asset(self, request: Request) -> Response:
        return self._asset(request.path_params["name"])

    def _asset(self, name: str) -> Response:
        item = self.static.get(name)
        if item is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return Response(item[0], media_type=item[1], headers={"Cache-Control": "no-cache"})

    # ----------------------------------------------------------------- compare
    async def info(self, request: Request) -> Response:
        c = self.config
        return JSONResponse({
            "ours": {"families": self.families, "default": self.default_family,
                     "efforts": list(range(SERVE_MAX_EFFORT + 1))},
            "classical": self.classical,
            "examples": self.examples,
            "limits": {"max_upload_bytes": c.max_upload_bytes, "max_pixels": c.max_pixels},
        })  # fmt: skip

    async def _body(self, request: Request, limit: int | None = None) -> bytes:
        """The request body, refused with 413 once it passes ``limit`` bytes (default: the
        upload limit). Nothing past the limit is kept; the rest of a body up to
        ``DRAIN_FACTOR`` times the limit is read and dropped first, so that the client, still
        sending, receives the 413 instead of a reset connection (a larger one is cut off)."""
        limit = self.config.max_upload_bytes if limit is None else limit
        what = "upload" if limit == self.config.max_upload_bytes else "request"
        too_big = RequestError(f"the {what} is larger than {limit:,} bytes", 413)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > DRAIN_FACTOR * limit:
            raise too_big
        chunks, n = [], 0
        async for chunk in request.stream():
            n += len(chunk)
            if n > DRAIN_FACTOR * limit:
                break
            if n <= limit:
                chunks.append(chunk)
        if n > limit:
            raise too_big
        return b"".join(chunks)

    async def upload(self, request: Request) -> Response:
        import secrets

        data = await self._body(request)
        name = request.query_params.get("name", "upload")
        img = await self.run(self.coding, load_upload, data, self.config.max_pixels,
                             self.store.root, name)  # fmt: skip
        img.preview_id = await self.run(self.coding, lambda: self.store.put(
            png_bytes(img.rgb if img.mode == "RGB" else img.rgb[:, :, 0]), ".png",
            f"{img.name}.png"))  # fmt: skip
        image_id = "upload-" + secrets.token_hex(16)
        self.images.put(image_id, img)
        return JSONResponse({"image": image_id, "name": img.name, "width": img.width,
                             "height": img.height, "mode": img.mode,
                             "preview": img.preview_id})  # fmt: skip

    def _side(self, spec) -> Side:
        if not isinstance(spec, dict):
            raise RequestError("each side must be an object with a 'codec'")
        codec = spec.get("codec")
        if codec == OURS:
            family = spec.get("family") or self.default_family
            fam = self.families.get(family)
            if fam is None:
                raise RequestError(f"unknown codec family {family!r}; choose from "
                                   f"{', '.join(self.families)}")  # fmt: skip
            q = spec.get("quality", fam["default_quality"])
            if type(q) is not int or q not in fam["qualities"]:
                raise RequestError(f"{family} has qualities {fam['qualities'][0]} to "
                                   f"{fam['qualities'][-1]}, not {q!r}")  # fmt: skip
            effort = spec.get("effort", 0)
            if type(effort) is not int or not 0 <= effort <= SERVE_MAX_EFFORT:
                raise RequestError(f"effort must be an integer from 0 to {SERVE_MAX_EFFORT} here, "
                                   f"not {effort!r} (higher efforts take minutes per image: use "
                                   "`vaecodec compress --effort`)")  # fmt: skip
            return Side(OURS, family=family, quality=q, effort=effort)
        c = self.classical.get(codec)
        if c is None:
            raise RequestError(f"unknown codec {codec!r}; choose from ours, "
                               f"{', '.join(self.classical)}")  # fmt: skip
        if not c["available"]:
            raise RequestError(f"{codec} is unavailable here: {c['reason']}")
        s = spec.get("setting", c["default"])
        if isinstance(s, bool) or not isinstance(s, int | float) or not c["min"] <= s <= c["max"]:
            raise RequestError(f"{codec} {c['setting']} must be a number from {c['min']} to "
                               f"{c['max']}, not {s!r}")  # fmt: skip
        return Side(codec, setting=int(round(s)) if c["integer"] else float(s))

    async def compare(self, request: Request) -> Response:
        try:
            req = json.loads(await self._body(request, JSON_LIMIT))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RequestError("the request body must be JSON") from None
        if not isinstance(req, dict):
            raise RequestError("the request body must be a JSON object")
        img = self.images.get(str(req.get("image")))
        left, right = self._side(req.get("left")), self._side(req.get("right"))
        equal = bool(req.get("equal_bytes"))
        if equal and left.codec == OURS and right.codec == OURS:
            raise RequestError("equal bytes sets a classical codec's quality: pick a classical "
                               "codec on one side")  # fmt: skip
        if self.pending >= self.config.max_pending:
            raise RequestError(f"the server is busy ({self.pending} compare requests in "
                               "progress): try again in a few seconds", 503)  # fmt: skip
        self.pending += 1
        t0 = time.perf_counter()
        try:
            result = await self._compare(img, left, right, equal)
        finally:
            self.pending -= 1
        result["elapsed_s"] = time.perf_counter() - t0
        return JSONResponse(result)

    async def _compare(self, img: SourceImage, left: Side, right: Side, equal: bool) -> dict:
        run, pool = self.run, self.coding
        matched = None
        if not equal:
            coded = await asyncio.gather(run(pool, encode_side, left, img, self.models),
                                         run(pool, encode_side, right, img, self.models))  # fmt: skip
            sides = await asyncio.gather(*(run(pool, finish_side, c, img, self.models,
                                                self.store) for c in coded))  # fmt: skip
        else:
            # the side to match is the classical one (the right one if both are classical)
            matched = "right" if right.codec != OURS else "left"
            anchor, other = (left, right) if matched == "right" else (right, left)
            a = await run(pool, encode_side, anchor, img, self.models)

            async def other_side():
                c = await run(pool, match_side, other, img, len(a.data))
                return await run(pool, finish_side, c, img, self.models, self.store)

            done_a, done_o = await asyncio.gather(
                run(pool, finish_side, a, img, self.models, self.store), other_side())
            sides = (done_a, done_o) if matched == "right" else (done_o, done_a)
        return {
            "width": img.width, "height": img.height, "mode": img.mode,
            "left": sides[0], "right": sides[1],
            "equal_bytes": None if matched is None else {
                "matched": matched, "target_bytes": sides[0 if matched == "right" else 1]["bytes"]},
        }  # fmt: skip

    async def file(self, request: Request) -> Response:
        entry = self.store.get(request.path_params["file_id"])
        if entry is None:
            raise RequestError("no such file (it may have been removed to save space): "
                               "compare again", 404)  # fmt: skip
        download = request.query_params.get("download") == "1"
        return FileResponse(entry.path, media_type=entry.media_type,
                            filename=entry.download_name if download else None,
                            content_disposition_type="attachment" if download else "inline")  # fmt: skip

    # ----------------------------------------------------------------- explore
    async def vae_info(self, request: Request) -> Response:
        return JSONResponse(await self.run(self.interactive, self.explorer.info))

    async def vae_decode(self, request: Request) -> Response:
        try:
            z = json.loads(await self._body(request, JSON_LIMIT)).get("z")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise RequestError('the request body must be JSON: {"z": [...]}') from None
        t0 = time.perf_counter()
        png = await self.run(self.interactive, self.explorer.decode, z)
        return Response(png, media_type="image/png",
                        headers={"X-Decode-Ms": str(ms(time.perf_counter() - t0)),
                                 "Cache-Control": "no-store"})  # fmt: skip

    def _int_param(self, request: Request, name: str, default: int) -> int:
        v = request.query_params.get(name)
        if v is None:
            return default
        try:
            return int(v)
        except ValueError:
            raise RequestError(f"{name} must be an integer, not {v!r}") from None

    async def vae_samples(self, request: Request) -> Response:
        n, seed = self._int_param(request, "n", 16), self._int_param(request, "seed", 0)
        out = await self.run(self.interactive, self.explorer.samples, n, seed)
        return JSONResponse({"z": out["z"], "images": [_data_url(p) for p in out["png"]]})

    async def vae_digits(self, request: Request) -> Response:
        n, seed = self._int_param(request, "n", 24), self._int_param(request, "seed", 0)
        out = await self.run(self.interactive, self.explorer.digits, n, seed)
        out["images"] = [_data_url(p) for p in out.pop("png")]
        return JSONResponse(out)

    async def vae_interpolate(self, request: Request) -> Response:
        a, b = self._int_param(request, "a", -1), self._int_param(request, "b", -1)
        steps = self._int_param(request, "steps", 10)
        slerp = request.query_params.get("slerp") == "1"
        png = await self.run(self.interactive, self.explorer.interpolate, a, b, steps, slerp)
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


async def _error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, RequestError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    if isinstance(exc, VaecodecError):
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"},
                        status_code=500)  # fmt: skip


def create_app(config: ServeConfig | None = None) -> Starlette:
    """The Starlette application of ``vaecodec serve`` (see the module doc).

    Loads the VAE, the bundled examples and the static files at once; the codec models are
    loaded on first use. ``app.state.server`` is the :class:`Server`; its temporary folder is
    removed when the application shuts down.

    Raises:
        ModelError: the VAE cannot be loaded.
    """
    from contextlib import asynccontextmanager

    server = Server(config or ServeConfig())

    @asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            server.close()

    s = server
    routes = [
        Route("/", s.page_compare), Route("/explore", s.page_explore),
        Route("/static/{name:path}", s.asset),
        Route("/api/info", s.info), Route("/api/upload", s.upload, methods=["POST"]),
        Route("/api/compare", s.compare, methods=["POST"]),
        Route("/api/file/{file_id}", s.file),
        Route("/api/vae", s.vae_info), Route("/api/vae/decode", s.vae_decode, methods=["POST"]),
        Route("/api/vae/samples", s.vae_samples), Route("/api/vae/digits", s.vae_digits),
        Route("/api/vae/interpolate", s.vae_interpolate),
    ]  # fmt: skip
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={Exception: _error, VaecodecError: _error})  # fmt: skip
    app.state.server = server
    return app
