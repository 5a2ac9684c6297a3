"""The public Python API: what ``vaecodec.__all__`` names, stable across releases.

Everything here is also importable from ``vaecodec`` itself (``vaecodec.load_vae``, ...), which
imports this module (and torch) only when one of these names is first used. The README's
"Python API" section shows each in use; ``tests/test_readme.py`` runs those snippets.

Generative models::

    vae = load_vae("mnist-vae")               # a VAE, eval mode: encode / decode / sample / forward

Image codecs (``.vcz`` bytes; a file is those bytes)::

    codec = load_codec("cb-vr10", quality=5)
    data = encode_image(codec, image)          # uint8 [H, W, 3] or [H, W] -> bytes
    image, mode = decode_image(data, codec)    # a DecodedImage(image, mode)

Lossless bits-back coding of greyscale arrays (``VCZL`` bytes, what ``compress --lossless``
writes)::

    data = compress_lossless(images, "mnist-vae")   # uint8 [N, H, W] -> bytes
    images = decompress_lossless(data)              # the same pixels

Training your own: :func:`build_model` makes any registered model (``vae-mlp``, ``ae-conv``,
``mean-scale``, ``checkerboard``, ...); a codec's ``forward(x)`` returns
``{"x_hat", "likelihoods"}`` (CompressAI's convention) and a VAE's ``forward(x)`` returns
``{"loss", "elbo", "recon", "kl", "kl_per_dim"}``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaecodec.compression.lossy import DecodedImage, decode_image, encode_image
from vaecodec.models.registry import build_model, model_names
from vaecodec.models.vae import VAE
from vaecodec.zoo import LoadedModel, load_model
from vaecodec.zoo.codecs import load_codec

__all__ = [
    "DecodedImage",
    "LoadedModel",
    "build_model",
    "compress_lossless",
    "decode_image",
    "decompress_lossless",
    "encode_image",
    "load_codec",
    "load_model",
    "load_vae",
    "model_names",
]


def load_vae(name_or_path: str | Path) -> VAE:
    """A VAE (or plain autoencoder) by zoo name (``mnist-vae``, ``mnist-vae-8bit``) or run
    directory of ``vaecodec train``, in eval mode on the CPU.

    Its config.json (recipe, dataset, metrics) is ``load_model(name_or_path).meta``.

    Raises:
        ModelError: unknown name, missing or corrupt files, or not a VAE.
    """
    return load_model(name_or_path, kind="vae").model


def compress_lossless(images: np.ndarray, model: str | Path = "mnist-vae") -> bytes:
    """Code greyscale images losslessly with bits-back ANS into one ``VCZL`` stream.

    Args:
        images: uint8 ``[N, H, W]`` of the model's size (28x28 for the bundled models); for
            a binary model (``mnist-vae``) every pixel is 0 or 255.
        model: zoo name or run directory of a VAE with a discrete likelihood. The stream
            records it: a zoo model is found again by :func:`decompress_lossless`, a run
            directory must be given to it.

    Returns:
        The stream's bytes (``vaecodec decompress`` reads them from a file, too).

    Raises:
        ImageError: wrong shape, or pixels a binary model cannot code.
        ModelError: the model is not a VAE with a discrete likelihood.
    """
    from vaecodec.compression.lossless import encode_stream, load_lossless_model

    vae, _meta, whash, stored = load_lossless_model(str(model))
    return encode_stream(vae, np.asarray(images), None, stored, whash)


def decompress_lossless(data: bytes, model: str | Path | None = None) -> np.ndarray:
    """The images of a ``VCZL`` stream: uint8 ``[N, H, W]``, pixel for pixel as coded.

    Args:
        data: the stream's bytes.
        model: the run directory of the model that wrote it; default: the bundled zoo model
            the stream names.

    Raises:
        FormatError: corrupt or truncated data, or another model than the one that wrote it.
    """
    from vaecodec.compression.lossless import decode_stream, load_lossless_model

    if model is None:
        return decode_stream(data)[1]
    vae, _meta, whash, _stored = load_lossless_model(str(model))
    return decode_stream(data, vae, whash)[1]
