"""vaecodec: variational autoencoders as generative models and as real image codecs.

The same three objects serve both uses (see ``DESIGN.md``): an encoder q(z|x), a prior p(z)
that doubles as the entropy model, and a decoder p(x|z).
"""

__version__ = "0.1.0"

from vaecodec.errors import VaecodecError  # noqa: E402

__all__ = ["VaecodecError", "__version__"]
