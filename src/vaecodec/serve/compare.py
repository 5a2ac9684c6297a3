"""The compare page's work: uploaded images, a pool of codec models, and one side of a compare.

Everything here is synchronous and runs in the server's worker threads (see :mod:`.app`).

Uploads are checked in this order, before anything large is allocated: the byte count (while the
body streams in, see :mod:`.app`), whether Pillow recognises the data as an image (reading the
header only), the pixel count from the header (a decompression bomb is refused before it is
decoded), then the full decode through :func:`vaecodec.data.read_image`, the function
``vaecodec compress`` reads its inputs with, and the alpha check of
:func:`vaecodec.coding.container.encode_image`.
"""

from __future__ import annotations

import io
import threading
import time
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaecodec.errors import ImageError, VaecodecError

OURS = "ours"
"""Side codec name of the learned codec (with a zoo ``family`` and ``quality``)."""

FILE_SUFFIX = {"jpeg": ".jpg", "webp": ".webp", "avif": ".avif", "jpeg2000": ".j2k",
               "jpegxl": ".jxl", OURS: ".vcz"}  # fmt: skip
LABELS = {"jpeg": "JPEG", "webp": "WebP", "avif": "AVIF", "jpeg2000": "JPEG 2000",
          "jpegxl": "JPEG XL"}  # fmt: skip


class RequestError(VaecodecError):
    """A request the server refuses, with the HTTP ``status`` to answer (400, 404, 413, 415,
    503) and a one-line message the page shows."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class SourceImage:
    """A decoded image the page can compare: ``rgb`` uint8 ``[H, W, 3]``, ``mode`` ``"RGB"``
    or ``"L"`` (greyscale files are coded as greyscale, as ``vaecodec compress`` does), a
    ``name`` for download names, and the store id of its PNG preview."""

    rgb: np.ndarray
    mode: str
    name: str
    preview_id: str | None = None

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def load_upload(data: bytes, max_pixels: int, scratch: Path, name: str = "upload") -> SourceImage:
    """Check and decode an uploaded image file.

    Args:
        data: the file's bytes (already limited in size by the caller).
        max_pixels: largest width x height accepted.
        scratch: a folder of the server's own where the bytes are written for
            :func:`~vaecodec.data.read_image` (and deleted again).
        name: the name of the image in download names.

    Returns:
        the decoded :class:`SourceImage` (EXIF orientation applied).

    Raises:
        RequestError: 400 for an empty upload, 415 for data that is not an image Pillow can
            read, 413 for more than ``max_pixels`` pixels, 400 for a corrupt or transparent
            image.
    """
    from PIL import Image, UnidentifiedImageError

    from vaecodec.data import read_image
    from vaecodec.data.images import GRAY_MODES

    if not data:
        raise RequestError("the upload is empty: choose an image file", 400)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:  # reads the header only
                w, h = im.size
                fmt = im.format
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RequestError(
            f"the image has too many pixels (a decompression bomb?); at most {max_pixels:,} "
            "pixels are accepted", 413) from None  # fmt: skip
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise RequestError(
            "the upload is not an image this server can read (PNG, JPEG, WebP, BMP, TIFF, ...)",
            415) from None  # fmt: skip
    if w * h > max_pixels:
        raise RequestError(
            f"the image is {w}x{h} = {w * h:,} pixels; at most {max_pixels:,} pixels are "
            "accepted (scale it down first)", 413)  # fmt: skip
    path = scratch / f"upload-{threading.get_ident()}-{time.monotonic_ns()}.bin"
    path.write_bytes(data)
    try:
        rgba, original_mode = read_image(path, mode="RGBA")
    except ImageError as e:  # "cannot read image <path>: <reason>" -> one "cannot read"
        reason = _without_path(e, path).removeprefix("cannot read image: ")
        raise RequestError(f"cannot read the uploaded {fmt or 'image'} file: {reason}",
                           400) from None  # fmt: skip
    finally:
        path.unlink(missing_ok=True)
    if int(rgba[:, :, 3].min()) < 255:
        raise RequestError(
            "the image has transparent pixels: the learned codec has no alpha channel; flatten "
            "it onto a background first", 400)  # fmt: skip
    mode = "L" if original_mode in GRAY_MODES else "RGB"
    return SourceImage(np.ascontiguousarray(rgba[:, :, :3]), mode, _stem(name))


def _without_path(e: Exception, path: Path) -> str:
    return str(e).replace(f" {path}", "").replace(str(path), "the upload")


def _stem(name: str) -> str:
    stem = Path(str(name)).stem or "image"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:60]


def png_bytes(image: np.ndarray) -> bytes:
    """PNG file bytes of a uint8 ``[H, W]`` or ``[H, W, 3]`` image (fast zlib level 1)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class ImageCache:
    """Decoded images by id, at most ``max_bytes`` of pixels; the least recently used go
    first. ``pinned`` ids (the bundled examples) are never evicted. Thread-safe."""

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, SourceImage] = OrderedDict()
        self._pinned: dict[str, SourceImage] = {}
        self._lock = threading.Lock()

    def put(self, image_id: str, image: SourceImage, pinned: bool = False) -> None:
        with self._lock:
            if pinned:
                self._pinned[image_id] = image
                return
            self._items[image_id] = image
            self._items.move_to_end(image_id)
            total = sum(i.rgb.nbytes for i in self._items.values())
            while len(self._items) > 1 and total > self.max_bytes:
                _, old = self._items.popitem(last=False)
                total -= old.rgb.nbytes

    def get(self, image_id: str) -> SourceImage:
        """The image, or RequestError 404 if it is unknown or was evicted."""
        with self._lock:
            if image_id in self._pinned:
                return self._pinned[image_id]
            img = self._items.get(image_id)
            if img is not None:
                self._items.move_to_end(image_id)
        if img is None:
            raise RequestError("unknown image (the server may have restarted): open it again",
                               404)  # fmt: skip
        return img


class CodecPool:
    """Codec models by weights folder, lent to one thread at a time.

    :meth:`borrow` hands out a free instance of the model that codes ``(family, quality)`` or
    loads a new one (:func:`vaecodec.zoo.codecs.load_codec`, the loader of ``vaecodec
    compress``), so no two threads run the same module at once. All qualities of a
    variable-rate family share one set of weights, so one instance per worker thread serves
    them all: the borrowed instance is switched to the quality's rate level (as ``load_codec``
    does). Loaded instances stay for the life of the server.
    """

    def __init__(self) -> None:
        self._free: dict[str, list] = {}
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self, family: str, quality: int):
        from dataclasses import replace

        from vaecodec.zoo.codecs import load_codec, resolve_codec

        model_dir, _, q, level = resolve_codec(family, int(quality))
        key = str(model_dir)
        with self._lock:
            free = self._free.setdefault(key, [])
            model = free.pop() if free else None
        if model is None:
            model = load_codec(family, int(quality))  # as asked: q may be another family's
        if level is not None:
            model.set_level(level)
            model.codec_id = replace(model.codec_id, quality=q)
        try:
            yield model
        finally:
            with self._lock:
                self._free[key].append(model)

    def instances(self) -> int:
        """Models loaded so far (free ones; all, when no request is running)."""
        with self._lock:
            return sum(len(v) for v in self._free.values())


@dataclass
class Side:
    """One side of a compare: ``codec`` (``"ours"`` or a classical name), for ours the zoo
    ``family``, integer ``quality`` and encoder ``effort``, for a classical codec its ``setting`` (the knob of
    :mod:`vaecodec.evaluate.classical`)."""

    codec: str
    family: str | None = None
    quality: int | None = None
    setting: float | None = None
    effort: int = 0

    @property
    def label(self) -> str:
        if self.codec == OURS:
            return f"{self.family} q{self.quality}" + (f" e{self.effort}" if self.effort else "")
        s = self.setting
        knob = {"jpeg2000": "ratio ", "jpegxl": "distance "}.get(self.codec, "q")
        return f"{LABELS[self.codec]} {knob}{s:g}"


@dataclass
class Coded:
    """A side after encoding: its file ``data`` and the encode time in seconds (for an equal
    bytes match, ``matched``, the time of the whole search: several encodes)."""

    side: Side
    data: bytes
    encode_s: float
    matched: bool = False


def encode_side(side: Side, image: SourceImage, models: CodecPool) -> Coded:
    """Encode ``image`` with one side's codec: real file bytes.

    Ours goes through :func:`vaecodec.coding.container.encode_image` with the image's mode, as
    ``vaecodec compress`` does; classical codecs through
    :func:`vaecodec.evaluate.classical.encode`.
    """
    from vaecodec.evaluate import classical

    t0 = time.perf_counter()
    if side.codec == OURS:
        from vaecodec.compression.lossy import encode_image

        with models.borrow(side.family, side.quality) as model:
            data = encode_image(model, image.rgb, mode=image.mode, effort=side.effort)
    else:
        data = classical.encode(side.codec, image.rgb, side.setting)
    return Coded(side, data, time.perf_counter() - t0)


def match_side(side: Side, image: SourceImage, target_bytes: int) -> Coded:
    """Encode with the classical codec of ``side`` at the setting whose file is nearest
    ``target_bytes`` (:func:`vaecodec.evaluate.classical.match_size`); ``side.setting`` is
    replaced by that setting."""
    from vaecodec.evaluate import classical

    if side.codec == OURS:
        raise RequestError("equal bytes sets a classical codec's quality: pick one on a side")
    t0 = time.perf_counter()
    setting, data = classical.match_size(side.codec, image.rgb, target_bytes)
    return Coded(Side(side.codec, setting=setting), data, time.perf_counter() - t0, True)


def finish_side(coded: Coded, image: SourceImage, models: CodecPool, store) -> dict:
    """Decode a coded side, measure it and store its files.

    Ours is decoded with :func:`vaecodec.coding.container.decode_image` (with the side's
    family at the quality the file's header names, checked against the header's weights hash
    as ``vaecodec decompress`` checks it); classical with
    :func:`vaecodec.evaluate.classical.decode`. Metrics on 8-bit RGB against the source:
    PSNR (dB), MS-SSIM (None with a note when a side is under 161 pixels), bpp = 8 x bytes /
    (H x W).

    Returns:
        JSON-ready dict: ``codec``, ``label``, ``family``/``quality`` or ``setting``,
        ``bytes``, ``bpp``, ``psnr_db``, ``ms_ssim``, ``ms_ssim_note``, ``encode_s``,
        ``decode_s``, ``matched`` (the setting came from an equal-bytes search, whose time
        ``encode_s`` is), ``image`` (store id of the decoded PNG), ``file`` (store id of the coded
        file) and their download names.
    """
    from vaecodec.evaluate import classical
    from vaecodec.evaluate.metrics import ImageTooSmallError, bpp, ms_ssim, psnr

    side, data = coded.side, coded.data
    t0 = time.perf_counter()
    if side.codec == OURS:
        from vaecodec.coding.container import unpack
        from vaecodec.compression.lossy import decode_image

        parsed = unpack(data)
        cid = parsed[0].codec
        # the side's own family: a --codec folder's files name only its last path component;
        # decode_image still checks the header's model and weights hash against it
        with models.borrow(side.family or cid.name, cid.quality) as model:
            decoded, mode = decode_image(data, model, parsed)
        if decoded.ndim == 2:
            decoded_rgb = np.repeat(decoded[:, :, None], 3, axis=2)
        else:
            decoded_rgb = decoded
    else:
        decoded_rgb = classical.decode(side.codec, data)
        decoded = decoded_rgb
    decode_s = time.perf_counter() - t0
    if decoded_rgb.shape != image.rgb.shape:
        raise VaecodecError(
            f"{side.label} decoded to {decoded_rgb.shape}, not the source's {image.rgb.shape}"
        )
    note = None
    try:
        msssim = ms_ssim(image.rgb, decoded_rgb)
    except ImageTooSmallError:
        msssim, note = None, "MS-SSIM needs at least 161 pixels on each side"
    p = psnr(image.rgb, decoded_rgb)
    stem = f"{image.name}-{side.label.replace(' ', '-')}"
    png_id = store.put(png_bytes(decoded), ".png", f"{stem}.png")
    file_id = store.put(data, FILE_SUFFIX[side.codec], f"{stem}{FILE_SUFFIX[side.codec]}")
    out = {
        "codec": side.codec,
        "label": side.label,
        "bytes": len(data),
        "bpp": bpp(len(data), image.height, image.width),
        "psnr_db": None if p == float("inf") else p,
        "ms_ssim": msssim,
        "ms_ssim_note": note,
        "encode_s": coded.encode_s,
        "decode_s": decode_s,
        "image": png_id,
        "file": file_id,
        "image_name": f"{stem}.png",
        "file_name": f"{stem}{FILE_SUFFIX[side.codec]}",
    }
    if side.codec == OURS:
        out.update(family=side.family, quality=side.quality, effort=side.effort)
    else:
        out["setting"] = side.setting
    out["matched"] = coded.matched
    return out
