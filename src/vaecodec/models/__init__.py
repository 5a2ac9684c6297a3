"""Models: what is trained and what codes. Registered by name (:mod:`.registry`:
``build_model("checkerboard", {...})``).

- Generative: :mod:`.vae` (VAE and plain AE, MLP / conv), :mod:`.vaegan` and :mod:`.gan`
  (VAE-GAN, PatchGAN discriminator), :mod:`.classifier` (the digit-FID feature network).
- Image codecs: :mod:`.transforms` (``g_a``, ``g_s``, padding), :mod:`.exact` (the integer
  engine that makes ``h_s`` bit-exact), :mod:`.codec_base` (``CodecModel``: gains, coding
  caches, rate), :mod:`.codecs` (factorized, hyperprior, mean-scale, checkerboard),
  :mod:`.realism` (the generative decoder of a frozen codec).
- Lossless: :mod:`.bitsback` (BB-ANS with a VAE).

Models know priors (:mod:`vaecodec.priors`) and the coder (:mod:`vaecodec.coding`); files,
headers and images on disk are :mod:`vaecodec.compression`'s.
"""

from vaecodec.models.registry import build_model, get_model_class, model_names, register_model

__all__ = ["build_model", "get_model_class", "model_names", "register_model"]
