"""On-disk cache of parsed dataset arrays.

Parsing the MNIST CSV takes about a second; loading the cached arrays a few tens of
milliseconds. Entries are uncompressed ``.npz`` files (no pickles) in :func:`cache_dir`::

    $VAECODEC_CACHE/datasets/            if VAECODEC_CACHE is set
    $XDG_CACHE_HOME/vaecodec/datasets/   else if XDG_CACHE_HOME is set
    ~/.cache/vaecodec/datasets/          otherwise

An entry's file name holds two hashes: one of *which* sources and parameters it was built
from, one of their *state* (absolute path, size and mtime of every source file, plus
:data:`CACHE_VERSION`). A changed source therefore misses the cache and is re-parsed; the
stale entry of the same sources is then deleted. Writes are atomic (temporary file then
``os.replace``); an entry that cannot be read is silently rebuilt; a cache folder that cannot
be written only costs speed (logged at DEBUG level). Delete the folder to clear the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vaecodec.fileio import atomic_write

log = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Bump when the parsers change what they produce, to invalidate every entry."""


def cache_dir() -> Path:
    """The folder holding dataset cache entries (see the module docstring)."""
    base = os.environ.get("VAECODEC_CACHE")
    if base:
        return Path(base).expanduser() / "datasets"
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return root / "vaecodec" / "datasets"


def fingerprint(paths: Sequence[str | os.PathLike]) -> list[list]:
    """``[absolute path, size in bytes, mtime in ns]`` of each file (what decides staleness)."""
    out = []
    for p in paths:
        p = Path(p).absolute()
        st = p.stat()
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.")
    return s[-40:] or "data"


def _read_entry(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write_entry(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def cached_arrays(
    tag: str,
    split: str,
    sources: Sequence[str | os.PathLike],
    params: dict,
    build: Callable[[], dict[str, np.ndarray]],
    enabled: bool = True,
    check: Callable[[dict[str, np.ndarray]], bool] | None = None,
) -> dict[str, np.ndarray]:
    """Return ``build()``'s arrays, from the cache when the sources have not changed.

    Args:
        tag: a readable name for the entry's file name (e.g. ``"mnist"``).
        split: ``"train"`` or ``"test"`` (part of the file name and the key).
        sources: every file the arrays are parsed from.
        params: anything else that changes the result (JSON-serialisable).
        build: parses the sources; returns a dict of plain (non-object) numpy arrays.
        enabled: ``False`` skips the cache entirely.
        check: optional validation of a loaded entry; a ``False`` (or an exception) rebuilds it.

    Returns:
        The dict of arrays (freshly built or loaded).
    """
    if not enabled:
        return build()
    paths = [str(Path(p).absolute()) for p in sources]
    ident = _digest({"tag": tag, "split": split, "paths": paths, "params": params})[:10]
    state = _digest({"stat": fingerprint(sources), "version": CACHE_VERSION, "id": ident})[:16]
    folder = cache_dir()
    prefix = f"{_slug(tag)}-{split}-{ident}-"
    entry = folder / f"{prefix}{state}.npz"
    if entry.is_file():
        try:
            arrays = _read_entry(entry)
            if check is None or check(arrays):
                return arrays
            log.debug("cache entry %s failed its check; rebuilding", entry)
        except Exception as e:  # any corruption: rebuild silently
            log.debug("cache entry %s unreadable (%s); rebuilding", entry, e)
    arrays = build()
    try:
        _write_entry(entry, arrays)
        for old in folder.glob(f"{prefix}*.npz"):
            if old != entry:
                old.unlink(missing_ok=True)
    except OSError as e:
        log.debug("cannot write dataset cache %s: %s", entry, e)
    return arrays
