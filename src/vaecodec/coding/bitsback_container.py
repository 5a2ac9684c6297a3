"""The lossless ``VCZL`` stream: many images coded with bits-back ANS in one file.

What ``vaecodec compress --lossless`` writes and ``vaecodec decompress`` reads (the byte layout
is specified in ``docs/lossless-format.md``)::

    compress_files("mnist-vae", ["a.png", "b.png"], "digits.vczl")
    decompress_file("digits.vczl", "out/")      # -> ["out/a.png", "out/b.png"]

A stream holds: the magic ``b"VCZL"``, the format version, the coding parameters, the model
name and a hash of its weights, the image size, the number of images and each one's file name,
a CRC-32 of all pixels, the ANS words of every lane (see :mod:`vaecodec.coding.bitsback`) and a
CRC-32 of everything before it.

Inputs are 8-bit greyscale images of exactly the model's H×W (colour images whose three channels
are equal and fully opaque images with alpha are accepted, since they are grey losslessly). For a
binary (Bernoulli) model every pixel must be 0 or 255, or 0 or 1; the file records which, so the
decoded PNG has the same values. Every input is read and checked before anything is written, and
the output is written atomically.

Reading checks, in order: the magic and version, the CRC-32 of the file (truncation, bit flips),
every field's bounds, every file name (the portable set of :func:`name_problem`) and that no two
images would be written to the same file (:func:`output_key`), the model (a bundled zoo name, or
the folder the caller passes; its weights must hash to the recorded value), and after decoding
the pixels' CRC-32 and each lane's return to its seed. Any failure is a
:class:`~vaecodec.errors.FormatError`; no image is written unless all of them decoded and
verified, and then all are written together (temporary files renamed once all are written).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import struct
import sys
import unicodedata
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vaecodec.coding.bitsback import PARAM_GRID_BITS, BitsBackCodec, LaneStream
from vaecodec.errors import FormatError, ImageError, ModelError, VaecodecError
from vaecodec.fileio import (
    atomic_write_bytes,
    atomic_write_many,
    os_error_message,
    read_regular_file,
    refuse_overwriting_inputs,
)

__all__ = [
    "DEFAULT_MODEL",
    "FORMAT_VERSION",
    "MAGIC",
    "StreamHeader",
    "compress_files",
    "decode_file",
    "decompress_file",
    "decode_stream",
    "encode_stream",
    "load_lossless_model",
    "name_problem",
    "output_key",
    "output_name",
    "portable_name",
    "read_gray_image",
    "weights_hash",
    "write_images",
]

MAGIC = b"VCZL"
FORMAT_VERSION = 1
DEFAULT_MODEL = "mnist-vae"
"""The model ``compress --lossless`` uses when none is given."""

MAX_IMAGES = 1 << 24
MAX_TOTAL_PIXELS = 1 << 31  # N·C·H·W, checked before anything is allocated
MAX_NAME_BYTES = 255
MAX_LANES = 1 << 10
_SCALES = {0: 1, 1: 255}  # code -> pixel value of a binary "1"
_SCALE_CODES = {v: k for k, v in _SCALES.items()}
_FLAG_NAMES = 1  # the image table holds file names


# ---------------------------------------------------------------------------------------------
# Model identity
# ---------------------------------------------------------------------------------------------


def weights_hash(model, meta: dict | None = None) -> bytes:
    """SHA-256 identifying a model: its registered name and config, and every tensor of its
    state dict in float64 (so fp16 and fp32 copies of the same weights hash alike). 32 bytes."""
    h = hashlib.sha256()
    if meta is not None:
        h.update(json.dumps([meta.get("model"), meta.get("config")], sort_keys=True).encode())
    for k, v in sorted(model.state_dict().items()):
        a = v.detach().cpu().double().contiguous().numpy().astype("<f8")
        h.update(k.encode() + b"\0" + str(tuple(a.shape)).encode() + b"\0" + a.tobytes())
    return h.digest()


def load_lossless_model(name: str):
    """Load the VAE ``name`` (zoo name or run directory) for lossless coding.

    Returns:
        ``(model, meta, hash, stored_name)``: ``stored_name`` is the zoo name, or the absolute
        path of a run directory.

    Raises:
        ModelError: unknown model, not a VAE, or a likelihood that is not discrete.
    """
    from vaecodec.zoo import ZOO_DIR, load_model, resolve_model_dir

    d = resolve_model_dir(name)
    model, meta = load_model(d, kind="vae")
    stored = d.name if d.parent == ZOO_DIR else str(d.resolve())
    return model, meta, weights_hash(model, meta), stored


def _short(text: str, n: int = 80) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def _stream_model(name: str):
    """Load the model a stream names: only a bundled zoo model. A stream never chooses a folder
    to load (a crafted file could point anywhere, and a folder in the working directory must
    not shadow a zoo name): a stream made with a run directory is decoded by passing that
    directory (``decompress --model DIR``)."""
    from vaecodec.zoo import ZOO_DIR, zoo_entries

    if name not in zoo_entries():
        raise FormatError(
            f"this stream needs the model {_short(name)}, which is not a bundled model: pass "
            "the run directory that made it with --model (a stream never chooses a folder to "
            "load by itself)"
        )
    try:
        return load_lossless_model(str(ZOO_DIR / name))
    except ModelError as e:
        raise FormatError(f"this stream needs the model {_short(name)}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def read_gray_image(path: str | os.PathLike) -> np.ndarray:
    """Read an 8-bit greyscale image as uint8 ``[H, W]``, refusing anything that is not grey.

    RGB / palette images whose channels are all equal, and images with a fully opaque alpha
    channel, are grey without loss and accepted.

    Raises:
        ImageError: unreadable file, 16-bit or float image, colour, transparency, an animation,
            or a decompression bomb (see :func:`vaecodec.data.images.read_input_image`).
    """
    from vaecodec.data.images import read_input_image

    rgba, mode, _notes = read_input_image(path, mode="RGBA", lossless=True)
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        raise ImageError(
            f"{path}: {mode} images have more than 8 bits per pixel; lossless coding takes "
            "8-bit greyscale images (convert it to 8-bit grey first)"
        )
    if not np.all(rgba[..., 3] == 255):
        raise ImageError(f"{path}: the image has transparent pixels; lossless coding takes "
                         "8-bit greyscale images without alpha")  # fmt: skip
    g = rgba[..., 0]
    if not (np.array_equal(g, rgba[..., 1]) and np.array_equal(g, rgba[..., 2])):
        raise ImageError(f"{path}: a colour image; lossless coding takes 8-bit greyscale images")
    return np.ascontiguousarray(g)


def _binary_scale(img: np.ndarray, path) -> int:
    """255 if the pixels are in {0, 255}, 1 if in {0, 1} (255 when all are 0)."""
    vals = np.unique(img)
    if np.all(np.isin(vals, (0, 255))):
        return 255
    if np.all(np.isin(vals, (0, 1))):
        return 1
    bad = [int(v) for v in vals if v not in (0, 1, 255)][:5] or [1, 255]
    raise ImageError(
        f"{path}: the model codes binary images, so every pixel must be 0 or 255 (or 0 or 1); "
        f"found values such as {bad}. Binarise the image, or use an 8-bit model "
        "(e.g. --model mnist-vae-8bit)"
    )


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


def _check_names(names: list[str]) -> list[str]:
    """Refuse (FormatError) a name outside the portable set, or two names that would decode
    to the same file (same name, same stem, or names that differ only by case)."""
    seen: dict[str, str] = {}
    for name in names:
        problem = name_problem(name)
        if problem:
            raise FormatError(f"corrupt stream: the file name {_short(name)} is not allowed "
                              f"({problem})")  # fmt: skip
        key = output_key(name)
        if key in seen:
            raise FormatError(
                f"corrupt stream: the images {_short(seen[key])} and {_short(name)} would "
                f"both be written to {output_name(name)!r}, so one would be lost"
            )
        seen[key] = name
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


def _read_image_table(blob: bytes, n: int, has_names: bool) -> tuple[list[str] | None, list[int]]:
    limit = n * ((MAX_NAME_BYTES + 1) if has_names else 0) + n
    d = zlib.decompressobj()
    try:
        raw = d.decompress(blob, limit + 1)
    except zlib.error:
        raise FormatError("corrupt stream: the image table does not decompress") from None
    if len(raw) > limit or not d.eof or d.unused_data:
        raise FormatError("corrupt stream: bad image table")
    if len(raw) < n:
        raise FormatError("corrupt stream: image table too short")
    body, codes = raw[: len(raw) - n], raw[len(raw) - n :]
    if any(c not in _SCALES for c in codes):
        raise FormatError("corrupt stream: bad pixel scale")
    scales = [_SCALES[c] for c in codes]
    if not has_names:
        if body:
            raise FormatError("corrupt stream: bad image table")
        return None, scales
    parts = body.split(b"\0")
    if len(parts) != n + 1 or parts[-1] != b"":
        raise FormatError("corrupt stream: the image table does not hold one name per image")
    try:
        names = [p.decode("utf-8") for p in parts[:-1]]
    except UnicodeDecodeError:
        raise FormatError("corrupt stream: a file name is not UTF-8") from None
    return _check_names(names), scales


def _pack(header: StreamHeader, lanes: list[LaneStream]) -> bytes:
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


def _unpack(data: bytes) -> tuple[StreamHeader, list[LaneStream]]:
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
    lanes = []
    for lane, (prefix, nw) in enumerate(lane_info):
        words = np.frombuffer(r.take(4 * nw), dtype=">u4").astype(np.uint32)
        lanes.append(LaneStream(len(range(lane, n, n_lanes)), prefix, words))
    if r.pos != len(body):
        raise FormatError("corrupt stream: trailing bytes")
    header = StreamHeader(model, whash, prec, grid, (c, h, w), levels, names, scales, pixel_crc,
                          lane_info)  # fmt: skip
    return header, lanes


def _pixels_crc(images: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(images, dtype=np.uint8).tobytes())


# ---------------------------------------------------------------------------------------------
# Arrays <-> bytes
# ---------------------------------------------------------------------------------------------


def encode_stream(
    model,
    images: np.ndarray,
    names: list[str] | None,
    model_name: str,
    model_hash: bytes,
    scales: list[int] | None = None,
    latent_prec: int | None = None,
    lanes: int | None = None,
    codec: BitsBackCodec | None = None,
) -> bytes:
    """Encode uint8 greyscale images ``[N, H, W]`` (pixel values as on disk) into a VCZL stream.

    Args:
        model: the VAE (discrete likelihood).
        images: uint8 ``[N, H, W]``; for a binary model, values in {0, scale_i}.
        names: one file name per image (no directories), or None for anonymous images (the
            stream then stores no names; they decode as ``000000.png``, ...).
        model_name, model_hash: what the stream records to find and check the model.
        scales: per image, the value of a binary "1" (1 or 255); default 255.
        latent_prec: P (default :data:`vaecodec.coding.bitsback.DEFAULT_LATENT_PREC`).
        lanes: number of ANS lanes (default: automatic).
        codec: an existing :class:`BitsBackCodec` for ``model`` (saves the float64 copy).

    Returns:
        The stream bytes.

    Raises:
        ImageError: images of the wrong size, or not binary for a binary model.
    """
    if codec is None:
        codec = BitsBackCodec(model) if latent_prec is None else BitsBackCodec(model, latent_prec)
    images = np.asarray(images)
    c, h, w = codec.input_shape
    if images.ndim != 3 or images.shape[1:] != (h, w) or c != 1:
        raise ImageError(f"images must be [N, {h}, {w}] greyscale for this model")
    n = images.shape[0]
    if n * c * h * w > MAX_TOTAL_PIXELS:
        raise ImageError(f"too many pixels for one stream ({n} images); split the input")
    if names is not None:
        if len(names) != n:
            raise ValueError("one name per image")
        try:
            _check_names([str(v) for v in names])
        except FormatError as e:
            raise ImageError(str(e).replace("corrupt stream: ", "cannot store the names: ")
                             + " (see vaecodec.coding.bitsback_container.portable_name)") from None  # fmt: skip
    scales = [255] * n if scales is None else list(scales)
    sym = images.reshape(n, -1).astype(np.int32)
    if codec.levels == 2:
        sc = np.asarray(scales, dtype=np.int32)[:, None]
        if not np.all((sym == 0) | (sym == sc)):
            raise ImageError("a binary model codes images whose pixels are 0 or the image's scale")
        sym = (sym != 0).astype(np.int32)
    header = StreamHeader(model_name, model_hash, codec.latent_prec, PARAM_GRID_BITS,
                          (c, h, w), codec.levels, names, scales, _pixels_crc(images))  # fmt: skip
    try:
        streams = codec.encode(sym, lanes=lanes)
    except ValueError as e:
        raise VaecodecError(f"cannot encode: {e}") from None
    return _pack(header, streams)


def read_header(data: bytes) -> StreamHeader:
    """Parse and check a stream's header (CRC included) without decoding. FormatError if bad."""
    return _unpack(data)[0]


def decode_stream(data: bytes, model=None, model_hash: bytes | None = None,
                  codec: BitsBackCodec | None = None) -> tuple[StreamHeader, np.ndarray]:  # fmt: skip
    """Decode a VCZL stream into ``(header, uint8 images [N, H, W])``.

    Args:
        data: the stream bytes.
        model, model_hash: the model to use (default: load the one the header names) and its
            :func:`weights_hash`.
        codec: an existing :class:`BitsBackCodec` for ``model``.

    Raises:
        FormatError: corrupt / truncated stream, unknown or mismatching model, failed checks.
    """
    header, lanes = _unpack(data)
    if model is None:
        model, _meta, model_hash, _ = _stream_model(header.model)
    if model_hash is not None and model_hash != header.weights_hash:
        raise FormatError(
            f"this stream was made with different weights for model {header.model!r} (hash "
            f"mismatch): decode it with the exact model that wrote it"
        )
    try:
        if codec is None:
            codec = BitsBackCodec(model, header.latent_prec)
    except ModelError as e:
        raise FormatError(f"the model {header.model!r} cannot decode this stream: {e}") from None
    if codec.input_shape != header.shape or codec.levels != header.levels:
        raise FormatError(
            f"this stream holds {header.shape} images with {header.levels} levels, but the model "
            f"{header.model!r} codes {codec.input_shape} with {codec.levels} levels"
        )
    if codec.latent_prec != header.latent_prec:
        raise FormatError("the codec's latent precision does not match the stream's")
    try:
        sym = codec.decode(lanes, header.n_images)
    except (ValueError, KeyError, RuntimeError) as e:  # constriction rejects invalid states
        raise FormatError(f"corrupt stream: {e}") from None
    except BaseException as e:  # a Rust panic inside constriction (pyo3 PanicException)
        if type(e).__name__ != "PanicException":
            raise
        raise FormatError(f"corrupt stream: the entropy decoder failed ({e})") from None
    c, h, w = header.shape
    if codec.levels == 2:
        sym = sym * np.asarray(header.scales, dtype=np.int32)[:, None]
    images = sym.reshape(header.n_images, h, w).astype(np.uint8)
    if _pixels_crc(images) != header.pixel_crc:
        raise FormatError(
            "the decoded pixels fail their CRC-32: the stream is corrupt, or was made by another "
            "model or on an incompatible machine"
        )
    return header, images


# ---------------------------------------------------------------------------------------------
# Files (the entry points of `vaecodec compress --lossless` / `vaecodec decompress`)
# ---------------------------------------------------------------------------------------------


def compress_files(
    model_name: str | None, inputs: list[str], output: str, verbose: bool = True
) -> list[str]:
    """Compress greyscale images losslessly into ONE ``VCZL`` stream file with bits-back ANS.

    Args:
        model_name: zoo name or run directory of a VAE with a discrete likelihood (default
            :data:`DEFAULT_MODEL`).
        inputs: image files (PNG, BMP, PGM, ...; 8-bit grey of the model's H×W; for a binary
            model, pixels 0/255 or 0/1). Their file names (without directories) are stored;
            a name outside the portable set (:func:`name_problem`) is stored as
            :func:`portable_name` makes it, with a note on stderr. The output names
            (``<stem>.png``) must differ, also without regard to case.
        output: the stream file to write (atomically; an existing file is replaced, unless it
            is one of the inputs).
        verbose: print one summary line, and the notes about renamed files.

    Returns:
        The names stored, in input order.

    Raises:
        VaecodecError (ImageError, ModelError): a bad input, model or output; raised before
            anything is written.
    """
    if not inputs:
        raise ImageError("no input images")
    out = Path(output)
    if _is_dir(out):
        raise VaecodecError(
            f"{output} is a directory; give the stream file to write (e.g. {out / 'images.vczl'})"
        )
    refuse_overwriting_inputs([out], inputs)
    model, meta, whash, stored = load_lossless_model(model_name or DEFAULT_MODEL)
    codec = BitsBackCodec(model)
    c, h, w = codec.input_shape
    if c != 1:
        raise ModelError(
            f"lossless coding takes greyscale images; {model_name} models {c} channels"
        )
    images, names, scales, seen, notes = [], [], [], {}, []
    for p in inputs:
        name = portable_name(Path(p).name)
        if name != Path(p).name:
            notes.append(
                f"vaecodec compress: note: {p}: the file name cannot be kept "
                f"({name_problem(Path(p).name)}); it is stored as {name!r} and decompresses "
                f"as {output_name(name)!r}"
            )
        key = output_key(name)
        if key in seen:
            raise ImageError(
                f"{p} and {seen[key]} would both decompress to {output_name(name)} (file names "
                "are compared without regard to case); rename one"
            )
        seen[key] = p
        img = read_gray_image(p)
        if img.shape != (h, w):
            raise ImageError(
                f"{p} is {img.shape[1]}x{img.shape[0]} pixels, but the model "
                f"{model_name or DEFAULT_MODEL} codes {w}x{h} images"
            )
        scales.append(_binary_scale(img, p) if codec.levels == 2 else 255)
        images.append(img)
        names.append(name)
    if verbose:
        for note in notes:
            print(note, file=sys.stderr)
    data = encode_stream(model, np.stack(images), names, stored, whash, scales, codec=codec)
    try:
        atomic_write_bytes(out, data)
    except OSError as e:
        raise VaecodecError(os_error_message(out, e)) from None
    if verbose:
        bpd = 8 * len(data) / (len(images) * h * w)
        print(f"{len(images)} images -> {output}: {len(data)} bytes, {bpd:.4f} bits/dim "
              f"({8 * len(data) / len(images):.1f} bits/image, lossless)")  # fmt: skip
    return names


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:  # e.g. a name too long: not an existing folder
        return False


def decode_file(path: str, model: str | None = None) -> tuple[StreamHeader, np.ndarray]:
    """Read and decode the ``VCZL`` stream file ``path`` (see :func:`decode_stream`).

    Args:
        model: the run directory (or zoo name) of the model that wrote it; default: the
            bundled zoo model the stream names (a stream never chooses a folder to load).

    Raises:
        FormatError: unreadable (or not a regular file), corrupt, or failing a check.
        ModelError: ``model`` cannot be loaded.
    """
    data = read_regular_file(path, FormatError)
    if model is None:
        return decode_stream(data)
    m, _meta, whash, _stored = load_lossless_model(model)
    return decode_stream(data, m, whash)


def write_images(header: StreamHeader, images: np.ndarray, out_dir: str | os.PathLike,
                 protect: list[str] = ()) -> list[str]:  # fmt: skip
    """Write decoded images as ``out_dir/<stem>.png``, all or none: each goes to a temporary
    file first, and they replace their targets only once all are written (so a failure leaves
    no partial file and no existing file destroyed). ``out_dir`` is created if needed; it may
    exist (empty or not). A target that is one of ``protect`` (the inputs) is refused.

    Raises:
        VaecodecError: ``out_dir`` is a file, a target is an input, or an OS error (full
            disk, read-only or missing folder, ...), as one line.
    """
    from vaecodec.data.images import png_writer

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise VaecodecError(f"{out} is a file: give a folder as -o (it is created if needed)")
    dsts = [out / output_name(name) for name in header.file_names()]
    refuse_overwriting_inputs(dsts, protect)
    try:
        atomic_write_many([(d, png_writer(img)) for d, img in zip(dsts, images)])
    except OSError as e:
        raise VaecodecError(os_error_message(e.filename or out, e)) from None
    return [str(d) for d in dsts]


def decompress_file(path: str, out_dir: str, model: str | None = None) -> list[str]:
    """Decode a ``VCZL`` stream and write each image as ``out_dir/<stem>.png`` (pixel-identical).

    Args:
        model: the model's run directory for a stream made with one (default: the bundled zoo
            model the stream names).

    Returns:
        The paths written, in the stream's order.

    Raises:
        FormatError: not a VCZL stream, corrupt or truncated, unknown or mismatching model,
            or a failed check; nothing is written then.
        VaecodecError: the images cannot be written (see :func:`write_images`); none is.
    """
    header, images = decode_file(path, model)
    return write_images(header, images, out_dir, protect=[path])


def stream_bits_per_dim(data: bytes, n_images: int, dims: int) -> float:
    """Bits per dimension of a stream: 8·len(data) / (N·D)."""
    return 8 * len(data) / (n_images * dims) if n_images and dims else math.nan
