"""VAE commands: train, eval, sample, reconstruct, interpolate, traverse, embed, experiment.

MODEL is a run directory written by ``vaecodec train`` or a zoo name (``vaecodec zoo``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vaecodec.errors import VaecodecError
from vaecodec.runtime import THREADS_HELP


def register(sub) -> None:
    from vaecodec.train.vae_trainer import TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train a VAE or autoencoder on MNIST, Fashion-MNIST, digits or your own data",
        description="Train a VAE (or plain autoencoder). Writes model.safetensors, config.json, "
        "metrics.jsonl, eval.json and sample / reconstruction / interpolation grids to --out, "
        "and prints the test-set evaluation.",
    )
    p.add_argument("--dataset", default=d.dataset,
                   help="mnist, fashion-mnist, digits, a directory (IDX files or image folders) "
                        "or tar shards ('DIR/shard-{000000..000009}.tar', from make-shards; "
                        "the training split is streamed)")  # fmt: skip
    p.add_argument(
        "--data-root", default=None, help="directory of IDX files for mnist/fashion-mnist"
    )
    p.add_argument("--binarize", choices=["dynamic", "static", "none"], default=d.binarize,
                   help="binarisation of the training images (the test set is binarised once, "
                   "with a fixed seed, whenever training is)")  # fmt: skip
    p.add_argument("--model", default="vae-mlp",
                   choices=["vae-mlp", "vae-conv", "ae-mlp", "ae-conv", "vaegan-conv",
                            "vaegan-mlp", "hvae-mlp"],
                   help="architecture: MLP or convolutional VAE, plain autoencoder (ae-*, no "
                   "KL), VAE-GAN, or hierarchical VAE (hvae-mlp, Bit-Swap's Markov chain of "
                   "latent layers)")  # fmt: skip
    p.add_argument("--latent-dim", type=int, default=32, help="dimensions d of the latent z")
    p.add_argument("--latent-dims", type=int, nargs="+", default=None,
                   help="hvae-mlp: dimensions of each latent layer, bottom first (default 64 32;"
                   " --hidden then gives one MLP width per layer, default 512 256)")  # fmt: skip
    p.add_argument("--hidden", type=int, nargs="+", default=None,
                   help="MLP hidden widths (default 512 512); conv: fully connected width")  # fmt: skip
    p.add_argument(
        "--channels", type=int, nargs=2, default=None, help="conv widths (default 32 64)"
    )
    p.add_argument("--likelihood", default=None,
                   choices=["bernoulli", "gaussian", "gaussian-learned", "logistic", "beta-binomial"],
                   help="decoder likelihood (default: bernoulli if binarised, else gaussian)")  # fmt: skip
    p.add_argument("--sigma", type=float, default=1.0,
                   help="decoder σ of the gaussian likelihood (initial σ if learned)")  # fmt: skip
    p.add_argument("--beta", type=float, default=1.0, help="weight β of the KL term")
    p.add_argument("--warmup-epochs", type=float, default=0.0, help="KL warm-up: ramp β from 0")
    p.add_argument("--free-bits", type=float, default=0.0, help="free bits per latent dim (nats)")
    p.add_argument("--epochs", type=int, default=30, help="passes over the training set")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per step")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (cosine decay)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and shuffling")
    p.add_argument("--out", default="runs/mnist", help="run directory to write")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out with its own settings (model, data, lr, "
                        "beta, batch size, seed, ...: a different value given with them is "
                        "refused); --epochs (the new total), --hours, --eval-iw-samples, "
                        "--tensorboard, --threads and --no-progress are this invocation's")  # fmt: skip
    p.add_argument("--tensorboard", action="store_true", help="also log to --out/tb")
    p.add_argument("--eval-iw-samples", type=int, default=100,
                   help="K of the final IWAE evaluation (0: ELBO only)")  # fmt: skip
    p.add_argument("--grad-clip", type=float, default=0.0,
                   help="clip the gradient norm to this (0: no clipping)")  # fmt: skip
    p.add_argument("--skip-threshold", type=float, default=0.0,
                   help="skip steps whose gradient norm exceeds this (0: never)")  # fmt: skip
    p.add_argument("--workers", type=int, default=d.workers,
                   help="tar shards: data-loading processes per rank (default 0: none)")
    p.add_argument("--shuffle-buffer", type=int, default=d.shuffle_buffer,
                   help="tar shards: encoded photos in each data process's shuffle buffer "
                        "(memory: about this many times the mean photo size)")  # fmt: skip
    p.add_argument("--hours", type=float, default=None,
                   help="stop after the epoch that would pass this wall-clock budget (the run "
                   "then finishes as usual; continue it with --resume)")  # fmt: skip
    g = p.add_argument_group("VAE-GAN (--model vaegan-*; Larsen et al. 2016)")
    g.add_argument("--gan-weight", type=float, default=d.gan_weight,
                   help="weight of the decoder's adversarial loss")  # fmt: skip
    g.add_argument("--feature-weight", type=float, default=d.feature_weight,
                   help="weight of the learned similarity ½‖Dis_l(x) − Dis_l(x̃)‖²")  # fmt: skip
    g.add_argument("--pixel-weight", type=float, default=d.pixel_weight,
                   help="weight of the pixel likelihood -log p(x|z) (0: Larsen's pure objective)")  # fmt: skip
    g.add_argument("--disc-lr", type=float, default=None, help="discriminator lr (default --lr)")
    g.add_argument("--gan-loss", choices=["hinge", "ns"], default=d.gan_loss,
                   help="hinge or non-saturating GAN loss")  # fmt: skip
    g.add_argument("--disc-channels", type=int, nargs="+", default=None,
                   help="discriminator widths (default 32 64 128)")  # fmt: skip
    g.add_argument("--collapse-epochs", type=int, default=d.collapse_epochs,
                   help="stop after this many epochs in a row with a collapsed discriminator "
                   "(0: never)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (one is drawn only when stderr is a terminal)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="test-set -ELBO, IWAE NLL bound, KL per dim, active units")
    _model_data_args(p)
    p.add_argument("--iw-samples", type=int, default=0, help="K for the IWAE bound (0: skip)")
    p.add_argument("--batch-size", type=int, default=500, help="test images per batch")
    p.add_argument("--max-examples", type=int, default=None, help="only the first N test images")
    p.add_argument("--seed", type=int, default=0, help="seed of the posterior samples")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--fid", action="store_true",
                   help="also FID / KID of prior samples and of reconstructions against the grey "
                   "test images, in a bundled classifier's features (not Inception-FID)")  # fmt: skip
    p.add_argument("--fid-classifier", default=None,
                   help="classifier for --fid (zoo name or run dir; default: by dataset)")  # fmt: skip
    p.add_argument("--fid-samples", type=int, default=None,
                   help="prior samples for --fid (default: as many as test images)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sample", help="decode draws from the prior N(0, I) into a grid")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("-n", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default="samples.png")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("reconstruct", help="test images (odd rows) above their reconstructions")
    _model_data_args(p)
    p.add_argument("-n", type=int, default=64)
    p.add_argument("-o", "--output", default="reconstructions.png")
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("interpolate", help="paths between the latent means of two test images")
    _model_data_args(p)
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--slerp", action="store_true", help="spherical instead of linear paths")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default="interpolations.png")
    p.set_defaults(func=cmd_interpolate)

    p = sub.add_parser("traverse", help="one row per latent dimension, highest KL first")
    _model_data_args(p)
    p.add_argument("--dims", type=int, default=None, help="rows to show (default: all)")
    p.add_argument("--steps", type=int, default=11)
    p.add_argument("--span", type=float, default=3.0, help="sweep z_u over [-span, span]")
    p.add_argument("-o", "--output", default="traverse.png")
    p.set_defaults(func=cmd_traverse)

    p = sub.add_parser("embed", help="test-set latent means coloured by label (PCA when d > 2)")
    _model_data_args(p)
    p.add_argument("--max-examples", type=int, default=10000)
    p.add_argument("-o", "--output", default="latents.png")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser(
        "experiment",
        help="AE vs VAE, fixed vs learned decoder σ, and β sweep (writes plots and JSON)",
    )
    p.add_argument("--dataset", default="mnist", help="dataset name or directory")
    p.add_argument("--out", default="runs/experiment", help="folder for the plots and JSON")
    p.add_argument("--epochs", type=int, default=10, help="epochs of each model trained")
    p.add_argument("--latent-dim", type=int, default=16, help="latent dimensions of each model")
    p.add_argument("--betas", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0],
                   help="KL weights of the beta sweep")  # fmt: skip
    p.add_argument("--iw-samples", type=int, default=100, help="K of the IWAE evaluation")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--only", nargs="+", choices=["ae-vs-vae", "sigma", "beta", "gan", "hvae"],
                   default=None,
                   help="run only these; 'gan' (AE vs VAE vs VAE-GAN with digit FID/KID) and "
                   "'hvae' (KL and active units per layer of a hierarchical VAE, with and "
                   "without warm-up / free bits) run only when named")  # fmt: skip
    p.add_argument("--gan-weight", type=float, default=1.0, help="VAE-GAN adversarial weight")
    p.add_argument("--feature-weight", type=float, default=0.0,
                   help="VAE-GAN learned-similarity weight")  # fmt: skip
    p.add_argument("--disc-lr", type=float, default=None, help="VAE-GAN discriminator lr")
    p.add_argument("--fid-classifier", default=None, help="default: the bundled one for --dataset")
    p.add_argument("--no-match-time", action="store_true",
                   help="skip the VAE trained for the VAE-GAN's training time")  # fmt: skip
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser(
        "train-classifier",
        help="train the small CNN whose features give the digit FID / KID (vaecodec eval --fid)",
    )
    p.add_argument("--dataset", default="mnist", help="dataset name or directory")
    p.add_argument("--data-root", default=None, help="directory of IDX files")
    p.add_argument("--epochs", type=int, default=4, help="passes over the training set")
    p.add_argument("--batch-size", type=int, default=128, help="images per step")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and shuffling")
    p.add_argument("--max-examples", type=int, default=None, help="use only the first N")
    p.add_argument("--out", default="runs/classifier", help="run directory to write")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (one is drawn only when stderr is a terminal)")
    p.set_defaults(func=cmd_train_classifier)


def _model_data_args(p) -> None:
    p.add_argument("model", metavar="MODEL", help="run directory or zoo name")
    p.add_argument("--dataset", default=None, help="default: the dataset the model was trained on")
    p.add_argument("--data-root", default=None, help="directory of IDX files / images")


# ----------------------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from vaecodec.train.vae_trainer import TrainConfig, train_vae

    cfg = TrainConfig(
        dataset=args.dataset, data_root=args.data_root, binarize=args.binarize, model=args.model,
        latent_dim=args.latent_dim, latent_dims=args.latent_dims, hidden=args.hidden, channels=args.channels,
        likelihood=args.likelihood, sigma=args.sigma, beta=args.beta,
        warmup_epochs=args.warmup_epochs, free_bits=args.free_bits, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, out=args.out,
        resume=args.resume, tensorboard=args.tensorboard, eval_iw_samples=args.eval_iw_samples,
        progress=not args.no_progress, gan_weight=args.gan_weight,
        feature_weight=args.feature_weight, pixel_weight=args.pixel_weight, disc_lr=args.disc_lr,
        gan_loss=args.gan_loss, disc_channels=args.disc_channels,
        collapse_epochs=args.collapse_epochs, grad_clip=args.grad_clip,
        skip_threshold=args.skip_threshold, hours=args.hours, workers=args.workers,
        shuffle_buffer=args.shuffle_buffer,
    )  # fmt: skip
    if args.resume:
        _refuse_resume_conflicts(args, cfg)
    train_vae(cfg)
    return 0


def _shown(name: str, value, old) -> str:
    def v(x):
        return " ".join(map(str, x)) if isinstance(x, (list, tuple)) else str(x)

    return f"--{name.replace('_', '-')} {v(value)} (the run's: {v(old)})"


def _refuse_resume_conflicts(args, cfg) -> None:
    """``train --resume`` with an option the run keeps at another value (``--lr 0.01`` on a
    run trained at 0.001) is refused: it would be silently ignored (issue 27 point 5)."""
    from dataclasses import fields

    from vaecodec.checkpoint import CONFIG_FILE, read_json
    from vaecodec.errors import ModelError
    from vaecodec.train.vae_trainer import resume_conflicts

    try:
        saved = read_json(Path(cfg.out) / CONFIG_FILE)["train"]
    except (VaecodecError, OSError, KeyError, TypeError):
        return  # no run there: the trainer says so
    names = {f.name for f in fields(cfg)}
    given = {d: getattr(cfg, d) for d in getattr(args, "given", ()) if d in names}
    conflicts = resume_conflicts(saved, given)
    if conflicts:
        raise ModelError(
            f"--resume continues {cfg.out} with its own settings, and these differ from the "
            f"run's: {'; '.join(_shown(*c) for c in conflicts)}. A resumed run takes "
            "only --epochs, --hours, --eval-iw-samples, --tensorboard, --threads and "
            "--no-progress from the command line: drop the others, or start a new run (another "
            "--out)"
        )


def load_vae(name):
    from vaecodec.zoo import load_model

    return load_model(name, kind="vae")


def _test_data(meta: dict, dataset: str | None, root: str | None, split: str = "test"):
    """:func:`vaecodec.data.model_test_data`, imported when a command needs it (the CLI starts
    without numpy or torch)."""
    from vaecodec.data import model_test_data

    return model_test_data(meta, dataset, root, split)


def _done(path) -> int:
    print(f"wrote {path}")
    return 0


def cmd_eval(args) -> int:
    import torch

    from vaecodec.evaluate.elbo import evaluate_vae, format_summary

    model, meta = load_vae(args.model)
    ds = _test_data(meta, args.dataset, args.data_root)
    x = ds.x[: args.max_examples] if args.max_examples else ds.x
    with torch.no_grad():
        res = evaluate_vae(model, x, iw_samples=args.iw_samples, batch_size=args.batch_size,
                           seed=args.seed, progress=not args.json and sys.stderr.isatty())  # fmt: skip
    if args.fid:
        from vaecodec.evaluate.fid import classifier_for, format_realism, realism_metrics

        grey = _test_data({**meta, "config": {**meta.get("config", {}), "likelihood": None}},
                               args.dataset, args.data_root)  # fmt: skip
        real = grey.x[: args.max_examples] if args.max_examples else grey.x
        with torch.no_grad():
            res.update(realism_metrics(model, real, recon_input=x,
                                       classifier=args.fid_classifier or classifier_for(ds.name),
                                       n_samples=args.fid_samples, seed=args.seed))  # fmt: skip
    if args.json:
        print(json.dumps(res))
    else:
        print(f"model {args.model} ({meta['model']}, d={model.latent_dim}) on {ds.name} test")
        print(format_summary(res))
        if args.fid:
            print(format_realism(res))
    return 0


def cmd_sample(args) -> int:
    from vaecodec.viz.grids import sample_grid

    model, _ = load_vae(args.model)
    if args.n < 1:
        raise VaecodecError("-n must be at least 1")
    return _done(sample_grid(model, args.output, n=args.n, seed=args.seed))


def cmd_reconstruct(args) -> int:
    from vaecodec.viz.grids import reconstruction_grid

    model, meta = load_vae(args.model)
    ds = _test_data(meta, args.dataset, args.data_root)
    return _done(reconstruction_grid(model, ds.x[: args.n], args.output, nrow=min(16, args.n)))


def cmd_interpolate(args) -> int:
    from vaecodec.viz.grids import interpolation_grid

    model, meta = load_vae(args.model)
    ds = _test_data(meta, args.dataset, args.data_root)
    return _done(interpolation_grid(model, ds.x, args.output, rows=args.rows, steps=args.steps,
                                    seed=args.seed, method="slerp" if args.slerp else "linear"))  # fmt: skip


def cmd_traverse(args) -> int:
    from vaecodec.viz.grids import traversal_grid

    model, meta = load_vae(args.model)
    try:
        x = _test_data(meta, args.dataset, args.data_root).x[:2000]
    except VaecodecError as e:
        if args.dataset:
            raise
        print(f"note: dimensions in index order ({e})", file=sys.stderr)
        x = None
    return _done(traversal_grid(model, args.output, x=x, dims=args.dims, steps=args.steps,
                                span=args.span))  # fmt: skip


def cmd_embed(args) -> int:
    from vaecodec.viz.grids import embedding_plot

    model, meta = load_vae(args.model)
    ds = _test_data(meta, args.dataset, args.data_root)
    n = args.max_examples
    return _done(embedding_plot(model, ds.x[:n], ds.labels[:n], args.output,
                                title=f"{args.model}: E_q[z|x] of {min(n, len(ds))} {ds.name} "
                                "test images"))  # fmt: skip


def cmd_experiment(args) -> int:
    from vaecodec.experiments import run_experiments

    only = args.only
    if only and "gan" in only:
        from vaecodec.experiments_gan import gan_experiment

        gan_experiment(dataset=args.dataset, out=Path(args.out), epochs=args.epochs,
                       latent_dim=args.latent_dim, gan_weight=args.gan_weight,
                       feature_weight=args.feature_weight, disc_lr=args.disc_lr,
                       fid_classifier=args.fid_classifier, match_time=not args.no_match_time,
                       iw_samples=args.iw_samples)  # fmt: skip
        only = [o for o in only if o != "gan"]
        if not only:
            return 0
    if only and "hvae" in only:
        from vaecodec.experiments_hvae import hvae_experiment

        hvae_experiment(dataset=args.dataset, out=Path(args.out), epochs=args.epochs,
                        iw_samples=args.iw_samples)  # fmt: skip
        only = [o for o in only if o != "hvae"]
        if not only:
            return 0
    run_experiments(
        dataset=args.dataset, out=Path(args.out), epochs=args.epochs,
        latent_dim=args.latent_dim, betas=args.betas, iw_samples=args.iw_samples, only=only,
    )  # fmt: skip
    return 0


def cmd_train_classifier(args) -> int:
    from vaecodec.models.classifier import train_classifier

    train_classifier(dataset=args.dataset, out=args.out, epochs=args.epochs,
                     batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                     data_root=args.data_root, max_examples=args.max_examples,
                     progress=not args.no_progress)  # fmt: skip
    return 0
