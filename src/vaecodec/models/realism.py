"""Generative ("realism") decoders: another synthesis ``g_s`` for a trained codec's files.

An MSE-trained codec at a low rate reconstructs texture (grass, hair, gravel) as a smooth
average: the expectation of everything the latents leave open. A decoder fine-tuned with an
adversarial loss instead draws *plausible* detail that was never transmitted (HiFiC: Mentzer,
Toderici, Tschannen & Agustsson 2020, "High-Fidelity Generative Image Compression", NeurIPS).
MS-ILLM (Muckley, El-Nouby, Ullrich, Jégou & Verbeek 2023, "Improving Statistical Fidelity for
Neural Image Compression with Implicit Local Likelihood Models", ICML) showed that fine-tuning
only the decoder of a fixed encoder and entropy model already buys most of it. That is what
this module ships::

    x ──g_a──> y ──Q──> y^ ──[entropy model]──> .vcz bytes     (unchanged, the MSE codec's)
                         │
                         ├──g_s (MSE)────────> x^  smooth, best PSNR
                         └──g_s (realism)────> x^  sharp, invented detail, lower PSNR

``g_a``, the gains and the entropy model are frozen, so **the same ``.vcz`` file decodes either
way**: :func:`load_realism_decoder` returns a copy of the codec whose ``g_s`` holds the
fine-tuned weights and the codec's ``codec_id``, so the ordinary ``.vcz`` decoding
(``decode_image(data, model)``, or ``model.decompress`` of the file's strings) does the rest.
Trained by ``vaecodec train-realism`` (:mod:`vaecodec.train.realism_trainer`).

A realism decoder lives in a folder (a zoo entry ``zoo/weights/<name>/`` or a training run)::

    g_s.safetensors   the synthesis transform's state dict only (fp16 in the zoo)
    realism.json      {"kind": "realism-decoder", "base_codec": "cb-vr10",
                       "base_config": {...}, "levels": [0, 1, 2], "qualities": [1, 2, 3], ...}

(``realism.json``, not ``config.json``: it is not a model the generic zoo loader can build.)
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from vaecodec.checkpoint import load_tensors, read_json
from vaecodec.errors import ModelError
from vaecodec.priors.factorized import quantize_noise

__all__ = [
    "DEFAULT_REALISM",
    "REALISM_CONFIG",
    "REALISM_WEIGHTS",
    "decoder_input",
    "load_realism_decoder",
    "realism_entries",
    "resolve_realism",
]

REALISM_CONFIG = "realism.json"
REALISM_WEIGHTS = "g_s.safetensors"
DEFAULT_REALISM = {"cb-vr10": "cb-vr10-realism"}
"""Codec family -> the bundled realism decoder for it."""


def _zoo_dir() -> Path:
    from vaecodec.zoo import ZOO_DIR

    return ZOO_DIR


def realism_entries() -> dict[str, dict]:
    """Name -> ``realism.json`` of every bundled realism decoder."""
    out = {}
    root = _zoo_dir()
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
        from vaecodec.zoo.codecs import load_codec

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
    for k, v in tensors.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise ModelError(f"{d / REALISM_WEIGHTS} holds NaN or infinite values ({k})")
    out = copy.deepcopy(codec)
    from vaecodec.checkpoint import load_state_into

    load_state_into(out.g_s, tensors, d / REALISM_WEIGHTS)
    out.eval()
    out.reset_coding()
    out.realism_levels = list(meta.get("levels") or [])
    out.realism_meta = meta
    return out


@torch.no_grad()
def decoder_input(model, x: torch.Tensor, level) -> torch.Tensor:
    """What ``g_s`` gets when a file of ``x`` is decoded: ``inv_gain * y^``, float32.

    Runs the analysis and the hyperprior in float (eval mode) and quantises as the coder does:
    ``z^ = round(z)``; the mean-scale models code ``k = round(y - mu)`` and decode
    ``y^ = k + mu`` (``mu`` from the hyper-synthesis, and for the checkerboard model from the
    context of the decoded anchors). The coder computes ``mu`` in exact fixed point on a 1/64
    grid; this float twin differs from it by less than 1/128 per element, so a rare element
    whose ``y - mu`` sits on a rounding boundary lands one step away: training sees the
    decoder's input up to that.

    Args:
        model: a hyperprior codec (scale, mean-scale or checkerboard), any mode (restored).
        x: ``[B, 3, H, W]`` in [0, 1], H and W multiples of ``model.multiple``.
        level: int or LongTensor ``[B]`` of 0-based rate levels (None: ``model.level``).
    """
    was = model.training
    model.eval()
    try:
        y = model._gain_y(model.g_a(x), level)
        z = model.h_a(model._hyper_input(y))
        z_hat = torch.round(z)
        if hasattr(model, "two_pass"):
            y_hat, _, _ = model.two_pass(y, model.h_s(z_hat))
        else:
            _, means = model._params(z_hat)
            y_hat = quantize_noise(y, False, means)
        return model._ungain_y(y_hat, level)
    finally:
        model.train(was)
