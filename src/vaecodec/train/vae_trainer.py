"""Training a VAE: one readable loop.

Usage (what ``vaecodec train`` runs)::

    cfg = TrainConfig(dataset="mnist", model="vae-mlp", latent_dim=32, epochs=10, out="runs/m")
    model, summary = train_vae(cfg)

Per epoch: train −ELBO, reconstruction and KL (nats per example, from the training batches) and
the same on the validation set (the dataset's test split, one posterior sample per example;
monitoring only — no model selection on it, the saved model is the last epoch's). Every epoch
the model (``model.safetensors`` + ``config.json``) and the training state
(``train_state.*``: optimizer, schedule, RNG, epoch) are written atomically, and one JSON line is
appended to ``metrics.jsonl``; ``resume=True`` continues from them.

Loss: −ELBO_β = E_q[−log p(x|z)] + β_t·KL, with β_t ramped linearly from 0 to β over
``warmup_epochs`` (KL warm-up, Bowman et al. 2016; Sønderby et al. 2016) and optional free bits
(Kingma et al. 2016). A NaN or inf loss stops training with a :class:`TrainingError` that says
what to try; the last good checkpoint stays on disk.

Distributed: run under ``torchrun --nproc_per_node N -m vaecodec.cli train ...``; each rank takes a
disjoint shard of every epoch's permutation, gradients are averaged by DDP (gloo on CPU), and only
rank 0 validates, prints and writes.

Tar shards (``dataset`` ``"DIR/shard-{000000..000123}.tar"`` or URLs, from ``make-shards``): the
test split is read into memory once (the fixed validation and evaluation set; colour, size and
the split as a folder's), and the training split is streamed
(:mod:`vaecodec.data.shard_images`): split across ranks and ``workers`` data processes, through a
shuffle buffer of ``shuffle_buffer`` encoded photos per process, ``train examples // (ranks *
batch)`` batches an epoch on every rank. Each epoch's metrics line records the batches and
images each rank took, the shards read and the bad data skipped (``"data"``); the checkpoint
keeps every stream's position, and ``resume`` continues the exact data order with the same
number of ranks (the workers and batch size are the run's own), an approximate one with
another (each stream restarts its earliest unfinished pass: some images seen twice, none
skipped); it says which (:func:`~vaecodec.train.vae_run.stream_data`,
:func:`~vaecodec.train.vae_run.epoch_data`, which the VAE-GAN loop streams with too).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from vaecodec import runtime
from vaecodec.checkpoint import (
    provenance,
    save_model,
    save_train_state,
)
from vaecodec.errors import TrainingError
from vaecodec.models.registry import build_model
from vaecodec.train.vae_run import (
    METRICS_FILE,
    RESUMED,
    TrainConfig,
    beta_at,
    calibration_images,
    epoch_data,
    finish_run,
    is_shards,
    restored_model,
    resume_conflicts,
    resumed_config,
    resumed_run,
    stream_data,
    truncate_metrics,
    validate,
)

__all__ = ["METRICS_FILE", "RESUMED", "TrainConfig", "beta_at", "calibration_images", "finish_run",
           "resume_conflicts", "resumed_config", "train_vae", "truncate_metrics", "validate"]  # fmt: skip
"""The run's config and helpers live in :mod:`vaecodec.train.vae_run` (shared with the VAE-GAN
loop) and are named here too, where callers meet them with :func:`train_vae`."""


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _maybe_init_distributed() -> bool:
    """Initialise torch.distributed (gloo) when launched by torchrun with WORLD_SIZE > 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
        return True
    return False


def _load_data(cfg: TrainConfig):
    from vaecodec.data import load_dataset

    binarize = None if cfg.binarize == "none" else cfg.binarize
    train = load_dataset(cfg.dataset, "train", root=cfg.data_root, binarize=binarize, seed=cfg.seed)
    test = load_dataset(
        cfg.dataset, "test", root=cfg.data_root, binarize="static" if binarize else None
    )
    return train, test


def _dims(model) -> str:
    dims = getattr(getattr(model, "config", None), "latent_dims", None)
    return "+".join(map(str, dims)) if dims else str(model.latent_dim)


def train_vae(cfg: TrainConfig):
    """Train a VAE / AE as described by ``cfg``; returns (model, final evaluation dict or None).

    Raises:
        TrainingError: NaN/inf loss.
        ModelError: ``resume`` with a run directory that is missing or inconsistent.
        DatasetError: unknown or missing dataset.
    """
    started_dist = _maybe_init_distributed()
    rank, world = _dist_info()
    is_main = rank == 0
    out = Path(cfg.out)
    try:  # the one place that picks the loop for a model
        model = cfg.model
        if cfg.resume:  # the run's own model, not the command line's default (vae-mlp)
            model = resumed_run(cfg, out)[0].model
        if model.startswith("vaegan-"):
            from vaecodec.train.vaegan_trainer import train_vaegan

            return train_vaegan(cfg, out)
        return _train(cfg, out, rank, world, is_main)
    finally:
        if started_dist:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, out: Path, rank: int, world: int, is_main: bool):
    state = stream = None
    if cfg.resume:  # the run's own settings first: its dataset, not the command line's default
        cfg, saved = resumed_run(cfg, out)
        model, state = restored_model(saved, out)
    if is_shards(cfg):  # the training split streamed, the test split in memory
        stream, test_set, n_train = stream_data(cfg, rank, world, state)
        train_set = None
    else:
        train_set, test_set = _load_data(cfg)
        n_train = len(train_set)
    if not cfg.resume:
        torch.manual_seed(cfg.seed)
        model_cfg = cfg.model_config(test_set.shape)
        model = build_model(cfg.model, model_cfg)
    try:
        return _loop(cfg, out, rank, world, is_main, model, state, train_set, test_set, stream,
                     n_train)  # fmt: skip
    finally:
        if stream is not None:
            stream.close()  # stops the data workers now, not at a later garbage collection


def _loop(cfg, out, rank, world, is_main, model, state, train_set, test_set, stream, n_train):
    from vaecodec.data import BatchIterator

    meta = {
        "model": cfg.model,
        "kind": "vae",
        "config": model.config_dict(),
        "dataset": cfg.dataset,
        "train": asdict(cfg),
        "world_size": world,
        **provenance(),
    }
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=max(1, cfg.epochs), eta_min=cfg.lr * cfg.lr_min_factor
    )
    start_epoch = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        sched.T_max = max(1, cfg.epochs)
        start_epoch = int(state["epoch"])
        torch.set_rng_state(state["rng"])
        if is_main:
            truncate_metrics(out / METRICS_FILE, start_epoch)
            print(f"resuming {out}: {start_epoch} of {cfg.epochs} epochs done, next "
                  f"epoch {start_epoch + 1}")

    runtime.announce()  # the run is set up: its thread count, if chosen from the load
    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model)

    writer = None
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise TrainingError(
                    "--tensorboard needs the tensorboard package: pip install tensorboard"
                ) from None
            writer = SummaryWriter(str(out / "tb"))
        n_params = sum(p.numel() for p in model.parameters())
        print(
            f"training {cfg.model} (d={_dims(model)}, {model.likelihood.name} decoder, "
            f"{n_params / 1e6:.2f}M params) on {cfg.dataset} "
            f"({n_train} train{' streamed' if stream is not None else ''} / {len(test_set)} val, "
            f"binarize={cfg.binarize}) "
            f"for {cfg.epochs} epochs -> {out}"
        )

    if stream is not None:  # the same number of batches on every rank
        batches = stream
    else:
        batches = BatchIterator(train_set, cfg.batch_size, shuffle=True, seed=cfg.seed,
                                rank=rank, world_size=world)  # fmt: skip
    steps_per_epoch = len(batches)
    val_x = test_set.x
    if cfg.hours is not None and not cfg.hours > 0:
        raise TrainingError(f"--hours must be a positive number of hours, not {cfg.hours}")
    budget = cfg.hours * 3600.0 if cfg.hours else float("inf")
    t_start, last_dt = time.time(), 0.0
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        stop = torch.tensor([float(epoch > start_epoch and (t0 - t_start) + last_dt > budget)])
        if world > 1:  # rank 0's clock decides for all
            dist.broadcast(stop, 0)
        if stop.item():
            if is_main:
                print(f"time budget of {cfg.hours:g} h reached after epoch {epoch}/{cfg.epochs}: "
                      f"stopping (continue with --resume)", flush=True)  # fmt: skip
            break
        sums = {"neg_elbo": 0.0, "recon": 0.0, "kl": 0.0}
        kl_layers = None
        seen = skipped = 0
        batches.set_epoch(epoch)
        bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   unit="batch", disable=None if (is_main and cfg.progress) else True, leave=False)  # fmt: skip
        for step, (xb, _) in enumerate(bar):
            beta = beta_at(cfg, epoch + step / steps_per_epoch)
            outd = ddp_model(xb, beta=beta, free_bits=cfg.free_bits)
            loss = outd["loss"]
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}. "
                    f"Try a lower --lr (now {cfg.lr}), KL warm-up (--warmup-epochs), or another "
                    f"likelihood; the last good checkpoint is in {out} (use --resume)."
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0 or cfg.skip_threshold > 0:
                norm = torch.nn.utils.clip_grad_norm_(
                    model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
                )
                if cfg.skip_threshold > 0 and not norm <= cfg.skip_threshold:
                    skipped += 1  # an outlier step (VDVAE, Child 2021): not taken
                else:
                    opt.step()
            else:
                opt.step()
            b = xb.shape[0]
            seen += b
            if "kl_layers" in outd:
                kl = outd["kl_layers"].detach().double() * b
                kl_layers = kl if kl_layers is None else kl_layers + kl
            sums["neg_elbo"] -= outd["elbo"].detach().sum().item()
            sums["recon"] += outd["recon"].detach().sum().item()
            sums["kl"] += outd["kl"].detach().sum().item()
            if step % 20 == 0:
                bar.set_postfix(neg_elbo=f"{sums['neg_elbo'] / seen:.2f}", beta=f"{beta:.2f}")
        sched.step()
        last_dt = time.time() - t0
        data_rec = None
        if stream is not None:  # a collective call: every rank, before rank 0 goes on alone
            data_state, data_rec = epoch_data(stream, world)
        if not is_main:
            continue
        train_m = {k: v / max(seen, 1) for k, v in sums.items()}
        val_m = validate(model, val_x)
        dt = time.time() - t0
        rec = {
            "epoch": epoch + 1,
            "train_neg_elbo": train_m["neg_elbo"],
            "train_recon": train_m["recon"],
            "train_kl": train_m["kl"],
            "val_neg_elbo": val_m["neg_elbo"],
            "val_recon": val_m["recon"],
            "val_kl": val_m["kl"],
            "beta": beta_at(cfg, epoch + 1),
            "lr": opt.param_groups[0]["lr"],
            "seconds": dt,
        }
        if kl_layers is not None:
            rec["train_kl_layers"] = (kl_layers / max(seen, 1)).tolist()
        if cfg.skip_threshold > 0:
            rec["skipped_steps"] = skipped
        if data_rec is not None:
            rec["data"] = data_rec
        if hasattr(model.likelihood, "log_sigma") and model.likelihood.name.startswith("gaussian"):
            rec["sigma"] = model.likelihood.sigma
        if model.deterministic:  # a plain autoencoder has no ELBO: name what it minimises
            line = (f"train recon loss {train_m['recon']:8.2f}  "
                    f"val recon loss {val_m['recon']:8.2f} nats")  # fmt: skip
        else:
            line = (f"train -ELBO {train_m['neg_elbo']:8.2f} (recon {train_m['recon']:7.2f}, "
                    f"KL {train_m['kl']:6.2f})  val -ELBO {val_m['neg_elbo']:8.2f} "
                    f"(recon {val_m['recon']:7.2f}, KL {val_m['kl']:6.2f}) nats")  # fmt: skip
        print(f"epoch {epoch + 1:>3}/{cfg.epochs}  {line}  {dt:5.1f}s", flush=True)
        # Order matters for a run killed half-way: the metrics line first (resume drops lines
        # past the saved epoch), then the exported model, then the training state, which holds
        # its own copy of the weights so that resume never pairs weights and optimizer state
        # of different epochs.
        with open(out / METRICS_FILE, "a") as f:
            f.write(json.dumps(rec) + "\n")
        save_model(out, model, meta)
        save_train_state(out, {
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "epoch": epoch + 1, "rng": torch.get_rng_state(),
            **({"data": data_state} if stream is not None else {}),
        })  # fmt: skip
        if writer is not None:
            for k, v in rec.items():
                if k != "epoch":
                    writer.add_scalar(k, v, epoch + 1)
            writer.flush()
    if writer is not None:
        writer.close()
    model.eval()
    summary = None
    if is_main:
        if stream is not None and hasattr(model, "calibrate_buckets"):
            from vaecodec.data.loader import ImageDataset

            # the bits-back buckets' training images: as many as calibration_images takes
            x = stream.sample_images(min(10_000, n_train))
            train_set = ImageDataset(x, torch.zeros(len(x), dtype=torch.int64), cfg.dataset,
                                     binarized="dynamic" if cfg.binarize != "none" else None)  # fmt: skip
        summary = finish_run(model, test_set, out, cfg, meta, train_set=train_set)
    return model, summary


