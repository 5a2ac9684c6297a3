"""Initial bits of a hierarchy: Bit-Swap's interleaved order against BB-ANS's (every layer first).

Usage (from the repository root)::

    python benchmarks/bitswap_initial_bits.py [--model mnist-hvae] [--images 100]
        [--out benchmarks/results]

Each of the first N binarised MNIST test images is coded alone in its own stream (one lane),
once in each order (``BitsBackCodec.encode(order=...)``), and decoded back. What a one-image
stream stores is the image's net rate (the same in both orders, up to the randomness of the
sampled latents) plus the seed bits its pops consumed before the stack had grown: the
"initial bits" Bit-Swap (Kingma, Abbeel & Ho 2019) reduces. Also codes the N images chained in
one lane (the amortised rate). Writes ``bitswap_initial_bits.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from _common import RESULTS, lower_priority


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="mnist-hvae")
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    lower_priority()

    import numpy as np
    import torch

    from vaecodec.compression.lossless import load_lossless_model
    from vaecodec.data import load_dataset
    from vaecodec.evaluate.lossless import neg_elbo_nats
    from vaecodec.models.bitsback import BitsBackCodec

    torch.set_num_threads(1)
    model, _, _, _ = load_lossless_model(args.model)
    codec = BitsBackCodec(model)
    x = load_dataset("mnist", "test", binarize="static").x[: args.images]
    sym = (x.reshape(x.shape[0], -1) > 0.5).numpy().astype(np.int32)
    elbo_bits = neg_elbo_nats(model, x).numpy() / math.log(2)
    res = {"model": args.model, "latent_layers": codec.layer_dims, "latent_prec": codec.latent_prec,
           "images": int(x.shape[0]), "neg_elbo_bits_per_image": float(elbo_bits.mean())}  # fmt: skip
    for order in ("bitswap", "bbans"):
        t0 = time.perf_counter()
        bits = []
        for row in sym:
            (s,) = codec.encode(row[None], lanes=1, order=order)
            if not np.array_equal(codec.decode([s], 1, order=order), row[None]):
                print(f"round trip failed ({order})", file=sys.stderr)
                return 1
            bits.append(32 * len(s.words))
        (chained,) = codec.encode(sym, lanes=1, order=order)
        res[order] = {
            "single_image_stream_bits": float(np.mean(bits)),
            "initial_bits": float(np.mean(bits) - elbo_bits.mean()),
            "chained_bits_per_image": 32 * len(chained.words) / len(sym),
            "seconds": time.perf_counter() - t0,
        }
        print(f"{order:8} one image alone: {np.mean(bits):7.1f} bits "
              f"(-ELBO {elbo_bits.mean():.1f}, so ~{np.mean(bits) - elbo_bits.mean():.0f} "
              f"initial bits); {len(sym)} chained: "
              f"{res[order]['chained_bits_per_image']:.1f} bits/image")  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bitswap_initial_bits.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out / 'bitswap_initial_bits.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
