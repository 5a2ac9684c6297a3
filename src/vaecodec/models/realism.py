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
way**: :func:`vaecodec.zoo.realism.load_realism_decoder` returns a copy of the codec whose ``g_s`` holds the
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

import torch

from vaecodec.priors.factorized import quantize_noise

__all__ = ["decoder_input"]


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
