"""Where a learned codec's distortion comes from: the transforms or the quantisation.

Usage::

    python benchmarks/codec_capacity.py [--model ms-vr8] [--data KODAK_DIR] [--max-images 24] \
        [--threads 2]

For every quality of the codec and every image it computes, in eval mode (no file is written):

- ``bpp``: the model's estimated rate, ``sum(-log2 likelihoods of y_hat and z_hat) / pixels``;
- ``PSNR coded``: ``g_s`` of the rounded latents (what decoding a ``.vcz`` gives, up to the
  exact-integer hyper-synthesis);
- ``PSNR unquantised``: ``g_s(g_a(x))`` with the gain and inverse gain of the level but no
  rounding — the ceiling that the transforms allow whatever the rate.

PSNR is dB on the 8-bit RGB reconstruction (mean over images). When the unquantised ceiling is
close to the coded PSNR, spending more bits cannot help: the analysis / synthesis transforms
(their size or their training) limit the quality, not the entropy model.
"""

from __future__ import annotations

import torch
from _common import learned_codec_on_images

from vaecodec.data import to_tensor
from vaecodec.evaluate.metrics import psnr
from vaecodec.models.codecs import crop_image


def main(argv=None) -> None:
    _, codec, images = learned_codec_on_images(
        __doc__.split("\n\n")[0],
        "codec family (default: the zoo's default) or run directory",
        argv,
    )
    print("| quality | bpp (estimated) | PSNR coded (dB) | PSNR unquantised (dB) | gap (dB) |")
    print("|---|---|---|---|---|")
    for q in codec.qualities:
        model = codec._model(q)
        bpp = coded = ceiling = 0.0
        with torch.no_grad():
            for im in images:
                x, size = model._prepare(to_tensor(im)[None])
                out = model(x)
                bpp += model.estimate_bits(out).item() / (size[0] * size[1])
                coded += psnr(crop_image(out["x_hat"], size), im)
                x_c = model.g_s(model._ungain_y(model._gain_y(model.g_a(x))))
                ceiling += psnr(crop_image(x_c, size), im)
        n = len(images)
        print(f"| {q} | {bpp / n:.3f} | {coded / n:.2f} | {ceiling / n:.2f} | "
              f"{(ceiling - coded) / n:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
