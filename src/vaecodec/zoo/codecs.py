"""Codec families: learned codecs at several rate-distortion trade-offs (qualities).

A family lives in ``zoo/weights/<family>/`` (or any folder passed as ``--model``)::

    family.json          {"name", "model": "mean-scale", "description", "dataset",
                          "default": true|false, "default_quality": q,
                          "qualities": [{"quality": 1, "lmbda": 0.0018, "dir": "q1",
                                         "metrics": {...}}, ...]}
    q1/model.safetensors q1/config.json     one trained model per quality (lower = fewer bits)
    q2/...

A variable-rate family (one model with gain levels, ``vaecodec train-codec --lmbda l1 l2 ...``)
stores its weights once; each quality entry names the shared folder and its 0-based
``"level"``: ``{"quality": 3, "lmbda": 0.0067, "dir": "model", "level": 2}``.

A family may also take qualities from families beside it (in the same parent folder), without
a copy of their weights: ``{"quality": 6, "family": "cb128-vr10", "dir": "model", "level": 4}``.
That is how the default ``cb-mix11`` runs over the rate-distortion-best points of
``cb-vr10`` (N = 64, best up to ~0.5 bpp) and ``cb128-vr10`` (N = 128, best above). A file
written at such a quality records the family that owns the weights and its quality there
(``cb-mix11`` quality 6 writes a ``cb128-vr10`` quality 5 file): it is that family's file, and
decodes with it.

A run directory written by ``vaecodec train-codec`` (``model.safetensors`` + ``config.json``)
can be used wherever a family name is accepted: one quality for a fixed-rate model, qualities
``1..levels`` for a variable-rate one.

The package bundles the families ``cb-mix11`` (the default), ``cb-vr10``, ``cb128-vr10``,
``cb-vr8`` and ``ms-vr8``. Where no
family is found, :func:`codec_summary` reports ``default_codec: None`` and :func:`load_codec`
without a name raises a :class:`ModelError` that says how to train one.
"""

from __future__ import annotations

from pathlib import Path

from vaecodec.checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_json
from vaecodec.coding.container import CodecId, level_of_quality, quality_of_level
from vaecodec.coding.fingerprint import file_fingerprint
from vaecodec.errors import ModelError
from vaecodec.models.codecs import CodecModel
from vaecodec.zoo import ZOO_DIR, _is, _is_bare_name, load_model, other_zoo_kind

__all__ = [
    "FAMILY_FILE",
    "NO_CODEC_HELP",
    "codec_families",
    "codec_offer",
    "codec_summary",
    "load_codec",
    "resolve_codec",
    "run_qualities",
]

FAMILY_FILE = "family.json"
NO_CODEC_HELP = (
    "no learned codec is bundled with this vaecodec yet. Train one, e.g. "
    "`vaecodec train-codec --model mean-scale --data PHOTOS/ --val-data VAL/ --lmbda 0.0067 "
    "--out runs/ms` (hours on a CPU), then pass it with `--model runs/ms`"
)


def codec_families(root: Path = ZOO_DIR) -> dict[str, dict]:
    """Family name -> contents of its ``family.json``, for every family under ``root``."""
    out = {}
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if (d / FAMILY_FILE).is_file():
                meta = read_json(d / FAMILY_FILE)
                out[meta.get("name", d.name)] = {**meta, "_dir": str(d)}
    return out


def _quality_entries(meta: dict, where: Path) -> list[dict]:
    """The family's quality entries, sorted, after checking each: ``quality`` an integer from
    1 to 255 (unique), ``dir`` a folder name inside the family (no ``..``, not absolute),
    ``level`` absent or an integer from 0 to 254. ModelError naming the file otherwise."""
    entries = meta.get("qualities")
    where = where / FAMILY_FILE
    if not isinstance(entries, list) or not entries:
        raise ModelError(f"{where} lists no qualities")
    seen = set()
    for e in entries:
        q = e.get("quality") if isinstance(e, dict) else None
        if type(q) is not int or not 1 <= q <= 255 or q in seen:
            raise ModelError(f"{where}: each quality must be a different integer from 1 to 255, "
                             f"got {q!r}")  # fmt: skip
        seen.add(q)
        d = e.get("dir", f"q{q}")
        if not isinstance(d, str) or not d or Path(d).is_absolute() or ".." in Path(d).parts:
            raise ModelError(f"{where}: quality {q}: 'dir' must be a folder inside the family, "
                             f"got {d!r}")  # fmt: skip
        other = e.get("family")
        if other is not None and (not isinstance(other, str) or not _is_bare_name(other)
                                  or other in (".", "..")):  # fmt: skip
            raise ModelError(f"{where}: quality {q}: 'family' must be the folder name of a "
                             f"family beside this one, got {other!r}")  # fmt: skip
        level = e.get("level")
        if level is not None and (type(level) is not int or not 0 <= level < 255):
            raise ModelError(f"{where}: quality {q}: 'level' must be an integer from 0 to 254, "
                             f"got {level!r}")  # fmt: skip
    return sorted(entries, key=lambda e: e["quality"])


def codec_summary(root: Path = ZOO_DIR) -> dict:
    """``{"default_codec": NAME | None, "codecs": {NAME: {"qualities": [1..k], "lmbdas": [...],
    "model": ..., "description": ..., "dataset": ..., "default_quality": q,
    "metrics": {quality: {...}}}}}`` (merged into ``vaecodec zoo --json``)."""
    codecs, default = {}, None
    for name, meta in codec_families(root).items():
        entries = _quality_entries(meta, Path(meta["_dir"]))
        qualities = [int(e["quality"]) for e in entries]
        codecs[name] = {
            "model": meta.get("model"),
            "description": meta.get("description", ""),
            "dataset": meta.get("dataset"),
            "qualities": qualities,
            "lmbdas": [e.get("lmbda") for e in entries],
            "default_quality": meta.get("default_quality", qualities[len(qualities) // 2]),
            "metrics": {str(e["quality"]): e.get("metrics", {}) for e in entries},
        }
        if meta.get("default"):
            default = name
    if default is None and codecs:
        default = next(iter(codecs))
    return {"default_codec": default, "codecs": codecs}


def _family_at(path: Path) -> tuple[str, dict] | None:
    if (path / FAMILY_FILE).is_file():
        meta = read_json(path / FAMILY_FILE)
        return meta.get("name", path.name), {**meta, "_dir": str(path)}
    return None


def run_qualities(config: dict) -> list[int]:
    """Qualities a run directory's ``config.json`` offers: ``1..levels`` for a variable-rate
    model, else its ``quality_index`` (default 1)."""
    from vaecodec.models.codecs import MAX_LEVELS

    levels = (config.get("config") or {}).get("levels") or 0
    if type(levels) is not int or not 0 <= levels <= MAX_LEVELS:
        raise ModelError(f"levels must be an integer from 0 to {MAX_LEVELS}, got {levels!r}")
    if levels:
        return [quality_of_level(level) for level in range(levels)]
    q = config.get("quality_index") or 1
    if type(q) is not int or not 1 <= q <= 255:
        raise ModelError(f"quality_index must be an integer from 1 to 255, got {q!r}")
    return [q]


def resolve_codec(name_or_dir: str | Path | None, quality: int | None = None):
    """Find the model directory of a codec.

    Args:
        name_or_dir: a zoo family name, a family folder (with ``family.json``), a run
            directory (with ``config.json``), or ``None`` for the default family.
        quality: quality index within a family (default: the family's default quality). For
            a fixed-rate run directory it is ignored (quality 1 unless its config.json records
            a ``quality_index``); a variable-rate run directory offers ``1..levels`` (default:
            the middle one).

    Returns:
        ``(model_dir, codec_name, quality, level)``; ``level`` is the 0-based rate level of a
        variable-rate model, else None. For a quality a family takes from a family beside it
        (``"family"`` in its entry), ``codec_name`` and ``quality`` are that family's: what a
        file written with the model records, so that it decodes with that family too.

    Raises:
        ModelError: nothing bundled and no name given, unknown name, or unknown quality.
    """
    return _resolve(name_or_dir, quality)[:4]


def _resolve(name_or_dir, quality):
    """:func:`resolve_codec`'s tuple and a fifth item: ``(family, quality)`` as asked for when
    that quality is taken from a family beside it (``("cb-mix11", 7)``), else None."""
    families = codec_families()
    if name_or_dir is None:
        default = codec_summary()["default_codec"]
        if default is None:
            raise ModelError(NO_CODEC_HELP)
        name_or_dir = default
    p = Path(name_or_dir)
    fam = None
    if isinstance(name_or_dir, str) and _is_bare_name(name_or_dir) and name_or_dir in families:
        fam = (name_or_dir, families[name_or_dir])  # a zoo name wins over a folder in the cwd
    is_dir = _is(p, "is_dir")
    if fam is None and is_dir:
        fam = _family_at(p)
    if fam is None:
        if is_dir and (p / CONFIG_FILE).is_file():
            meta = read_json(p / CONFIG_FILE)
            qualities = run_qualities(meta)
            if len(qualities) == 1:  # one fixed-rate model: ``quality`` does not apply
                return p, p.resolve().name, qualities[0], None, None
            q = qualities[len(qualities) // 2] if quality is None else int(quality)
            if q not in qualities:
                raise ModelError(
                    f"{p} is a variable-rate model with qualities 1..{len(qualities)}; "
                    f"got --quality {q}"
                )
            return p, p.resolve().name, q, level_of_quality(q), None
        other = other_zoo_kind(name_or_dir, "image codec") if isinstance(name_or_dir, str) else None
        if other is not None:
            raise ModelError(other)
        names = ", ".join(families) or "none bundled"
        shown = str(name_or_dir)
        shown = shown if len(shown) <= 80 else shown[:80] + "..."
        raise ModelError(
            f"no codec {shown!r}: not a zoo codec family ({names}), a family folder "
            f"with {FAMILY_FILE}, or a run directory with {CONFIG_FILE}"
        )
    name, meta = fam
    fdir = Path(meta["_dir"])
    entries = _quality_entries(meta, fdir)
    if quality is None:
        quality = meta.get("default_quality", entries[len(entries) // 2]["quality"])
        if type(quality) is not int:
            raise ModelError(f"{fdir / FAMILY_FILE}: default_quality must be an integer, got "
                             f"{quality!r}")  # fmt: skip
    for e in entries:
        if int(e["quality"]) == int(quality):
            level = None if e.get("level") is None else int(e["level"])
            if e.get("family"):  # the weights, and the name files record, are the other's
                other = e["family"]
                q_other = int(quality) if level is None else quality_of_level(level)
                return (fdir.parent / other / e.get("dir", f"q{q_other}"), other, q_other, level,
                        (name, int(quality)))  # fmt: skip
            return fdir / e.get("dir", f"q{quality}"), name, int(quality), level, None
    valid = ", ".join(str(e["quality"]) for e in entries)
    raise ModelError(f"codec {name!r} has no quality {quality}; valid qualities: {valid}")


def codec_offer(folder: str | Path) -> dict:
    """What a codec family folder or run directory offers, as :func:`codec_summary` lists a
    zoo family: ``{"qualities": [...], "default_quality": q, "description": str}``. Used by
    ``vaecodec serve --codec DIR`` (a family written by ``import-compressai`` or
    ``zoo.export``, a ``train-codec`` run); the default quality's model is loaded once, so
    that a broken folder is refused here, not at the first request.

    Raises:
        ModelError: as :func:`resolve_codec` and :func:`load_codec`.
    """
    p = Path(folder)
    _, _, default_q, _ = resolve_codec(p)  # a Path: a folder, never a zoo name
    fam = _family_at(p)
    if fam is not None:
        meta = fam[1]
        qualities = [int(e["quality"]) for e in _quality_entries(meta, p)]
    else:
        meta = read_json(p / CONFIG_FILE)
        qualities = run_qualities(meta)
    load_codec(p, default_q)
    return {"qualities": qualities, "default_quality": default_q,
            "description": meta.get("description", "")}  # fmt: skip


def load_codec(name_or_dir: str | Path | None = None, quality: int | None = None) -> CodecModel:
    """Load one codec model (eval mode) by family name + quality, or from a run directory.

    The returned model carries ``model.codec_id`` (:class:`~vaecodec.coding.container.CodecId`:
    codec name, model name, weights hash, quality), which is written into ``.vcz`` headers.

    Raises:
        ModelError: see :func:`resolve_codec`; missing or corrupt weights; not a codec model.
    """
    model_dir, name, q, level, via = _resolve(name_or_dir, quality)
    model, meta = load_model(model_dir, kind="codec")
    if via is not None:  # a quality taken from another family (cb-mix11 7 -> cb128-vr10 6)
        model.family_quality = via
    if level is not None:
        if not getattr(model, "levels", 0):
            raise ModelError(
                f"{model_dir} is a fixed-rate model, but quality {q} names level "
                f"{level}: the family's {FAMILY_FILE} does not match its weights"
            )
        try:
            model.set_level(level)
        except ValueError as e:
            raise ModelError(f"{model_dir}: quality {q}: {e}") from None
    model.codec_id = CodecId(name, meta["model"], file_fingerprint(model_dir / WEIGHTS_FILE), q)
    model.lmbdas = _trained_lmbdas(meta, getattr(model, "levels", 0))
    return model


def _trained_lmbdas(meta: dict, levels: int) -> list[float] | None:
    """The lambdas a run's ``config.json`` says it was trained with (one per level, or one),
    or None where it does not say (encoder effort then needs them set by hand)."""
    raw = meta.get("lmbdas") or ([meta["lmbda"]] if meta.get("lmbda") is not None else None)
    try:
        out = [float(v) for v in raw] if isinstance(raw, list) else None
    except (TypeError, ValueError):
        return None
    if not out or any(not v > 0 for v in out) or len(out) != max(levels, 1):
        return None
    return out
