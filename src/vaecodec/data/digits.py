"""scikit-learn's embedded 8x8 handwritten digits (UCI "Optical Recognition of Handwritten
Digits", Alpaydin & Kaynak 1998): 1797 images, 10 classes, shipped inside scikit-learn.

Pixels are counts 0..16; they are scaled to 0..255 as ``round(v * 255 / 16)`` (uint8).
The split is fixed and documented: the first :data:`DIGITS_TRAIN` = 1500 images (in
scikit-learn's order) are ``"train"``, the remaining 297 ``"test"``.
"""

from __future__ import annotations

import numpy as np

from vaecodec.errors import DatasetError

DIGITS_TRAIN = 1500
DIGITS_CLASSES = tuple(str(i) for i in range(10))


def load_digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``images`` uint8 ``[N, 8, 8]`` and ``labels`` int64 ``[N]`` of ``split``.

    Raises:
        DatasetError: scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetError(
            "the digits dataset needs scikit-learn: `pip install scikit-learn`"
        ) from None
    d = load_digits()
    images = np.round(np.asarray(d.images, dtype=np.float64) * (255.0 / 16.0))
    images = np.clip(images, 0, 255).astype(np.uint8)
    labels = np.asarray(d.target, dtype=np.int64)
    sl = slice(0, DIGITS_TRAIN) if split == "train" else slice(DIGITS_TRAIN, None)
    return np.ascontiguousarray(images[sl]), labels[sl].copy()
