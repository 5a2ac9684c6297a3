"""What every VAE training run shares, whichever loop trains it.

:mod:`vaecodec.train.vae_trainer` (VAE, autoencoder, hierarchical VAE; and the one place that
picks the loop for a model: :func:`~vaecodec.train.vae_trainer.train_vae`) and
:mod:`vaecodec.train.vaegan_trainer` (VAE-GAN) both build on this module and neither imports
the other's loop back (issue 27 point 10: they imported each other):

- :class:`TrainConfig`, the run's settings (recorded in ``config.json`` as ``train``);
- :data:`RESUMED` and :func:`resumed_config`: what a resumed run takes from the new call and
  what from the run it continues, and :func:`resume_conflicts`, the values given for a resumed
  run that the run would silently ignore (``vaecodec train --resume --lr 0.01``);
- the KL warm-up :func:`beta_at`, the per-epoch :func:`validate`, the metrics log's
  :func:`truncate_metrics`, and :func:`finish_run` (grids, test-set evaluation, ``eval.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from vaecodec.checkpoint import (
    CONFIG_FILE,
    TRAIN_STATE_JSON,
    load_state_into,
    load_train_state,
    read_json,
    save_model,
)
from vaecodec.errors import ModelError
from vaecodec.fileio import atomic_write_json

__all__ = ["METRICS_FILE", "RESUMED", "TrainConfig", "beta_at", "calibration_images",
           "finish_run", "resume_conflicts", "resumed_config", "truncate_metrics", "validate"]  # fmt: skip

METRICS_FILE = "metrics.jsonl"


@dataclass
class TrainConfig:
    """Everything that defines a VAE training run (recorded in config.json as ``train``)."""

    dataset: str = "mnist"
    data_root: str | None = None
    binarize: str = "dynamic"  # "dynamic" | "static" | "none"
    model: str = "vae-mlp"  # vae-mlp | vae-conv | ae-mlp | ae-conv | vaegan-* | hvae-mlp
    latent_dim: int = 16
    latent_dims: list[int] | None = None  # hvae-mlp: d_1 .. d_L, bottom first
    hidden: list[int] | None = None
    channels: list[int] | None = None
    likelihood: str | None = None  # default: bernoulli if binarised, else gaussian
    sigma: float = 1.0
    beta: float = 1.0
    warmup_epochs: float = 0.0
    free_bits: float = 0.0
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    lr_min_factor: float = 0.1  # cosine decay from lr to lr * lr_min_factor
    seed: int = 0
    out: str = "runs/vae"
    resume: bool = False
    tensorboard: bool = False
    eval_iw_samples: int = 100
    grad_clip: float = 0.0  # clip the gradient norm to this (0: no clipping)
    skip_threshold: float = 0.0  # skip steps whose gradient norm exceeds this (0: never)
    hours: float | None = None  # wall-clock budget of this invocation (stops after an epoch)
    # tar shards (dataset "DIR/shard-{...}.tar"): the training split is streamed
    workers: int = 0  # data-loading processes per rank
    shuffle_buffer: int = 1000  # encoded photos per data worker's shuffle buffer
    artifacts: bool = True
    progress: bool = True
    extra: dict = field(default_factory=dict)
    # VAE-GAN only (model "vaegan-*"; see vaecodec.train.vaegan_trainer)
    pixel_weight: float = 1.0
    feature_weight: float = 0.0
    gan_weight: float = 1.0
    gan_loss: str = "hinge"
    disc_lr: float | None = None  # default: lr
    disc_channels: list[int] | None = None
    collapse_epochs: int = 2

    def model_config(self, input_shape) -> dict:
        likelihood = self.likelihood or ("bernoulli" if self.binarize != "none" else "gaussian")
        if self.model.startswith("hvae-"):
            cfg = {"input_shape": list(input_shape), "likelihood": likelihood,
                   "sigma": self.sigma}  # fmt: skip
            if self.latent_dims:
                cfg["latent_dims"] = list(self.latent_dims)
            if self.hidden:
                cfg["hidden"] = list(self.hidden)
            return cfg
        arch = self.model.split("-", 1)[1] if "-" in self.model else self.model
        cfg = {
            "input_shape": list(input_shape),
            "latent_dim": self.latent_dim,
            "arch": arch,
            "likelihood": likelihood,
            "sigma": self.sigma,
            "deterministic": self.model.startswith("ae-"),
        }
        if self.hidden:
            cfg["hidden"] = list(self.hidden)
        if self.channels:
            cfg["channels"] = list(self.channels)
        return cfg


RESUMED = ("epochs", "hours", "eval_iw_samples", "tensorboard", "artifacts", "progress", "out")
"""Settings a resumed run takes from the new call (the new total of epochs, this invocation's
budget, the final evaluation and what is written or shown); every other setting (model,
data, lr, β, batch size, seed, data workers, ...) is the run's own, from its ``config.json``."""


def resumed_config(saved_train: dict, cfg: TrainConfig) -> TrainConfig:
    """The config of a resumed run: ``saved_train`` (``config.json``'s ``train``) with the
    :data:`RESUMED` settings of ``cfg`` (the new call)."""
    known = {f.name for f in fields(TrainConfig)}
    kept = {k: v for k, v in saved_train.items() if k in known}
    return TrainConfig(**{**kept, "resume": True, **{k: getattr(cfg, k) for k in RESUMED}})


def resumed_run(cfg: TrainConfig, out: Path) -> tuple[TrainConfig, dict]:
    """``train --resume``, first step: the run's ``config.json`` and ``cfg`` with the run's own
    settings (:func:`resumed_config`). Called before the data are loaded, so that a resumed
    run reads its own dataset, not the command line's default.

    Raises:
        ModelError: ``out`` holds no earlier run.
    """
    if not (out / TRAIN_STATE_JSON).is_file():
        raise ModelError(f"cannot resume: {out} has no {TRAIN_STATE_JSON} (no earlier run there)")
    saved = read_json(out / CONFIG_FILE)
    return resumed_config(saved["train"], cfg), saved


def restored_model(saved: dict, out: Path):
    """``train --resume``, second step: the run's model at its last checkpoint and the training
    state saved with it (``(model, state)``; ``saved``: :func:`resumed_run`'s config)."""
    from vaecodec.models.registry import build_model

    model = build_model(saved["model"], saved["config"])
    state = load_train_state(out)
    load_state_into(model, state["model"], out / "train_state.safetensors")
    return model, state


def resume_conflicts(saved_train: dict, given: dict) -> list[tuple[str, object, object]]:
    """The settings in ``given`` (name -> value the user gave) that a resumed run would not
    use because the run has another value: ``[("lr", 0.01, 0.001), ...]`` (name, given, the
    run's)."""
    out = []
    for name, value in given.items():
        if name in RESUMED or name == "resume" or name not in saved_train:
            continue
        old = saved_train[name]
        same = old == value or (isinstance(old, (list, tuple)) and isinstance(value, (list, tuple))
                                and list(old) == list(value))  # fmt: skip
        if not same:
            out.append((name, value, old))
    return out


def beta_at(cfg: TrainConfig, epoch_float: float) -> float:
    """β for the current (fractional) epoch: linear warm-up from 0 over ``warmup_epochs``."""
    if cfg.warmup_epochs <= 0:
        return cfg.beta
    return cfg.beta * min(1.0, epoch_float / cfg.warmup_epochs)


@torch.no_grad()
def validate(model, x: torch.Tensor, batch_size: int = 1000, seed: int = 0) -> dict:
    """Mean −ELBO, reconstruction and KL (nats per example) over ``x`` with one posterior
    sample per example (seeded, so epochs are comparable)."""
    model.eval()
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    tot = {"elbo": 0.0, "recon": 0.0, "kl": 0.0}
    try:
        for i in range(0, x.shape[0], batch_size):
            out = model(x[i : i + batch_size])
            tot["elbo"] -= out["elbo"].double().sum().item()
            tot["recon"] += out["recon"].double().sum().item()
            tot["kl"] += out["kl"].double().sum().item()
    finally:
        torch.set_rng_state(state)
    model.train()
    n = x.shape[0]
    return {"neg_elbo": tot["elbo"] / n, "recon": tot["recon"] / n, "kl": tot["kl"] / n}


def truncate_metrics(path: Path, epochs_done: int) -> None:
    """On resume, drop log lines of epochs after the checkpoint (they were never saved)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("epoch", 0) <= epochs_done:
                keep.append(line)
        except json.JSONDecodeError:
            continue
    path.write_text("".join(k + "\n" for k in keep))


def calibration_images(train_set, cfg: TrainConfig, n: int = 10_000) -> torch.Tensor:
    """The first ``n`` training images, binarised once (seed ``cfg.seed``) for a binary run."""
    x = train_set.x[:n]
    if cfg.binarize != "none" and train_set.binarized == "dynamic":
        x = torch.bernoulli(x, generator=torch.Generator().manual_seed(cfg.seed))
    return x


def finish_run(model, test_set, out: Path, cfg: TrainConfig, meta: dict,
               train_set=None) -> dict | None:  # fmt: skip
    """Write sample / reconstruction / interpolation grids and evaluate the model on the test
    split; stores the numbers in ``eval.json`` and ``config.json`` and returns them. A
    hierarchical VAE first calibrates its bits-back buckets on ``train_set``
    (:meth:`vaecodec.models.hvae.HVAE.calibrate_buckets`) and is saved with them."""
    from vaecodec.evaluate.elbo import evaluate_vae, format_summary
    from vaecodec.viz.grids import interpolation_grid, reconstruction_grid, sample_grid

    if train_set is not None and hasattr(model, "calibrate_buckets"):
        model.calibrate_buckets(calibration_images(train_set, cfg))
        meta = {**meta, "config": model.config_dict()}
        save_model(out, model, meta)
    x = test_set.x
    if cfg.artifacts:
        sample_grid(model, out / "samples.png", n=64, seed=cfg.seed)
        reconstruction_grid(model, x[:64], out / "reconstructions.png", nrow=16)
        interpolation_grid(model, x, out / "interpolations.png", rows=8, steps=10, seed=cfg.seed)
    iw = 0 if model.deterministic else cfg.eval_iw_samples
    res = evaluate_vae(model, x, iw_samples=iw, progress=cfg.progress)
    short = {k: v for k, v in res.items() if k not in ("kl_per_dim", "au_variance")}
    atomic_write_json(out / "eval.json", res)
    meta = {**meta, "metrics": short}
    atomic_write_json(out / CONFIG_FILE, meta)
    print("\n" + format_summary(res))
    if cfg.artifacts:
        print(f"\nwrote {out}/model.safetensors, config.json, metrics.jsonl, eval.json, "
              f"samples.png, reconstructions.png, interpolations.png")  # fmt: skip
    return res
