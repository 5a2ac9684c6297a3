"""The ``.vcz`` file format of the learned image codecs (specified in ``docs/format.md``).

A file is a compact header, the entropy-coded streams, and a CRC32 of everything before it::

    magic "VCZ1" | version u8 | model type u8 | mode/streams u8 | codec name (u8 length + UTF-8)
    | weights hash (8 bytes) | quality u8 | height u16 | width u16
    | length of each stream but the last (LEB128 varints) | streams | CRC32 u32

(integers big-endian). Header and CRC take 25 bytes plus the codec name plus 1-2 bytes per
extra stream, so that they cost little next to a small image's payload. Reading checks, in order: the magic (a lossless ``VCZL``
stream gets its own message), the version, the CRC (catches truncation and bit flips), the
field bounds, and the image size (at most 2**15 per side and 2**28 pixels, refused before
anything is allocated). Every failure is a :class:`~vaecodec.errors.FormatError`; nothing is
decoded from a file that fails a check.

Image level: :func:`encode_image` / :func:`decode_image` turn an 8-bit image into file bytes
with a codec model and back. Any size is coded (padded by edge replication to the model's
multiple, cropped back); greyscale is coded as RGB and restored to one channel; an alpha
channel that is not fully opaque is refused (the lossy codec has no alpha plane; flatten the
image onto a background first).
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from vaecodec.errors import FormatError, ImageError

if TYPE_CHECKING:
    from vaecodec.models.codecs import CodecModel

__all__ = [
    "FORMAT_VERSION",
    "LOSSLESS_MAGIC",
    "MAGIC",
    "MAX_PIXELS",
    "MAX_SIDE",
    "MODEL_CODES",
    "CodecId",
    "DecodedImage",
    "Header",
    "check_codec",
    "check_image_size",
    "codec_id",
    "decode_image",
    "encode_image",
    "pack",
    "state_dict_hash",
    "unpack",
]

MAGIC = b"VCZ1"
"""First four bytes of a lossy ``.vcz`` file."""
LOSSLESS_MAGIC = b"VCZL"
"""First four bytes of a lossless (bits-back) stream, handled by ``coding.bitsback_container``."""
FORMAT_VERSION = 1
"""Version of the layout below; a reader refuses other versions."""
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
    image's (``mode`` ``"RGB"`` or ``"L"``)."""

    codec: CodecId
    height: int
    width: int
    mode: str


def state_dict_hash(state_dict) -> bytes:
    """8-byte id of in-memory weights: SHA-256 of their safetensors serialisation (the same
    bytes :func:`vaecodec.checkpoint.save_model` writes, so it equals the file's hash)."""
    from safetensors.torch import save

    flat = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    return hashlib.sha256(save(flat)).digest()[:8]


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


def pack(header: Header, streams: list[bytes]) -> bytes:
    """Serialise a header and the entropy-coded streams to ``.vcz`` bytes.

    Raises:
        ValueError: a field does not fit the format.
    """
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
    out.write(MAGIC)
    out.write(struct.pack(_FIXED, FORMAT_VERSION, MODEL_CODES[c.model],
                          _MODES[header.mode] | len(streams) << 4))  # fmt: skip
    out.write(bytes([len(name)]) + name + c.weights_hash)
    out.write(struct.pack(">BHH", c.quality, header.height, header.width))
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
        ``(header, streams)``.

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
    if data[4] != FORMAT_VERSION:
        raise FormatError(
            f".vcz format version {data[4]}, but this vaecodec reads version {FORMAT_VERSION}: "
            "decode it with the vaecodec version that wrote it"
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
    lengths = [r.varint() for _ in range(n_streams - 1)]
    rest = len(body) - r.pos - sum(lengths)
    if rest < 0:
        raise FormatError("corrupt file: stream lengths exceed the file size")
    streams = [r.take(n) for n in [*lengths, rest]]
    codec = CodecId(name, _MODEL_NAMES[model_code], weights_hash, quality)
    return Header(codec, height, width, _MODE_NAMES[mode]), streams


# ---------------------------------------------------------------------------------------------
# Image level
# ---------------------------------------------------------------------------------------------
def codec_id(model) -> CodecId:
    """The :class:`CodecId` of a model: the one ``load_codec`` attached, else one made from
    its registered name and the hash of its in-memory weights."""
    cid = getattr(model, "codec_id", None)
    if cid is None:  # a model built in memory (not cached: its weights may still change)
        from vaecodec.models.registry import MODELS

        name = next((n for n, cls in MODELS.items() if cls is type(model)), type(model).__name__)
        cid = CodecId(name, name, state_dict_hash(model.state_dict()), 1)
    if getattr(model, "levels", 0):  # variable rate: the quality is the level coded at
        cid = replace(cid, quality=int(model.level) + 1)
    return cid


def header_level(header: Header, model) -> int | None:
    """The rate level a variable-rate ``model`` must decode ``header``'s file at (its quality
    - 1), or None for a fixed-rate model.

    Raises:
        FormatError: the quality is not one of the model's levels.
    """
    levels = getattr(model, "levels", 0)
    if not levels:
        return None
    q = header.codec.quality
    if not 1 <= q <= levels:
        raise FormatError(
            f"the file claims quality {q}, but its model has qualities 1..{levels}: "
            "the file is corrupt or was made by other weights"
        )
    return q - 1


def encode_image(model: CodecModel, image: np.ndarray, mode: str | None = None) -> bytes:
    """Compress an 8-bit image to ``.vcz`` bytes.

    Args:
        model: a codec model (``vaecodec.models.codecs``); its ``codec_id`` (set by
            ``vaecodec.zoo.codecs.load_codec``) goes into the header.
        image: uint8 ``[H, W]``, ``[H, W, 1]`` (greyscale), ``[H, W, 3]`` (RGB) or
            ``[H, W, 4]`` (RGBA, accepted only if fully opaque).
        mode: ``"L"`` or ``"RGB"`` to force the mode stored (default: from the channels).

    Raises:
        ImageError: wrong dtype / shape, a non-opaque alpha channel, or a size outside
            :func:`check_image_size`'s range.
    """
    from vaecodec.data.images import to_tensor

    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ImageError(f"expected a uint8 image, got {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ImageError(f"expected an image [H, W] or [H, W, 1|3|4], got shape {a.shape}")
    if a.shape[2] == 4:
        if int(a[:, :, 3].min()) < 255:
            raise ImageError(
                "the image has transparent pixels: the lossy codec has no alpha channel. "
                "Flatten it onto a background first (e.g. with an image editor or Pillow's "
                "Image.alpha_composite)"
            )
        a = a[:, :, :3]
    if mode is None:
        mode = "L" if a.shape[2] == 1 else "RGB"
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    h, w = a.shape[:2]
    check_image_size(h, w, ImageError)
    out = model.compress(to_tensor(a)[None])
    return pack(Header(codec_id(model), h, w, mode), [s[0] for s in out["strings"]])


def check_codec(header: Header, model) -> None:
    """Raise :class:`FormatError` unless ``model`` holds the weights that made the file."""
    want, have = header.codec, codec_id(model)
    if want.model != have.model or want.weights_hash != have.weights_hash:
        raise FormatError(
            f"this file was made by {want.describe()}, but the model given is "
            f"{have.describe()}: decode it with the model that made it (--model)"
        )


class DecodedImage(NamedTuple):
    """What :func:`decode_image` returns (a named pair: ``image, mode = decode_image(...)``
    works too)."""

    image: np.ndarray
    """uint8 ``[H, W, 3]`` for ``"RGB"``, ``[H, W]`` for ``"L"``."""
    mode: str
    """``"RGB"`` or ``"L"`` (greyscale), as the encoder's input was."""


def decode_image(data: bytes, model: CodecModel,
                 parsed: tuple[Header, list[bytes]] | None = None) -> DecodedImage:
    """Decompress ``.vcz`` bytes with ``model``.

    Args:
        data: the file's bytes.
        model: the codec model that made it (checked against the header).
        parsed: ``unpack(data)`` if the caller already has it.

    Returns:
        :class:`DecodedImage` ``(image, mode)``: uint8 ``[H, W, 3]`` for ``"RGB"``,
        ``[H, W]`` for ``"L"``.

    Raises:
        FormatError: corrupt file, or ``model`` is not the one that made it.
    """
    import torch

    header, streams = parsed or unpack(data)
    check_codec(header, model)
    size = (header.height, header.width)
    x_hat = model.decompress(
        [[s] for s in streams], model.latent_shape(*size), size, level=header_level(header, model)
    )[0]
    rgb = x_hat.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    if header.mode == "L":
        gray = np.round(rgb.astype(np.float32).mean(axis=2)).astype(np.uint8)
        return DecodedImage(gray, "L")
    return DecodedImage(np.ascontiguousarray(rgb), "RGB")
