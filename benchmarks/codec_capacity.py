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

import argparse

import torch
from _common import kodak_dir, lower_priority

from vaecodec.data import list_images, read_image, to_tensor
from vaecodec.evaluate.metrics import psnr
from vaecodec.zoo.codecs import codec_summary, load_codec


def _to_uint8(x: torch.Tensor):
    return (x[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="codec family (default: the zoo's default) or run directory")
    p.add_argument("--data", default=kodak_dir(), help="folder of test images (default Kodak)")
    p.add_argument("--max-images", type=int)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    lower_priority()
    zoo = codec_summary()
    name = args.model or zoo["default_codec"]
    qualities = zoo["codecs"][name]["qualities"] if name in zoo["codecs"] else None
    if qualities is None:  # a run directory: its own qualities
        qualities = [load_codec(name).codec_id.quality]
        levels = getattr(load_codec(name), "levels", 0)
        qualities = list(range(1, levels + 1)) if levels else qualities
    files = list_images(args.data)[: args.max_images]
    print(f"{name} on {len(files)} images of {args.data}")
    print("| quality | bpp (estimated) | PSNR coded (dB) | PSNR unquantised (dB) | gap (dB) |")
    print("|---|---|---|---|---|")
    images = [read_image(f)[0] for f in files]
    for q in qualities:
        model = load_codec(name, q)
        bpp = coded = ceiling = 0.0
        with torch.no_grad():
            for im in images:
                x, size = model._prepare(to_tensor(im)[None])
                h, w = im.shape[:2]
                out = model(x)
                bits = sum(-torch.log2(v).sum() for v in out["likelihoods"].values())
                bpp += bits.item() / (h * w)
                coded += psnr(_to_uint8(out["x_hat"][..., :h, :w]), im)
                y = model._gain_y(model.g_a(x))
                x_c = model.g_s(model._ungain_y(y))
                ceiling += psnr(_to_uint8(x_c[..., :h, :w]), im)
        n = len(images)
        print(f"| {q} | {bpp / n:.3f} | {coded / n:.2f} | {ceiling / n:.2f} | "
              f"{(ceiling - coded) / n:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
