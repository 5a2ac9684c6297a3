"""Lossy: an 8-bit image and a codec model to ``.vcz`` bytes, and back. The one route.

``vaecodec compress`` / ``decompress``, the Python API (:func:`vaecodec.encode_image`),
``bench-codec`` and ``vaecodec serve`` all go through :func:`encode_image` and
:func:`decode_image`, so what a benchmark times is what a user runs::

    data = encode_image(model, image)          # uint8 [H, W, 3] (or [H, W]) -> bytes
    image, mode = decode_image(data, model)    # DecodedImage

Any size is coded (padded by edge replication to the model's multiple, cropped back);
greyscale is coded as RGB and restored to one channel; an alpha channel that is not fully
opaque is refused (the lossy codec has no alpha plane; flatten the image onto a background
first). The byte layout is :mod:`vaecodec.coding.container`'s (``docs/format.md``); the model
(``g_a`` -> quantise -> entropy-code with its prior) is :mod:`vaecodec.models.codecs`'.

A file carries a check of the integer latents it decodes to (format version 2): the decoder
compares it after entropy decoding, before the synthesis, and refuses a mismatch (damage
behind a valid CRC, a changed header field, a decoder that reconstructs other latents).
Version-1 files, which have no such check, are decoded unverified (``unpack(data)[0].check``
is None; ``vaecodec decompress`` says so).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import torch

from vaecodec.coding.container import (
    CodecId,
    Header,
    check_image_size,
    level_of_quality,
    pack,
    quality_of_level,
    unpack,
    verify_symbols,
)
from vaecodec.coding.fingerprint import state_dict_fingerprint
from vaecodec.compression import refine
from vaecodec.data.images import to_tensor
from vaecodec.errors import FormatError, ImageError
from vaecodec.models.codec_base import CodecModel
from vaecodec.models.registry import MODELS
from vaecodec.models.transforms import pad_image
from vaecodec.nn import tiling

__all__ = ["DecodedImage", "check_codec", "codec_id", "decode_image", "encode_image",
           "header_level", "latent_symbols"]  # fmt: skip


def codec_id(model) -> CodecId:
    """The :class:`CodecId` of a model: the one ``load_codec`` attached, else one made from
    its registered name and the hash of its in-memory weights."""
    cid = getattr(model, "codec_id", None)
    if cid is None:  # a model built in memory (not cached: its weights may still change)
        name = next((n for n, cls in MODELS.items() if cls is type(model)), type(model).__name__)
        cid = CodecId(name, name, state_dict_fingerprint(model.state_dict()), 1)
    if getattr(model, "levels", 0):  # variable rate: the quality is the level coded at
        cid = replace(cid, quality=quality_of_level(model.level))
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
    return level_of_quality(q)


def encode_image(model: CodecModel, image: np.ndarray, mode: str | None = None, *,
                 effort: int = 0, progress: Callable[[int, int], None] | None = None) -> bytes:
    """Compress an 8-bit image to ``.vcz`` bytes.

    Args:
        model: a codec model (``vaecodec.models.codecs``); its ``codec_id`` (set by
            ``vaecodec.zoo.codecs.load_codec``) goes into the header.
        image: uint8 ``[H, W]``, ``[H, W, 1]`` (greyscale), ``[H, W, 3]`` (RGB) or
            ``[H, W, 4]`` (RGBA, accepted only if fully opaque).
        mode: ``"L"`` or ``"RGB"`` to force the mode stored (default: from the channels).
        effort: encoder effort, 0 (one pass, the default) to
            :data:`~vaecodec.compression.refine.MAX_EFFORT`: higher efforts refine the latents
            for this image (:mod:`vaecodec.compression.refine`, stochastic Gumbel annealing)
            for :data:`~vaecodec.compression.refine.EFFORT_STEPS` Adam steps: fewer bytes
            and/or a better image, decoded by the same decoder; the time grows with the steps.
            Needs the model's lambdas (``model.lmbdas``, set by ``load_codec``).
        progress: ``progress(done, total)`` after each refinement step (effort > 0).

    Raises:
        ValueError: ``effort`` out of range, or effort > 0 with a model that does not know
            its lambdas.
        ImageError: wrong dtype / shape, a non-opaque alpha channel, a size outside
            :func:`check_image_size`'s range, or an image whose encoding would need more
            memory than ``VAECODEC_MAX_MEMORY`` (default 4 GiB; see :mod:`vaecodec.nn.tiling`,
            which runs ``g_a`` in strips above 2**21 pixels).
    """
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
    tiling.check_memory(h, w, model.g_a, decode=False, multiple=model.multiple, error=ImageError)
    effort = refine.check_effort(effort)
    lmbda = refine.model_lmbda(model) if effort else None
    # above 2**21 pixels g_a runs in strips, from the 8-bit pixels (the same bytes)
    y = None
    if tiling.uses_tiles(h, w, model.multiple):
        x8 = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]
        y = tiling.analyze_tiled(model.g_a, x8, multiple=model.multiple)
    if effort:  # the latents refined for this image, coded by the same rule
        x, _ = pad_image(to_tensor(a)[None], model.multiple)
        y, z = refine.refine_latents(model, x, refine.EFFORT_STEPS[effort], lmbda, (h, w),
                                     y0=y, progress=progress)  # fmt: skip
        out = model.compress_latents(y, z, (h, w))
    elif y is not None:
        out = model.compress_analyzed(y, (h, w))
    else:
        out = model.compress(to_tensor(a)[None])
    header = Header(codec_id(model), h, w, mode)
    symbols = latent_symbols(model, out["y_hat"], out["strings"], out["shape"])
    return pack(header, [s[0] for s in out["strings"]], symbols)


def latent_symbols(model, y_hat: torch.Tensor, strings, shape) -> list[np.ndarray]:
    """The integer latents of one image that a file's symbols check covers: ``y^`` in units
    of 1/64 (``round(64 y^)``: the means of the mean-scale models are multiples of 1/64),
    then the symbols of ``z^`` if the model has a hyper-latent; int64 ``[C, h, w]`` each.

    Args:
        y_hat: ``[1, M, h, w]`` the decoder's ``y^`` (``compress``'s ``"y_hat"`` or
            ``decompress_latents``' output).
        strings, shape: the coded strings (one list per latent) and the ``shape`` of
            ``compress`` (``z^`` is decoded from them).
    """
    y64 = torch.round(y_hat[0].detach().to("cpu", torch.float64) * 64).to(torch.int64).numpy()
    z = model.hyper_symbols(strings, shape)
    return [y64] if z is None else [y64, z[0]]


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
        FormatError: corrupt file (among others: decoded latents that do not match the
            file's symbols check), ``model`` is not the one that made it, or an image whose
            decoding would need more memory than ``VAECODEC_MAX_MEMORY`` (default 4 GiB;
            checked before anything is allocated; ``g_s`` runs in strips above 2**21 pixels).

    A version-2 file's integer latents are checked before ``g_s`` runs; a version-1 file has
    no check and is decoded unverified.
    """
    header, streams = parsed or unpack(data)
    check_codec(header, model)
    size = (header.height, header.width)
    level = header_level(header, model)
    tiling.check_memory(*size, model.g_s, decode=True, multiple=model.multiple)
    strings, shape = [[s] for s in streams], model.latent_shape(*size)
    if len(strings) != model.streams:
        raise FormatError(f"{len(strings)} coded streams given, this model codes {model.streams}")
    y_hat = model.decompress_latents(strings, shape)
    if header.check is not None:
        verify_symbols(header, len(streams), latent_symbols(model, y_hat, strings, shape))
    y_in = model.ungain(y_hat, level)
    # above 2**21 pixels g_s runs in strips, straight to 8 bits (the same pixels)
    if tiling.uses_tiles(*size, model.multiple):
        rgb = tiling.synthesize_tiled(model.g_s, y_in, image_size=size)[0].permute(1, 2, 0)
        rgb = rgb.cpu().numpy()
    else:
        x_hat = model.synthesize(y_in, size)[0]
        rgb = x_hat.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)
        rgb = rgb.cpu().numpy()
    if header.mode == "L":  # in bands of rows: a float copy of a huge image is 12 B/px
        gray = np.empty(rgb.shape[:2], dtype=np.uint8)
        for r in range(0, rgb.shape[0], 256):
            band = rgb[r : r + 256].astype(np.float32).mean(axis=2)
            gray[r : r + 256] = np.round(band).astype(np.uint8)
        return DecodedImage(gray, "L")
    return DecodedImage(np.ascontiguousarray(rgb), "RGB")
