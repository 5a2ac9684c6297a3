"""Training a VAE-GAN (Larsen et al. 2016): the VAE loop with a discriminator step.

What ``vaecodec train --model vaegan-conv`` runs (through :func:`vaecodec.train.vae_trainer.train_vae`, which picks this loop)::

    cfg = TrainConfig(dataset="mnist", model="vaegan-conv", epochs=10, gan_weight=..., out=...)
    model, summary = train_vae(cfg)

Each step: one Adam step of the encoder + decoder on the objective of
:meth:`vaecodec.models.vaegan.VAEGAN.generator_losses` (−ELBO terms, the learned-similarity
feature term, the adversarial term), then one Adam step of the discriminator (its own learning
rate, ``disc_lr``) on the same batch's real images against the reconstructions and prior
samples just made. The data: grey-level images in [0, 1] are what the discriminator sees as real;
with ``binarize="dynamic"`` the likelihood's targets are a fresh Bernoulli sample of them.

Checkpoints, metrics and resume work as for the VAE (``model.safetensors`` + ``config.json``,
``train_state.*`` with both optimizers, ``metrics.jsonl``; atomic writes; ``resume=True``), and
so do tar shards (``dataset`` ``"DIR/shard-{000000..000123}.tar"``): the test split in memory,
the training split streamed through ``workers`` data processes and a shuffle buffer of
``shuffle_buffer`` photos, ``train examples // batch`` batches an epoch, a ``"data"`` record in
each epoch's metrics line and the streams' positions in the checkpoint, whose ``resume``
continues the exact data order (:func:`vaecodec.train.vae_run.stream_data`, the VAE's own).

GAN training can diverge. A NaN or inf loss or logit stops training at once; a *collapsed*
discriminator (it wins outright or outputs one logit for every input, see
:class:`vaecodec.models.gan.GANMonitor`) is tolerated for ``collapse_epochs - 1`` epochs and
stops training on the ``collapse_epochs``-th in a row. Either way :class:`TrainingError` says
what happened and what to try, and the run directory keeps the last good epoch: an epoch that
diverged or collapsed is never written over it.

Single process only (no DDP): the model is small enough for a CPU in minutes (from shards too:
one rank, with its ``workers`` data processes).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from vaecodec import runtime
from vaecodec.checkpoint import (
    TRAIN_STATE_JSON,
    load_train_state,
    provenance,
    save_model,
    save_train_state,
)
from vaecodec.errors import ModelError, TrainingError
from vaecodec.models.gan import GAN_LOSSES, GANMonitor
from vaecodec.models.registry import build_model


def _check(cfg) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TrainingError("VAE-GAN training runs in one process; launch it without torchrun")
    if cfg.binarize not in ("dynamic", "none"):
        raise TrainingError(
            f"a VAE-GAN trains with --binarize dynamic or none, not {cfg.binarize!r} (its "
            "discriminator sees grey levels)"
        )
    if cfg.hours is not None and not cfg.hours > 0:
        raise TrainingError(f"--hours must be a positive number of hours, not {cfg.hours}")
    if cfg.gan_loss not in GAN_LOSSES:
        raise TrainingError(f"unknown --gan-loss {cfg.gan_loss!r}; valid: {', '.join(GAN_LOSSES)}")
    for name in ("pixel_weight", "feature_weight", "gan_weight"):
        if getattr(cfg, name) < 0:
            raise TrainingError(f"--{name.replace('_', '-')} must be >= 0")


def _load(cfg):
    from vaecodec.data import load_dataset

    train = load_dataset(cfg.dataset, "train", root=cfg.data_root)
    test = load_dataset(cfg.dataset, "test", root=cfg.data_root,
                        binarize="static" if cfg.binarize != "none" else None)  # fmt: skip
    return train, test, len(train)


def train_vaegan(cfg, out: Path):
    """Train the VAE-GAN described by ``cfg`` (a :class:`~vaecodec.train.vae_trainer.TrainConfig`
    with ``model`` ``vaegan-*``); returns (model, final evaluation dict).

    Raises:
        TrainingError: NaN/inf, a collapsed discriminator, or unsupported settings.
        ModelError: ``resume`` with a run directory that is missing or inconsistent.
        DatasetError: unknown or missing dataset.
    """
    from vaecodec.data import BatchIterator
    from vaecodec.train.vae_run import is_shards, restored_model, resumed_run, stream_data

    _check(cfg)
    state = None
    if cfg.resume:  # the run's own settings first: its dataset, not the command line's default
        cfg, saved = resumed_run(cfg, out)
        model, state = restored_model(saved, out)
    if is_shards(cfg):  # the training split streamed (grey levels: the loop samples targets)
        batches, test_set, n_train = stream_data(cfg, state=state, binarize_batches=False)
    else:
        train_set, test_set, n_train = _load(cfg)
        batches = BatchIterator(train_set, cfg.batch_size, shuffle=True, seed=cfg.seed)
    if not cfg.resume:
        torch.manual_seed(cfg.seed)
        mcfg = cfg.model_config(test_set.shape)
        if cfg.disc_channels:
            mcfg["disc_channels"] = list(cfg.disc_channels)
        model = build_model(cfg.model, mcfg)
    try:
        return _loop(cfg, out, model, state, batches, test_set, n_train)
    finally:
        if not isinstance(batches, BatchIterator):
            batches.close()  # stops the data workers now, not at a later garbage collection


def _loop(cfg, out: Path, model, state, batches, test_set, n_train: int):
    from vaecodec.data import BatchIterator
    from vaecodec.train.vae_run import (
        METRICS_FILE,
        beta_at,
        epoch_data,
        finish_run,
        truncate_metrics,
        validate,
    )

    streamed = not isinstance(batches, BatchIterator)

    meta = {"model": cfg.model, "kind": "vae", "config": model.config_dict(),
            "dataset": cfg.dataset, "train": asdict(cfg), "world_size": 1, **provenance()}  # fmt: skip
    opt_g = torch.optim.Adam(model.generator_parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=cfg.disc_lr or cfg.lr,
                             betas=(0.5, 0.999))  # fmt: skip
    scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=max(1, cfg.epochs),
                                                         eta_min=o.param_groups[0]["lr"] * cfg.lr_min_factor)
              for o in (opt_g, opt_d)]  # fmt: skip
    start_epoch, bad_epochs = 0, 0
    if state is not None:
        opt_g.load_state_dict(state["optimizer"])
        opt_d.load_state_dict(state["disc_optimizer"])
        for s, k in zip(scheds, ("scheduler", "disc_scheduler")):
            s.load_state_dict(state[k])
            s.T_max = max(1, cfg.epochs)
        start_epoch = int(state["epoch"])
        torch.set_rng_state(state["rng"])
        truncate_metrics(out / METRICS_FILE, start_epoch)
        print(f"resuming {out}: {start_epoch} of {cfg.epochs} epochs done, next epoch "
              f"{start_epoch + 1}")
    runtime.announce()  # the run is set up: its thread count, if chosen from the load

    out.mkdir(parents=True, exist_ok=True)
    n_g = sum(p.numel() for p in model.generator_parameters())
    n_d = sum(p.numel() for p in model.discriminator.parameters())
    print(f"training {cfg.model} (d={cfg.latent_dim}, {model.likelihood.name} decoder, "
          f"{n_g / 1e6:.2f}M params + discriminator {n_d / 1e6:.2f}M) on {cfg.dataset} "
          f"({n_train} train{' streamed' if streamed else ''} / {len(test_set)} val, "
          f"binarize={cfg.binarize}) for "
          f"{cfg.epochs} epochs -> {out}\n"
          f"loss weights: pixel {cfg.pixel_weight:g}, feature {cfg.feature_weight:g}, "
          f"GAN {cfg.gan_weight:g} ({cfg.gan_loss}); discriminator lr {cfg.disc_lr or cfg.lr:g}")  # fmt: skip

    steps = len(batches)
    monitor = GANMonitor()
    noise = torch.Generator()
    budget = cfg.hours * 3600.0 if cfg.hours else float("inf")
    t_start, last_dt = time.time(), 0.0
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        if epoch > start_epoch and (t0 - t_start) + last_dt > budget:  # as the VAE loop does
            print(f"time budget of {cfg.hours:g} h reached after epoch {epoch}/{cfg.epochs}: "
                  f"stopping (continue with --resume)", flush=True)  # fmt: skip
            break
        sums = dict.fromkeys(("neg_elbo", "recon", "kl", "feat", "adv", "d_loss"), 0.0)
        seen = 0
        batches.set_epoch(epoch)
        noise.manual_seed(cfg.seed * 1_000_003 + epoch)
        bar = tqdm(batches, total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=None if cfg.progress else True, leave=False)  # fmt: skip
        for step, (real, _) in enumerate(bar):
            target = torch.bernoulli(real, generator=noise) if cfg.binarize == "dynamic" else real
            beta = beta_at(cfg, epoch + step / steps)
            g = model.generator_losses(target, real, beta=beta, free_bits=cfg.free_bits,
                                       pixel_weight=cfg.pixel_weight,
                                       feature_weight=cfg.feature_weight,
                                       gan_weight=cfg.gan_weight, gan_loss=cfg.gan_loss)  # fmt: skip
            if not torch.isfinite(g["loss"]):
                _diverged(out, epoch, step, f"the encoder/decoder loss became {g['loss'].item()}", cfg)
            opt_g.zero_grad(set_to_none=True)
            g["loss"].backward()
            opt_g.step()
            dl, rl, fl = model.discriminator_loss(real, g["fakes"], cfg.gan_loss)
            if not torch.isfinite(dl) or not monitor.update(rl, fl):
                _diverged(out, epoch, step, "the discriminator's loss or logits became NaN/inf", cfg)
            opt_d.zero_grad(set_to_none=True)
            dl.backward()
            opt_d.step()
            b = real.shape[0]
            seen += b
            sums["neg_elbo"] -= g["elbo"].detach().sum().item()
            sums["recon"] += g["recon"].detach().sum().item()
            sums["kl"] += g["kl"].detach().sum().item()
            for k, v in (("feat", g["feat"]), ("adv", g["adv"]), ("d_loss", dl.detach())):
                sums[k] += v.item() * b
            if step % 20 == 0:
                bar.set_postfix(neg_elbo=f"{sums['neg_elbo'] / seen:.1f}",
                                d_loss=f"{sums['d_loss'] / seen:.3f}")  # fmt: skip
        for s in scheds:
            s.step()
        d_stats = monitor.summary()
        tm = {k: v / max(seen, 1) for k, v in sums.items()}
        vm = validate(model, test_set.x)
        dt = last_dt = time.time() - t0
        rec = {"epoch": epoch + 1, "train_neg_elbo": tm["neg_elbo"], "train_recon": tm["recon"],
               "train_kl": tm["kl"], "train_feat": tm["feat"], "train_adv": tm["adv"],
               "d_loss": tm["d_loss"], "d_accuracy": d_stats["d_accuracy"],
               "d_real": d_stats["d_real"], "d_fake": d_stats["d_fake"],
               "val_neg_elbo": vm["neg_elbo"], "val_recon": vm["recon"], "val_kl": vm["kl"],
               "beta": beta_at(cfg, epoch + 1), "lr": opt_g.param_groups[0]["lr"],
               "seconds": dt, "collapsed": d_stats["collapsed"]}  # fmt: skip
        if streamed:
            data_state, rec["data"] = epoch_data(batches)
        print(f"epoch {epoch + 1:>3}/{cfg.epochs}  train -ELBO {tm['neg_elbo']:8.2f} "
              f"(recon {tm['recon']:7.2f}, KL {tm['kl']:6.2f})  feat {tm['feat']:7.2f}  "
              f"adv {tm['adv']:6.3f}  D loss {tm['d_loss']:.3f} acc {d_stats['d_accuracy']:.2f}  "
              f"val -ELBO {vm['neg_elbo']:8.2f} (KL {vm['kl']:6.2f}) nats  {dt:5.1f}s",
              flush=True)  # fmt: skip
        with open(out / METRICS_FILE, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if d_stats["collapsed"]:
            bad_epochs += 1
            print(f"warning: epoch {epoch + 1}: {d_stats['collapsed']} "
                  f"({bad_epochs}/{cfg.collapse_epochs or '∞'}); not saved over the last good "
                  "checkpoint", flush=True)  # fmt: skip
            if cfg.collapse_epochs and bad_epochs >= cfg.collapse_epochs:
                _diverged(out, epoch, steps - 1, d_stats["collapsed"] + f" for {bad_epochs} "
                          "epoch(s) in a row", cfg)  # fmt: skip
            continue
        bad_epochs = 0
        save_model(out, model, meta)
        save_train_state(out, {
            "model": model.state_dict(), "optimizer": opt_g.state_dict(),
            "disc_optimizer": opt_d.state_dict(), "scheduler": scheds[0].state_dict(),
            "disc_scheduler": scheds[1].state_dict(), "epoch": epoch + 1,
            "rng": torch.get_rng_state(), **({"data": data_state} if streamed else {}),
        })  # fmt: skip
    model.eval()
    summary = finish_run(model, test_set, out, cfg, meta)
    return model, summary


def _diverged(out: Path, epoch: int, step: int, what: str, cfg) -> None:
    """Raise the :class:`TrainingError` of a diverged run, naming its last good checkpoint."""
    last = "no epoch finished well, so nothing was saved"
    if (out / TRAIN_STATE_JSON).is_file():
        last = f"{_saved_epoch(out)} is in {out} (continue with --resume)"
    raise TrainingError(
        f"VAE-GAN training diverged at epoch {epoch + 1}, step {step + 1}: {what}. Try a lower "
        f"--gan-weight (now {cfg.gan_weight:g}) or --disc-lr (now {cfg.disc_lr or cfg.lr:g}), "
        f"or --gan-loss {'ns' if cfg.gan_loss == 'hinge' else 'hinge'}; {last}"
    )


def _saved_epoch(out: Path) -> str:
    try:
        return f"the last good checkpoint (epoch {int(load_train_state(out)['epoch'])})"
    except (ModelError, KeyError, TypeError, ValueError):
        return "the last good checkpoint"
