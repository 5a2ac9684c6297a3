"""Models registered by name, so that a config.json can rebuild the model it describes.

A registered class provides::

    cls.from_config(config: dict) -> nn.Module   # config is the "config" object of config.json
    instance.config_dict() -> dict               # JSON-serialisable, round-trips via from_config

and a class attribute ``kind`` ("vae", "codec", ...) saying which commands can use it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from vaecodec.errors import ModelError

if TYPE_CHECKING:
    import torch

MODELS: dict[str, type] = {}

# Modules whose import registers models. Listed here so that name lookup does not depend on
# which modules the caller happened to import first.
_MODEL_MODULES = (
    "vaecodec.models.vae",
    "vaecodec.models.hvae",
    "vaecodec.models.codecs",
    "vaecodec.models.vaegan",
    "vaecodec.models.classifier",
)
_loaded = False


def register_model(*names: str):
    """Class decorator registering a model class under one or more names."""

    def deco(cls):
        for n in names:
            MODELS[n] = cls
        return cls

    return deco


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for mod in _MODEL_MODULES:
        importlib.import_module(mod)
    _loaded = True


def model_names(kind: str | None = None) -> list[str]:
    """Registered model names, optionally only those of one kind."""
    _load_all()
    return sorted(n for n, c in MODELS.items() if kind is None or getattr(c, "kind", None) == kind)


def get_model_class(name: str):
    """The class registered as ``name``; :class:`ModelError` listing valid names otherwise."""
    _load_all()
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}; valid models: {', '.join(model_names())}"
        ) from None


def build_model(name: str, config: dict) -> torch.nn.Module:
    """Instantiate the model registered as ``name`` from its config dict."""
    cls = get_model_class(name)
    try:
        return cls.from_config(dict(config))
    except (TypeError, ValueError, KeyError) as e:
        raise ModelError(f"invalid config for model {name!r}: {e}") from None
