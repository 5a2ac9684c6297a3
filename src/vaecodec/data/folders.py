"""Labelled image folders (the torchvision ``ImageFolder`` layout) as in-memory arrays.

Layouts accepted (labels are the sorted class-folder names, 0, 1, ...)::

    DIR/train/<class>/*.png  DIR/test/<class>/*.png    explicit split
    DIR/<class>/*.png                                   split by file-name hash (below)
    DIR/*.png                                           one class, "", label 0

Images inside a class folder are found recursively (:func:`~vaecodec.data.images.list_images`).
With class folders present, loose images directly in ``DIR`` (or ``DIR/<split>``) are ignored.
Classes are the union over both splits, so labels agree between ``train`` and ``test``.

Split without ``train``/``test`` folders: a file goes to ``test`` when the first 8 bytes of
SHA-1 of its path relative to ``DIR`` (``/``-separated, e.g. ``cat/001.png``), read as a
big-endian integer, are 0 modulo 10; else to ``train``. About 90/10, the same on every
machine, and a file keeps its split when others are added. A folder of fewer than ~10 images
may get an empty test split (a :class:`DatasetError` then says to add ``train``/``test``).

Colour: ``color="auto"`` gives greyscale ``[N, H, W]`` when every image in ``DIR`` is stored
grey (PIL modes ``1``, ``L``, ``LA``, ``I;16``, ...) and RGB ``[N, H, W, 3]`` otherwise;
``"gray"`` / ``"rgb"`` force one. Size: all images must share one size, or pass
``size=S`` or ``(H, W)`` to resize every image (bilinear, PIL) to it.
Unreadable images are skipped with one warning that counts them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from vaecodec.data.cache import cached_arrays
from vaecodec.data.images import GRAY_MODES, ImageError, image_header, list_images, read_image
from vaecodec.errors import DatasetError

log = logging.getLogger(__name__)

SPLITS = ("train", "test")


def is_test_file(relpath: str) -> bool:
    """The hash rule of the module docstring: True if ``relpath`` belongs to the test split."""
    h = hashlib.sha1(relpath.encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") % 10 == 0


def _class_dirs(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def fit_image(a: np.ndarray, gray: bool, target: tuple[int, int]) -> np.ndarray:
    """uint8 ``a [H, W, C]`` as ``[h, w]`` (``gray``: its first channel) or ``[h, w, 3]``,
    resized (bilinear, PIL) to ``target = (h, w)`` when it is another size."""
    if a.shape[:2] != tuple(target):
        img = Image.fromarray(a[:, :, 0] if gray or a.shape[2] == 1 else a)
        a = np.asarray(img.resize((target[1], target[0]), Image.Resampling.BILINEAR))
        a = a.reshape(target[0], target[1], -1)
    return a[:, :, 0] if gray else a


def normalise_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        size = (size, size)
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise DatasetError(f"size must be an int or (H, W), not {size!r}") from None
    if h < 1 or w < 1:
        raise DatasetError(f"size must be positive, not {size!r}")
    return h, w


def folder_files(directory: str | os.PathLike) -> dict[str, list[tuple[Path, str]]]:
    """``{"train": [(file, class name)], "test": [...]}`` for an image folder (module layouts).

    Raises:
        DatasetError: ``directory`` is not a folder.
    """
    d = Path(directory)
    if not d.is_dir():
        raise DatasetError(f"dataset folder not found: {d}")
    explicit = [s for s in SPLITS if (d / s).is_dir()]
    out: dict[str, list[tuple[Path, str]]] = {s: [] for s in SPLITS}
    if explicit:
        for s in explicit:
            classes = _class_dirs(d / s)
            if classes:
                for c in classes:
                    out[s] += [(f, c) for f in list_images(d / s / c)]
            else:
                out[s] += [(f, "") for f in list_images(d / s, recursive=False)]
        return out
    classes = _class_dirs(d)
    if classes:
        pairs = [(f, c) for c in classes for f in list_images(d / c)]
    else:
        pairs = [(f, "") for f in list_images(d, recursive=False)]
    for f, c in pairs:
        out["test" if is_test_file(f.relative_to(d).as_posix()) else "train"].append((f, c))
    return out


def load_folder(
    directory: str | os.PathLike,
    split: str,
    size=None,
    color: str = "auto",
    cache: bool = True,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Load one split of an image folder (layouts, split rule and colour: module docstring).

    Args:
        directory: the dataset folder.
        split: ``"train"`` or ``"test"``.
        size: ``None`` (all images must share one size), an int, or ``(H, W)`` to resize to.
        color: ``"auto"``, ``"gray"`` or ``"rgb"``.
        cache: use the on-disk cache (:mod:`vaecodec.data.cache`).

    Returns:
        ``images`` uint8 ``[N, H, W]`` (grey) or ``[N, H, W, 3]`` (RGB), ``labels`` int64
        ``[N]`` and the class names (index = label).

    Raises:
        DatasetError: missing folder, no images, empty split, images of different sizes
            without ``size``, or a bad ``color`` / ``size``.
    """
    if color not in ("auto", "gray", "rgb"):
        raise DatasetError(f"color must be 'auto', 'gray' or 'rgb', not {color!r}")
    hw = normalise_size(size)
    d = Path(directory)
    files = folder_files(d)
    every = files["train"] + files["test"]
    if not every:
        raise DatasetError(f"no images found in {d} (expected DIR/<class>/*.png or DIR/*.png)")
    if not files[split]:
        raise DatasetError(
            f"the {split} split of {d} is empty; make {d}/train and {d}/test folders "
            "to choose the split yourself"
        )
    classes = tuple(sorted({c for _, c in every}))

    def build() -> dict[str, np.ndarray]:
        headers = {}
        for f, _ in every:
            try:
                headers[f] = image_header(f)
            except ImageError:
                headers[f] = None
        readable = [h for h in headers.values() if h is not None]
        gray = color == "gray" or (
            color == "auto" and bool(readable) and all(m in GRAY_MODES for _, m in readable)
        )
        target = hw
        if target is None:
            sizes = {}
            for f, h in headers.items():
                if h is not None:
                    sizes.setdefault(h[0], f)
            if len(sizes) > 1:
                (s1, f1), (s2, f2) = list(sizes.items())[:2]
                raise DatasetError(
                    f"images in {d} have different sizes ({f1} is {s1[0]}x{s1[1]}, {f2} is "
                    f"{s2[0]}x{s2[1]}); pass size=(H, W) to resize them"
                )
            target = next(iter(sizes)) if sizes else None
        images, labels, skipped = [], [], 0
        for f, c in files[split]:
            if headers[f] is None:
                skipped += 1
                continue
            try:
                a = read_image(f, mode="L" if gray else "RGB")[0]
            except ImageError as e:
                log.debug("skipping %s", e)
                skipped += 1
                continue
            images.append(fit_image(a, gray, target))
            labels.append(classes.index(c))
        if not images:
            raise DatasetError(f"no readable image in the {split} split of {d}")
        return {
            "images": np.stack(images),
            "labels": np.asarray(labels, dtype=np.int64),
            "classes": np.asarray(classes, dtype=str),
            "skipped": np.asarray(skipped, dtype=np.int64),
        }

    arrays = cached_arrays(
        tag=f"folder-{d.name}",
        split=split,
        sources=[f for f, _ in every],
        params={"size": hw, "color": color, "kind": "folder"},
        build=build,
        enabled=cache,
    )
    skipped = int(arrays["skipped"])
    if skipped:
        warnings.warn(f"skipped {skipped} unreadable files in {d}", UserWarning, stacklevel=3)
    return arrays["images"], arrays["labels"], tuple(str(c) for c in arrays["classes"])
