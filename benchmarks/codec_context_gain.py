"""How many bits the checkerboard context saves, on the same transforms and hyperprior.

Usage::

    python benchmarks/codec_context_gain.py [--model cb-vr10] [--data KODAK_DIR] \
        [--max-images 24] [--threads 2]

For a ``checkerboard`` codec (family or run directory) and each of its qualities, in eval mode
(no file written), mean over the images of:

- ``y bpp, context``: the estimated rate of ``y`` as coded (anchors from the hyperprior, the
  non-anchors also from the decoded anchors around them);
- ``y bpp, hyperprior only``: the rate of ``y`` if every position used the anchors' parameters
  (what the same model would spend without its context: ``ep(cat(h_s(z^), 0))``);
- the saving in percent, and the bits per element of the anchors and of the non-anchors.

Rates are ``-log2`` of the unit-bin Gaussian likelihoods (the file size agrees within ~0.5 %:
``benchmarks/codec_rate_check.py``); ``z`` is the same in both and not counted.
"""

from __future__ import annotations

import torch
from _common import learned_codec_on_images

from vaecodec.data import to_tensor
from vaecodec.nn.checkerboard import anchor_mask
from vaecodec.priors.factorized import quantize_noise


def main(argv=None) -> None:
    name, codec, images = learned_codec_on_images(
        __doc__.split("\n\n")[0],
        "checkerboard codec family or run (default: the zoo default)",
        argv,
    )
    print("| quality | y bpp, context | y bpp, hyperprior only | saving | bits/element anchors "
          "| bits/element non-anchors |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for q in codec.qualities:
        model = codec._model(q)
        if not hasattr(model, "two_pass"):
            raise SystemExit(f"{name} is a {type(model).__name__}: it has no context model")
        ctx = hyp = anc = non = 0.0
        with torch.no_grad():
            for im in images:
                x, size = model._prepare(to_tensor(im)[None])
                pixels = size[0] * size[1]
                y = model._gain_y(model.g_a(x))
                z_hat = torch.round(model.h_a(y))
                hyper = model.h_s(z_hat)
                y_hat, scales, means = model.two_pass(y, hyper)
                bits = -torch.log2(model.gaussian_conditional.likelihood(y_hat, scales, means))
                mask = anchor_mask(*y.shape[-2:], y.device).bool().expand_as(bits)
                params_a = model._ep(hyper, torch.zeros_like(y))
                s_a, m_a = params_a[:, : model.M], params_a[:, model.M :]
                y_h = quantize_noise(y, False, m_a)
                bits_h = -torch.log2(model.gaussian_conditional.likelihood(y_h, s_a, m_a))
                ctx += bits.sum().item() / pixels
                hyp += bits_h.sum().item() / pixels
                anc += bits[mask].mean().item()
                non += bits[~mask].mean().item()
        n = len(images)
        print(f"| {q} | {ctx / n:.4f} | {hyp / n:.4f} | {100 * (1 - ctx / hyp):.1f} % | "
              f"{anc / n:.3f} | {non / n:.3f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
