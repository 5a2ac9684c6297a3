"""How much each rate level of a variable-rate codec pulls on the shared weights.

Usage::

    python benchmarks/codec_level_gradients.py --model ../shared/models/cb128-h200 \
        [--data ../shared/data/photos --exclude 'bsd100__*'] [--crop 128] [--batch-size 8] \
        [--batches 2] [--threads 2]

For every level ``k`` of ``--model`` (a zoo family or run directory), the same training
batches (random crops of ``--data``, additive-noise quantisation as in training) are scored at
that level alone and the norm of the gradient of the level's loss over all parameters is
printed, unweighted (``uniform``) and weighted as ``train-codec --level-weighting
inverse-lmbda`` weights it (:func:`vaecodec.train.codec_trainer.level_weights`). When one
level's gradient is hundreds of times another's, gradient clipping and Adam's normalisation
spend almost every update on the large one: the small one is barely trained.
"""

from __future__ import annotations

import argparse
import fnmatch

import torch

from vaecodec.data import RandomCropImages, list_images
from vaecodec.train.codec_trainer import level_weights, rd_loss
from vaecodec.zoo import load_model
from vaecodec.zoo.codecs import resolve_codec


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="variable-rate codec: zoo family or run dir")
    p.add_argument("--data", default="../shared/data/photos", help="folder of training photos")
    p.add_argument("--exclude", default="bsd100__*", help="glob of files left out (validation)")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batches", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, meta = load_model(resolve_codec(args.model)[0], kind="codec")
    lmbdas = [float(v) for v in meta.get("lmbdas") or []]
    if not model.levels or len(lmbdas) != model.levels:
        raise SystemExit(f"{args.model} is not a variable-rate codec with recorded lambdas")
    model.train()
    files = [f for f in list_images(args.data) if not fnmatch.fnmatch(f.name, args.exclude)]
    crops = RandomCropImages(files, crop=args.crop, cache=False)
    idx = torch.randperm(len(crops))[: args.batch_size * args.batches].tolist()
    batches = [
        torch.stack([crops[i] for i in idx[b :: args.batches]]).contiguous(
            memory_format=torch.channels_last
        )
        for b in range(args.batches)
    ]
    weights = level_weights(lmbdas, "inverse-lmbda")
    print(f"{args.model}: {len(lmbdas)} levels, {args.batches} batch(es) of "
          f"{args.batch_size} x {args.crop}^2 crops of {args.data}")  # fmt: skip
    print("level  lambda    loss    bpp    |grad| uniform  |grad| inverse-lmbda")
    for k, lm in enumerate(lmbdas):
        model.zero_grad(set_to_none=True)
        loss = bpp = 0.0
        for x in batches:
            lv = torch.full((x.shape[0],), k)
            r = rd_loss(model(x, lv), x, torch.full((x.shape[0],), lm))
            (r["loss"] / len(batches)).backward()
            loss += r["loss"].item() / len(batches)
            bpp += r["bpp"].item() / len(batches)
        g = torch.sqrt(sum((q.grad**2).sum() for q in model.parameters() if q.grad is not None))
        print(f"{k:>5}  {lm:<8g} {loss:7.4f} {bpp:6.3f}  {g.item():14.4f}  "
              f"{g.item() * weights[k]:20.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
