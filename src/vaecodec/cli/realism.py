"""``vaecodec train-realism``: a generative decoder for a trained codec's files.

Usage::

    vaecodec train-realism --codec cb-vr10 --levels 0 1 2 --data PHOTOS/ --hours 1 \\
        --threads 1 --out runs/realism [--resume]

Fine-tunes only the codec's synthesis transform ``g_s`` with a conditional PatchGAN (HiFiC,
Mentzer et al. 2020; decoder-only as in MS-ILLM, Muckley et al. 2023): the bitstream does not
change, so a ``.vcz`` file written by the MSE codec decodes with either decoder
(:func:`vaecodec.models.realism.load_realism_decoder`). See
:mod:`vaecodec.train.realism_trainer` for the losses and the run directory.
"""

from __future__ import annotations

from vaecodec.cli import add_run_args


def register(sub) -> None:
    from vaecodec.train.realism_trainer import RealismTrainConfig

    d = RealismTrainConfig()
    p = sub.add_parser("train-realism",
                       help="fine-tune a codec's decoder with an adversarial loss (same files)")
    p.add_argument("--codec", default=d.codec, help="codec family (zoo) or run directory")
    p.add_argument("--levels", type=int, nargs="+", default=d.levels,
                   help="0-based rate levels to train for (quality = level + 1); the low rates")
    p.add_argument("--data", required=True, help="folder of training photos")
    p.add_argument("--val-pattern", default=d.val_pattern,
                   help="files of --data held out for validation (not trained on)")
    p.add_argument("--val-max-images", type=int, default=d.val_max_images,
                   help="validation photos used (central 256px crops)")
    p.add_argument("--crop", type=int, default=d.crop, help="training crop side in pixels")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="crops per step")
    p.add_argument("--steps", type=int, default=d.steps,
                   help="steps in all (with --resume: the new total)")
    p.add_argument("--hours", type=float,
                   help="wall-clock budget of this invocation: checkpoint and stop after it")
    p.add_argument("--lr-g", type=float, default=d.lr_g, help="Adam learning rate of g_s")
    p.add_argument("--lr-d", type=float, default=d.lr_d,
                   help="Adam learning rate of the discriminator")
    p.add_argument("--k-mse", type=float, default=d.k_mse,
                   help="weight of the MSE on the 0-255 scale (HiFiC's k_M)")
    p.add_argument("--beta", type=float,
                   help="weight of the adversarial loss (default 0.15, HiFiC's; with --resume: "
                        "the run's, unless given)")  # fmt: skip
    p.add_argument("--gan-loss", choices=("ns", "hinge"), default=d.gan_loss,
                   help="non-saturating or hinge GAN loss")
    p.add_argument("--spectral-weight", type=float,
                   help="weight of the penalty on the decoded crops' power above the originals' "
                        "per 2-D frequency bin (dB; against the transposed convolutions' grid); "
                        "default 0 (off; with --resume: the run's, unless given)")  # fmt: skip
    p.add_argument("--peak-weight", type=float,
                   help="weight of the penalty on the grid: the decoded/original spectrum ratio "
                        "at the multiples of 1/16 cycle/px above the ratio around them (dB), "
                        "default 0 (off; with --resume: the run's, unless given)")  # fmt: skip
    p.add_argument("--spectral-low", type=float,
                   help="lowest radial frequency (cycles/pixel) the spectral penalties watch "
                        "(default 0.25, half Nyquist; with --resume: the run's, unless given)")
    p.add_argument("--d-channels", type=int, nargs="+", default=d.d_channels,
                   help="widths of the PatchGAN's stride-2 stages")
    p.add_argument("--cond-channels", type=int, default=d.cond_channels,
                   help="maps the decoded latents are projected to for the discriminator")
    p.add_argument("--log-every", type=int, default=d.log_every,
                   help="log and check the discriminator every this many steps")
    p.add_argument("--val-every", type=int, default=d.val_every,
                   help="checkpoint and validate every this many steps")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed")
    add_run_args(p, d.out, "--steps, --hours, --threads, --log-every, --val-every, "
                 "--no-progress and a given --beta, --spectral-weight, --spectral-low and "
                 "--peak-weight")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train_realism)


def run_train_realism(args) -> int:
    from vaecodec.runtime import check_threads
    from vaecodec.train.realism_trainer import RealismTrainConfig, train_realism

    cfg = RealismTrainConfig(
        codec=args.codec, levels=list(args.levels), data=args.data, val_pattern=args.val_pattern,
        val_max_images=args.val_max_images, crop=args.crop, batch_size=args.batch_size,
        steps=args.steps, hours=args.hours, lr_g=args.lr_g, lr_d=args.lr_d, k_mse=args.k_mse,
        beta=args.beta, gan_loss=args.gan_loss,
        spectral_weight=args.spectral_weight, spectral_low=args.spectral_low,
        peak_weight=args.peak_weight, d_channels=list(args.d_channels),
        cond_channels=args.cond_channels, log_every=args.log_every, val_every=args.val_every,
        seed=args.seed, threads=check_threads(args.threads), progress=not args.no_progress,
        out=args.out,
    )  # fmt: skip
    cfg._resume = bool(args.resume)
    s = train_realism(cfg)
    print(f"train-realism: {s['step']} steps, decoder in {s['out']} "
          f"({s['elapsed_s'] / 60:.1f} min this run)")  # fmt: skip
    return 0
