"""The ``.vcz`` file format of the learned image codecs (specified in ``docs/format.md``).

A file is a compact header, the entropy-coded streams, and a CRC32 of everything before it::

    magic "VCZ1" | version u8 | model type u8 | mode/streams u8 | codec name (u8 length + UTF-8)
    | weights hash (8 bytes) | quality u8 | height u16 | width u16 | symbols check (4 bytes)
    | length of each stream but the last (LEB128 varints) | streams | CRC32 u32

(integers big-endian). Header and CRC take 29 bytes plus the codec name plus 1-2 bytes per
extra stream, so that they cost little next to a small image's payload. Reading checks, in
order: the magic (a lossless ``VCZL`` stream gets its own message), the version, the CRC
(catches truncation and bit flips), the field bounds, and the image size (at most 2**15 per
side and 2**28 pixels, refused before anything is allocated). Every failure is a
:class:`~vaecodec.errors.FormatError`; nothing is decoded from a file that fails a check.

The *symbols check* (format version 2) is the first 4 bytes of a SHA-256 over the header's
fields and the integer latents the file decodes to (:func:`symbols_check`): the decoder
compares it after entropy decoding and before the synthesis (:func:`verify_symbols`), so
damage behind a valid CRC, a header field changed (quality, size, mode, name) and an entropy
decoder that drifts from the encoder are refused instead of decoded into a wrong image.
Version-1 files (no such field) are still read; their :attr:`Header.check` is None.

This module is bytes only: it knows no model and no image (the latents come in as integer
arrays). Turning an image into these bytes with a model is :mod:`vaecodec.compression.lossy`'s
job.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from vaecodec.errors import FormatError

__all__ = [
    "FORMAT_VERSION",
    "LOSSLESS_MAGIC",
    "MAGIC",
    "MAX_PIXELS",
    "MAX_SIDE",
    "MODEL_CODES",
    "READ_VERSIONS",
    "CodecId",
    "Header",
    "check_image_size",
    "level_of_quality",
    "pack",
    "quality_of_level",
    "symbols_check",
    "unpack",
    "verify_symbols",
]

MAGIC = b"VCZ1"
"""First four bytes of a lossy ``.vcz`` file."""
LOSSLESS_MAGIC = b"VCZL"
"""First four bytes of a lossless (bits-back) stream, read by :mod:`vaecodec.coding.lossless_format`."""
FORMAT_VERSION = 2
"""Version of the layout a writer uses (2: with the symbols check)."""
READ_VERSIONS = (1, 2)
"""Versions a reader accepts: 1 (no symbols check, decoded unverified) and 2."""
CHECK_BYTES = 4
"""Length of the symbols check (version 2)."""
MAX_SIDE = 2**15
"""Largest image side (pixels) a file may declare."""
MAX_PIXELS = 2**28
"""Largest image area (pixels) a file may declare."""
MODEL_CODES = {"factorized": 1, "hyperprior": 2, "mean-scale": 3, "checkerboard": 4}
"""Registered codec model name -> the model-type byte of the header."""
_MODEL_NAMES = {v: k for k, v in MODEL_CODES.items()}
_MODES = {"RGB": 0, "L": 1}
_MODE_NAMES = {v: k for k, v in _MODES.items()}
_MAX_STREAMS = 8
_FIXED = ">BBB"  # version, model type, mode | streams << 4


@dataclass(frozen=True)
class CodecId:
    """Which weights made a file: a codec family (zoo) or run-directory name, the registered
    model name (``"mean-scale"`` ...), the first 8 bytes of the SHA-256 of the weights file,
    and the quality index within the family (1-based; a run directory is quality 1; for a
    variable-rate model it is the rate level + 1, which selects the decoder's gain)."""

    name: str
    model: str
    weights_hash: bytes
    quality: int = 1

    def describe(self) -> str:
        return (
            f"codec {self.name!r} quality {self.quality} "
            f"({self.model}, weights {self.weights_hash.hex()})"
        )


@dataclass(frozen=True)
class Header:
    """Decoded header of a ``.vcz`` file; ``height``/``width``/``mode`` are the original
    image's (``mode`` ``"RGB"`` or ``"L"``); ``version`` the file's format version and
    ``check`` its symbols check (4 bytes; None in a version-1 file, which has none). A header
    given to :func:`pack` is written at :data:`FORMAT_VERSION` with a check computed there:
    its ``version`` and ``check`` are ignored."""

    codec: CodecId
    height: int
    width: int
    mode: str
    version: int = FORMAT_VERSION
    check: bytes | None = None


def quality_of_level(level: int) -> int:
    """The quality a file records for rate level ``level`` (0-based): ``level + 1``. The one
    place of this rule: the CLI's ``--quality``, a zoo family's qualities and a ``.vcz``
    header's quality field are all 1-based, a model's rate levels 0-based."""
    return int(level) + 1


def level_of_quality(quality: int) -> int:
    """The rate level (0-based) of ``quality`` (1-based): ``quality - 1``."""
    return int(quality) - 1


def check_image_size(height: int, width: int, error=FormatError) -> None:
    """Raise ``error`` unless ``1 <= H, W <= MAX_SIDE`` and ``H * W <= MAX_PIXELS``."""
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE) or height * width > MAX_PIXELS:
        raise error(
            f"image size {height}x{width} is outside the supported range "
            f"(1 to {MAX_SIDE} pixels per side, at most {MAX_PIXELS} pixels)"
        )


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _fields(header: Header, version: int, n_streams: int) -> bytes:
    """The header's bytes from the magic to the width (what both versions share)."""
    c = header.codec
    name = c.name.encode("utf-8")
    return (MAGIC + struct.pack(_FIXED, version, MODEL_CODES[c.model],
                                _MODES[header.mode] | n_streams << 4)
            + bytes([len(name)]) + name + c.weights_hash
            + struct.pack(">BHH", c.quality, header.height, header.width))  # fmt: skip


def symbols_check(header: Header, n_streams: int, symbols: list[np.ndarray]) -> bytes:
    """The symbols check of a version-2 file (``docs/format.md``, "The symbols check"): the
    first 4 bytes of the SHA-256 of the header's bytes from the magic to the width (written
    with version 2 and ``n_streams`` streams) followed by each array of ``symbols`` (the
    decoded integer latents: ``y^`` in units of 1/64, then ``z^`` if the model has one, each
    ``[C, h, w]``) as its three dimensions (u32, big-endian) and its values as little-endian
    int64 in C order."""
    h = hashlib.sha256(_fields(header, 2, n_streams))
    for a in symbols:
        a = np.asarray(a)
        if a.ndim != 3:
            raise ValueError(f"symbols must be [C, h, w] arrays, got shape {a.shape}")
        h.update(struct.pack(">III", *a.shape))
        h.update(np.ascontiguousarray(a, dtype="<i8").tobytes())
    return h.digest()[:CHECK_BYTES]


def verify_symbols(header: Header, n_streams: int, symbols: list[np.ndarray]) -> bool:
    """Compare a decoded file's integer latents with its symbols check.

    Returns:
        True if they match, False for a version-1 file (it has no check: decoded unverified).

    Raises:
        FormatError: they differ: the payload was damaged behind a valid CRC, a header field
            was changed (quality, size, mode, codec name), or this decoder reconstructs other
            latents than the encoder did.
    """
    if header.check is None:
        return False
    if symbols_check(header, n_streams, symbols) != header.check:
        raise FormatError(
            "corrupt file: the decoded latents do not match the file's symbols check (the "
            "payload or a header field was altered behind a valid CRC, or this decoder "
            "differs from the encoder that wrote it): nothing decoded"
        )
    return True


def pack(header: Header, streams: list[bytes], symbols: list[np.ndarray] | None = None,
         version: int = FORMAT_VERSION) -> bytes:  # fmt: skip
    """Serialise a header and the entropy-coded streams to ``.vcz`` bytes.

    Args:
        header: the fields to write (its ``version`` and ``check`` are ignored).
        streams: the entropy-coded streams (1-8).
        symbols: the integer latents the streams decode to, for the symbols check
            (:func:`symbols_check`); required for version 2.
        version: :data:`FORMAT_VERSION`, or 1 to write the old layout without a check (for
            tests of the reader).

    Raises:
        ValueError: a field does not fit the format, or version 2 without ``symbols``.
    """
    if version not in READ_VERSIONS:
        raise ValueError(f"version must be one of {READ_VERSIONS}")
    if version >= 2 and symbols is None:
        raise ValueError("a version-2 file needs the decoded symbols for its check")
    c = header.codec
    name = c.name.encode("utf-8")
    if len(c.weights_hash) != 8 or not 0 <= c.quality <= 255 or len(name) > 255:
        raise ValueError("weights_hash must be 8 bytes, quality in [0, 255], name <= 255 bytes")
    if c.model not in MODEL_CODES:
        raise ValueError(f"model {c.model!r} has no type code in the .vcz format")
    if header.mode not in _MODES:
        raise ValueError(f"mode must be one of {sorted(_MODES)}")
    check_image_size(header.height, header.width, ValueError)
    if not 1 <= len(streams) <= _MAX_STREAMS:
        raise ValueError(f"1 to {_MAX_STREAMS} streams, got {len(streams)}")
    out = io.BytesIO()
    out.write(_fields(header, version, len(streams)))
    if version >= 2:
        out.write(symbols_check(header, len(streams), symbols))
    out.write(b"".join(_varint(len(s)) for s in streams[:-1]))
    out.write(b"".join(streams))
    body = out.getvalue()
    return body + struct.pack(">I", zlib.crc32(body))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise FormatError("corrupt file: the header is truncated")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def varint(self) -> int:
        n = 0
        for shift in range(0, 35, 7):
            b = self.take(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
        raise FormatError("corrupt file: a stream length is too long")


def unpack(data: bytes) -> tuple[Header, list[bytes]]:
    """Parse and check ``.vcz`` bytes (see module doc for the order of checks).

    Returns:
        ``(header, streams)``; ``header.version`` is 1 or 2, ``header.check`` the symbols
        check (None in version 1), which :func:`verify_symbols` compares after decoding.

    Raises:
        FormatError: not a ``.vcz`` file, another format version, a lossless stream, a CRC
            mismatch (truncated or altered file), inconsistent lengths, or absurd dimensions.
    """
    data = bytes(data)
    if len(data) < 4 or data[:4] != MAGIC:
        if data[:4] == LOSSLESS_MAGIC:
            raise FormatError(
                "this is a lossless (bits-back) stream, not a lossy .vcz file: decode it with "
                "`vaecodec decompress`"
            )
        raise FormatError("not a .vcz file (bad magic bytes): was it made by `vaecodec compress`?")
    if len(data) < 5 + 4:
        raise FormatError("corrupt file: truncated after the magic bytes")
    version = data[4]
    if version not in READ_VERSIONS:
        raise FormatError(
            f".vcz format version {version}, but this vaecodec reads versions "
            f"{' and '.join(map(str, READ_VERSIONS))}: decode it with the vaecodec version "
            "that wrote it"
        )
    body, (crc,) = data[:-4], struct.unpack(">I", data[-4:])
    if zlib.crc32(body) != crc:
        raise FormatError("corrupt file: CRC32 mismatch (the file is truncated or altered)")
    r = _Reader(body)
    r.take(4)
    _, model_code, mode_streams = struct.unpack(_FIXED, r.take(3))
    if model_code not in _MODEL_NAMES:
        raise FormatError(
            f"the file was made by a codec model type this vaecodec does not know (code "
            f"{model_code}): decode it with the vaecodec version that wrote it"
        )
    mode, n_streams = mode_streams & 0x0F, mode_streams >> 4
    if mode not in _MODE_NAMES or not 1 <= n_streams <= _MAX_STREAMS:
        raise FormatError(f"corrupt file: invalid mode / stream byte {mode_streams:#04x}")
    try:
        name = r.take(r.take(1)[0]).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("corrupt file: the codec name is not UTF-8") from None
    weights_hash = r.take(8)
    quality, height, width = struct.unpack(">BHH", r.take(5))
    check_image_size(height, width)
    check = r.take(CHECK_BYTES) if version >= 2 else None
    lengths = [r.varint() for _ in range(n_streams - 1)]
    rest = len(body) - r.pos - sum(lengths)
    if rest < 0:
        raise FormatError("corrupt file: stream lengths exceed the file size")
    streams = [r.take(n) for n in [*lengths, rest]]
    codec = CodecId(name, _MODEL_NAMES[model_code], weights_hash, quality)
    return Header(codec, height, width, _MODE_NAMES[mode], version, check), streams
