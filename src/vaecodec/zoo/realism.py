"""Realism decoders in the zoo: find one by name and load it into a copy of its codec.

A realism decoder (:mod:`vaecodec.models.realism`: HiFiC, Mentzer et al. 2020; decoder-only
fine-tuning as in MS-ILLM, Muckley et al. 2023) is a folder, a zoo entry
``zoo/weights/<name>/`` or a ``vaecodec train-realism`` run::

    g_s.safetensors   the synthesis transform's state dict only (fp16 in the zoo)
    realism.json      {"kind": "realism-decoder", "base_codec": "cb-vr10",
                       "base_config": {...}, "levels": [0, 1, 2], "qualities": [1, 2, 3], ...}

(``realism.json``, not ``config.json``: it is not a model the generic zoo loader can build.)
``vaecodec decompress --realism`` decodes a ``.vcz`` file of the MSE codec with it.
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from vaecodec.checkpoint import load_state_into, load_tensors, read_json, require_finite
from vaecodec.errors import ModelError
from vaecodec.zoo import ZOO_DIR
from vaecodec.zoo.codecs import load_codec

__all__ = [
    "DEFAULT_REALISM",
    "REALISM_CONFIG",
    "REALISM_WEIGHTS",
    "load_realism_decoder",
    "realism_entries",
    "resolve_realism",
]

REALISM_CONFIG = "realism.json"
REALISM_WEIGHTS = "g_s.safetensors"
DEFAULT_REALISM = {"cb-vr10": "cb-vr10-realism", "cb-mix11": "cb-vr10-realism"}
"""Codec family -> the bundled realism decoder for it."""


def realism_entries() -> dict[str, dict]:
    """Name -> ``realism.json`` of every bundled realism decoder."""
    out = {}
    root = ZOO_DIR
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if (d / REALISM_CONFIG).is_file():
                out[d.name] = {**read_json(d / REALISM_CONFIG), "_dir": str(d)}
    return out


def resolve_realism(name_or_dir: str | Path) -> Path:
    """The folder of a realism decoder: a zoo name (``cb-vr10-realism``), a codec family name
    with a bundled realism decoder (``cb-vr10``), or a folder holding ``realism.json``.

    Raises:
        ModelError: none of these, listing the bundled ones.
    """
    name = str(name_or_dir)
    entries = realism_entries()
    if isinstance(name_or_dir, str) and "/" not in name:
        name = DEFAULT_REALISM.get(name, name)
        if name in entries:
            return Path(entries[name]["_dir"])
    p = Path(name_or_dir)
    if p.is_file() and p.name in (REALISM_CONFIG, REALISM_WEIGHTS):
        p = p.parent
    if (p / REALISM_CONFIG).is_file():
        return p
    names = ", ".join(entries) or "none bundled"
    raise ModelError(
        f"no realism decoder {str(name_or_dir)[:80]!r}: not a bundled one ({names}) and not a "
        f"folder with {REALISM_CONFIG} (written by `vaecodec train-realism`)"
    )


def load_realism_decoder(codec, realism: str | Path | None = None, quality: int | None = None):
    """A copy of a codec that decodes with the generative synthesis transform.

    Args:
        codec: a loaded codec model (:func:`vaecodec.zoo.codecs.load_codec`'s result: its
            ``codec_id`` and ``level`` are kept), or a codec family name / run directory
            (loaded here with ``quality``).
        realism: the realism decoder (zoo name, or a folder with ``realism.json``); default:
            the one bundled for ``codec``'s family (``cb-vr10`` -> ``cb-vr10-realism``).
        quality: only when ``codec`` is a name: the quality to load it at.

    Returns:
        A deep copy of the codec in eval mode whose ``g_s`` holds the realism weights, with
        ``realism_levels`` (the 0-based levels the decoder was trained for) and
        ``realism_meta`` set. ``g_a``, gains and entropy model are the codec's, so a
        file written by the MSE codec decodes into an image of the same size with
        ``decode_image(vcz_bytes, realism_model)`` (the same function and
        header check as for the MSE codec; the copy keeps the codec's ``codec_id``) or
        ``realism_model.decompress(strings, shape, size, level)``. The input model is not
        modified.

    Raises:
        ModelError: no realism decoder for this codec, or one made for other weights (its
            recorded architecture differs from the codec's).

    HiFiC (Mentzer et al. 2020); decoder-only fine-tuning as in MS-ILLM (Muckley et al. 2023).
    A file coded at a level outside ``realism_levels`` still decodes, but the decoder was not
    trained there (expect a worse image than the MSE decoder's).
    """
    if not isinstance(codec, nn.Module):
        family = str(codec)
        codec = load_codec(codec, quality)
    else:
        family = getattr(getattr(codec, "codec_id", None), "name", None)
    if realism is None:
        if family not in DEFAULT_REALISM:
            raise ModelError(
                f"no realism decoder is bundled for codec {family!r} (bundled for: "
                f"{', '.join(DEFAULT_REALISM)}); pass one trained by `vaecodec train-realism`"
            )
        realism = DEFAULT_REALISM[family]
    d = resolve_realism(realism)
    meta = read_json(d / REALISM_CONFIG)
    want = meta.get("base_config")
    have = codec.config_dict() if hasattr(codec, "config_dict") else None
    if want is not None and have is not None and dict(want) != dict(have):
        raise ModelError(
            f"the realism decoder in {d} was trained for a codec with config {want}, "
            f"this codec has {have}"
        )
    tensors = load_tensors(d / REALISM_WEIGHTS)
    require_finite(tensors, d / REALISM_WEIGHTS)
    out = copy.deepcopy(codec)
    load_state_into(out.g_s, tensors, d / REALISM_WEIGHTS)
    out.eval()
    out.reset_coding()
    out.realism_levels = list(meta.get("levels") or [])
    out.realism_meta = meta
    return out
