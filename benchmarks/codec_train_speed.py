"""Seconds per training step of a learned codec, as ``vaecodec train-codec`` runs it.

Usage::

    python benchmarks/codec_train_speed.py [--threads 2] [--batch-size 8] [--crop 128] \
        [--N 64] [--M 96] [--levels 8] [--steps 20] [--warmup 5] [--no-channels-last] \
        [--device cpu|cuda] [--precision fp32|bf16] [--compile] [--timed-loop]

One step is what the trainer does per batch: forward with additive-noise quantisation (a random
gain level per image for a variable-rate model), rate-distortion loss, backward, Adam update.
The batch is random pixels, fixed across steps, so the timing leaves out the data loader
(``RandomCropImages`` keeps decoded photos in memory: cutting a batch costs about a
millisecond). Prints the median and the spread of ``--steps`` timed steps after ``--warmup``
untimed ones. Run it on an idle machine: a concurrent training run halves the numbers.

``--precision bf16`` runs ``g_a`` / ``g_s`` under bf16 autocast and ``--compile`` compiles the
model with ``torch.compile`` (the first, untimed steps compile it), as ``train-codec`` does with
those flags. On a GPU every step ends with a synchronisation so that it is timed whole; with
``--timed-loop`` the steps run back to back and the mean over the loop is printed instead
(what a trainer that does not wait for the device per step gets).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vaecodec.models.registry import build_model
from vaecodec.train.codec_trainer import rd_loss

LADDER = (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18)
LADDER10 = (0.00045, 0.0009, *LADDER)  # cb-vr10's ten levels


def ladder(levels: int) -> list[float]:
    """The lambdas of a ``levels``-level model: CompressAI's ladder from its start (up to 8),
    cb-vr10's ten from its top (9 or 10); a fixed-rate model (``levels <= 1``): 0.013."""
    if levels <= 1:
        return [0.0130]
    return list(LADDER[:levels] if levels <= len(LADDER) else LADDER10[-levels:])


def step_times(args) -> list[float]:
    torch.manual_seed(0)
    conf = {"N": args.N, "M": args.M}
    if args.levels > 1:
        conf["levels"] = args.levels
    device = torch.device(args.device)
    model = build_model(args.model, conf).to(device).train()
    if args.precision == "bf16":
        model.autocast_dtype = torch.bfloat16
    lmbdas = torch.tensor(ladder(args.levels), device=device)
    if args.levels > 1:
        model.init_gains(lmbdas.tolist())
    run = torch.compile(model) if args.compile else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=device.type == "cuda" or None)
    x = torch.rand(args.batch_size, 3, args.crop, args.crop, device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def one_step():
        if args.levels > 1:
            lv = torch.randint(args.levels, (x.shape[0],), device=device)
            r = rd_loss(run(x, lv), x, lmbdas[lv])
        else:
            r = rd_loss(run(x), x, float(lmbdas[0]))
        opt.zero_grad(set_to_none=True)
        r["loss"].backward()
        opt.step()

    for _ in range(args.warmup):
        one_step()
    sync()
    if args.timed_loop:
        t = time.perf_counter()
        for _ in range(args.steps):
            one_step()
        sync()
        return [(time.perf_counter() - t) / args.steps] * args.steps
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        one_step()
        sync()
        times.append(time.perf_counter() - t)
    return times


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mean-scale")
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--M", type=int, default=96)
    p.add_argument("--levels", type=int, default=8, help="gain levels (1: fixed rate)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--timed-loop", action="store_true", help="time the loop, not each step")
    args = p.parse_args(argv)
    if args.levels > len(LADDER10):
        p.error(f"--levels: at most {len(LADDER10)} (the lambdas of cb-vr10)")
    torch.set_num_threads(args.threads)
    t = step_times(args)
    q = statistics.quantiles(t, n=10)
    print(
        f"{args.model} N={args.N} M={args.M} levels={args.levels} batch {args.batch_size}x"
        f"{args.crop}^2, {args.threads} thread(s), channels-last {args.channels_last}, "
        f"{args.device} {args.precision}{', compiled' if args.compile else ''}: "
        f"median {statistics.median(t):.3f} s/step (10-90 %: {q[0]:.3f}-{q[-1]:.3f}, "
        f"{len(t)} steps)"
    )


if __name__ == "__main__":
    main()
