"""A VAE's images from tar shards: one split held in memory, and the training split streamed.

What ``vaecodec train --dataset 'DIR/shard-{000000..000123}.tar'`` does::

    test = load_dataset(spec, "test")           # the fixed validation set, held in memory
    c, h, w = test.shape
    train = ShardImages(spec, shape=(h, w), gray=c == 1, rank=r, world_size=n)
    epochs = ShardEpochs(train, batch_size=128, steps=test_sizes["train"] // (n * 128))
    for epoch in range(epochs_wanted):
        epochs.set_epoch(epoch)
        for x, _ in epochs:                      # exactly `steps` batches on every rank
            ...                                  # x float32 [128, c, h, w] in [0, 1]

The split and the images follow the folder rules (:mod:`vaecodec.data.folders`), so a folder
and the shards made from it (``make-shards``) give the same two splits: a sample belongs to
``test`` by the hash of its source path (the ``src`` of its ``.json`` member, else its key);
its class is the ``class`` of that member; colour (``auto``: grey when every image of the
shards is stored grey) and size (every image one size, or ``size=`` to resize) are decided
over all the images, from their headers.

:func:`load_shard_split` reads every shard once: the photos of the split asked for are decoded,
the others' headers only are read (size, mode, counted per split). Local shards are cached
(:mod:`vaecodec.data.cache`) like folders, so a second run starts at once.

:class:`ShardImages` streams one split (the machinery, rules of resume and bad data:
:class:`~vaecodec.data.shard_stream.ShardStream`); :class:`ShardEpochs` cuts it into epochs
of the same number of batches on every rank, ``train examples // (ranks * batch)``: an epoch
takes as many images as the split holds, less than one global batch short, and no rank waits
for another at its end. Which images: the slots' streams, whose passes drift apart by the
shards' sizes (every image equally often over many epochs, not within each one). Memory: the
shuffle buffer of encoded photos per data worker, plus the split held in memory.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from vaecodec.data.folders import fit_image, is_test_file, normalise_size
from vaecodec.data.images import GRAY_MODES, ImageError, decode_image, image_header, to_tensor
from vaecodec.data.seeds import mix_seed
from vaecodec.data.shard_stream import SKIPS, ShardStream, probe, read_shard, worker_errors
from vaecodec.data.shards import expand_shards, is_remote
from vaecodec.errors import DatasetError


def sample_split(key: str, meta: bytes | None) -> tuple[str, str]:
    """``(split, class)`` of the shard sample ``key`` with ``.json`` member ``meta``: the
    folder's hash rule on its ``src`` (else ``key``), and its ``class`` ("" when none)."""
    try:
        info = json.loads(meta) if meta else {}
    except ValueError:
        info = {}
    if not isinstance(info, dict):
        info = {}
    split = "test" if is_test_file(str(info.get("src", key))) else "train"
    return split, str(info.get("class", ""))


def fit_sample(data: bytes, name: str, color: str, gray: bool, shape: tuple[int, int]):
    """uint8 ``[h, w]`` (``gray``) or ``[h, w, 3]`` of an encoded image, as the folder rules
    make it (``color="gray"`` decodes to luma; then :func:`~vaecodec.data.folders.fit_image`).
    Raises ImageError."""
    a, _ = decode_image(data, name, "L" if color == "gray" else "RGB")
    return fit_image(a, gray, shape)


def load_shard_split(
    spec: str, split: str, size=None, color: str = "auto", cache: bool = True
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], dict[str, int]]:
    """One split of the photos in tar shards, in memory, as :func:`~vaecodec.data.folders.
    load_folder` gives a folder (module docstring: the rules).

    Returns:
        ``(images, labels, classes, sizes)``: uint8 ``[N, H, W]`` (grey) or ``[N, H, W, 3]``,
        int64 ``[N]``, the class names, and ``{"train": n, "test": n}``, the readable
        samples of each split (by their headers).

    Raises:
        DatasetError: no shard, a URL that cannot be read, no image, an empty split, images
            of several sizes without ``size``, a bad ``color``.
    """
    from vaecodec.data.cache import cached_arrays

    if color not in ("auto", "gray", "rgb"):
        raise DatasetError(f"color must be 'auto', 'gray' or 'rgb', not {color!r}")
    target = normalise_size(size)
    urls = expand_shards(spec)
    if is_remote(urls[0]):
        probe(urls[0])  # a wrong URL is one error, not a warning per shard

    def build() -> dict[str, np.ndarray]:
        counts = dict.fromkeys(SKIPS, 0)
        heads = []  # (split, class, (h, w), mode) of every readable sample
        mine = []  # (class, name, encoded) of the split's samples
        for url in urls:
            for key, ext, data, meta in read_shard(url, counts):
                name = f"{url}:{key}.{ext}"
                try:
                    hw, mode = image_header(name, data)
                except ImageError:
                    counts["undecodable_images"] += 1
                    continue
                s, c = sample_split(key, meta)
                heads.append((s, c, hw, mode))
                if s == split:
                    mine.append((c, name, data))
        if not heads:
            raise DatasetError(f"no readable image in the shards {spec}")
        classes = sorted({c for _, c, _, _ in heads})
        gray = color == "gray" or (color == "auto" and all(m in GRAY_MODES for *_, m in heads))
        shape = target
        if shape is None:
            sizes = sorted({hw for _, _, hw, _ in heads})
            if len(sizes) > 1:
                a, b = sizes[:2]
                raise DatasetError(f"the images in {spec} have different sizes ({a[0]}x{a[1]}, "
                                   f"{b[0]}x{b[1]}, ...); pass size=(H, W) to resize them")  # fmt: skip
            shape = sizes[0]
        images, labels = [], []
        for c, name, data in mine:
            try:
                images.append(fit_sample(data, name, color, gray, shape))
            except ImageError:
                counts["undecodable_images"] += 1
                continue
            labels.append(classes.index(c))
        bad = sum(counts.values())
        if bad:
            warnings.warn(f"skipped in {spec}: " + ", ".join(
                f"{v} {k.replace('_', ' ')}" for k, v in counts.items() if v), stacklevel=3)  # fmt: skip
        if not images:
            raise DatasetError(f"the {split} split of {spec} is empty (the file-name hash puts "
                               "about one photo in ten in the test split)")  # fmt: skip
        return {
            "images": np.stack(images),
            "labels": np.asarray(labels, dtype=np.int64),
            "classes": np.asarray(classes, dtype=str),
            "split_sizes": np.asarray([sum(h[0] == s for h in heads) for s in ("train", "test")]),
        }

    local = not any(is_remote(u) for u in urls)
    arrays = cached_arrays(tag="shards", split=split, sources=urls if local else [],
                           params={"size": target, "color": color, "kind": "shards", "v": 2},
                           build=build, enabled=cache and local)  # fmt: skip
    sizes = dict(zip(("train", "test"), map(int, arrays["split_sizes"])))
    return arrays["images"], arrays["labels"], tuple(str(c) for c in arrays["classes"]), sizes


class ShardImages(ShardStream):
    """Endless images of one split of tar shards, fitted as :func:`load_shard_split` fits
    them (for a VAE: ``vaecodec train --dataset 'DIR/shard-{...}.tar'``).

    Yields ``(x, info)``: ``x`` float32 ``[C, h, w]`` in ``[0, 1]`` (C = 1 when ``gray``, else
    3); ``info`` as :class:`~vaecodec.data.shard_stream.ShardStream` says. Samples of the other
    split are passed over before the shuffle buffer (read, never decoded).

    Args:
        shards, shuffle_buffer, seed, rank, world_size: as ``ShardStream``'s.
        shape: ``(h, w)`` every image is resized to (when it is another size).
        gray: one grey channel (the first of the decoded image) rather than RGB.
        color: the folder rule's ``color`` (``"gray"`` decodes to luma).
        split: ``"train"`` or ``"test"``.

    Raises:
        DatasetError: no shard, a missing local shard, bad arguments.
    """

    def __init__(
        self,
        shards: str | Sequence[str],
        shape: tuple[int, int],
        gray: bool,
        color: str = "auto",
        split: str = "train",
        shuffle_buffer: int = 1000,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if split not in ("train", "test"):
            raise DatasetError(f"split must be 'train' or 'test', not {split!r}")
        super().__init__(shards, shuffle_buffer, seed, rank, world_size)
        self.shape = normalise_size(shape)
        self.gray, self.color, self.split = bool(gray), color, split

    def _keep(self, key: str, meta: bytes | None) -> bool:
        return sample_split(key, meta)[0] == self.split

    def _item(self, data: bytes, name: str, where: tuple[int, int, int]) -> torch.Tensor:
        a = fit_sample(data, name, self.color, self.gray, self.shape)
        return to_tensor(a[:, :, None] if a.ndim == 2 else a, contiguous=True)


class ShardEpochs:
    """Epochs of ``steps`` batches of a :class:`ShardImages` stream, the same number on every
    rank, through a DataLoader of ``workers`` processes (module docstring).

    Iterating yields ``(x [B, C, h, w], None)`` ``steps`` times (no labels: a VAE does not use
    them), records each batch with :meth:`ShardStream.consumed`, and advances the epoch. The
    DataLoader's iterator lives across epochs (the workers start once); :meth:`close` stops
    them. With ``binarize`` each batch is a fresh Bernoulli sample of its grey values (dynamic
    binarisation), drawn from a generator seeded ``mix_seed(seed, rank, epoch, batch)``, so a
    resumed run draws what the uninterrupted one did.

    Raises:
        DatasetError: ``steps`` or ``batch_size`` below 1; a worker's DatasetError (no readable
            sample), as its one line.
    """

    def __init__(self, stream: ShardImages, batch_size: int, steps: int, workers: int = 0,
                 binarize: bool = False, seed: int = 0):  # fmt: skip
        if batch_size < 1 or steps < 1:
            raise DatasetError(f"need batch_size >= 1 and steps >= 1, got {batch_size}, {steps}")
        self.stream, self.steps, self.binarize, self.seed = stream, int(steps), binarize, seed
        # its own generator: the workers' base seed (unused: the samples are seeded by their
        # place) must not take a draw from the training RNG, or a resumed run's noise differs
        self.loader = torch.utils.data.DataLoader(
            stream, batch_size=batch_size, num_workers=workers, collate_fn=ShardStream.collate,
            generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip
        self.epoch = 0
        self._it: Iterator | None = None

    def __len__(self) -> int:
        return self.steps

    def set_epoch(self, epoch: int) -> None:
        """Number the next epoch (it seeds the dynamic binarisation)."""
        self.epoch = int(epoch)

    def _next(self) -> torch.Tensor:
        if self._it is None:
            self._it = worker_errors(self.loader)
        x, info = next(self._it)
        self.stream.consumed(info)
        return x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, None]]:
        for k in range(self.steps):
            x = self._next()
            if self.binarize:
                g = torch.Generator().manual_seed(
                    mix_seed(self.seed, self.stream.rank, self.epoch, k)
                )
                x = torch.bernoulli(x, generator=g)
            yield x, None
        self.epoch += 1

    def sample_images(self, n: int) -> torch.Tensor:
        """The next ``n`` or so images of the stream (whole batches), not binarised: float32
        ``[n', C, h, w]`` (for what needs training images after training, such as the
        hierarchical VAE's bits-back bucket calibration)."""
        return torch.cat([self._next() for _ in range(math.ceil(n / self.loader.batch_size))])

    def close(self) -> None:
        """Stop the DataLoader's workers now (not at a later garbage collection)."""
        if self._it is not None:
            self._it.close()
            self._it = None
