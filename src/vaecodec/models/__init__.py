"""Models: VAEs and autoencoders (``vae``), image codecs (``codecs``), and the name registry."""

from vaecodec.models.registry import build_model, get_model_class, model_names, register_model

__all__ = ["build_model", "get_model_class", "model_names", "register_model"]
