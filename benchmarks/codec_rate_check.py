"""Real ``.vcz`` file sizes against the model's estimated rate (the sum of -log2 likelihoods).

Usage (from the repository root)::

    python benchmarks/codec_rate_check.py [--data ../shared/data/kodak] [--model FAMILY_OR_RUN]
        [--qualities 1 4 8] [--threads 2]

For each quality: the estimated bytes (the model's forward pass in eval mode, rounded latents,
on the padded image) and the real bytes of the complete ``.vcz`` files (header included),
summed over the folder's images, and their difference in percent.
"""

from __future__ import annotations

import argparse
import sys

from _common import kodak_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=kodak_dir())
    p.add_argument("--model", help="codec family or run directory (default: the zoo default)")
    p.add_argument("--qualities", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from vaecodec.compression.lossy import encode_image
    from vaecodec.data import list_images, read_image, to_tensor
    from vaecodec.models.codecs import pad_image
    from vaecodec.zoo.codecs import load_codec

    torch.set_num_threads(args.threads)
    images = [read_image(f)[0] for f in list_images(args.data)]
    for q in args.qualities:
        model = load_codec(args.model, q)
        est = real = 0.0
        for img in images:
            x = to_tensor(img)[None]
            with torch.no_grad():
                out = model(pad_image(x, model.multiple)[0])
            est += model.estimate_bits(out).item() / 8
            real += len(encode_image(model, img))
        print(
            f"quality {q}: estimated {est:.0f} B, real {real:.0f} B, {100 * (real / est - 1):+.2f} %"
            f" ({len(images)} images)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
