"""Training a learned image codec: one readable loop (what ``vaecodec train-codec`` runs).

Usage::

    cfg = CodecTrainConfig(model="mean-scale", data="photos/", val_pattern="bsd100__*",
                           lmbda=0.0067, crop=256, batch_size=8, steps=500_000, out="runs/ms")
    model, summary = train_codec(cfg)

Loss (CompressAI convention, Ballé et al. 2018): ``L = lmbda * 255**2 * MSE + bpp`` with MSE on
[0, 1] images and ``bpp = sum(-log2 likelihoods) / (B * H * W)``; the latents get additive
uniform noise (optionally straight-through rounding for the synthesis, ``ste``). The factorized
density needs no auxiliary loss here (its coding range is found when tables are built).
Adam, gradient norm clipped to ``clip_grad``, learning rate divided by 10 at ``lr_drop_at`` of
the steps.

Time budget: with ``hours`` set, this invocation also stops (validating and checkpointing first)
once that much wall-clock time has passed, and the learning rate drops after ``lr_drop_at`` of
that time, whichever of the step and time rules comes first. The clock counts from this
(re)start: a resumed run gets its own budget, and resuming a run whose previous invocation had
dropped the learning rate by time starts again at ``lr`` (as resuming with a larger ``steps``
does). Meant for machines lent for a fixed time: ``--hours 2`` trains for two hours, the last
``1 - lr_drop_at`` of them at the lower rate, then ``--resume`` continues later.

Resume: ``resume=True`` continues the run in ``out`` exactly (weights, Adam state, scheduler,
random state, metrics log cut at the checkpoint) with the run's saved settings, except ``steps``
and the :data:`RUNTIME_FIELDS` (time budget, data-loading workers, device, log and validation
intervals, progress bar), which come from the new invocation: a run started on one machine can
continue on another. (The crops drawn after a resume repeat those of an uninterrupted run only
with the same number of workers.)

Variable rate: with ``lmbdas = [l_1 < ... < l_K]`` the model gets ``K`` gain levels (Cui et al.
2021, see :mod:`vaecodec.models.codecs`); every training image draws a level uniformly and is
scored with its own lambda, ``L = mean_b(w_b * (l_b * 255**2 * MSE_b + bpp_b))``, ``w`` the
level's weight (``level_weighting``: ``uniform``, or ``inverse-sqrt-lmbda`` / ``inverse-lmbda``
so that the low rates are not starved of gradient: :func:`level_weights`). Validation codes each
image at every level; its loss (which picks the best checkpoint) is the mean over levels, and
the per-level bpp / PSNR are logged.

Every ``val_every`` steps (and at the end) the model is evaluated on the held-out images
(``val_data`` folder, or the files of ``data`` matching ``val_pattern``, which are then left out
of training): bpp from the likelihoods (eval mode: rounded latents) and PSNR in dB on the 8-bit
reconstruction. The run directory holds::

    model.safetensors, config.json   the best model by validation loss (what --model loads)
    last/                            the latest model + optimizer state (for --resume)
    metrics.jsonl                    one JSON line per log step ("train") and validation ("val")
    training.png                     loss, per-level PSNR and validation RD curves, redrawn at
                                     every validation (:mod:`vaecodec.viz.training_plot`)

A NaN / inf loss raises :class:`~vaecodec.errors.TrainingError`. Distributed: under
``torchrun --nproc_per_node N -m vaecodec.cli train-codec ...`` (``WORLD_SIZE`` set) each rank
reads a disjoint shard of every epoch (``DistributedSampler``), DDP averages gradients (gloo on
CPU, NCCL on GPUs), and only rank 0 validates, prints and writes. Every rank takes ``steps``
batches of ``batch_size`` crops (the global batch is ``world * batch_size``; the learning rate
is not rescaled: README, "Many GPUs, many machines").

Tar shards (``data`` a shard spec, :mod:`vaecodec.data.shards`): the photos are streamed
(:class:`~vaecodec.data.shard_stream.ShardCrops`: split across ranks and data workers, a
shuffle buffer of ``shuffle_buffer`` encoded photos per worker), validation comes from
``val_data``, and at every validation and at the end a ``"data"`` line in ``metrics.jsonl``
records the batches and crops each rank took, how many of the shards were read and the bad
data skipped. The checkpoint keeps each stream's position: ``resume`` with the same number of
ranks and workers continues the exact data order, otherwise approximately (the module says
how).

Why one module of this size: one readable training loop (nanoGPT's practice) with its config, RD
loss, validation and checkpointing next to it.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from vaecodec import runtime
from vaecodec.checkpoint import (
    CONFIG_FILE,
    TRAIN_STATE_JSON,
    WEIGHTS_FILE,
    load_state_into,
    load_tensors,
    load_train_state,
    provenance,
    read_json,
    save_model,
    save_train_state,
)
from vaecodec.errors import DatasetError, ModelError, TrainingError
from vaecodec.models.codec_base import rate_bits, rd_value, same_lmbda
from vaecodec.models.registry import build_model, get_model_class
from vaecodec.models.transforms import pad_image

__all__ = [
    "CodecTrainConfig",
    "METRICS_FILE",
    "TRAINING_PLOT",
    "level_weights",
    "rd_loss",
    "train_codec",
    "validate_codec",
]

METRICS_FILE = "metrics.jsonl"
TRAINING_PLOT = "training.png"  # redrawn after every validation
LAST_DIR = "last"


RUNTIME_FIELDS = ("hours", "workers", "device", "log_every", "val_every", "progress", "precision",
                  "compile", "device_crops")  # fmt: skip
"""Settings that a ``resume`` takes from the new invocation rather than from the saved run:
they change how and where the run computes, not what it computes (``steps`` is taken too)."""


@dataclass
class CodecTrainConfig:
    """Everything that defines a codec training run (recorded in config.json as ``train``)."""

    model: str = "mean-scale"  # factorized | hyperprior | mean-scale | checkerboard
    data: str = ""  # folder of photos, a .npy of uint8 crops (precut_crops), or tar shards
    shuffle_buffer: int = 1000  # tar shards: encoded photos per data worker's shuffle buffer
    val_data: str | None = None  # folder of validation images
    val_pattern: str | None = None  # or: hold out files of `data` whose name matches this glob
    lmbdas: list[float] = field(default_factory=lambda: [0.0067])
    """The rate-distortion trade-offs: one value trains a fixed-rate model, two or more (positive,
    increasing) one variable-rate model with a gain level per value."""
    crop: int = 256
    val_crop: int | None = 256  # central crop of each validation image (None: whole image)
    val_max_images: int | None = None
    batch_size: int = 8
    steps: int = 100_000
    lr: float = 1e-4
    lr_drop_at: float = 0.8  # fraction of the steps after which the lr is divided by 10
    N: int = 128
    M: int = 192
    ste: bool = False
    quality_index: int | None = None
    val_every: int = 1000
    log_every: int = 50
    clip_grad: float = 1.0
    workers: int = 2
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    out: str = "runs/codec"
    resume: bool = False
    init_from: str | None = None  # start from these weights (zoo family or run dir), new optimizer
    progress: bool = True
    hours: float | None = None  # wall-clock budget of this invocation (None: only `steps`)
    level_weighting: str = "uniform"  # uniform | inverse-sqrt-lmbda | inverse-lmbda (level_weights)
    precision: str = "auto"  # auto (bf16 transforms on CUDA, else fp32) | fp32 | bf16
    compile: bool = False  # torch.compile the training forward
    device_crops: str = "auto"  # auto (on CUDA when the photos fit) | on | off

    @property
    def variable_rate(self) -> bool:
        """Two or more lambdas: one model with a gain level per lambda."""
        return len(self.lmbdas) > 1

    @classmethod
    def from_saved(cls, train: dict, **override) -> CodecTrainConfig:
        """The config a run recorded (``config.json``'s ``"train"``), with ``override``. Runs
        written before the single lambda list recorded ``lmbda`` (a float) and ``lmbdas``
        (None for a fixed-rate model); both still resume."""
        train = dict(train)
        lmbda, lmbdas = train.pop("lmbda", None), train.get("lmbdas")
        if not lmbdas:
            train["lmbdas"] = [lmbda if lmbda is not None else cls().lmbdas[0]]
        return cls(**{**train, **override})


LEVEL_WEIGHTINGS = ("uniform", "inverse-sqrt-lmbda", "inverse-lmbda")


def level_weights(lmbdas, how: str = "uniform") -> list[float]:
    """The weight of each rate level's loss in variable-rate training (mean 1 over levels).

    ``uniform``: every level's ``lmbda * 255**2 * MSE + bpp`` counts the same. Because that loss
    grows with lambda, so do its gradients: on ``cb128-h200``'s weights the gradient norm of the
    top level (lambda 0.18) is ~160x the lowest's (0.00045), so with gradient clipping and Adam
    the shared transforms learn almost only for the high rates
    (``benchmarks/codec_level_gradients.py``). ``inverse-lmbda``: ``w_k ∝ 1 / lmbda_k``, i.e.
    each level minimises ``255**2 * MSE + bpp / lmbda_k`` (its own rate-distortion trade-off,
    unchanged), which brings the levels' gradient norms within ~3x of each other (the top
    levels then lose PSNR: the shared transforms follow the low rates). ``inverse-sqrt-lmbda``:
    ``w_k ∝ lmbda_k ** -0.5``, half-way between the two on a log scale.

    Raises:
        TrainingError: an unknown ``how``.
    """
    if how not in LEVEL_WEIGHTINGS:
        raise TrainingError(
            f"unknown level weighting {how!r}: choose one of {', '.join(LEVEL_WEIGHTINGS)}"
        )
    power = {"uniform": 0.0, "inverse-sqrt-lmbda": 0.5, "inverse-lmbda": 1.0}[how]
    raw = [float(v) ** -power for v in lmbdas]
    return [v * len(raw) / sum(raw) for v in raw]


def rd_loss(out: dict, x: torch.Tensor, lmbda, weight=None) -> dict:
    """Rate-distortion loss of a codec's ``forward`` output on ``x [B, 3, H, W]``.

    Args:
        lmbda: a float, or a tensor ``[B]`` (one lambda per image: variable-rate training).
        weight: ``None``, or a tensor ``[B]`` weighting each image's loss (its level's weight,
            :func:`level_weights`).

    Returns ``{"loss", "bpp", "mse"}`` (scalar tensors, batch means):
    ``loss = mean_b(weight_b * (lmbda_b * 255**2 * mse_b + bpp_b))``; ``bpp`` and ``mse`` are
    unweighted.
    """
    h, w = x.shape[-2:]
    bpp_b = rate_bits(out["likelihoods"]) / (h * w)
    mse_b = (out["x_hat"] - x).pow(2).flatten(1).mean(1)
    loss_b = rd_value(bpp_b, mse_b, lmbda)
    loss = (loss_b if weight is None else weight * loss_b).mean()
    return {"loss": loss, "bpp": bpp_b.mean(), "mse": mse_b.mean()}


def _level_lmbdas(model, lmbdas) -> list[tuple[int | None, float]]:
    if getattr(model, "levels", 0):
        return list(enumerate(lmbdas))
    return [(None, lmbdas[0])]


@torch.no_grad()
def validate_codec(model, loader, lmbdas, device, weights=None) -> dict:
    """Mean ``loss``, ``bpp`` (from likelihoods, rounded latents), ``mse`` and ``psnr`` (dB,
    8-bit) over the images of ``loader`` (each padded to the model's multiple, scored on the
    original pixels; batches of one image).

    ``lmbdas``: one value for a fixed-rate model; for a variable-rate model one per level, and
    every image is coded at every level;
    ``loss``, ``bpp``, ``mse``, ``psnr`` are then means over levels (``loss`` weighted by
    ``weights``, one per level, as in training: :func:`level_weights`) and ``"levels"`` lists
    ``{"level", "lmbda", "bpp", "psnr", "mse"}`` per level."""
    from vaecodec.evaluate.metrics import psnr

    was_training = model.training
    model.eval()
    plan = _level_lmbdas(model, lmbdas)
    weights = weights or [1.0] * len(plan)
    per = [{"loss": 0.0, "bpp": 0.0, "mse": 0.0, "psnr": 0.0} for _ in plan]
    n = 0
    for x in loader:
        x = x.to(device)
        xp, (h, w) = pad_image(x, model.multiple)
        xp = xp.contiguous(memory_format=torch.channels_last)
        for tot, (level, lm), wt in zip(per, plan, weights):
            out = model(xp) if level is None else model(xp, level)
            bits = float(rate_bits(out["likelihoods"]).sum())
            x_hat = out["x_hat"][..., :h, :w].clamp(0, 1)
            bpp = bits / (x.shape[0] * h * w)
            mse = F.mse_loss(x_hat, x).item()
            tot["bpp"] += bpp
            tot["mse"] += mse
            tot["loss"] += wt * rd_value(bpp, mse, lm)
            tot["psnr"] += psnr(x[0], x_hat[0])  # 8-bit, after rounding and clamping
        n += 1
    model.train(was_training)
    per = [{k: v / max(n, 1) for k, v in tot.items()} for tot in per]
    res = {k: sum(p[k] for p in per) / len(per) for k in per[0]}
    if plan[0][0] is not None:
        res["levels"] = [
            {"level": lv, "lmbda": lm, **{k: p[k] for k in ("bpp", "psnr", "mse")}}
            for (lv, lm), p in zip(plan, per)
        ]
    return res


def _json_step(line: str) -> float:
    try:
        return float(json.loads(line).get("step", math.inf))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return math.inf


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _is_npy(cfg: CodecTrainConfig) -> bool:
    return str(cfg.data).lower().endswith(".npy")


def _is_shards(cfg: CodecTrainConfig) -> bool:
    from vaecodec.data.shards import is_shard_spec

    return is_shard_spec(cfg.data)


def _split_files(cfg: CodecTrainConfig):
    from vaecodec.data import list_images

    if not cfg.data:
        raise DatasetError("no training images: pass --data DIR")
    if _is_npy(cfg) or _is_shards(cfg):  # nothing to hold out: validation is --val-data
        if cfg.val_pattern:
            raise DatasetError(
                f"--val-pattern selects files of a folder, but --data {cfg.data} is "
                f"{'a .npy of crops' if _is_npy(cfg) else 'tar shards'}: give the validation "
                "images with --val-data DIR instead"
            )
        val = list_images(cfg.val_data) if cfg.val_data else []
        return [], val[: cfg.val_max_images] if cfg.val_max_images else val
    files = list_images(cfg.data)
    val = []
    if cfg.val_pattern:
        val = [f for f in files if fnmatch.fnmatch(f.name, cfg.val_pattern)]
        files = [f for f in files if not fnmatch.fnmatch(f.name, cfg.val_pattern)]
        if not val:
            raise DatasetError(f"no file in {cfg.data} matches --val-pattern {cfg.val_pattern!r}")
    if cfg.val_data:
        val = val + list_images(cfg.val_data)
    if not files:
        raise DatasetError(f"no training images left in {cfg.data}")
    if cfg.val_max_images:
        val = val[: cfg.val_max_images]
    return files, val


PRECISIONS = ("auto", "fp32", "bf16")
DEVICE_CROPS = ("auto", "on", "off")


def _check_runtime(cfg: CodecTrainConfig) -> None:
    """Refuse unknown runtime settings before any data is read."""
    if cfg.hours is not None and not cfg.hours > 0:
        raise TrainingError(f"--hours must be a positive number of hours, not {cfg.hours}")
    level_weights([1.0], cfg.level_weighting)
    if cfg.precision not in PRECISIONS:
        raise TrainingError(f"--precision {cfg.precision!r}: choose one of {', '.join(PRECISIONS)}")
    if cfg.device_crops not in DEVICE_CROPS:
        raise TrainingError(
            f"--device-crops {cfg.device_crops!r}: choose one of {', '.join(DEVICE_CROPS)}"
        )
    if cfg.log_every < 1 or cfg.val_every < 1:
        raise TrainingError("--log-every and --val-every must be positive numbers of steps")


def _autocast_dtype(cfg: CodecTrainConfig, device: torch.device) -> torch.dtype | None:
    """The dtype of the transforms while training: bf16 for ``--precision bf16``, or ``auto``
    on CUDA (tensor cores); float32 (None) otherwise (a CPU without bf16 units is slower)."""
    if cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _device_crops(cfg: CodecTrainConfig, train_set, device, rank: int, world: int):
    """A :class:`~vaecodec.data.device_crops.DeviceCrops` when asked for (``on``) or when
    ``auto`` on CUDA and the photos fit; None for the host data loader."""
    from vaecodec.data.device_crops import DeviceCrops
    from vaecodec.data.images import RandomCropImages

    want = cfg.device_crops == "on" or (cfg.device_crops == "auto" and device.type == "cuda")
    if not want or not isinstance(train_set, RandomCropImages):
        if cfg.device_crops == "on":
            raise TrainingError("--device-crops on needs a folder of photos as --data, not a .npy "
                                "or tar shards")
        return None
    try:
        return DeviceCrops(train_set, device, rank, world)
    except DatasetError as e:
        if cfg.device_crops == "on":
            raise
        if rank == 0:
            print(f"note: {e}", flush=True)
        return None


def _describe(cfg: CodecTrainConfig, train_set) -> str:
    """What the run trains on, for its first line."""
    if _is_shards(cfg):
        n = train_set.samples
        return (f"{len(train_set.urls)} tar shards"
                + (f" ({n} photos)" if n is not None else ""))  # fmt: skip
    return f"{len(train_set)} {'crops' if _is_npy(cfg) else 'images'}"


def _device(cfg: CodecTrainConfig, rank: int) -> torch.device:
    if cfg.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", rank % torch.cuda.device_count())
        return torch.device("cpu")
    return torch.device(cfg.device)


def train_codec(cfg: CodecTrainConfig):
    """Train a codec as described by ``cfg``; returns ``(model, summary dict)`` (the model in
    its best-validation state on rank 0, the final state elsewhere).

    Raises:
        TrainingError: NaN / inf loss.
        ModelError: ``resume`` from a directory without a previous run.
        DatasetError: missing or empty image folders.
    """
    started = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if cfg.device != "cpu" and torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        started = True
    try:
        return _train(cfg)
    finally:
        if started:
            dist.destroy_process_group()


def _initial_model(cfg: CodecTrainConfig, conf: dict):
    """The model of ``--init-from`` (weights and architecture), checked against ``cfg``."""
    from vaecodec.zoo import load_model
    from vaecodec.zoo.codecs import resolve_codec

    model_dir = resolve_codec(cfg.init_from)[0]
    model, meta = load_model(model_dir, kind="codec")  # float32 (fp16 storage is cast up)
    levels = conf.get("levels", 0)
    cls = get_model_class(cfg.model)
    related = meta["model"] in getattr(cls, "warm_start_from", ())
    src_lmbdas = [float(v) for v in meta.get("lmbdas") or []]
    if model.levels and levels and model.levels != levels:
        # more (or other) rate points than the saved model: its levels must all be among them
        missing = [v for v in src_lmbdas if not any(same_lmbda(v, w) for w in cfg.lmbdas)]
        if len(src_lmbdas) != model.levels or missing:
            raise TrainingError(
                f"--init-from {cfg.init_from} has rate levels for lambda "
                f"{' '.join(f'{v:g}' for v in src_lmbdas) or '(unknown)'}; to add levels, give "
                f"all of these in --lmbda plus the new ones (missing: "
                f"{' '.join(f'{v:g}' for v in missing) or 'the record of its lambdas'})"
            )
        model = model.with_levels(src_lmbdas, cfg.lmbdas)
    if (meta["model"] != cfg.model and not related) or model.levels != levels:
        raise TrainingError(
            f"--init-from {cfg.init_from} is a {meta['model']} model with {model.levels} rate "
            f"levels, but this run asks for {cfg.model} with {levels} "
            "(give as many --lmbda values as it has levels, and the same --model or one that "
            "extends it)"
        )
    # --ste switches straight-through rounding on for this run (a training rule, not a weight:
    # fine-tuning a noise-trained model with it closes the noise/rounding gap of g_s)
    model.ste = cfg.ste = bool(cfg.ste or model.ste)
    cfg.N, cfg.M = model.N, model.M  # recorded as what was trained
    if meta["model"] == cfg.model:
        return model
    # a model that extends the saved one: its shared modules from the weights, the rest fresh
    new = build_model(cfg.model, model.config_dict())
    res = new.load_state_dict(model.state_dict(), strict=False)
    if res.unexpected_keys:
        raise TrainingError(
            f"--init-from {cfg.init_from}: {cfg.model} has no place for the weights "
            f"{res.unexpected_keys[:4]} of the {meta['model']} model"
        )
    return new


def _say(bar, msg: str) -> None:
    """One log line: above the progress bar on a terminal, else a plain flushed line (so that
    a log file gets whole lines, not carriage-return bar updates)."""
    if bar.disable:
        print(msg, flush=True)
    else:
        bar.write(msg)


def _plot_curves(out: Path) -> None:
    """Redraw ``out/training.png`` from the metrics log; a plotting failure is reported as a
    warning and never stops training."""
    from vaecodec.viz.training_plot import plot_codec_training

    try:
        plot_codec_training(out / METRICS_FILE, out / TRAINING_PLOT)
    except Exception as e:  # noqa: BLE001 - a picture must not cost a training run
        warnings.warn(f"could not draw {out / TRAINING_PLOT}: {e}", stacklevel=2)


class _Epochs(torch.utils.data.Sampler):
    """The indices of ``sampler`` (a DistributedSampler) epoch after epoch, without end, each
    epoch cut to whole batches of ``batch``: the batches of a DataLoader with ``drop_last``
    started afresh every epoch, from one iterator.

    Why one iterator: its worker processes keep the decoded photos for the whole run, and it
    belongs to the batch generator alone, so closing that generator stops the workers at once.
    With ``persistent_workers`` the loader kept the iterator, and a frame of the training-plot
    call that outlived it (held from inside matplotlib, as far as ``gc.get_referrers`` showed)
    kept the loader: the workers were stopped at a later garbage collection, which waited 5 s
    for each of them (measured: 10 s with 2)."""

    def __init__(self, sampler, batch: int):
        self.sampler = sampler
        self.batches = max(1, len(sampler) // batch)
        self.per_epoch = self.batches * batch
        self.first = 0

    def __iter__(self):
        epoch = self.first
        while True:
            self.sampler.set_epoch(epoch)
            yield from itertools.islice(iter(self.sampler), self.per_epoch)
            epoch += 1


def _train(cfg: CodecTrainConfig):
    from vaecodec.data import CenterCropImages, NpyCrops, RandomCropImages
    from vaecodec.data.shard_stream import ShardCrops, gather_streams, worker_errors

    _check_runtime(cfg)  # before any data is read
    rank, world = _dist_info()
    is_main = rank == 0
    out = Path(cfg.out)
    last = out / LAST_DIR
    state, saved = None, {}
    if cfg.resume:
        if not (last / TRAIN_STATE_JSON).is_file():
            raise ModelError(f"cannot resume: {last} has no {TRAIN_STATE_JSON} (no earlier run)")
        saved = read_json(last / CONFIG_FILE)
        # the run's saved settings define the maths; how this invocation runs is its own
        keep = {"steps": cfg.steps, "out": str(out), "resume": True,
                **{k: getattr(cfg, k) for k in RUNTIME_FIELDS}}  # fmt: skip
        cfg = CodecTrainConfig.from_saved(saved["train"], **keep)
        model = build_model(saved["model"], saved["config"])
        load_state_into(model, load_tensors(last / WEIGHTS_FILE), last / WEIGHTS_FILE)
        state = load_train_state(last)
    else:
        torch.manual_seed(cfg.seed)
        get_model_class(cfg.model)  # a clear error for an unknown name before reading data
        conf = {"N": cfg.N, "M": cfg.M, "ste": cfg.ste}
        if cfg.variable_rate:
            lm = [float(v) for v in cfg.lmbdas]
            if any(b <= a for a, b in zip(lm, lm[1:])) or lm[0] <= 0:
                raise TrainingError(
                    f"--lmbda {' '.join(map(str, lm))}: a variable-rate model needs two or more "
                    "positive lambdas in increasing order (one value trains a fixed-rate model)"
                )
            conf["levels"] = len(lm)
        if cfg.init_from:
            model = _initial_model(cfg, conf)
        else:
            model = build_model(cfg.model, conf)
            if cfg.variable_rate:
                model.init_gains(cfg.lmbdas)
    if getattr(model, "kind", None) != "codec":
        raise ModelError(f"{cfg.model!r} is not a codec model")
    if cfg.crop % model.multiple:
        raise TrainingError(
            f"--crop {cfg.crop} is not a multiple of {model.multiple}, which the {cfg.model} "
            f"model needs (its latents downsample by {model.multiple}): use e.g. --crop "
            f"{max(model.multiple, cfg.crop - cfg.crop % model.multiple)}"
        )
    device = _device(cfg, rank)
    model.to(device).train()
    model.autocast_dtype = _autocast_dtype(cfg, device)
    if device.type == "cuda":  # one crop size: let cuDNN find its fastest convolutions once
        torch.backends.cudnn.benchmark = True

    train_files, val_files = _split_files(cfg)
    shards = None
    if _is_shards(cfg):  # streamed: every rank takes as many batches as it has steps
        shards = train_set = ShardCrops(cfg.data, crop=cfg.crop, shuffle_buffer=cfg.shuffle_buffer,
                                        seed=cfg.seed, rank=rank, world_size=world)  # fmt: skip
        exact = shards.load_state_dict((state or {}).get("data", {}), max(1, cfg.workers))
        if state is not None and is_main:
            print(f"data: {'exact' if exact else 'approximate'} resume of the shard streams "
                  f"({shards.batches} batches per rank before)")  # fmt: skip
    elif _is_npy(cfg):
        train_set = NpyCrops(cfg.data, crop=cfg.crop)
    else:  # each photo is decoded once and kept (decoding dominated the step time)
        train_set = RandomCropImages(train_files, crop=cfg.crop, cache=True)
    sampler = batch = None
    if shards is None:
        sampler = torch.utils.data.DistributedSampler(
            train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed,
            drop_last=True,
        )  # fmt: skip
        batch = min(cfg.batch_size, max(1, len(sampler)))
    crops = _device_crops(cfg, train_set, device, rank, world)
    loader = None
    if shards is not None:
        batch = cfg.batch_size
        # its own generator: the workers' base seed (unused: the crops have their own seeds)
        # must not take a draw from the training RNG, or a resumed run's noise would differ
        loader = torch.utils.data.DataLoader(
            shards, batch_size=batch, num_workers=cfg.workers, pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed), collate_fn=ShardCrops.collate,
        )  # fmt: skip
    elif crops is None:
        epochs = _Epochs(sampler, batch)
        loader = torch.utils.data.DataLoader(
            train_set, batch_size=batch, sampler=epochs, num_workers=cfg.workers,
            pin_memory=device.type == "cuda",
        )  # fmt: skip
    val_loader = None
    if val_files and is_main:
        val_set = CenterCropImages(val_files, crop=cfg.val_crop, cache=True)
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=1, num_workers=0)

    meta = {
        "model": cfg.model,
        "kind": "codec",
        "config": model.config_dict(),
        # the record readers (zoo export, load_codec) know: lmbda for fixed rate, else lmbdas
        "lmbda": None if cfg.variable_rate else cfg.lmbdas[0],
        "lmbdas": list(cfg.lmbdas) if cfg.variable_rate else None,
        "quality_index": cfg.quality_index,
        "dataset": cfg.data,
        "train": asdict(cfg),
        **provenance(),
    }
    # every command that trained these weights, in order (a resumed run adds its own)
    earlier = (saved.get("commands") or [saved.get("command")]) if state is not None else []
    meta["commands"] = [c for c in earlier if c] + [meta["command"]]
    # fused: one kernel for the whole update on a GPU (the same maths)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=device.type == "cuda" or None)
    drop_step = int(cfg.lr_drop_at * cfg.steps)
    budget = cfg.hours * 3600.0 if cfg.hours else math.inf  # seconds of this invocation
    timed_drop = [False]  # set once this invocation has run lr_drop_at of its time budget
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 if s >= drop_step or timed_drop[0] else 1.0
    )
    step, best = 0, math.inf
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, best = int(state["step"]), float(state["best_val_loss"])
        torch.set_rng_state(state["rng"])
        if is_main:
            print(f"resuming {out}: {step} of {cfg.steps} steps done")

    runtime.announce()  # the run is set up: its thread count, if chosen from the load
    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:  # the training forward only; validation runs the model as it is
        ddp_model = torch.compile(ddp_model)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        n_params = sum(p.numel() for p in model.parameters())
        print(
            f"training {cfg.model} codec (N={model.N}, M={model.M}, {n_params / 1e6:.2f}M params,"
            f" lmbda={' '.join(map(str, cfg.lmbdas))}) on {_describe(cfg, train_set)}, "
            f"{cfg.crop}px crops, "
            f"validating on {len(val_files)}; {cfg.steps} steps x {batch} x {world} rank(s) "
            f"on {device} -> {out}",
            flush=True,
        )
        how = [f"transforms in {'bf16' if model.autocast_dtype else 'fp32'}"]
        how.append(f"crops cut on {device}" if crops else f"{cfg.workers} data worker(s)")
        if cfg.compile:
            how.append("torch.compile")
        print("  " + ", ".join(how), flush=True)

    def checkpoint(val: dict | None) -> bool:
        nonlocal best
        improved = val is None or val["loss"] < best
        if val is not None and improved:
            best = val["loss"]
        m = {**meta, "step": step}
        if val is not None:
            m["metrics"] = {f"val_{k}": v for k, v in val.items()}
        if improved:
            save_model(out, model, m)
        save_model(last, model, m)
        save_train_state(last, {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                "step": step, "best_val_loss": best,
                                "rng": torch.get_rng_state(),
                                **({"data": data_state} if data_state else {})})  # fmt: skip
        return improved

    lmbda_table = weight_table = weights = None
    if cfg.variable_rate:
        weights = level_weights(cfg.lmbdas, cfg.level_weighting)
        lmbda_table = torch.tensor(cfg.lmbdas, dtype=torch.float32, device=device)
        weight_table = torch.tensor(weights, dtype=torch.float32, device=device)
    log = None
    if is_main:  # a fresh run starts a new log; a resumed one drops lines after its checkpoint
        path = out / METRICS_FILE
        keep = path.read_text().splitlines() if state is not None and path.is_file() else []
        keep = [ln for ln in keep if _json_step(ln) <= step]
        path.write_text("".join(ln + "\n" for ln in keep))
        log = open(path, "a")
    show_bar = is_main and cfg.progress and sys.stderr.isatty()
    bar = tqdm(total=cfg.steps, initial=step, unit="step", disable=not show_bar)

    def batches():
        """Training batches on the device, epoch after epoch (DeviceCrops counts its own)."""
        while crops is not None:
            yield crops.batch(batch)
        while shards is not None:
            for x, info in worker_errors(loader):
                shards.consumed(info)
                yield x.to(device, non_blocking=True)
        epochs.first = step // epochs.batches
        for x in loader:
            yield x.to(device, non_blocking=True)

    # the statistics stay on the device and are read every log_every steps (and before any
    # checkpoint): a read waits for the device, so reading every step would stall a GPU
    acc = torch.zeros(3, device=device)  # sums of loss, bpp, mse since the last read
    n_acc, t0 = 0, time.time()
    t_log = t0
    out_of_time = False
    data_state = None  # the shard streams' merged position, for the checkpoint
    data = batches()
    try:
        while step < cfg.steps and not out_of_time:
            # channels-last: oneDNN convolutions and the GDN matrix product are ~2x faster
            x = next(data).contiguous(memory_format=torch.channels_last)
            if lmbda_table is None:
                r = rd_loss(ddp_model(x), x, cfg.lmbdas[0])
            else:  # variable rate: a level per image
                # drawn on the device (a host tensor copied there would make the host wait)
                lv = torch.randint(len(lmbda_table), (x.shape[0],), device=device)
                r = rd_loss(ddp_model(x, lv), x, lmbda_table[lv], weight_table[lv])
            opt.zero_grad(set_to_none=True)
            r["loss"].backward()
            if cfg.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            opt.step()
            sched.step()
            step += 1
            n_acc += 1
            acc += torch.stack([r["loss"], r["bpp"], r["mse"]]).detach()
            bar.update(1)
            validating = step % cfg.val_every == 0
            if step % cfg.log_every == 0 or validating or step == cfg.steps:
                # the elapsed time travels with the statistics, so that every rank takes the
                # time-budget decisions at the same step
                stats = torch.cat([acc / n_acc, acc.new_tensor([time.time() - t0])])
                if world > 1:
                    dist.all_reduce(stats)
                    stats /= world
                values = stats.tolist()  # the one read of the device
                elapsed = values[3]
                if elapsed >= cfg.lr_drop_at * budget:
                    timed_drop[0] = True
                out_of_time = elapsed >= budget
                if not all(map(math.isfinite, values)):
                    raise TrainingError(
                        f"the loss became {values[0]} between steps {step - n_acc + 1} and "
                        f"{step}: training diverged. Try a lower --lr (now {cfg.lr}) or "
                        f"--clip-grad; the last good checkpoint is in {last} (use --resume)."
                    )
                last_step = step == cfg.steps or out_of_time
                if shards is not None and (validating or last_step):
                    data_state, rec = gather_streams(shards, world, step)
                    if is_main:
                        log.write(json.dumps({"split": "data", **rec}) + "\n")
                if is_main and (step % cfg.log_every == 0 or last_step):
                    rec = dict(zip(("loss", "bpp", "mse"), values))
                    rec["psnr"] = 10 * math.log10(1.0 / max(rec["mse"], 1e-12))
                    rec = {"split": "train", "step": step, **rec, "lr": opt.param_groups[0]["lr"],
                           "seconds": time.time() - t0}  # fmt: skip
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", bpp=f"{rec['bpp']:.3f}",
                                    psnr=f"{rec['psnr']:.2f}")  # fmt: skip
                    _say(
                        bar,
                        f"step {step:>7}  loss {rec['loss']:.4f}  bpp {rec['bpp']:.4f}  "
                        f"mse {rec['mse']:.6f}  psnr {rec['psnr']:.2f} dB  lr {rec['lr']:.1e}  "
                        f"{(time.time() - t_log) / n_acc:.3f} s/step",
                    )
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                acc.zero_()
                n_acc, t_log = 0, time.time()
                if out_of_time and is_main:
                    _say(bar, f"time budget of {cfg.hours:g} h used at step {step}: validating, "
                              f"saving and stopping (--resume continues)")  # fmt: skip
                if is_main and (validating or last_step):
                    t_val = time.time()
                    val = (
                        validate_codec(model, val_loader, cfg.lmbdas, device, weights)
                        if val_loader
                        else None
                    )
                    improved = checkpoint(val)
                    t_log += time.time() - t_val  # s/step counts training steps only
                    if val is not None:
                        _say(
                            bar,
                            f"validation at step {step}: loss {val['loss']:.4f}  bpp "
                            f"{val['bpp']:.4f}  psnr {val['psnr']:.2f} dB"
                            + ("  (best, saved)" if improved else ""),
                        )
                        for lv in val.get("levels", []):
                            _say(bar, f"  level {lv['level']} (lmbda {lv['lmbda']}): bpp "
                                      f"{lv['bpp']:.4f}  psnr {lv['psnr']:.2f} dB")  # fmt: skip
                        log.write(json.dumps({"split": "val", "step": step, **val,
                                              "best": improved}) + "\n")  # fmt: skip
                        log.flush()
                        _plot_curves(out)
    finally:
        data.close()  # stops the loader's workers now, not at a later garbage collection
        bar.close()
        if log is not None:
            log.close()
    summary = {"steps": step, "best_val_loss": best if math.isfinite(best) else None}
    if is_main and (out / WEIGHTS_FILE).is_file():
        load_state_into(model, load_tensors(out / WEIGHTS_FILE), out / WEIGHTS_FILE)
        summary.update(read_json(out / CONFIG_FILE).get("metrics", {}))
    model.eval()
    return model, summary
