"""Lossless: greyscale images (arrays or files) to a ``VCZL`` stream with bits-back ANS, and back.

What ``vaecodec compress --lossless`` writes and ``vaecodec decompress`` reads (the byte layout
is specified in ``docs/lossless-format.md``)::

    compress_files("mnist-vae", ["a.png", "b.png"], "digits.vczl")
    decompress_file("digits.vczl", "out/")      # -> ["out/a.png", "out/b.png"]

A stream holds: the magic ``b"VCZL"``, the format version, the coding parameters, the model
name and a hash of its weights, the image size, the number of images and each one's file name,
a CRC-32 of all pixels, the ANS words of every lane (see :mod:`vaecodec.models.bitsback`) and a
CRC-32 of everything before it.

Inputs are 8-bit greyscale images of exactly the model's H×W (colour images whose three channels
are equal and fully opaque images with alpha are accepted, since they are grey losslessly). For a
binary (Bernoulli) model every pixel must be 0 or 255, or 0 or 1; the file records which, so the
decoded PNG has the same values. Every input is read and checked before anything is written, and
the output is written atomically.

Reading checks, in order: the magic and version, the CRC-32 of the file (truncation, bit flips),
every field's bounds, every file name (the portable set of :func:`name_problem`) and that no two
images would be written to the same file (:func:`output_key`), the model (a bundled zoo name, or
the folder the caller passes; its weights must hash to the recorded value), and after decoding
the pixels' CRC-32 and each lane's return to its seed. Any failure is a
:class:`~vaecodec.errors.FormatError`; no image is written unless all of them decoded and
verified, and then all are written together (temporary files renamed once all are written).

Why one module of this size: the array route (``encode_stream`` / ``decode_stream``) and the
file route (``compress_files`` / ``decompress_file``) of one format, with the input checks they
share.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from vaecodec.coding.fingerprint import content_fingerprint
from vaecodec.coding.lossless_format import (
    MAX_TOTAL_PIXELS,
    PARAM_GRID_BITS,
    StreamHeader,
    check_names,
    name_problem,
    output_key,
    output_name,
    pack,
    payload_problem,
    pixels_crc,
    portable_name,
    short_repr,
    unpack,
)
from vaecodec.data.images import png_writer, read_input_image
from vaecodec.errors import FormatError, ImageError, ModelError, VaecodecError
from vaecodec.fileio import (
    atomic_write_bytes,
    atomic_write_many,
    os_error_message,
    read_regular_file,
    refuse_overwriting_inputs,
)
from vaecodec.models.bitsback import BitsBackCodec
from vaecodec.zoo import ZOO_DIR, load_model, resolve_model_dir, zoo_entries

__all__ = [
    "DEFAULT_MODEL",
    "compress_files",
    "decode_file",
    "decode_stream",
    "decompress_file",
    "encode_stream",
    "load_lossless_model",
    "read_gray_image",
    "write_images",
]

DEFAULT_MODEL = "mnist-vae"
"""The model ``compress --lossless`` uses when none is given."""


# ---------------------------------------------------------------------------------------------
# Model identity
# ---------------------------------------------------------------------------------------------


def load_lossless_model(name: str):
    """Load the VAE ``name`` (zoo name or run directory) for lossless coding.

    Returns:
        ``(model, meta, hash, stored_name)``: ``stored_name`` is the zoo name, or the absolute
        path of a run directory.

    Raises:
        ModelError: unknown model, not a VAE, or a likelihood that is not discrete.
    """
    d = resolve_model_dir(name)
    model, meta = load_model(d, kind="vae")
    stored = d.name if d.parent == ZOO_DIR else str(d.resolve())
    return model, meta, content_fingerprint(model, meta), stored


def _stream_model(name: str):
    """Load the model a stream names: only a bundled zoo model. A stream never chooses a folder
    to load (a crafted file could point anywhere, and a folder in the working directory must
    not shadow a zoo name): a stream made with a run directory is decoded by passing that
    directory (``decompress --model DIR``)."""
    if name not in zoo_entries():
        raise FormatError(
            f"this stream needs the model {short_repr(name)}, which is not a bundled model: pass "
            "the run directory that made it with --model (a stream never chooses a folder to "
            "load by itself)"
        )
    try:
        return load_lossless_model(str(ZOO_DIR / name))
    except ModelError as e:
        raise FormatError(f"this stream needs the model {short_repr(name)}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def read_gray_image(path: str | os.PathLike) -> np.ndarray:
    """Read an 8-bit greyscale image as uint8 ``[H, W]``, refusing anything that is not grey.

    RGB / palette images whose channels are all equal, and images with a fully opaque alpha
    channel, are grey without loss and accepted.

    Raises:
        ImageError: unreadable file, 16-bit or float image, colour, transparency, an animation,
            or a decompression bomb (see :func:`vaecodec.data.images.read_input_image`).
    """
    rgba, mode, _notes = read_input_image(path, mode="RGBA", lossless=True)
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        raise ImageError(
            f"{path}: {mode} images have more than 8 bits per pixel; lossless coding takes "
            "8-bit greyscale images (convert it to 8-bit grey first)"
        )
    if not np.all(rgba[..., 3] == 255):
        raise ImageError(f"{path}: the image has transparent pixels; lossless coding takes "
                         "8-bit greyscale images without alpha")  # fmt: skip
    g = rgba[..., 0]
    if not (np.array_equal(g, rgba[..., 1]) and np.array_equal(g, rgba[..., 2])):
        raise ImageError(f"{path}: a colour image; lossless coding takes 8-bit greyscale images")
    return np.ascontiguousarray(g)


def _binary_scale(img: np.ndarray, path) -> int:
    """255 if the pixels are in {0, 255}, 1 if in {0, 1} (255 when all are 0)."""
    vals = np.unique(img)
    if np.all(np.isin(vals, (0, 255))):
        return 255
    if np.all(np.isin(vals, (0, 1))):
        return 1
    bad = [int(v) for v in vals if v not in (0, 1, 255)][:5] or [1, 255]
    raise ImageError(
        f"{path}: the model codes binary images, so every pixel must be 0 or 255 (or 0 or 1); "
        f"found values such as {bad}. Binarise the image, or use an 8-bit model "
        "(e.g. --model mnist-vae-8bit)"
    )


# ---------------------------------------------------------------------------------------------
# Arrays <-> bytes
# ---------------------------------------------------------------------------------------------


def encode_stream(
    model,
    images: np.ndarray,
    names: list[str] | None,
    model_name: str,
    model_hash: bytes,
    scales: list[int] | None = None,
    latent_prec: int | None = None,
    lanes: int | None = None,
    codec: BitsBackCodec | None = None,
) -> bytes:
    """Encode uint8 greyscale images ``[N, H, W]`` (pixel values as on disk) into a VCZL stream.

    Args:
        model: the VAE (discrete likelihood).
        images: uint8 ``[N, H, W]``; for a binary model, values in {0, scale_i}.
        names: one file name per image (no directories), or None for anonymous images (the
            stream then stores no names; they decode as ``000000.png``, ...).
        model_name, model_hash: what the stream records to find and check the model.
        scales: per image, the value of a binary "1" (1 or 255); default 255.
        latent_prec: P (default :data:`vaecodec.priors.standard_normal.DEFAULT_LATENT_PREC`).
        lanes: number of ANS lanes (default: automatic).
        codec: an existing :class:`BitsBackCodec` for ``model`` (saves the float64 copy).

    Returns:
        The stream bytes.

    Raises:
        ImageError: images of the wrong size, or not binary for a binary model.
    """
    if codec is None:
        codec = BitsBackCodec(model) if latent_prec is None else BitsBackCodec(model, latent_prec)
    images = np.asarray(images)
    c, h, w = codec.input_shape
    if images.ndim != 3 or images.shape[1:] != (h, w) or c != 1:
        raise ImageError(f"images must be [N, {h}, {w}] greyscale for this model")
    n = images.shape[0]
    if n * c * h * w > MAX_TOTAL_PIXELS:
        raise ImageError(f"too many pixels for one stream ({n} images); split the input")
    if names is not None:
        if len(names) != n:
            raise ValueError("one name per image")
        try:
            check_names([str(v) for v in names])
        except FormatError as e:
            raise ImageError(str(e).replace("corrupt stream: ", "cannot store the names: ")
                             + " (see vaecodec.coding.lossless_format.portable_name)") from None  # fmt: skip
    scales = [255] * n if scales is None else list(scales)
    sym = images.reshape(n, -1).astype(np.int32)
    if codec.levels == 2:
        sc = np.asarray(scales, dtype=np.int32)[:, None]
        if not np.all((sym == 0) | (sym == sc)):
            raise ImageError("a binary model codes images whose pixels are 0 or the image's scale")
        sym = (sym != 0).astype(np.int32)
    header = StreamHeader(model_name, model_hash, codec.latent_prec, PARAM_GRID_BITS,
                          (c, h, w), codec.levels, names, scales, pixels_crc(images))  # fmt: skip
    try:
        streams = codec.encode(sym, lanes=lanes)
    except ValueError as e:
        raise VaecodecError(f"cannot encode: {e}") from None
    for i, lane in enumerate(streams):  # what every decoder checks (lossless_format)
        problem = payload_problem(i, len(lane.words), lane.n_images * c * h * w)
        if problem:
            raise ImageError(f"cannot store these images: {problem}")
    return pack(header, streams)


def decode_stream(data: bytes, model=None, model_hash: bytes | None = None,
                  codec: BitsBackCodec | None = None) -> tuple[StreamHeader, np.ndarray]:  # fmt: skip
    """Decode a VCZL stream into ``(header, uint8 images [N, H, W])``.

    Args:
        data: the stream bytes.
        model, model_hash: the model to use (default: load the one the header names) and its
            :func:`~vaecodec.coding.fingerprint.content_fingerprint`.
        codec: an existing :class:`BitsBackCodec` for ``model``.

    Raises:
        FormatError: corrupt / truncated stream, unknown or mismatching model, failed checks.
    """
    header, lanes = unpack(data)
    if model is None:
        model, _meta, model_hash, _ = _stream_model(header.model)
    if model_hash is not None and model_hash != header.weights_hash:
        raise FormatError(
            f"this stream was made with different weights for model {header.model!r} (hash "
            f"mismatch): decode it with the exact model that wrote it"
        )
    try:
        if codec is None:
            codec = BitsBackCodec(model, header.latent_prec)
    except ModelError as e:
        raise FormatError(f"the model {header.model!r} cannot decode this stream: {e}") from None
    if codec.input_shape != header.shape or codec.levels != header.levels:
        raise FormatError(
            f"this stream holds {header.shape} images with {header.levels} levels, but the model "
            f"{header.model!r} codes {codec.input_shape} with {codec.levels} levels"
        )
    if codec.latent_prec != header.latent_prec:
        raise FormatError("the codec's latent precision does not match the stream's")
    try:
        sym = codec.decode(lanes, header.n_images)
    except (ValueError, KeyError, RuntimeError) as e:  # constriction rejects invalid states
        raise FormatError(f"corrupt stream: {e}") from None
    except BaseException as e:  # a Rust panic inside constriction (pyo3 PanicException)
        if type(e).__name__ != "PanicException":
            raise
        raise FormatError(f"corrupt stream: the entropy decoder failed ({e})") from None
    c, h, w = header.shape
    if codec.levels == 2:
        sym = sym * np.asarray(header.scales, dtype=np.int32)[:, None]
    images = sym.reshape(header.n_images, h, w).astype(np.uint8)
    if pixels_crc(images) != header.pixel_crc:
        raise FormatError(
            "the decoded pixels fail their CRC-32: the stream is corrupt, or was made by another "
            "model or on an incompatible machine"
        )
    return header, images


# ---------------------------------------------------------------------------------------------
# Files (the entry points of `vaecodec compress --lossless` / `vaecodec decompress`)
# ---------------------------------------------------------------------------------------------


def compress_files(
    model_name: str | None, inputs: list[str], output: str, verbose: bool = True
) -> list[str]:
    """Compress greyscale images losslessly into ONE ``VCZL`` stream file with bits-back ANS.

    Args:
        model_name: zoo name or run directory of a VAE with a discrete likelihood (default
            :data:`DEFAULT_MODEL`).
        inputs: image files (PNG, BMP, PGM, ...; 8-bit grey of the model's H×W; for a binary
            model, pixels 0/255 or 0/1). Their file names (without directories) are stored;
            a name outside the portable set (:func:`name_problem`) is stored as
            :func:`portable_name` makes it, with a note on stderr. The output names
            (``<stem>.png``) must differ, also without regard to case.
        output: the stream file to write (atomically; an existing file is replaced, unless it
            is one of the inputs).
        verbose: print one summary line, and the notes about renamed files.

    Returns:
        The names stored, in input order.

    Raises:
        VaecodecError (ImageError, ModelError): a bad input, model or output; raised before
            anything is written.
    """
    if not inputs:
        raise ImageError("no input images")
    out = Path(output)
    if _is_dir(out):
        raise VaecodecError(
            f"{output} is a directory; give the stream file to write (e.g. {out / 'images.vczl'})"
        )
    refuse_overwriting_inputs([out], inputs)
    model, meta, whash, stored = load_lossless_model(model_name or DEFAULT_MODEL)
    codec = BitsBackCodec(model)
    c, h, w = codec.input_shape
    if c != 1:
        raise ModelError(
            f"lossless coding takes greyscale images; {model_name} models {c} channels"
        )
    images, names, scales, seen, notes = [], [], [], {}, []
    for p in inputs:
        name = portable_name(Path(p).name)
        if name != Path(p).name:
            notes.append(
                f"vaecodec compress: note: {p}: the file name cannot be kept "
                f"({name_problem(Path(p).name)}); it is stored as {name!r} and decompresses "
                f"as {output_name(name)!r}"
            )
        key = output_key(name)
        if key in seen:
            raise ImageError(
                f"{p} and {seen[key]} would both decompress to {output_name(name)} (file names "
                "are compared without regard to case); rename one"
            )
        seen[key] = p
        img = read_gray_image(p)
        if img.shape != (h, w):
            raise ImageError(
                f"{p} is {img.shape[1]}x{img.shape[0]} pixels, but the model "
                f"{model_name or DEFAULT_MODEL} codes {w}x{h} images"
            )
        scales.append(_binary_scale(img, p) if codec.levels == 2 else 255)
        images.append(img)
        names.append(name)
    if verbose:
        for note in notes:
            print(note, file=sys.stderr)
    data = encode_stream(model, np.stack(images), names, stored, whash, scales, codec=codec)
    try:
        atomic_write_bytes(out, data)
    except OSError as e:
        raise VaecodecError(os_error_message(out, e)) from None
    if verbose:
        bpd = 8 * len(data) / (len(images) * h * w)
        print(f"{len(images)} images -> {output}: {len(data)} bytes, {bpd:.4f} bits/dim "
              f"({8 * len(data) / len(images):.1f} bits/image, lossless)")  # fmt: skip
    return names


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:  # e.g. a name too long: not an existing folder
        return False


def decode_file(path: str, model: str | None = None) -> tuple[StreamHeader, np.ndarray]:
    """Read and decode the ``VCZL`` stream file ``path`` (see :func:`decode_stream`).

    Args:
        model: the run directory (or zoo name) of the model that wrote it; default: the
            bundled zoo model the stream names (a stream never chooses a folder to load).

    Raises:
        FormatError: unreadable (or not a regular file), corrupt, or failing a check.
        ModelError: ``model`` cannot be loaded.
    """
    data = read_regular_file(path, FormatError)
    if model is None:
        return decode_stream(data)
    m, _meta, whash, _stored = load_lossless_model(model)
    return decode_stream(data, m, whash)


def write_images(header: StreamHeader, images: np.ndarray, out_dir: str | os.PathLike,
                 protect: list[str] = ()) -> list[str]:  # fmt: skip
    """Write decoded images as ``out_dir/<stem>.png``, all or none: each goes to a temporary
    file first, and they replace their targets only once all are written (so a failure leaves
    no partial file and no existing file destroyed). ``out_dir`` is created if needed; it may
    exist (empty or not). A target that is one of ``protect`` (the inputs) is refused.

    Raises:
        VaecodecError: ``out_dir`` is a file, a target is an input, or an OS error (full
            disk, read-only or missing folder, ...), as one line.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise VaecodecError(f"{out} is a file: give a folder as -o (it is created if needed)")
    dsts = [out / output_name(name) for name in header.file_names()]
    refuse_overwriting_inputs(dsts, protect)
    try:
        atomic_write_many([(d, png_writer(img)) for d, img in zip(dsts, images)])
    except OSError as e:
        raise VaecodecError(os_error_message(e.filename or out, e)) from None
    return [str(d) for d in dsts]


def decompress_file(path: str, out_dir: str, model: str | None = None) -> list[str]:
    """Decode a ``VCZL`` stream and write each image as ``out_dir/<stem>.png`` (pixel-identical).

    Args:
        model: the model's run directory for a stream made with one (default: the bundled zoo
            model the stream names).

    Returns:
        The paths written, in the stream's order.

    Raises:
        FormatError: not a VCZL stream, corrupt or truncated, unknown or mismatching model,
            or a failed check; nothing is written then.
        VaecodecError: the images cannot be written (see :func:`write_images`); none is.
    """
    header, images = decode_file(path, model)
    return write_images(header, images, out_dir, protect=[path])


