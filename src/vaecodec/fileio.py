"""Atomic file writes and safe reads of user-named files (no torch import, so light modules
can use them).

Every file vaecodec writes — weights, configs, PNGs, ``.vcz`` streams, caches, benchmark
tables — goes through :func:`atomic_write` (or :func:`atomic_write_many` for a set of files
that succeed or fail together): a temporary file in the same directory, then ``os.replace``.
An interrupted or failed run leaves the old file or the new one, never a torn one, and no
temporary file.

The codec commands also check, before anything is written, that no output is one of their
inputs (:func:`refuse_overwriting_inputs`: the same file under another spelling, a symlink or
a hard link counts), and read their inputs with :func:`read_regular_file`, which refuses a
FIFO, a device or a directory instead of blocking on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaecodec.errors import VaecodecError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(name: str) -> str:
    """``.<name>.`` with the name cut to 64 UTF-8 bytes, so that the temporary name of a file
    whose name is near the file system's 255-byte limit still fits."""
    short = name.encode("utf-8")[:64].decode("utf-8", errors="ignore")
    return f".{short}."


def atomic_write(path: str | Path, write: Callable[[str], object], suffix: str = ".tmp") -> None:
    """Create ``path`` atomically: ``write(tmp_path)`` fills a temporary file in the same
    directory (its name ends with ``suffix``, for writers such as ``np.save`` that insist on
    an extension), which then replaces ``path`` (``os.replace``), with the permissions a
    plainly created file would have. On any error the temporary file is removed and ``path``
    is untouched; the error propagates."""
    atomic_write_many([(path, write)], suffix=suffix)


def atomic_write_many(
    jobs: list[tuple[str | Path, Callable[[str], object]]], suffix: str = ".tmp"
) -> None:
    """Create several files so that they succeed or fail together: every ``write(tmp)`` fills
    its temporary file (in its target's directory) first, and only when all have been
    written do they replace their targets (``os.replace``, in order). On an error before the
    renames no target is touched and every temporary file is removed; the error propagates.
    """
    done: list[tuple[str, Path]] = []
    tmp = None
    mask = _umask()
    try:
        for path, write in jobs:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name),
                                       suffix=suffix)  # fmt: skip
            os.close(fd)
            write(tmp)
            os.chmod(tmp, 0o666 & ~mask)
            done.append((tmp, path))
            tmp = None
        while done:
            os.replace(*done[0])
            done.pop(0)
    except BaseException:
        for t in [tmp, *(t for t, _ in done)]:
            if t is not None and os.path.exists(t):
                os.unlink(t)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# ---------------------------------------------------------------------------------------------
# Inputs and outputs named by a user
# ---------------------------------------------------------------------------------------------


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks: one place for the checksums of
    shards, imported weights and weight fingerprints."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def same_file(a: str | Path, b: str | Path) -> bool:
    """True if ``a`` and ``b`` are the same existing file: the same path, another spelling of
    it (``./x``, ``d/../x``), a symbolic link to it or a hard link (same device and inode).

    Each path is resolved as the file system will resolve it once the missing folders of an
    output are created (:func:`os.path.realpath`: symbolic links followed, a ``..`` after a
    folder that does not exist yet removes that folder), so ``nosuchdir/../x`` is ``x``
    although ``nosuchdir`` does not exist now (a plain ``samefile`` fails on it)."""
    try:
        return os.path.samefile(os.path.realpath(a), os.path.realpath(b))
    except (OSError, ValueError):  # one of them does not exist (or is not a valid path)
        return False


def refuse_overwriting_inputs(outputs, inputs) -> None:
    """Raise :class:`VaecodecError` if any of ``outputs`` is one of ``inputs`` (see
    :func:`same_file`); called before anything is written, so one typo (``-o`` naming an
    input) cannot destroy the input."""
    inputs = list(inputs)
    for out in outputs:
        for src in inputs:
            if same_file(out, src):
                raise VaecodecError(
                    f"the output {out} is the input {src}: writing it would destroy the input. "
                    "Give another -o"
                )


def read_regular_file(path: str | Path, error: type[VaecodecError] = VaecodecError) -> bytes:
    """Read the whole of ``path``, which must be a regular file.

    A FIFO, a socket, a device or a directory is refused without blocking (the file is opened
    with ``O_NONBLOCK`` and checked with ``fstat`` before reading).

    Raises:
        ``error`` (a :class:`VaecodecError` subclass): not a regular file, or any OS error
        (missing, unreadable), with a one-line message naming the file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror or e}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"cannot read {path}: not a regular file (a FIFO, device or folder)")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)


def os_error_message(path: str | Path, e: OSError, what: str = "write") -> str:
    """``"cannot write PATH: REASON"``, one line, for an OS error on a path a user gave."""
    return f"cannot {what} {path}: {e.strerror or e}"
