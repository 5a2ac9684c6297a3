"""The IDX file format of MNIST and Fashion-MNIST (LeCun et al., http://yann.lecun.com/exdb/mnist/).

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 sizes, then the data in C order, big-endian. Dtype codes: 0x08 uint8, 0x09 int8,
0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64. Files are often gzipped; :func:`read_idx`
detects gzip from its magic bytes, whatever the file is called.

A dataset folder holds four files per the MNIST naming (``.gz`` optional, and the
``train-images.idx3-ubyte`` spelling accepted)::

    train-images-idx3-ubyte   train-labels-idx1-ubyte   (split "train")
    t10k-images-idx3-ubyte    t10k-labels-idx1-ubyte    (split "test"; "test-..." accepted)
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from vaecodec.errors import DatasetError
from vaecodec.fileio import atomic_write_bytes

IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {(np.dtype(v).kind, np.dtype(v).itemsize): k for k, v in IDX_DTYPES.items()}

SPLIT_PREFIXES = {"train": ("train",), "test": ("t10k", "test")}


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the (decompressed) bytes of an IDX file.

    Returns:
        A writable array in native byte order with the shape the header gives.

    Raises:
        DatasetError: bad magic, unknown dtype code, header shorter than it says, or a data
            size that differs from the product of the sizes (truncated or trailing bytes);
            the message names ``name``.
    """
    if len(raw) < 4:
        raise DatasetError(f"{name} is not an IDX file: only {len(raw)} bytes")
    if raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{name} is not an IDX file: bad magic {raw[:4].hex()}")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise DatasetError(f"{name} has unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise DatasetError(f"{name} is an IDX file with 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{name} is truncated inside its IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    present = len(raw) - header
    if present < expected:
        raise DatasetError(
            f"{name} is truncated: its header says {dims} ({expected} bytes of data) but only "
            f"{present} bytes follow; fetch the file again"
        )
    if present > expected:
        raise DatasetError(
            f"{name} is corrupt: {present - expected} bytes follow the {dims} data its header says"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return arr.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzipped or not (see :func:`parse_idx`).

    Raises:
        DatasetError: missing or unreadable file, corrupt or truncated gzip stream, or a bad IDX
            payload; the message names the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"IDX file not found: {path}") from None
    except OSError as e:
        raise DatasetError(f"cannot read IDX file {path}: {e}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DatasetError(
                f"{path} is a corrupt or truncated gzip file ({e}); fetch it again"
            ) from None
    return parse_idx(raw, name=str(path))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``compress``, default: name ends in .gz).

    The write is atomic (temporary file then ``os.replace``). Supported dtypes: uint8, int8,
    int16, int32, float32, float64. Raises :class:`DatasetError` for other dtypes.
    """
    path = Path(path)
    a = np.asarray(array)
    code = _CODES.get((a.dtype.kind, a.dtype.itemsize))
    if code is None or a.ndim == 0 or a.ndim > 255:
        raise DatasetError(f"cannot write {a.dtype} array of shape {a.shape} as IDX")
    big = np.dtype(IDX_DTYPES[code])
    raw = bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, dtype=">u4").tobytes()
    raw += np.ascontiguousarray(a, dtype=big).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        raw = gzip.compress(raw, mtime=0)
    atomic_write_bytes(path, raw)
    return path


def _candidates(prefix: str, kind: str) -> list[str]:
    rank = "idx3" if kind == "images" else "idx1"
    names = [f"{prefix}-{kind}-{rank}-ubyte", f"{prefix}-{kind}.{rank}-ubyte"]
    return [n + ext for n in names for ext in (".gz", "")]


def find_idx_files(directory: str | os.PathLike, split: str) -> tuple[Path, Path] | None:
    """Return ``(images_path, labels_path)`` of ``split`` in ``directory``, or None if absent."""
    d = Path(directory)
    for prefix in SPLIT_PREFIXES[split]:
        imgs = [d / n for n in _candidates(prefix, "images") if (d / n).is_file()]
        labs = [d / n for n in _candidates(prefix, "labels") if (d / n).is_file()]
        if imgs and labs:
            return imgs[0], labs[0]
    return None


def is_idx_dir(directory: str | os.PathLike) -> bool:
    """True when ``directory`` holds the IDX images and labels of the train or test split."""
    return any(find_idx_files(directory, s) is not None for s in SPLIT_PREFIXES)


def expected_names(split: str) -> str:
    """Human-readable list of the file names accepted for ``split``."""
    p = SPLIT_PREFIXES[split][0]
    return f"{p}-images-idx3-ubyte[.gz] and {p}-labels-idx1-ubyte[.gz]"


def load_idx_split(directory: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of an IDX dataset folder.

    Returns:
        ``images`` uint8 ``[N, H, W]`` (or ``[N, H, W, 3]``) and ``labels`` int64 ``[N]``.

    Raises:
        DatasetError: files missing (the message lists the names expected), corrupt, of the
            wrong dtype or rank, or with different numbers of images and labels.
    """
    d = Path(directory)
    found = find_idx_files(d, split)
    if found is None:
        raise DatasetError(f"no {split} split in {d}: expected {expected_names(split)} there")
    ip, lp = found
    images, labels = read_idx(ip), read_idx(lp)
    if images.dtype != np.uint8 or not (
        images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3)
    ):
        raise DatasetError(
            f"{ip} holds {images.dtype} {images.shape}; expected uint8 [N, H, W] images"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(f"{lp} holds {labels.dtype} {labels.shape}; expected integer [N]")
    if labels.shape[0] != images.shape[0]:
        raise DatasetError(
            f"{ip} has {images.shape[0]} images but {lp} has {labels.shape[0]} labels"
        )
    return images, labels.astype(np.int64)
