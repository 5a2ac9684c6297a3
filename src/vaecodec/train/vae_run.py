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
  :func:`truncate_metrics`, and :func:`finish_run` (grids, test-set evaluation, ``eval.json``);
- tar shards (``dataset`` ``"DIR/shard-{000000..000123}.tar"``, :func:`is_shards`): the test
  split in memory and the training split streamed in epochs of equal length on every rank
  (:func:`stream_data`), and each epoch's data record and stream positions
  (:func:`epoch_data`), the same for both loops.
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
from vaecodec.errors import DatasetError, ModelError
from vaecodec.fileio import atomic_write_json

__all__ = ["METRICS_FILE", "RESUMED", "TrainConfig", "beta_at", "calibration_images",
           "epoch_data", "finish_run", "is_shards", "resume_conflicts", "resumed_config",
           "stream_data", "truncate_metrics", "validate"]  # fmt: skip

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


def is_shards(cfg: TrainConfig) -> bool:
    """Whether the run's dataset is tar shards (a brace pattern, shard files or URLs)."""
    from vaecodec.data.shards import is_shard_spec

    return is_shard_spec(cfg.dataset)


def stream_data(cfg: TrainConfig, rank: int = 0, world: int = 1, state: dict | None = None,
                binarize_batches: bool = True):  # fmt: skip
    """Tar shards: ``(epochs, test_set, train_examples)``, the training split streamed
    (:class:`~vaecodec.data.shard_images.ShardEpochs` of ``train examples // (world *
    batch_size)`` batches on every rank, through ``cfg.workers`` data processes and a shuffle
    buffer of ``cfg.shuffle_buffer`` photos; at the positions of the training ``state``'s
    ``"data"`` on resume, and it prints whether that resume is exact) and the test split in
    memory (read by rank 0 alone, one read of every shard, statically binarised for a binary
    run; an empty set of the same shape on the other ranks, which neither validate nor
    evaluate). ``binarize_batches=False``: the batches keep their grey levels even for a
    binary run (the caller samples its targets, as the VAE-GAN does).

    With ``world > 1`` a collective call: every rank makes it, and a rank-0 error is raised on
    every rank, so that none waits.

    Raises:
        DatasetError: ``--data-root`` or ``--binarize static`` with shards, ``workers < 0``,
            a shard or URL that cannot be read, no readable image, fewer training images than
            one batch per rank.
    """
    from vaecodec.data.loader import ImageDataset, as_dataset
    from vaecodec.data.shard_images import ShardEpochs, ShardImages
    from vaecodec.data.sources import load_split

    if cfg.data_root is not None:
        raise DatasetError("--data-root is for mnist / fashion-mnist, not for tar shards")
    binarize = cfg.binarize != "none"
    if cfg.binarize == "static":
        raise DatasetError("--binarize static holds one sample of every training image; tar "
                           "shards are streamed: use --binarize dynamic or none")  # fmt: skip
    if cfg.workers < 0:
        raise DatasetError(f"--workers must be >= 0, not {cfg.workers}")
    is_main = rank == 0
    # rank 0 alone reads the test split (one read of every shard) and tells the others its
    # shape and the size of the train split: they neither validate nor evaluate
    found: list = [None]
    if is_main:
        try:
            test = load_split(cfg.dataset, "test")
            test_set = as_dataset(test, "static" if binarize else None)
            found = [(test.split_sizes["train"], test_set.shape)]
        except DatasetError as e:
            found = [str(e)]
    if world > 1:
        import torch.distributed as dist

        dist.broadcast_object_list(found, 0)
    if isinstance(found[0], str):  # on every rank, so that none waits for the others
        raise DatasetError(found[0])
    n_train, (c, h, w) = found[0]
    if not is_main:
        test_set = ImageDataset(torch.zeros(0, c, h, w), torch.zeros(0, dtype=torch.int64))
    steps = n_train // (world * cfg.batch_size)
    if steps < 1:
        raise DatasetError(f"the train split of {cfg.dataset} holds {n_train} images, fewer "
                           f"than one batch of {cfg.batch_size} for each of {world} ranks")  # fmt: skip
    stream = ShardImages(cfg.dataset, shape=(h, w), gray=c == 1, split="train",
                         shuffle_buffer=cfg.shuffle_buffer, seed=cfg.seed, rank=rank,
                         world_size=world)  # fmt: skip
    exact = stream.load_state_dict((state or {}).get("data", {}), max(1, cfg.workers))
    if state is not None and is_main:
        print(f"data: {'exact' if exact else 'approximate'} resume of the shard streams "
              f"({stream.batches} batches per rank before)")  # fmt: skip
    epochs = ShardEpochs(stream, cfg.batch_size, steps, workers=cfg.workers,
                         binarize=binarize and binarize_batches, seed=cfg.seed)  # fmt: skip
    return epochs, test_set, n_train


def epoch_data(epochs, world: int = 1) -> tuple[dict, dict]:
    """At the end of an epoch of :func:`stream_data`'s ``epochs`` (with ``world > 1`` a
    collective call: every rank makes it): ``(positions, record)``, the streams' positions
    on every rank, which the training state keeps as ``"data"``, and the epoch's ``"data"``
    record for ``metrics.jsonl`` (:func:`~vaecodec.data.shard_stream.gather_streams`'s,
    without its ``step``: the line has its epoch)."""
    from vaecodec.data.shard_stream import gather_streams

    positions, rec = gather_streams(epochs.stream, world, epochs.epoch)
    rec.pop("step")
    return positions, rec


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
