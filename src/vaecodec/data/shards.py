"""WebDataset tar shards of photos: writing them (``vaecodec make-shards``) and naming them.

Why shards: a training set of hundreds of thousands of photos on network storage, read as
random small files by every rank, starves the GPUs; the same photos packed into tar files of a
few hundred MB are read sequentially, streamed from anywhere a command can read
(`WebDataset <https://github.com/webdataset/webdataset>`_'s convention, read by
:mod:`vaecodec.data.shard_stream`).

Writing::

    manifest = make_shards(["photos/", "more/"], "shards/", shard_size=256_000_000, min_side=256)
    # shards/shard-000000.tar, shard-000001.tar, ..., shards/manifest.json

Layout of a shard: one sample per photo, two members sharing the sample's key (its index in
the shuffled list of sources, nine digits): ``000000123.<ext>``, the photo's own bytes (not
re-encoded unless ``reencode`` is given), and ``000000123.json``, ``{"src": path relative to its
source folder, "class": its folder ("" at the top), "height", "width"}`` (as displayed, after
the EXIF rotation). The photos are shuffled (``numpy.random.default_rng(seed)``) before they
are cut into shards, so that each shard mixes all sources. Tar members get mtime 0, so the same
sources and settings give byte-identical shards.

Each photo is decoded once while writing: unreadable ones (truncated, not an image) and ones
whose shorter side is below ``min_side`` are skipped and counted in the manifest.
``manifest.json`` records the settings, the counts and, per shard, its name, number of samples,
bytes and SHA-256. It is rewritten (atomically) after every finished shard, and each shard is
written to ``<name>.partial`` and renamed when complete: an interrupted run, started again with
the same sources and settings, continues after the last finished shard.

Names: a shard spec is a path or URL ending in ``.tar`` with optional brace ranges
(``DIR/shard-{000000..000123}.tar``), or a URL the ``webdataset`` library opens
(``pipe:CMD`` reads the output of a shell command, ``http(s)://`` via curl, ``gs://`` via
gsutil, ...).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vaecodec.data.images import ImageError, list_images, read_image
from vaecodec.errors import DatasetError
from vaecodec.fileio import atomic_write_json, file_sha256

MANIFEST_FILE = "manifest.json"
SHARD_NAME = "shard-{:06d}.tar"
FORMAT = "vaecodec-shards/1"
REENCODINGS = ("png", "webp", "jpeg")
"""``reencode`` choices: PNG and WebP are lossless, JPEG is quality 95."""
REMOTE_SCHEMES = ("pipe:", "http://", "https://", "gs://", "sftp://", "ftps://", "scp://",
                  "ais://", "hf://", "htgs://")  # fmt: skip
"""Prefixes of the shard URLs that ``webdataset.gopen`` streams (everything else is a path)."""
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}  # fmt: skip
_MAX_NAMES = 20  # skipped files named in the manifest (the rest are counted)


def parse_size(text: str | int) -> int:
    """Bytes of ``"256MB"`` (decimal units kB, MB, GB; binary KiB, MiB, GiB; plain bytes).

    Raises:
        DatasetError: not a positive size.
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS or float(m.group(1)) * _UNITS[unit] < 1:
        raise DatasetError(f"not a size: {text!r} (write e.g. 256MB, 1GB or 500MiB)")
    return int(float(m.group(1)) * _UNITS[unit])


def is_remote(url: str) -> bool:
    """True for a URL that ``webdataset.gopen`` streams rather than a local path."""
    return str(url).startswith(REMOTE_SCHEMES)


def is_shard_spec(data: str | os.PathLike | None) -> bool:
    """True when ``data`` names tar shards (module docstring) rather than a folder or a .npy."""
    if data is None:
        return False
    s = os.fspath(data)
    return is_remote(s) or bool(re.search(r"\.(tar|tgz|tar\.gz)\}?$", s, flags=re.I))


def expand_shards(spec: str) -> list[str]:
    """The shard URLs of ``spec`` (brace ranges expanded, in order).

    Raises:
        DatasetError: ``spec`` names no shard, or a local shard does not exist.
    """
    import braceexpand

    urls = [u for u in braceexpand.braceexpand(os.fspath(spec)) if u]
    if not urls:
        raise DatasetError(f"no shards in {spec!r}")
    missing = [u for u in urls if not is_remote(u) and not Path(u).is_file()]
    if missing:
        raise DatasetError(f"shard not found: {missing[0]}" + (
            f" ({len(missing)} of the {len(urls)} shards of {spec} are missing)"
            if len(urls) > 1 else ""))  # fmt: skip
    return urls


def read_manifest(urls: Sequence[str]) -> dict | None:
    """The ``manifest.json`` next to the (local) shards ``urls``, or None when there is none
    (remote shards, or shards not made by :func:`make_shards`)."""
    if not urls or is_remote(urls[0]):
        return None
    path = Path(urls[0]).parent / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None


def samples_in(urls: Sequence[str], manifest: dict | None) -> int | None:
    """Samples in the shards ``urls`` according to ``manifest`` (None if it does not list them
    all)."""
    if not manifest:
        return None
    counts = {s["name"]: s["samples"] for s in manifest.get("shards", [])}
    names = [Path(u).name for u in urls]
    if not all(n in counts for n in names):
        return None
    return sum(counts[n] for n in names)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _sources(sources: Sequence[str | os.PathLike]) -> list[tuple[Path, str]]:
    """``(file, path relative to its source)`` of every image of ``sources`` (folders searched
    recursively with :func:`list_images`, or image files), in the order given."""
    found = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            found += [(f, f.relative_to(p).as_posix()) for f in list_images(p)]
        elif p.is_file():
            found.append((p, p.name))
        else:
            raise DatasetError(f"source not found: {p} (give folders or image files)")
    if not found:
        raise DatasetError(f"no images found in {', '.join(map(str, sources))}")
    return found


def _plan_id(plan: list[tuple[Path, str]], settings: dict) -> str:
    """A fingerprint of what a run writes: its settings and its files (path, size, mtime)."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for f, rel in plan:
        st = f.stat()
        h.update(f"{f.resolve()}\0{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _encode(a: np.ndarray, how: str) -> tuple[bytes, str]:
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
    if how == "png":
        img.save(buf, format="PNG")
    elif how == "webp":
        img.save(buf, format="WEBP", lossless=True, method=4)
    else:
        img.save(buf, format="JPEG", quality=95)
    return buf.getvalue(), {"jpeg": "jpg"}.get(how, how)


def _sample(path: Path, rel: str, min_side: int, reencode: str | None):
    """``(members dict, None)`` for one photo, or ``(None, "unreadable" | "small")``."""
    try:
        a, _ = read_image(path)  # decodes fully: a truncated file is found here
    except ImageError:
        return None, "unreadable"
    h, w = a.shape[:2]
    if min(h, w) < min_side:
        return None, "small"
    if reencode:
        data, ext = _encode(a, reencode)
    else:
        data, ext = path.read_bytes(), path.suffix.lower().lstrip(".")
    parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
    meta = {"src": rel, "class": parent, "height": h, "width": w}
    return {ext: data, "json": json.dumps(meta, sort_keys=True).encode()}, None


def _fill(writer, plan, i: int, limit: int, min_side: int, reencode, skipped, bar):
    """Write the photos of ``plan`` from ``i`` into one shard until the next would take it
    past ``limit`` bytes; returns the index of the next photo and the samples written."""
    n = used = 0  # samples and bytes of members (headers + padded data) so far
    while i < len(plan):
        f, rel = plan[i]
        members, why = _sample(f, rel, min_side, reencode)
        if why is not None:
            skipped[why].append(rel)
        else:
            size = sum(512 + -(-len(v) // 512) * 512 for v in members.values())
            if n and _tar_size(used + size) > limit:
                break  # the next shard starts with this photo
            writer.write({"__key__": f"{i:09d}", **members})
            used += size
            n += 1
        i += 1
        bar.update(1)
    return i, n


def _tar_size(members: int) -> int:
    """Bytes of a tar file whose members take ``members`` bytes: two zero blocks end it, and
    it is padded to tarfile's record of 10240 bytes."""
    return -(-(members + 1024) // 10240) * 10240


def make_shards(
    sources: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    shard_size: int | str = "256MB",
    min_side: int = 256,
    reencode: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Pack the photos of ``sources`` into WebDataset tar shards in ``out_dir`` (layout, skips,
    manifest and resumption: module docstring).

    Args:
        sources: folders (searched recursively) or image files.
        out_dir: the folder to write (created); it must be empty or hold an unfinished (or
            finished) run of the same sources and settings, which is continued (or left as
            it is).
        shard_size: bytes per shard at most (an int or ``"256MB"``); a photo larger than
            that gets a shard of its own.
        min_side: skip photos whose shorter side (pixels) is below this (0: keep all).
        reencode: ``None`` keeps each file's bytes; ``"png"``, ``"webp"`` (both lossless) or
            ``"jpeg"`` (quality 95) stores the decoded RGB image re-encoded.
        seed: seed of the shuffle of the photos before they are cut into shards.
        progress: a progress bar (on a terminal).

    Returns:
        The manifest (as written to ``out_dir/manifest.json``): ``"images"`` written,
        ``"skipped_small"``, ``"skipped_unreadable"``, ``"shards"`` (name, samples, bytes,
        sha256), the settings and ``"complete": True``.

    Raises:
        DatasetError: no source or no image, a bad size or option, or ``out_dir`` holding
            other files or another run's shards.
    """
    from tqdm.auto import tqdm
    from webdataset import TarWriter

    limit = parse_size(shard_size)
    if reencode is not None and reencode not in REENCODINGS:
        raise DatasetError(f"reencode must be one of {', '.join(REENCODINGS)}, not {reencode!r}")
    if min_side < 0:
        raise DatasetError(f"min_side must be >= 0, not {min_side}")
    files = _sources(sources)
    plan = [files[i] for i in np.random.default_rng(seed).permutation(len(files))]
    settings = {"shard_size": limit, "min_side": int(min_side), "reencode": reencode,
                "seed": int(seed)}  # fmt: skip
    plan_id = _plan_id(plan, settings)
    out = Path(out_dir)
    manifest = _start(out, plan_id, settings, [os.fspath(s) for s in sources], len(plan))
    if manifest["complete"]:
        return manifest
    i = manifest["next"]
    bar = tqdm(total=len(plan), initial=i, unit="photo", desc="make-shards",
               disable=not (progress and sys.stderr.isatty()))  # fmt: skip
    try:
        while i < len(plan):
            name = SHARD_NAME.format(len(manifest["shards"]))
            tmp = out / (name + ".partial")
            skipped = {"small": [], "unreadable": []}
            with open(tmp, "wb") as fh:
                writer = TarWriter(fh, mtime=0, encoder=False)  # int: no pax header
                try:
                    i, n = _fill(writer, plan, i, limit, min_side, reencode, skipped, bar)
                    writer.close()
                except BaseException:
                    with contextlib.suppress(Exception):  # after a failure: no second error
                        writer.close()
                    raise
                fh.flush()
                os.fsync(fh.fileno())
            if n:
                os.replace(tmp, out / name)
                manifest["shards"].append({"name": name, "samples": n,
                                           "bytes": (out / name).stat().st_size,
                                           "sha256": file_sha256(out / name)})  # fmt: skip
                manifest["images"] += n
            else:
                tmp.unlink()
            for why, names in skipped.items():
                manifest[f"skipped_{why}"] += len(names)
                room = _MAX_NAMES - len(manifest["skipped_files"])
                manifest["skipped_files"] += [f"{rel} ({why})" for rel in names[: max(0, room)]]
            manifest["next"] = i
            manifest["complete"] = i >= len(plan)
            atomic_write_json(out / MANIFEST_FILE, manifest)
    except OSError as e:  # a full disk, a folder made read-only: the finished shards stay
        raise DatasetError(
            f"cannot write {getattr(e, 'filename', None) or out}: {e.strerror or e}; the "
            f"{len(manifest['shards'])} finished shards are kept (the same command continues)"
        ) from None
    finally:
        bar.close()
    if not manifest["shards"]:
        raise DatasetError(
            f"no photo of {', '.join(map(str, sources))} could be stored: "
            f"{manifest['skipped_small']} smaller than {min_side} px, "
            f"{manifest['skipped_unreadable']} unreadable"
        )
    return manifest


def _start(out: Path, plan_id: str, settings: dict, sources: list[str], total: int) -> dict:
    """The manifest to continue: the unfinished (or finished) one of the same plan in ``out``,
    or a new one when ``out`` is empty or missing."""
    path = out / MANIFEST_FILE
    if path.is_file():
        try:
            manifest = json.loads(path.read_text())
        except ValueError:
            manifest = None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise DatasetError(f"{path} is not a vaecodec shard manifest: give an empty folder")
        if manifest.get("plan") != plan_id:
            raise DatasetError(
                f"{out} holds shards of other photos or settings ({path}): give an empty "
                "folder, or the same sources and options to continue that run"
            )
        for partial in out.glob("*.partial"):  # the shard being written when it stopped
            partial.unlink()
        return manifest
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out} exists and is not an empty folder: give a new or empty one")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"cannot create {out}: {e.strerror or e}") from None
    return {"format": FORMAT, "complete": False, "plan": plan_id, "settings": settings,
            "sources": sources, "photos": total, "next": 0, "images": 0, "skipped_small": 0,
            "skipped_unreadable": 0, "skipped_files": [], "shards": []}  # fmt: skip
