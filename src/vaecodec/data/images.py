"""Image files for the codec: read, list, write, and crop datasets for training.

Reading::

    rgb, mode = read_image("photo.jpg")        # uint8 [H, W, 3], original PIL mode ("RGB", "L", ...)
    files = list_images("kodak/")              # sorted paths, recursive
    write_png("out.png", rgb)                  # atomic; uint8 [H, W(, C)] or float CHW tensor

Training a learned codec (Ballé et al. 2018 style random crops)::

    train = RandomCropImages("photos/", crop=256)     # float [3, 256, 256] in [0, 1], flips
    val = CenterCropImages("kodak/", crop=None)        # full images, deterministic

Shipping data to another machine as one array of crops::

    precut_crops("photos/", "crops.npy", crop=256)     # uint8 [N, 256, 256, 3]
    train = NpyCrops("crops.npy", crop=128)            # random 128-crops of the stored crops

Conventions: images are RGB, 8 bit on disk and float ``[C, H, W]`` in ``[0, 1]`` in memory;
EXIF orientation is applied (``PIL.ImageOps.exif_transpose``); alpha channels are discarded
(as ``PIL.Image.convert("RGB")`` does); 16-bit greyscale is reduced to 8 bit by rounding
``v / 257``. Every unreadable or corrupt file raises :class:`~vaecodec.errors.ImageError` naming
the file, except in the datasets, which skip such files with one warning counting them.

Why one module of this size: reading an image safely (modes, bombs, animations) and the crop
datasets built on that reader belong together; the datasets are short.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from vaecodec.errors import DatasetError, ImageError
from vaecodec.fileio import atomic_write

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")
"""File name extensions (lower case) that :func:`list_images` returns."""

GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
"""PIL modes that hold one (grey) channel, plus perhaps alpha."""

_DECODE_ERRORS = (
    OSError,  # truncated data, unreadable file, bad gzip / zlib stream inside PNG
    ValueError,
    SyntaxError,  # some PIL plugins raise it for malformed headers
    EOFError,
    UnidentifiedImageError,
    Image.DecompressionBombError,
)


# ---------------------------------------------------------------------------------------------
# Reading and writing
# ---------------------------------------------------------------------------------------------


def list_images(directory: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """List the image files under ``directory``, sorted by their path.

    Args:
        directory: folder to search.
        recursive: also search sub-folders (default).

    Returns:
        Paths whose lower-cased suffix is one of :data:`IMAGE_EXTENSIONS`; hidden files (name
        starting with ``.``, e.g. macOS ``._x.jpg``) and hidden folders are left out. Sorted by
        the path relative to ``directory`` (``/``-separated), so the order is the same on every
        machine.

    Raises:
        ImageError: ``directory`` is not a directory.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ImageError(f"not a directory: {root} (pass a folder of images)")
    found = []
    walker = os.walk(root) if recursive else [(str(root), [], os.listdir(root))]
    for dirpath, dirnames, filenames in walker:
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for fn in filenames:
            if fn.startswith(".") or not fn.lower().endswith(IMAGE_EXTENSIONS):
                continue
            p = Path(dirpath) / fn
            if p.is_file():
                found.append(p)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _open_checked(path: Path) -> Image.Image:
    """Open, decode fully and EXIF-rotate an image; :class:`ImageError` on any failure."""
    if not path.is_file():
        if path.exists():
            raise ImageError(f"cannot read image {path}: not a regular file (a FIFO, device or "
                             "folder)")  # fmt: skip
        raise ImageError(f"image not found: {path}")
    return _decode(path, path)


def _decode(source, name) -> Image.Image:
    """Decode ``source`` (a path or a binary file object) fully and EXIF-rotate it;
    :class:`ImageError` naming ``name`` on any failure."""
    fmt = None
    try:
        with Image.open(source) as img:
            fmt = img.format
            img.load()
            try:
                out = ImageOps.exif_transpose(img)
            except _DECODE_ERRORS + (KeyError, TypeError, AttributeError):
                out = None  # a broken EXIF block: keep the stored orientation
            if out is None or out is img:
                out = img.copy()
            return out
    except _DECODE_ERRORS as e:
        if fmt:  # the header was read, the pixels were not: say so rather than Pillow's words
            raise ImageError(f"cannot read image {name}: the {fmt} file's pixel data is "
                             f"missing, truncated or damaged ({e})") from None  # fmt: skip
        raise ImageError(f"cannot read image {name}: {e}") from None


def _to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Convert ``img`` to ``"RGB"``, ``"L"`` or ``"RGBA"``, treating 16-bit grey correctly."""
    if img.mode.startswith("I;16") or img.mode == "I":
        # PIL clips 16/32-bit integers to 255 when converting; rescale the 16-bit range.
        a = np.asarray(img).astype(np.float64)
        a = np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8)
        img = Image.fromarray(a, mode="L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # avoids PIL's warning about byte transparency
    if img.mode != mode:
        img = img.convert(mode)
    return img


def read_image(path: str | os.PathLike, mode: str = "RGB") -> tuple[np.ndarray, str]:
    """Read an image file as an 8-bit array, honouring its EXIF orientation.

    Args:
        path: any format PIL reads (PNG, JPEG, WebP, BMP, TIFF, PPM/PGM, ...).
        mode: ``"RGB"`` (default, C = 3), ``"L"`` (greyscale, C = 1) or ``"RGBA"`` (C = 4).
            Alpha is dropped for ``"RGB"``; colour is reduced with ITU-R 601-2 luma for ``"L"``.

    Returns:
        ``(array, original_mode)``: ``array`` is uint8 ``[H, W, C]`` (after the EXIF rotation,
        so H and W are as displayed) and ``original_mode`` the PIL mode stored in the file.

    Raises:
        ImageError: the file is missing, not an image, truncated or otherwise corrupt (the
            message names the file), or ``mode`` is not one of the above.
    """
    if mode not in ("RGB", "L", "RGBA"):
        raise ImageError(f"read_image mode must be 'RGB', 'L' or 'RGBA', not {mode!r}")
    path = Path(path)
    return _to_array(_open_checked(path), mode, path)


def decode_image(data: bytes, name: str, mode: str = "RGB") -> tuple[np.ndarray, str]:
    """:func:`read_image` of an image held in memory (a member of a tar shard, say).

    Args:
        data: the encoded file (PNG, JPEG, WebP, ...).
        name: what an error message calls it (``shard-000003.tar:000123.jpg``).
        mode: as in :func:`read_image`.

    Returns:
        As :func:`read_image`. Raises :class:`ImageError` naming ``name`` when ``data`` is not
        a readable image.
    """
    if mode not in ("RGB", "L", "RGBA"):
        raise ImageError(f"decode_image mode must be 'RGB', 'L' or 'RGBA', not {mode!r}")
    return _to_array(_decode(io.BytesIO(data), name), mode, name)


def _to_array(img: Image.Image, mode: str, name) -> tuple[np.ndarray, str]:
    original = img.mode
    try:
        arr = np.asarray(_to_mode(img, mode), dtype=np.uint8)
    except _DECODE_ERRORS as e:
        raise ImageError(f"cannot convert image {name} (mode {original}) to {mode}: {e}") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.array(arr, order="C"), original  # a writable copy


FLOAT_MODES = frozenset({"F", "I;16F"})
"""PIL modes of floating-point pixels: their range is not known, so they are refused."""
WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
"""PIL modes of 16-bit (or 32-bit integer) grey pixels, reduced to 8 bits by ``v / 257``."""


def read_input_image(
    path: str | os.PathLike, mode: str = "RGBA", lossless: bool = False
) -> tuple[np.ndarray, str, list[str]]:
    """Read an image given to ``vaecodec compress``, with one documented behaviour per kind
    of file (README, "Images compress accepts"):

    - larger than ``PIL.Image.MAX_IMAGE_PIXELS`` (a decompression bomb): refused from its
      header, before any pixel is decoded;
    - truncated or corrupt: refused (Pillow's error, one line);
    - floating-point (``F``): refused (the range of the values is not known);
    - 32-bit integers outside 0..65535: refused;
    - 16-bit grey (``I;16``, or ``I`` within 0..65535): reduced to 8 bits (``v / 257``
      rounded) with a note; refused when ``lossless``;
    - CMYK (and YCbCr, LAB, HSV): converted to RGB (Pillow's conversion, no colour
      management) with a note; refused when ``lossless`` (the conversion is not exact);
    - animated (GIF, APNG, multi-page TIFF): the first frame with a note; refused when
      ``lossless`` (the other frames would be lost);
    - palette, LA, RGBA and the rest: converted to ``mode`` as :func:`read_image` does (the
      callers refuse transparency and colour they cannot code).

    Returns:
        ``(array, original_mode, notes)``: as :func:`read_image`, plus one line per
        conversion the caller should report.

    Raises:
        ImageError: any refusal above, naming the file and saying what to do.
    """
    path = Path(path)
    notes: list[str] = []
    if path.is_file():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    (w, h), stored, frames = img.size, img.mode, getattr(img, "n_frames", 1)
                    extrema = img.getextrema() if stored == "I" and w * h <= 1 << 26 else None
        except _DECODE_ERRORS as e:
            if isinstance(e, Image.DecompressionBombError):
                raise ImageError(_bomb_message(path, str(e))) from None
            raise ImageError(f"cannot read image {path}: {e}") from None
        limit = Image.MAX_IMAGE_PIXELS
        if limit and w * h > limit:
            raise ImageError(_bomb_message(path, f"{w}x{h} = {w * h} pixels, more than {limit}"))
        if stored in FLOAT_MODES:
            raise ImageError(f"{path}: a floating-point image ({stored}) has no known range of "
                             "values: convert it to 8 bits first")  # fmt: skip
        if extrema is not None and (extrema[0] < 0 or extrema[1] > 65535):
            raise ImageError(f"{path}: 32-bit integer pixels outside 0..65535 {extrema}: "
                             "convert it to 8 bits first")  # fmt: skip
        if stored in WIDE_MODES:
            if lossless:
                raise ImageError(
                    f"{path}: {stored} images have more than 8 bits per pixel; lossless coding "
                    "takes 8-bit greyscale images (convert it to 8-bit grey first)"
                )
            notes.append(f"{path}: 16-bit grey reduced to 8 bits (v / 257, rounded)")
        if stored in ("CMYK", "YCbCr", "LAB", "HSV"):
            if lossless:
                raise ImageError(f"{path}: a {stored} image; lossless coding takes 8-bit "
                                 "greyscale images (convert it first)")  # fmt: skip
            notes.append(f"{path}: {stored} converted to RGB (no colour management)")
        if frames > 1:
            if lossless:
                raise ImageError(f"{path}: an animation of {frames} frames; lossless coding "
                                 "takes single images (save each frame as a file)")  # fmt: skip
            notes.append(f"{path}: an animation of {frames} frames: only the first is coded")
    arr, original = read_image(path, mode)
    return arr, original, notes


def _bomb_message(path: Path, detail: str) -> str:
    return (
        f"{path}: the image declares {detail} (a decompression bomb, or an image too large to "
        "decode safely): refused before decoding. Reduce it first, or raise "
        "PIL.Image.MAX_IMAGE_PIXELS in your own code if you trust the file"
    )


def image_header(path: str | os.PathLike, data: bytes | None = None) -> tuple[tuple[int, int], str]:
    """Return ``((H, W), mode)`` of an image, reading only its header (fast).

    ``H, W`` are as displayed, i.e. swapped when the EXIF orientation says the image is
    rotated by 90 degrees. ``data``: the encoded image held in memory (a member of a tar
    shard), ``path`` then only names it. Raises :class:`ImageError` when the file cannot be
    opened.
    """
    path = Path(path) if data is None else path
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as img:
            w, h = img.size
            try:
                orientation = img.getexif().get(0x0112, 1)
            except _DECODE_ERRORS + (KeyError, TypeError, AttributeError):
                orientation = 1
            mode = img.mode
    except _DECODE_ERRORS as e:
        raise ImageError(f"cannot read image {path}: {e}") from None
    if orientation in (5, 6, 7, 8):
        h, w = w, h
    return (h, w), mode


def _as_uint8_hwc(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        t = array.detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3:
            raise ImageError(f"write_png needs a [C, H, W] tensor, got shape {tuple(t.shape)}")
        if t.is_floating_point():
            t = (t.float().clamp(0, 1) * 255).round()
        array = t.permute(1, 2, 0).to(torch.uint8).numpy()
    a = np.asarray(array)
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            a = np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
        else:
            raise ImageError(f"write_png needs uint8 or float in [0, 1], got dtype {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ImageError(f"write_png needs [H, W], [H, W, 1|3|4], got shape {a.shape}")
    return np.ascontiguousarray(a)


def write_png(path: str | os.PathLike, array) -> Path:
    """Write an image as PNG (lossless), atomically (temporary file then ``os.replace``).

    Args:
        path: output file; parent folders are created.
        array: uint8 numpy ``[H, W]`` or ``[H, W, C]`` with C in {1, 3, 4}; a float numpy array
            of the same shape in ``[0, 1]``; or a torch tensor ``[C, H, W]`` / ``[1, C, H, W]``
            (float in ``[0, 1]``, rounded to 8 bit after clamping, or uint8).

    Returns:
        The path written.

    Raises:
        ImageError: unsupported shape or dtype, or the file cannot be written.
    """
    path = Path(path)
    try:
        atomic_write(path, png_writer(array))
    except OSError as e:
        raise ImageError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def png_writer(array):
    """A ``write(tmp_path)`` function that saves ``array`` (as :func:`write_png` takes it) as
    PNG, for :func:`vaecodec.fileio.atomic_write_many`. Checks the array now (ImageError)."""
    a = _as_uint8_hwc(array)
    return lambda tmp: Image.fromarray(a).save(tmp, format="PNG")


# ---------------------------------------------------------------------------------------------
# Crop datasets
# ---------------------------------------------------------------------------------------------


def _resolve_files(root_or_files) -> tuple[list[Path], str]:
    if isinstance(root_or_files, (str, os.PathLike)):
        root = Path(root_or_files)
        if not root.is_dir():
            raise DatasetError(f"image folder not found: {root} (pass a folder of images)")
        files = list_images(root)
        where = str(root)
    else:
        files = [Path(f) for f in root_or_files]
        where = "the given file list"
    if not files:
        raise DatasetError(
            f"no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) found in {where}"
        )
    return files, where


def _scan(files: Sequence[Path]) -> tuple[list[Path], list[tuple[int, int]], int]:
    """Headers of ``files``; returns the readable ones, their (H, W) and the failure count."""
    ok, sizes, bad = [], [], 0
    for f in files:
        try:
            hw, _ = image_header(f)
        except ImageError as e:
            log.debug("skipping %s", e)
            bad += 1
            continue
        ok.append(f)
        sizes.append(hw)
    return ok, sizes, bad


def _warn_skipped(n: int, where: str, what: str = "unreadable") -> None:
    if n:
        warnings.warn(f"skipped {n} {what} files in {where}", UserWarning, stacklevel=3)


def pad_to(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Pad uint8 ``[H, W, C]`` to at least ``[h, w, C]`` by symmetric reflection (edge repeated).

    Works for any size (numpy reflects repeatedly when the pad is wider than the image).
    """
    ph, pw = max(0, h - a.shape[0]), max(0, w - a.shape[1])
    if ph == 0 and pw == 0:
        return a
    return np.pad(a, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="symmetric")


def to_tensor(a: np.ndarray, contiguous: bool = False) -> torch.Tensor:
    """uint8 ``[H, W, C]`` -> float32 ``[C, H, W]`` in ``[0, 1]``, a new tensor. ``a`` may be any
    view (flipped, read-only memory-mapped): it is copied first, which torch needs for those.

    ``contiguous=False`` gives the permuted view of an ``[H, W, C]`` copy (channels-last
    strides), the layout the codec's encoder has always been given (a convolution's float
    results may depend on it). ``contiguous=True``, what the crop datasets use, makes that copy
    put the channels first: the same values, and a batch's ``torch.stack`` is then a plain copy
    rather than a strided gather of the float pixels (0.2 ms less CPU a 256² crop).
    """
    if contiguous:
        a = np.array(a.transpose(2, 0, 1), dtype=np.uint8, order="C")
        return torch.from_numpy(a).float().div_(255.0)
    return torch.from_numpy(np.array(a, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)


def _random_crop_flip(
    a: np.ndarray, crop: int | None, flips: bool, generator: torch.Generator | None = None
) -> np.ndarray:
    """A random ``crop``x``crop`` window of ``a [H, W, C]`` (the whole of ``a`` when ``crop`` is
    None; H, W >= crop), then random horizontal and vertical flips when ``flips``; draws from
    ``generator``, by default torch's global one (seeded per worker by the DataLoader)."""
    if crop is not None:
        h, w = a.shape[:2]
        top = int(torch.randint(0, h - crop + 1, (), generator=generator))
        left = int(torch.randint(0, w - crop + 1, (), generator=generator))
        a = a[top : top + crop, left : left + crop]
    if flips:
        hflip, vflip = torch.rand(2, generator=generator).lt(0.5).tolist()
        if hflip:
            a = a[:, ::-1]
        if vflip:
            a = a[::-1]
    return a


class _FileImages(torch.utils.data.Dataset):
    """Shared file handling: header scan at construction, substitution of files that fail later."""

    def __init__(self, root_or_files, crop: int | None, small: str):
        if small not in ("pad", "skip"):
            raise DatasetError(f"small must be 'pad' or 'skip', not {small!r}")
        if crop is not None and crop < 1:
            raise DatasetError(f"crop must be a positive number of pixels, not {crop}")
        files, where = _resolve_files(root_or_files)
        ok, sizes, bad = _scan(files)
        small_n = 0
        if crop is not None and small == "skip":
            keep = [i for i, (h, w) in enumerate(sizes) if h >= crop and w >= crop]
            small_n = len(ok) - len(keep)
            ok, sizes = [ok[i] for i in keep], [sizes[i] for i in keep]
        _warn_skipped(bad, where)
        if small_n:
            _warn_skipped(small_n, where, f"smaller-than-{crop}px")
        if not ok:
            raise DatasetError(f"no usable images in {where} ({bad} unreadable, {small_n} small)")
        self.files: list[Path] = ok
        self.sizes: list[tuple[int, int]] = sizes
        self.crop = crop
        self.small = small
        self._where = where
        self._failed: set[int] = set()
        self.cache = False
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, index: int) -> np.ndarray:
        """uint8 RGB ``[H, W, 3]`` of file ``index``, or of the next readable file if it fails.

        A file whose header was fine but whose data is corrupt is found only here; it is
        replaced (with one warning per file) so that a long training run does not stop.
        """
        n = len(self.files)
        for k in range(n):
            i = (index + k) % n
            if i in self._failed:
                continue
            if self.cache and i in self._cache:
                return self._cache[i]
            try:
                a = read_image(self.files[i])[0]
                if self.cache:
                    self._cache[i] = a
                return a
            except ImageError as e:
                self._failed.add(i)
                warnings.warn(f"{e}; using another image instead", UserWarning, stacklevel=3)
        raise DatasetError(f"no image in {self._where} can be decoded")


class RandomCropImages(_FileImages):
    """Random ``crop x crop`` RGB patches of a folder of images, for training an image codec.

    Each ``dataset[i]`` reads file ``i`` (EXIF-rotated, converted to RGB), takes a uniformly
    random ``crop x crop`` window, flips it horizontally and vertically each with probability
    1/2 (when ``flips``), and returns float32 ``[3, crop, crop]`` in ``[0, 1]``. Randomness comes
    from torch's global generator (``torch.manual_seed``; a ``DataLoader`` seeds each worker).

    Args:
        root_or_files: a folder (searched recursively with :func:`list_images`) or file paths.
        crop: patch side in pixels (CompressAI / Ballé et al. train on 256).
        flips: random horizontal and vertical flips.
        small: images smaller than ``crop`` on either side are ``"pad"``-ded by symmetric
            reflection (default) or ``"skip"``-ped at construction.
        cache: keep every decoded image in memory (uint8, ``H * W * 3`` bytes each: ~250 MB
            for 550 photos of 481x321), so that each file is decoded once rather than once
            per sample; decoding a WebP photo costs far more than cutting a crop. Each
            ``DataLoader`` worker holds its own cache.

    Unreadable files (bad header) are skipped at construction with one warning that counts
    them; a file whose data turns out corrupt when it is decoded is replaced by the next file.

    Raises:
        DatasetError: the folder does not exist or holds no usable image.
    """

    def __init__(
        self,
        root_or_files,
        crop: int = 256,
        flips: bool = True,
        small: str = "pad",
        cache: bool = False,
    ):
        super().__init__(root_or_files, crop, small)
        self.flips = flips
        self.cache = bool(cache)

    def __getitem__(self, index: int) -> torch.Tensor:
        a = pad_to(self._read(index), self.crop, self.crop)
        return to_tensor(_random_crop_flip(a, self.crop, self.flips), contiguous=True)


class CenterCropImages(_FileImages):
    """Deterministic validation images: the central ``crop x crop`` window, or the full image.

    ``dataset[i]`` is float32 ``[3, crop, crop]`` in ``[0, 1]`` (images smaller than ``crop`` are
    padded by symmetric reflection, or skipped with ``small="skip"``); with ``crop=None`` it is
    the whole image ``[3, H, W]`` (use batch size 1, or images of one size such as Kodak).
    Unreadable files are skipped with one counted warning, as in :class:`RandomCropImages`.
    ``cache=True`` keeps the decoded images in memory (a validation set is read at every
    validation).
    """

    def __init__(
        self, root_or_files, crop: int | None = 256, small: str = "pad", cache: bool = False
    ):
        super().__init__(root_or_files, crop, small)
        self.cache = bool(cache)

    def __getitem__(self, index: int) -> torch.Tensor:
        a = self._read(index)
        if self.crop is not None:
            a = pad_to(a, self.crop, self.crop)
            top = (a.shape[0] - self.crop) // 2
            left = (a.shape[1] - self.crop) // 2
            a = a[top : top + self.crop, left : left + self.crop]
        return to_tensor(a, contiguous=True)


def _crop_origins(h: int, w: int, crop: int, per_image: int | None, rng) -> list[tuple[int, int]]:
    if per_image is None:  # non-overlapping grid, partial tiles at the right/bottom dropped
        return [
            (t, left) for t in range(0, h - crop + 1, crop) for left in range(0, w - crop + 1, crop)
        ]
    return [
        (int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1)))
        for _ in range(per_image)
    ]


def precut_crops(
    root_or_files,
    out_path: str | os.PathLike,
    crop: int = 256,
    per_image: int | None = None,
    seed: int = 0,
) -> tuple[Path, int]:
    """Cut a folder of images into one uint8 ``.npy`` of RGB crops ``[N, crop, crop, 3]``.

    Handy to ship training data to a GPU machine as a single file that :class:`NpyCrops`
    memory-maps. Images smaller than ``crop`` are padded by symmetric reflection and give one crop.

    Args:
        root_or_files: folder (recursive) or list of files.
        out_path: the ``.npy`` to write (atomically: temporary file then ``os.replace``).
        crop: crop side in pixels.
        per_image: ``None`` (default) takes every tile of the non-overlapping grid
            (``floor(H/crop) * floor(W/crop)`` crops); an integer takes that many uniformly
            random crops per image (overlaps possible), drawn with ``numpy.random.default_rng(seed)``.
        seed: seed for ``per_image`` random crops.

    Returns:
        ``(out_path, N)``.

    Raises:
        DatasetError: no usable image; ImageError: the output cannot be written.
    """
    files, where = _resolve_files(root_or_files)
    ok, sizes, bad = _scan(files)
    rng = np.random.default_rng(seed)
    plan = []
    for f, (h, w) in zip(ok, sizes):
        hh, ww = max(h, crop), max(w, crop)
        plan.append((f, _crop_origins(hh, ww, crop, per_image, rng)))
    total = sum(len(o) for _, o in plan)
    if total == 0:
        _warn_skipped(bad, where)
        raise DatasetError(f"no crops of {crop}px could be cut from {where}")
    out = Path(out_path)
    n = 0

    def fill(tmp: str) -> None:
        nonlocal n, bad
        arr = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(total, crop, crop, 3)
        )
        for f, origins in plan:
            try:
                a = pad_to(read_image(f)[0], crop, crop)
            except ImageError as e:
                log.debug("skipping %s", e)
                bad += 1
                continue
            for t, left in origins:
                arr[n] = a[t : t + crop, left : left + crop]
                n += 1
        arr.flush()
        del arr
        if n < total:  # some data turned out corrupt: rewrite at the right length
            if n == 0:
                raise DatasetError(f"no image in {where} could be decoded")
            full = np.load(tmp, mmap_mode="r")
            np.save(tmp, np.ascontiguousarray(full[:n]))
            del full

    try:
        atomic_write(out, fill, suffix=".tmp.npy")  # np.save keeps a name that ends in .npy
    except OSError as e:
        raise ImageError(f"cannot write {out}: {e}") from None
    _warn_skipped(bad, where)
    return out, n


class NpyCrops(torch.utils.data.Dataset):
    """Crops stored by :func:`precut_crops`: a uint8 ``.npy`` ``[N, S, S, 3]``, memory-mapped.

    ``dataset[i]`` is float32 ``[3, crop, crop]`` in ``[0, 1]``: a random ``crop``-window of stored
    crop ``i`` (``crop=None``: the whole stored crop) with random flips when ``flips``. Use
    ``flips=False, crop=None`` for a deterministic validation set.

    Raises:
        DatasetError: the file is missing, not a ``.npy``, or not uint8 ``[N, S, S, 3]``, or
            ``crop`` is larger than the stored crops.
    """

    def __init__(self, path: str | os.PathLike, crop: int | None = None, flips: bool = True):
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"crops file not found: {self.path} (make it with precut_crops)")
        try:
            self.array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise DatasetError(f"{self.path} is not a readable .npy file: {e}") from None
        a = self.array
        if a.dtype != np.uint8 or a.ndim != 4 or a.shape[3] != 3:
            raise DatasetError(
                f"{self.path} holds {a.dtype} {a.shape}; expected uint8 [N, H, W, 3] crops"
            )
        if crop is not None and (crop > a.shape[1] or crop > a.shape[2]):
            raise DatasetError(f"crop {crop} is larger than the stored crops {a.shape[1:3]}")
        self.crop = crop
        self.flips = flips

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_tensor(
            _random_crop_flip(self.array[index], self.crop, self.flips), contiguous=True
        )


def iter_readable(files: Iterable[Path], mode: str) -> Iterable[tuple[Path, np.ndarray | None]]:
    """Yield ``(path, uint8 [H, W, C] or None if unreadable)`` for each file, in order."""
    for f in files:
        try:
            yield f, read_image(f, mode=mode)[0]
        except ImageError as e:
            log.debug("skipping %s", e)
            yield f, None
