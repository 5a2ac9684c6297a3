"""vaecodec: variational autoencoders as generative models and as real image codecs.

The same three objects serve both uses (see ``DESIGN.md``): an encoder q(z|x), a prior p(z)
that doubles as the entropy model, and a decoder p(x|z).

The public Python API is what ``__all__`` names (documented in :mod:`vaecodec.api` and the
README's "Python API" section)::

    import vaecodec
    vae = vaecodec.load_vae("mnist-vae")
    codec = vaecodec.load_codec("cb-vr10", quality=5)
    data = vaecodec.encode_image(codec, image)

``import vaecodec`` itself stays light: torch is imported when one of these names is first
used.
"""

__version__ = "0.1.0"

from vaecodec.errors import (  # noqa: E402
    DatasetError,
    FormatError,
    ImageError,
    ModelError,
    TrainingError,
    VaecodecError,
)

_API = (
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
)

__all__ = [
    *_API,
    "DatasetError",
    "FormatError",
    "ImageError",
    "ModelError",
    "TrainingError",
    "VaecodecError",
    "__version__",
]


def __getattr__(name: str):
    if name in _API:
        from vaecodec import api

        return getattr(api, name)
    raise AttributeError(f"module 'vaecodec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
