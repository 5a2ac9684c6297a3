"""Classical image codecs as anchors: JPEG, WebP, AVIF, JPEG 2000 and JPEG XL.

Each codec is one ``encode(codec, rgb_uint8, setting) -> bytes`` and one
``decode(codec, data) -> uint8 [H, W, 3]`` call on real files held in memory, so bpp comes from
real file sizes. The libraries are the installed Pillow and imagecodecs; a codec the installed
build lacks is reported by :func:`codec_status` / :func:`available_codecs` and skipped by the
sweeps, never crashed on.

Settings and encoder options (chosen to be fair to each codec: its standard file format, its
best-compressing or default effort, options that a careful user would pick for RGB photos):

============  ======================  =====================================================
codec         setting (sweep knob)    fixed options
============  ======================  =====================================================
jpeg          quality 1..95           Pillow/libjpeg(-turbo), 4:2:0 chroma subsampling
                                      (the libjpeg default), optimized Huffman tables,
                                      baseline JFIF file
webp          quality 0..100          libwebp lossy, ``method=6`` (slowest, best rate);
                                      WebP is always 4:2:0
avif          quality 0..100          libavif via Pillow (imagecodecs if Pillow lacks it),
                                      ``speed=6`` (libavif's default), 4:4:4 chroma
                                      (RGB PSNR gains from full chroma), 1 thread, HEIF file
jpeg2000      compression ratio r     OpenJPEG via Pillow, ``quality_mode="rates"``, one
              (bpp ~= 24 / r)         layer, irreversible 9/7 wavelet, RGB->YCbCr MCT on,
                                      raw J2K codestream (no JP2 boxes)
jpegxl        Butteraugli distance    libjxl via imagecodecs, ``effort=7`` (libjxl's
              (0.1..25, lower=better) default), 1 thread, bare codestream
============  ======================  =====================================================

No codec gets metric-specific tuning: each keeps its encoder's default tuning (libaom inside
libavif tunes for SSIM by default, libjxl for Butteraugli), which is what users of the formats
get. On non-Kodak photographs, AVIF with ``advanced={"tune": "psnr"}`` saved 3.8 % BD-rate
(PSNR) over these settings, ``speed=4`` another ~5 % at 8x the encode time, and 4:2:0 cost
2.6 % against 4:4:4.

The default sweeps (:data:`DEFAULT_SETTINGS`, eight points each) span about 0.1-3 bpp on
natural photographs; they were chosen on training photographs, not on Kodak.

Why one module of this size: the five classical codecs share one interface, one settings table
and one size-matching search; side by side, their options are compared at a glance.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vaecodec.errors import FormatError, ImageError, VaecodecError

CLASSICAL_CODECS = ("jpeg", "webp", "avif", "jpeg2000", "jpegxl")

DEFAULT_SETTINGS: dict[str, tuple] = {
    "jpeg": (5, 10, 20, 35, 50, 70, 85, 95),
    "webp": (0, 10, 25, 45, 65, 80, 90, 95),
    "avif": (0, 15, 30, 45, 55, 65, 75, 85),
    "jpeg2000": (400, 200, 100, 64, 40, 24, 16, 10),
    "jpegxl": (25.0, 15.0, 9.0, 5.5, 3.5, 2.2, 1.4, 0.8),
}

JPEG_OPTIONS = {"subsampling": "4:2:0", "optimize": True}
WEBP_OPTIONS = {"method": 6}
AVIF_OPTIONS = {"speed": 6, "subsampling": "4:4:4", "max_threads": 1}
JPEG2000_OPTIONS = {"quality_mode": "rates", "irreversible": True, "mct": 1, "no_jp2": True}
JPEGXL_OPTIONS = {"effort": 7, "numthreads": 1}

SETTING_RANGES: dict[str, tuple[float, float, bool]] = {
    "jpeg": (1, 95, True),
    "webp": (0, 100, True),
    "avif": (0, 100, True),
    "jpeg2000": (1.0, 2400.0, False),
    "jpegxl": (0.1, 25.0, False),
}
"""Codec -> ``(lowest, highest, integer)`` of the setting :func:`match_size` searches. For
JPEG, WebP and AVIF a higher setting means more bytes; for JPEG 2000 (compression ratio) and
JPEG XL (distance) fewer."""


class CodecUnavailableError(VaecodecError):
    """The installed Pillow / imagecodecs build cannot encode or decode this codec."""


@dataclass(frozen=True)
class _Codec:
    name: str
    setting_name: str
    encode: Callable[[np.ndarray, float], bytes]
    decode: Callable[[bytes], np.ndarray]
    status: Callable[[], tuple[bool, str]]
    options: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def _check_rgb(rgb) -> np.ndarray:
    a = np.asarray(rgb)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ImageError(
            f"classical codecs take uint8 RGB arrays [H, W, 3], got {a.dtype} {a.shape}"
        )
    return np.ascontiguousarray(a)


def _pil_encode(rgb: np.ndarray, fmt: str, **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_check_rgb(rgb), "RGB").save(buf, format=fmt, **kw)
    return buf.getvalue()


def _pil_decode(data: bytes, what: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError ... on bad data
        raise FormatError(f"cannot decode the {what} data ({len(data)} bytes): {e}") from e


def _pil_feature(feature: str, what: str) -> tuple[bool, str]:
    try:
        from PIL import __version__ as pil_version
        from PIL import features
    except ImportError:
        return False, "Pillow is not installed (pip install pillow)"
    if not features.check(feature):
        return False, f"this Pillow {pil_version} build has no {what} support"
    version = features.version(feature)
    return True, f"Pillow {pil_version}, {what} {version}"


def _imagecodecs_feature(attr: str, what: str) -> tuple[bool, str]:
    try:
        import imagecodecs
    except ImportError:
        return False, "imagecodecs is not installed (pip install imagecodecs)"
    codec = getattr(imagecodecs, attr, None)
    if codec is None or not getattr(codec, "available", False):
        return False, f"this imagecodecs {imagecodecs.__version__} build has no {what} support"
    version_fn = getattr(imagecodecs, f"{attr.lower()}_version", None)
    version = version_fn() if version_fn else "?"
    return True, f"imagecodecs {imagecodecs.__version__}, {version}"


# --------------------------------------------------------------------------- codecs


def _jpeg_encode(rgb, quality) -> bytes:
    return _pil_encode(rgb, "JPEG", quality=int(quality), **JPEG_OPTIONS)


def _webp_encode(rgb, quality) -> bytes:
    return _pil_encode(rgb, "WEBP", quality=int(quality), lossless=False, **WEBP_OPTIONS)


def _avif_backend() -> str | None:
    if _pil_feature("avif", "AVIF")[0]:
        return "pillow"
    if _imagecodecs_feature("AVIF", "AVIF")[0]:
        return "imagecodecs"
    return None


def _avif_status() -> tuple[bool, str]:
    ok, msg = _pil_feature("avif", "libavif")
    if ok:
        return ok, msg
    ok2, msg2 = _imagecodecs_feature("AVIF", "AVIF")
    return (True, msg2) if ok2 else (False, f"{msg}; {msg2}")


def _avif_encode(rgb, quality) -> bytes:
    if _avif_backend() == "imagecodecs":
        import imagecodecs

        return imagecodecs.avif_encode(
            _check_rgb(rgb),
            level=int(quality),
            speed=AVIF_OPTIONS["speed"],
            pixelformat=AVIF_OPTIONS["subsampling"].replace(":", ""),
            numthreads=AVIF_OPTIONS["max_threads"],
        )
    return _pil_encode(rgb, "AVIF", quality=int(quality), **AVIF_OPTIONS)


def _avif_decode(data: bytes) -> np.ndarray:
    if _avif_backend() == "imagecodecs":
        import imagecodecs

        try:
            return np.asarray(imagecodecs.avif_decode(data))[..., :3]
        except Exception as e:
            raise FormatError(f"cannot decode the AVIF data ({len(data)} bytes): {e}") from e
    return _pil_decode(data, "AVIF")


def _jpeg2000_encode(rgb, ratio) -> bytes:
    if float(ratio) < 1:
        raise ValueError(f"JPEG 2000 compression ratio must be >= 1, got {ratio}")
    return _pil_encode(rgb, "JPEG2000", quality_layers=[float(ratio)], **JPEG2000_OPTIONS)


def _jpegxl_encode(rgb, distance) -> bytes:
    import imagecodecs

    return imagecodecs.jpegxl_encode(_check_rgb(rgb), distance=float(distance), **JPEGXL_OPTIONS)


def _jpegxl_decode(data: bytes) -> np.ndarray:
    import imagecodecs

    try:
        a = np.asarray(imagecodecs.jpegxl_decode(data, numthreads=JPEGXL_OPTIONS["numthreads"]))
    except Exception as e:
        raise FormatError(f"cannot decode the JPEG XL data ({len(data)} bytes): {e}") from e
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[..., :3])


_CODECS: dict[str, _Codec] = {
    "jpeg": _Codec(
        "jpeg",
        "quality",
        _jpeg_encode,
        lambda d: _pil_decode(d, "JPEG"),
        lambda: _pil_feature("jpg", "libjpeg"),
        JPEG_OPTIONS,
    ),
    "webp": _Codec(
        "webp",
        "quality",
        _webp_encode,
        lambda d: _pil_decode(d, "WebP"),
        lambda: _pil_feature("webp", "libwebp"),
        WEBP_OPTIONS,
    ),
    "avif": _Codec("avif", "quality", _avif_encode, _avif_decode, _avif_status, AVIF_OPTIONS),
    "jpeg2000": _Codec(
        "jpeg2000",
        "compression_ratio",
        _jpeg2000_encode,
        lambda d: _pil_decode(d, "JPEG 2000"),
        lambda: _pil_feature("jpg_2000", "OpenJPEG"),
        JPEG2000_OPTIONS,
    ),
    "jpegxl": _Codec(
        "jpegxl",
        "distance",
        _jpegxl_encode,
        _jpegxl_decode,
        lambda: _imagecodecs_feature("JPEGXL", "libjxl"),
        JPEGXL_OPTIONS,
    ),
}


# --------------------------------------------------------------------------- public API


def _get(codec: str) -> _Codec:
    try:
        return _CODECS[codec]
    except KeyError:
        raise VaecodecError(
            f"unknown classical codec {codec!r}; choose from {', '.join(CLASSICAL_CODECS)}"
        ) from None


def codec_status(codec: str) -> tuple[bool, str]:
    """``(available, detail)``: whether the installed libraries can code ``codec``.

    ``detail`` names the library and version when available, or why it is not.

    Raises:
        VaecodecError: for a name not in :data:`CLASSICAL_CODECS`.
    """
    return _get(codec).status()


def available_codecs() -> dict[str, str | None]:
    """Every classical codec name -> ``None`` if usable, else the reason it is not."""
    out = {}
    for name in CLASSICAL_CODECS:
        ok, detail = codec_status(name)
        out[name] = None if ok else detail
    return out


def codec_info(codec: str) -> dict:
    """What a sweep of ``codec`` records: library/version, setting name, fixed options."""
    c = _get(codec)
    ok, detail = c.status()
    return {
        "codec": c.name,
        "available": ok,
        "library": detail,
        "setting": c.setting_name,
        "options": dict(c.options),
        "default_settings": list(DEFAULT_SETTINGS[c.name]),
    }


def _require(codec: str) -> _Codec:
    c = _get(codec)
    ok, detail = c.status()
    if not ok:
        raise CodecUnavailableError(f"{codec} is unavailable: {detail}")
    return c


def encode(codec: str, rgb_uint8: np.ndarray, setting) -> bytes:
    """Encode an 8-bit RGB image ``[H, W, 3]`` with a classical codec; returns the file bytes.

    ``setting`` is the codec's sweep knob (see the module table): JPEG/WebP/AVIF quality,
    JPEG 2000 compression ratio, JPEG XL distance.

    Raises:
        ImageError: if the array is not uint8 ``[H, W, 3]``.
        CodecUnavailableError: if the installed libraries lack the codec.
        VaecodecError: for an unknown codec name.
    """
    return bytes(_require(codec).encode(rgb_uint8, setting))


def decode(codec: str, data: bytes) -> np.ndarray:
    """Decode ``codec`` file bytes to an 8-bit RGB array ``[H, W, 3]``.

    Raises:
        FormatError: if the bytes are not a valid file of that codec.
        CodecUnavailableError: if the installed libraries lack the codec.
    """
    return _require(codec).decode(bytes(data))


def match_size(
    codec: str, rgb_uint8: np.ndarray, target_bytes: int, max_steps: int = 8,
    rel_tol: float = 0.01,
) -> tuple[float, bytes]:
    """The setting of ``codec`` whose file of ``rgb_uint8`` is nearest ``target_bytes`` in size.

    A bisection on the setting (:data:`SETTING_RANGES`), on real encodes. The integer
    qualities (JPEG, WebP, AVIF) are resolved exactly: the nearest of two neighbouring
    qualities, in at most 9 encodes. The float settings (JPEG 2000 ratio, JPEG XL distance) are
    bisected in log scale for at most ``max_steps`` encodes, stopping early at a file within
    ``rel_tol`` of the target. File size is assumed to grow monotonically with quality, which
    holds closely for these encoders; the nearest of all sizes tried wins.

    Args:
        codec: one of :data:`CLASSICAL_CODECS`.
        rgb_uint8: the image, uint8 ``[H, W, 3]``.
        target_bytes: the size to match, in bytes.
        max_steps: bisection steps (encodes) at most for the float settings.
        rel_tol: relative size error at which the float search stops.

    Returns:
        ``(setting, file_bytes)``; the setting is an ``int`` for the integer qualities.

    Raises:
        ImageError, CodecUnavailableError, VaecodecError: as :func:`encode`.
    """
    import math

    lo, hi, integer = SETTING_RANGES[_get(codec).name]
    tried: dict[float, bytes] = {}

    def size_at(setting) -> int:
        if setting not in tried:
            tried[setting] = encode(codec, rgb_uint8, setting)
        return len(tried[setting])

    def setting_of(u: float):  # u in [0, 1]; the file grows with u
        if integer:  # JPEG, WebP, AVIF quality
            return int(round(lo + u * (hi - lo)))
        # JPEG 2000 compression ratio, JPEG XL distance: fewer bytes as they grow
        return float(math.exp(math.log(hi) + u * (math.log(lo) - math.log(hi))))

    a, b, close = 0.0, 1.0, False
    for _ in range(max_steps if not integer else 64):
        if integer and setting_of(b) - setting_of(a) <= 1:
            break
        mid = (a + b) / 2
        n = size_at(setting_of(mid))
        if not integer and abs(n - target_bytes) <= rel_tol * target_bytes:
            close = True
            break
        if n > target_bytes:
            b = mid
        else:
            a = mid
    if not close:
        for u in (a, b):
            size_at(setting_of(u))
    best = min(tried, key=lambda s: (abs(len(tried[s]) - target_bytes), len(tried[s])))
    return best, tried[best]


class ClassicalCodec:
    """A classical codec behind the adaptor interface the RD sweeps use.

    Attributes:
        name: codec name (one of :data:`CLASSICAL_CODECS`).
        qualities: the settings swept by default (:data:`DEFAULT_SETTINGS`), or ``settings``.
        learned: ``False``; learned codecs set it ``True`` (the plots draw them bold).
    """

    learned = False

    def __init__(self, codec: str, settings: Sequence | None = None):
        self._codec = _get(codec)
        self.name = codec
        self.qualities = tuple(settings if settings is not None else DEFAULT_SETTINGS[codec])

    def encode(self, rgb_uint8: np.ndarray, quality) -> bytes:
        """File bytes of ``rgb_uint8`` coded at setting ``quality``."""
        return encode(self.name, rgb_uint8, quality)

    def decode(self, data: bytes) -> np.ndarray:
        """8-bit RGB ``[H, W, 3]`` image decoded from ``data``."""
        return decode(self.name, data)

    def info(self) -> dict:
        """Library, version, setting name and fixed options (recorded in the summary)."""
        return codec_info(self.name)
