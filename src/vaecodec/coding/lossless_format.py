"""The lossless ``VCZL`` stream format: bytes only (``docs/lossless-format.md``).

A stream holds: the magic ``b"VCZL"``, the format version, the coding parameters, the model
name and a hash of its weights, the image size, the number of images and each one's file name,
a CRC-32 of all pixels, the ANS words of every lane and a CRC-32 of everything before it.
:func:`pack` writes one from a :class:`StreamHeader` and the lanes' :class:`LaneStream`;
:func:`unpack` reads one back, checking, in order: the magic and version, the CRC-32 of the file
(truncation, bit flips), every field's bounds, every file name (the portable set of
:func:`name_problem`) and that no two images would be written to the same file
(:func:`output_key`). Any failure is a :class:`~vaecodec.errors.FormatError`.

Also here, because a decoder must reproduce them exactly: the seed words of each lane's ANS
stack (:func:`seed_words`) and the grid network outputs are rounded to
(:data:`PARAM_GRID_BITS`). The bits-back codec that fills the lanes is
:mod:`vaecodec.models.bitsback`; the files it is used for, :mod:`vaecodec.compression.lossless`.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import unicodedata
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vaecodec.errors import FormatError, ModelError

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "PARAM_GRID_BITS",
    "LaneStream",
    "StreamHeader",
    "check_names",
    "name_problem",
    "output_key",
    "output_name",
    "pack",
    "payload_problem",
    "pixels_crc",
    "portable_name",
    "read_header",
    "round_grid",
    "seed_words",
    "short_repr",
    "stream_bits_per_dim",
    "unpack",
]

def short_repr(text: str, n: int = 80) -> str:
    """``repr`` of ``text``, cut to ``n`` characters (for names from a crafted stream)."""
    return repr(text if len(text) <= n else text[:n] + "...")


PARAM_GRID_BITS = 16
"""Network outputs are rounded to multiples of ``2**-PARAM_GRID_BITS`` before use."""

_GRID = float(2**PARAM_GRID_BITS)
_SEED_TAG = b"vaecodec bits-back seed v1"

MAGIC = b"VCZL"
FORMAT_VERSION = 1
MAX_IMAGES = 1 << 24
MAX_TOTAL_PIXELS = 1 << 31  # N·C·H·W, checked before anything is allocated
MAX_NAME_BYTES = 255
MAX_LANES = 1 << 10
_SCALES = {0: 1, 1: 255}  # code -> pixel value of a binary "1"
_SCALE_CODES = {v: k for k, v in _SCALES.items()}
_FLAG_NAMES = 1  # the image table holds file names




def round_grid(a: np.ndarray) -> np.ndarray:
    """Round float64 values to multiples of ``2**-PARAM_GRID_BITS`` (exact IEEE operations)."""
    return np.rint(np.asarray(a, dtype=np.float64) * _GRID) / _GRID


def seed_words(lane: int, n_words: int) -> np.ndarray:
    """The fixed pseudo-random words that seed lane ``lane``'s stack: uint32 ``[n_words]``.

    SHA-256 of ``(tag, lane, counter)``, little-endian words; the last word (the top of the
    stack) is made odd so that it is never zero (an ANS stream never ends in a zero word).
    """
    out = bytearray()
    counter = 0
    while len(out) < 4 * n_words:
        out += hashlib.sha256(
            _SEED_TAG + lane.to_bytes(4, "little") + counter.to_bytes(4, "little")
        ).digest()
        counter += 1
    w = np.frombuffer(bytes(out[: 4 * n_words]), dtype="<u4").astype(np.uint32)
    w[-1] |= 1
    return w


@dataclass
class LaneStream:
    """One lane's ANS stack after encoding.

    Attributes:
        n_images: images coded in this lane.
        seed_prefix: how many of the lane's seed words (from the bottom) were untouched by the
            encoder and are therefore not stored; the decoder puts them back.
        words: the stored ANS words, uint32 (bottom of the stack first).
    """

    n_images: int
    seed_prefix: int
    words: np.ndarray


# The portable set of stored file names (docs/lossless-format.md, "File names"): names that
# every common file system (ext4, APFS, NTFS, FAT/exFAT) stores as they are, as one file in
# the output folder, and that decode to distinct files even where names are compared without
# regard to case or Unicode normalisation.
_FORBIDDEN_CHARS = frozenset('<>:"/\\|?*')
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
_RESERVED_STEMS = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"{d}{i}" for d in ("COM", "LPT") for i in [*"0123456789", "\u00b9", "\u00b2", "\u00b3"]}
)


def output_name(name: str) -> str:
    """The file a stored name decodes to: its stem with ``.png`` (output is always PNG)."""
    return Path(name).stem + ".png"


def output_key(name: str) -> str:
    """Two images whose output names have the same key would be written to the same file on
    some file system: the output name in Unicode NFC, case-folded."""
    return unicodedata.normalize("NFC", output_name(name)).casefold()


def name_problem(name: str) -> str | None:
    """Why ``name`` is not in the portable set of stored file names, or None if it is.

    A portable name is non-empty; has no directory part and none of ``< > : " / \\ | ? *``;
    no control, format, surrogate, private-use or line/paragraph separator characters and no
    space other than U+0020; does not start with a dot or a space nor end with a dot or a
    space; is not a Windows device name (``CON``, ``NUL``, ``COM1``, ``LPT1``, ... with any
    extension); and both it and its output name (:func:`output_name`) take at most 255 UTF-8
    bytes."""
    if not name:
        return "an empty name"
    for ch in name:
        cat = unicodedata.category(ch)
        if ch in _FORBIDDEN_CHARS:
            return f"the character {ch!r}"
        if cat in _FORBIDDEN_CATEGORIES or (cat == "Zs" and ch != " "):
            return f"the invisible or control character U+{ord(ch):04X}"
    if name[0] in ". ":
        return "a leading dot or space"
    if name[-1] in ". ":
        return "a trailing dot or space"
    if name.split(".")[0].rstrip(" ").upper() in _RESERVED_STEMS:
        return "a reserved device name on Windows"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} UTF-8 bytes"
    if len(output_name(name).encode("utf-8")) > MAX_NAME_BYTES:
        return f"its output name is longer than {MAX_NAME_BYTES} UTF-8 bytes"
    return None


def portable_name(name: str) -> str:
    """``name`` if it is portable (:func:`name_problem`), else a portable name made from it:
    each forbidden character replaced by ``_``, leading dots and spaces and trailing dots and
    spaces dropped, ``_`` put before a Windows device name, the stem cut to fit 255 bytes."""
    if name_problem(name) is None:
        return name
    chars = []
    for ch in name:
        cat = unicodedata.category(ch)
        bad = (ch in _FORBIDDEN_CHARS or cat in _FORBIDDEN_CATEGORIES
               or (cat == "Zs" and ch != " "))  # fmt: skip
        chars.append("_" if bad else ch)
    out = "".join(chars).lstrip(". ").rstrip(". ") or "image"
    if out.split(".")[0].rstrip(" ").upper() in _RESERVED_STEMS:
        out = "_" + out
    p = Path(out)
    stem, ext = p.stem, p.suffix
    if len(ext.encode("utf-8")) > 16:
        stem, ext = out, ""
    room = MAX_NAME_BYTES - max(len(ext.encode("utf-8")), len(".png"))
    stem = stem.encode("utf-8")[:room].decode("utf-8", errors="ignore").rstrip(". ") or "image"
    out = stem + ext
    assert name_problem(out) is None, out
    return out


def check_names(names: list[str]) -> list[str]:
    """Refuse (FormatError) a name outside the portable set, or two names that would decode
    to the same file (same name, same stem, or names that differ only by case)."""
    seen: dict[str, str] = {}
    for name in names:
        _check_name(name, seen)
    return names


# ---------------------------------------------------------------------------------------------
# The byte format
# ---------------------------------------------------------------------------------------------


@dataclass
class StreamHeader:
    """Everything in a ``VCZL`` stream except the ANS words (see docs/lossless-format.md)."""

    model: str
    weights_hash: bytes
    latent_prec: int
    grid_bits: int
    shape: tuple[int, int, int]  # C, H, W
    levels: int
    names: list[str] | None  # None: anonymous images (decoded as 000000.png, 000001.png, ...)
    scales: list[int]  # per image: the pixel value of a binary 1 (1 or 255); 255 for 8-bit
    pixel_crc: int
    lanes: list[tuple[int, int]] = field(default_factory=list)  # (seed_prefix, n_words)

    @property
    def n_images(self) -> int:
        return len(self.scales)

    def file_names(self) -> list[str]:
        """The stored names, or ``000000.png``, ``000001.png``, ... for anonymous images."""
        if self.names is not None:
            return list(self.names)
        width = max(6, len(str(self.n_images - 1)))
        return [f"{i:0{width}d}.png" for i in range(self.n_images)]


def _image_table(names: list[str] | None, scales: list[int]) -> bytes:
    raw = b"" if names is None else b"".join(n.encode("utf-8") + b"\0" for n in names)
    raw += bytes(_SCALE_CODES[s] for s in scales)
    return zlib.compress(raw, 9)


def _check_name(name: str, seen: dict[str, str]) -> None:
    """One name of :func:`check_names` (``seen``: output key -> name so far)."""
    problem = name_problem(name)
    if problem:
        raise FormatError(f"corrupt stream: the file name {short_repr(name)} is not allowed "
                          f"({problem})")  # fmt: skip
    key = output_key(name)
    if key in seen:
        raise FormatError(
            f"corrupt stream: the images {short_repr(seen[key])} and {short_repr(name)} would "
            f"both be written to {output_name(name)!r}, so one would be lost"
        )
    seen[key] = name


_TABLE_CHUNK = 1 << 16
"""Bytes of the image table inflated at a time."""


def _read_image_table(blob: bytes, n: int, has_names: bool) -> tuple[list[str] | None, list[int]]:
    """The names (or None) and scales of a stream's zlib-compressed image table. Inflated in
    chunks, each name checked as it arrives (:func:`check_names`), so that a crafted table
    (say 2^18 copies of one long name, 1000x compressed) is refused at its first bad or
    repeated name instead of after it is inflated in full (fuzz finding, issue 18 point 4)."""
    d = zlib.decompressobj()
    names: list[str] | None = [] if has_names else None
    seen: dict[str, str] = {}
    pending = bytearray()  # undecided bytes: the name being read, then the scale codes
    data = blob
    while True:
        try:
            chunk = d.decompress(data, _TABLE_CHUNK)
        except zlib.error:
            raise FormatError("corrupt stream: the image table does not decompress") from None
        data = d.unconsumed_tail
        pending += chunk
        while names is not None and len(names) < n:
            end = pending.find(b"\0", 0, MAX_NAME_BYTES + 1)
            if end < 0:
                if len(pending) > MAX_NAME_BYTES:
                    raise FormatError("corrupt stream: a file name is too long")
                break
            try:
                name = bytes(pending[:end]).decode("utf-8")
            except UnicodeDecodeError:
                raise FormatError("corrupt stream: a file name is not UTF-8") from None
            del pending[: end + 1]
            _check_name(name, seen)
            names.append(name)
        if (names is None or len(names) == n) and len(pending) > n:  # more than the codes
            raise FormatError("corrupt stream: bad image table")
        if not chunk and not data:
            break
    if not d.eof or d.unused_data:
        raise FormatError("corrupt stream: bad image table")
    if names is not None and len(names) < n:
        raise FormatError("corrupt stream: the image table does not hold one name per image")
    if len(pending) < n:
        raise FormatError("corrupt stream: image table too short")
    if any(c not in _SCALES for c in pending):
        raise FormatError("corrupt stream: bad pixel scale")
    return names, [_SCALES[c] for c in pending]


def pack(header: StreamHeader, lanes: list[LaneStream]) -> bytes:
    out = io.BytesIO()
    mb = header.model.encode("utf-8")
    if len(mb) > 0xFFFF:
        raise ModelError("model name too long to record in the stream")
    c, h, w = header.shape
    flags = _FLAG_NAMES if header.names is not None else 0
    table = _image_table(header.names, header.scales)
    out.write(MAGIC)
    out.write(struct.pack(">BBBB", FORMAT_VERSION, flags, header.latent_prec, header.grid_bits))
    out.write(struct.pack(">H", len(mb)) + mb + header.weights_hash)
    out.write(struct.pack(">BHHHI", c, h, w, header.levels, header.n_images))
    out.write(struct.pack(">I", len(table)) + table)
    out.write(struct.pack(">IH", header.pixel_crc, len(lanes)))
    for ls in lanes:
        out.write(struct.pack(">II", ls.seed_prefix, len(ls.words)))
    for ls in lanes:
        out.write(np.asarray(ls.words, dtype=">u4").tobytes())
    body = out.getvalue()
    return body + struct.pack(">I", zlib.crc32(body))


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError("corrupt stream: truncated")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


def unpack(data: bytes) -> tuple[StreamHeader, list[LaneStream]]:
    if len(data) < 4 or data[:4] != MAGIC:
        raise FormatError("not a lossless vaecodec stream (no VCZL magic)")
    if len(data) < 9:
        raise FormatError("corrupt stream: truncated")
    version = data[4]
    if version != FORMAT_VERSION:
        raise FormatError(
            f"this stream has format version {version}; this vaecodec reads version "
            f"{FORMAT_VERSION} (use the vaecodec version that wrote it)"
        )
    body, crc = data[:-4], struct.unpack(">I", data[-4:])[0]
    if zlib.crc32(body) != crc:
        raise FormatError("corrupt stream: CRC-32 mismatch (the file is truncated or damaged)")
    r = _Reader(body)
    r.take(5)
    flags, prec, grid = r.unpack(">BBB")
    if flags & ~_FLAG_NAMES:
        raise FormatError("corrupt stream: unknown flags")
    if not 2 <= prec <= 16 or grid != PARAM_GRID_BITS:
        raise FormatError(f"corrupt stream: unsupported coding parameters (P={prec}, grid={grid})")
    (mlen,) = r.unpack(">H")
    try:
        model = r.take(mlen).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("corrupt stream: model name is not UTF-8") from None
    whash = r.take(32)
    c, h, w, levels, n = r.unpack(">BHHHI")
    if not (1 <= n <= MAX_IMAGES and c >= 1 and h >= 1 and w >= 1 and levels in (2, 256)):
        raise FormatError("corrupt stream: bad image count, size or levels")
    if n * c * h * w > MAX_TOTAL_PIXELS:
        raise FormatError(f"corrupt stream: {n} images of {c}x{h}x{w} exceed the limit of "
                          f"{MAX_TOTAL_PIXELS} pixels per stream")  # fmt: skip
    (tlen,) = r.unpack(">I")
    names, scales = _read_image_table(r.take(tlen), n, bool(flags & _FLAG_NAMES))
    pixel_crc, n_lanes = r.unpack(">IH")
    if not 1 <= n_lanes <= min(n, MAX_LANES):
        raise FormatError("corrupt stream: bad lane count")
    lane_info = [r.unpack(">II") for _ in range(n_lanes)]
    for lane, (_prefix, nw) in enumerate(lane_info):  # bound the work by the payload
        problem = payload_problem(lane, nw, len(range(lane, n, n_lanes)) * c * h * w)
        if problem:
            raise FormatError(f"corrupt stream: {problem}")
    lanes = []
    for lane, (prefix, nw) in enumerate(lane_info):
        words = np.frombuffer(r.take(4 * nw), dtype=">u4").astype(np.uint32)
        lanes.append(LaneStream(len(range(lane, n, n_lanes)), prefix, words))
    if r.pos != len(body):
        raise FormatError("corrupt stream: trailing bytes")
    header = StreamHeader(model, whash, prec, grid, (c, h, w), levels, names, scales, pixel_crc,
                          lane_info)  # fmt: skip
    return header, lanes


PIXELS_PER_PAYLOAD_BIT = 16
"""A lane must store at least one bit of ANS payload per this many pixels it decodes. Honest
streams carry far more (at least 0.4 bit per pixel of a blank image with the bundled models,
a margin of 6x or more), so a header cannot make the decoder work on pixels it has no bits for:
a crafted 217-byte stream claiming 200 000 images is refused at once instead of decoded for
minutes (issue 18, point 6)."""


def payload_problem(lane: int, n_words: int, pixels: int) -> str | None:
    """None if lane ``lane``'s ``n_words`` 32-bit words may decode ``pixels`` pixels (the rule
    of :data:`PIXELS_PER_PAYLOAD_BIT`), else what is wrong."""
    if 32 * n_words * PIXELS_PER_PAYLOAD_BIT >= pixels:
        return None
    return (f"lane {lane} holds {32 * n_words} bits of payload for {pixels} pixels; a stream "
            f"carries at least 1 bit per {PIXELS_PER_PAYLOAD_BIT} pixels")  # fmt: skip


def pixels_crc(images: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(images, dtype=np.uint8).tobytes())



def read_header(data: bytes) -> StreamHeader:
    """Parse and check a stream's header (CRC included) without decoding. FormatError if bad."""
    return unpack(data)[0]



def stream_bits_per_dim(data: bytes, n_images: int, dims: int) -> float:
    """Bits per dimension of a stream: 8·len(data) / (N·D)."""
    return 8 * len(data) / (n_images * dims) if n_images and dims else math.nan
