"""In-memory image datasets and a fast, shardable, resumable batch iterator for VAE training.

::

    train = load_dataset("mnist", "train", binarize="dynamic")      # x: float32 [60000, 1, 28, 28]
    test = load_dataset("mnist", "test", binarize="static")         # fixed {0, 1} sample, seed 0
    batches = BatchIterator(train, batch_size=128, seed=0, rank=rank, world_size=world_size)
    for epoch in range(epochs):
        batches.set_epoch(epoch)
        for x, labels in batches:      # x [B, 1, 28, 28] float32, labels [B] int64
            ...

Binarisation (the usual protocols for Bernoulli-decoder VAEs on MNIST):

* ``"static"``: every pixel is replaced once by a Bernoulli(intensity) sample, with
  ``numpy.random.default_rng(seed)`` (PCG64; ``u < v / 255`` with ``u`` float32 uniforms drawn
  in one pass in C order), so the result is the same on every machine. The evaluation protocol
  of vaecodec is ``load_dataset(name, "test", binarize="static", seed=0)``.
* ``"dynamic"``: a fresh Bernoulli sample every time a batch is drawn (Salakhutdinov &
  Murray 2008), which regularises training; x then holds the grey intensities.

Batches are gathered from tensors already in memory (optionally on the GPU via
``dataset.to("cuda")``), so an MNIST epoch at batch 128 costs a fraction of a second instead
of 60000 ``__getitem__`` calls of a ``DataLoader``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import numpy as np
import torch

from vaecodec.data.seeds import mix_seed
from vaecodec.data.sources import load_split
from vaecodec.errors import DatasetError

BINARIZE_MODES = (None, "static", "dynamic")
EVAL_BINARIZE_SEED = 0
"""Seed of the statically binarised evaluation sets."""


def binarize_static(images: np.ndarray, seed: int = EVAL_BINARIZE_SEED) -> np.ndarray:
    """Bernoulli sample of uint8 intensities: ``1`` where ``u < v / 255``, ``u ~ U[0, 1)``.

    Args:
        images: uint8 array of any shape (intensities 0..255).
        seed: seed of ``numpy.random.default_rng``; one float32 uniform per pixel, C order.

    Returns:
        uint8 array of the same shape with values in {0, 1}; identical on every machine.
    """
    rng = np.random.default_rng(seed)
    flat = np.ascontiguousarray(images).reshape(-1)
    out = np.empty(flat.shape, dtype=np.uint8)
    chunk = 1 << 22
    for s in range(0, flat.size, chunk):
        p = flat[s : s + chunk].astype(np.float32) / np.float32(255.0)
        out[s : s + chunk] = rng.random(p.shape, dtype=np.float32) < p
    return out.reshape(images.shape)


class ImageDataset(torch.utils.data.Dataset):
    """Images and labels held as tensors, for training and evaluating VAEs.

    Attributes:
        x: float32 ``[N, C, H, W]`` in ``[0, 1]`` (values in {0, 1} when ``binarized="static"``;
            grey intensities, sampled per batch, when ``"dynamic"``).
        labels: int64 ``[N]``.
        name: dataset name (``"mnist"``, ..., or the folder path).
        split: ``"train"`` or ``"test"``.
        binarized: ``None``, ``"static"`` or ``"dynamic"``.
        classes: class names (index = label).
        seed: the static-binarisation seed (``None`` otherwise).

    ``dataset[i]`` returns ``(x [C, H, W], label)`` (a fresh Bernoulli sample from torch's global
    generator when dynamic), so the class also works with a ``DataLoader``; prefer
    :class:`BatchIterator` for speed.
    """

    def __init__(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        name: str = "",
        split: str = "train",
        binarized: str | None = None,
        classes: tuple[str, ...] = (),
        seed: int | None = None,
    ):
        if x.ndim != 4 or labels.ndim != 1 or x.shape[0] != labels.shape[0]:
            raise DatasetError(
                f"ImageDataset needs x [N, C, H, W] and labels [N], got {tuple(x.shape)} "
                f"and {tuple(labels.shape)}"
            )
        if binarized not in BINARIZE_MODES:
            raise DatasetError(f"binarize must be None, 'static' or 'dynamic', not {binarized!r}")
        self.x = x
        self.labels = labels
        self.name = name
        self.split = split
        self.binarized = binarized
        self.classes = tuple(classes)
        self.seed = seed

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``, or max label + 1 when no names are known)."""
        if self.classes:
            return len(self.classes)
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    @property
    def device(self) -> torch.device:
        return self.x.device

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, index):
        x = self.x[index]
        if self.binarized == "dynamic":
            x = torch.bernoulli(x)
        return x, self.labels[index]

    def __repr__(self) -> str:
        return (
            f"ImageDataset({self.name!r}, {self.split}, N={len(self)}, shape={self.shape}, "
            f"binarized={self.binarized}, classes={self.num_classes}, device={self.device})"
        )

    def to(self, device) -> ImageDataset:
        """Move ``x`` and ``labels`` to ``device`` (in place); returns ``self``."""
        self.x = self.x.to(device)
        self.labels = self.labels.to(device)
        return self

    def subset(self, n: int) -> ImageDataset:
        """The first ``n`` examples as a new dataset (shares memory; for quick runs and tests)."""
        return ImageDataset(
            self.x[:n],
            self.labels[:n],
            self.name,
            self.split,
            self.binarized,
            self.classes,
            self.seed,
        )

    def gather(self, index: torch.Tensor, generator: torch.Generator | None = None):
        """Batch ``(x [B, C, H, W], labels [B])`` at ``index``; binarised now when dynamic.

        ``generator`` (on ``x``'s device) drives the dynamic Bernoulli sample; ``None`` uses
        torch's global generator.
        """
        index = index.to(self.x.device)
        xb = self.x.index_select(0, index)
        if self.binarized == "dynamic":
            xb = torch.bernoulli(xb, generator=generator)
        return xb, self.labels.index_select(0, index)


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    binarize: str | None = None,
    seed: int = EVAL_BINARIZE_SEED,
    size=None,
    color: str = "auto",
    cache: bool = True,
    device=None,
) -> ImageDataset:
    """Load a dataset as an :class:`ImageDataset` (sources: :func:`vaecodec.data.load_arrays`).

    Args:
        name, split, root, size, color, cache: as for :func:`~vaecodec.data.load_arrays`.
        binarize: ``None`` (grey intensities ``v / 255``), ``"static"`` (one fixed Bernoulli
            sample, see :func:`binarize_static`) or ``"dynamic"`` (resampled per batch).
        seed: seed of the static sample (default 0, the evaluation protocol).
        device: optional device to put the tensors on.

    Returns:
        ``ImageDataset`` with ``x`` float32 ``[N, C, H, W]`` (C = 1 grey, 3 RGB) in ``[0, 1]``.

    Raises:
        DatasetError: bad ``binarize``, or anything :func:`load_arrays` raises.
    """
    if binarize not in BINARIZE_MODES:
        raise DatasetError(f"binarize must be None, 'static' or 'dynamic', not {binarize!r}")
    a = load_split(name, split, root=root, size=size, color=color, cache=cache)
    ds = as_dataset(a, binarize, seed)
    return ds.to(device) if device is not None else ds


def as_dataset(a, binarize: str | None = None, seed: int = EVAL_BINARIZE_SEED) -> ImageDataset:
    """The :class:`ImageDataset` of a loaded split (:class:`~vaecodec.data.sources.Arrays`),
    binarised as :func:`load_dataset` says."""
    if binarize not in BINARIZE_MODES:
        raise DatasetError(f"binarize must be None, 'static' or 'dynamic', not {binarize!r}")
    images = a.images
    if binarize == "static":
        x = torch.from_numpy(binarize_static(images, seed)).float()
    else:
        x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    x = x.unsqueeze(1) if images.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()
    return ImageDataset(
        x,
        torch.from_numpy(np.array(a.labels, dtype=np.int64)),
        name=a.name,
        split=a.split,
        binarized=binarize,
        classes=a.classes,
        seed=seed if binarize == "static" else None,
    )


def _shard(n: int, rank: int, world_size: int) -> int:
    if world_size < 1 or not 0 <= rank < world_size:
        raise DatasetError(f"need 0 <= rank < world_size, got rank={rank} world_size={world_size}")
    per = n // world_size
    if per == 0:
        raise DatasetError(f"{n} examples cannot be shared among {world_size} ranks")
    return per


def iterate_batches(
    dataset: ImageDataset,
    batch_size: int,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    start_batch: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x [B, C, H, W] float32, labels [B] int64)`` batches of an in-memory dataset.

    One epoch: a permutation of ``range(N)`` (``torch.randperm`` with the CPU ``generator``
    when ``shuffle``, else the identity) is cut into ``world_size`` equal contiguous slices of
    ``N // world_size``; rank ``r`` takes slice ``r`` (disjoint across ranks; the remaining
    ``N mod world_size`` examples are left out of this epoch, different ones each epoch when
    shuffling). Every rank must pass a generator in the same state so that all draw the same
    permutation, as ``DistributedSampler`` requires.

    Dynamic binarisation draws one 63-bit seed from ``generator`` after the permutation; batch
    ``k`` of rank ``r`` is then sampled with a generator seeded ``mix_seed(seed, r, k)``, so ranks
    get independent noise and resuming at ``start_batch`` reproduces the uninterrupted run.

    Args:
        dataset: an :class:`ImageDataset` (tensors on any device).
        batch_size: examples per batch (the last one may be smaller unless ``drop_last``).
        shuffle: shuffle each epoch.
        generator: CPU ``torch.Generator`` (``None``: torch's global generator).
        drop_last: drop the last, smaller batch.
        rank, world_size: distributed sharding (``torch.distributed`` rank and world size).
        start_batch: skip the first batches (resume inside an epoch).

    Raises:
        DatasetError: bad ``batch_size``, ``rank`` or ``world_size``.
    """
    if batch_size < 1:
        raise DatasetError(f"batch_size must be >= 1, got {batch_size}")
    n = len(dataset)
    per = _shard(n, rank, world_size)
    perm = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    perm = perm[rank * per : (rank + 1) * per].to(dataset.device)
    noise = None
    if dataset.binarized == "dynamic":
        base = int(torch.randint(0, 2**62, (), generator=generator))
        noise = torch.Generator(device=dataset.device)
    for k, start in enumerate(range(0, per, batch_size)):
        idx = perm[start : start + batch_size]
        if drop_last and idx.numel() < batch_size:
            return
        if k < start_batch:
            continue
        if noise is not None:
            noise.manual_seed(mix_seed(base, rank, k))
        yield dataset.gather(idx, noise)


class BatchIterator:
    """Reproducible, resumable, shardable epochs of :func:`iterate_batches`.

    Epoch ``e`` shuffles with a CPU generator seeded ``mix_seed(seed, e)``: the same permutation
    on every rank and every run. Iterating runs the current epoch from the current batch and
    then advances to the next epoch (so forgetting :meth:`set_epoch` still reshuffles);
    :meth:`set_epoch` (as with ``DistributedSampler``) or :meth:`load_state_dict` choose where
    to start. ``len()`` is the number of batches per rank per epoch.

    Args:
        dataset: an :class:`ImageDataset`.
        batch_size: examples per batch and per rank.
        shuffle: shuffle each epoch.
        seed: base seed.
        drop_last: drop each epoch's last, smaller batch.
        rank, world_size: distributed sharding (see :func:`iterate_batches`).
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size < 1:
            raise DatasetError(f"batch_size must be >= 1, got {batch_size}")
        self.per_rank = _shard(len(dataset), rank, world_size)
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.batch = 0  # batches of the current epoch already yielded

    def __len__(self) -> int:
        if self.drop_last:
            return self.per_rank // self.batch_size
        return math.ceil(self.per_rank / self.batch_size)

    def set_epoch(self, epoch: int, batch: int = 0) -> None:
        """Start the next iteration at ``epoch`` (and at its ``batch``-th batch)."""
        self.epoch = int(epoch)
        self.batch = int(batch)

    def state_dict(self) -> dict:
        """``{"epoch", "batch", "seed"}``: where the next iteration starts (for checkpoints)."""
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict`."""
        self.seed = int(state.get("seed", self.seed))
        self.set_epoch(state["epoch"], state.get("batch", 0))

    def _epoch_seed(self, epoch: int) -> int:
        return mix_seed(self.seed, epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self._epoch_seed(self.epoch))
        it = iterate_batches(
            self.dataset,
            self.batch_size,
            shuffle=self.shuffle,
            generator=g,
            drop_last=self.drop_last,
            rank=self.rank,
            world_size=self.world_size,
            start_batch=self.batch,
        )
        for xb, yb in it:
            self.batch += 1
            yield xb, yb
        self.epoch += 1
        self.batch = 0


def model_test_data(meta: dict, dataset: str | None, root: str | None, split: str = "test"):
    """The evaluation images for a model: its own dataset unless overridden, binarised once with
    the fixed seed when the model's likelihood is Bernoulli."""
    train = meta.get("train", {})
    name = dataset or meta.get("dataset") or train.get("dataset")
    if name is None:
        raise DatasetError("the model does not record its dataset; pass --dataset")
    root = root if root is not None else (train.get("data_root") if dataset is None else None)
    binary = meta.get("config", {}).get("likelihood") == "bernoulli"
    ds = load_dataset(name, split, root=root, binarize="static" if binary else None)
    shape = tuple(meta.get("config", {}).get("input_shape", ds.shape))
    if tuple(ds.shape) != shape:
        raise DatasetError(
            f"dataset {name!r} has images of shape {tuple(ds.shape)}, but the model expects "
            f"{shape}; pass a matching --dataset"
        )
    return ds
