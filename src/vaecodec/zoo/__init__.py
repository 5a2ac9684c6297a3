"""Pretrained models bundled with the package, and loading a model by zoo name or run directory.

Each zoo entry is a folder ``zoo/weights/<name>/`` holding ``model.safetensors`` and
``config.json`` (with the training command, data, steps and commit that produced it), and a
``RECIPE.md``. ``load_model`` accepts either a zoo name or a path to a run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch

from vaecodec.checkpoint import (
    CONFIG_FILE,
    INT8_SCALE_SUFFIX,
    WEIGHTS_FILE,
    load_state_into,
    load_tensors,
    read_json,
    require_finite,
)
from vaecodec.errors import ModelError
from vaecodec.models.registry import build_model

ZOO_DIR = Path(__file__).resolve().parent / "weights"


def zoo_entries() -> dict[str, dict]:
    """Name -> config.json contents of every bundled model."""
    out = {}
    if ZOO_DIR.is_dir():
        for d in sorted(ZOO_DIR.iterdir()):
            if (d / CONFIG_FILE).is_file():
                out[d.name] = read_json(d / CONFIG_FILE)
    return out


def _is_bare_name(name: str) -> bool:
    """A plain name (``mnist-vae``), not a path: no separator, not ``.`` / ``..``."""
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def _is(p: Path, test: str) -> bool:
    """``p.is_dir()`` / ``p.is_file()``, False where the OS refuses the path (too long, ...)."""
    try:
        return getattr(p, test)()
    except OSError:
        return False


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A run directory for ``name_or_path``: a zoo name, a run directory, or its config.json.

    A plain name that is a zoo model resolves to the bundled model, even where the working
    directory holds a folder of that name (write ``./mnist-vae`` for the folder).

    Raises:
        ModelError: if it is neither, listing the zoo names.
    """
    name = str(name_or_path)
    z = ZOO_DIR / name
    if isinstance(name_or_path, str) and _is_bare_name(name) and _is(z / CONFIG_FILE, "is_file"):
        return z
    p = Path(name_or_path)
    if _is(p, "is_file") and p.name in (CONFIG_FILE, WEIGHTS_FILE):
        p = p.parent
    if _is(p, "is_dir"):
        if not (p / CONFIG_FILE).is_file():
            raise ModelError(f"{p} is not a model directory: it has no {CONFIG_FILE}")
        return p
    other = other_zoo_kind(name) if isinstance(name_or_path, str) else None
    if other is not None:
        raise ModelError(other)
    names = ", ".join(zoo_entries()) or "(none bundled)"
    shown = name if len(name) <= 80 else name[:80] + "..."
    raise ModelError(f"no model {shown!r}: not a run directory, and not a zoo model ({names})")


def other_zoo_kind(name: str, wanted: str = "model") -> str | None:
    """What to tell a user who gave the name of a bundled entry that the loader at hand does
    not load (``vaecodec zoo`` lists them all): a lossy image codec family, a realism decoder,
    or (``wanted="image codec"``) a VAE or classifier; None if ``name`` is none of these."""
    if not _is_bare_name(name):
        return None
    d = ZOO_DIR / name
    if _is(d / "family.json", "is_file"):
        return (f"{name} is a lossy image codec, which this command or function does not "
                f"load: compress images with it (vaecodec compress --model {name} IMAGE, or "
                f"vaecodec.load_codec({name!r}) in Python)")  # fmt: skip
    if _is(d / "realism.json", "is_file"):
        return (f"{name} is a realism decoder (a second synthesis for a codec's files): "
                f"decode .vcz files with it (vaecodec decompress --realism-decoder {name} "
                "FILE.vcz -o OUT.png)")  # fmt: skip
    if wanted == "model" or not _is(d / CONFIG_FILE, "is_file"):
        return None
    kind = read_json(d / CONFIG_FILE).get("kind") or "model"
    if kind == "vae":
        return (f"{name} is a VAE, not an image codec: code images losslessly with it "
                f"(vaecodec compress --lossless --model {name} ..., or "
                f"vaecodec.compress_lossless(images, {name!r}) in Python)")  # fmt: skip
    return f"{name} is a {kind} model, not an image codec: see `vaecodec zoo` for the codecs"


class LoadedModel(NamedTuple):
    """What :func:`load_model` returns: a named pair, so ``model, meta = load_model(...)``
    and ``load_model(...).model`` both work."""

    model: torch.nn.Module
    """The model, in eval mode, on the CPU."""
    meta: dict
    """The run directory's ``config.json``: ``model`` (registered name), ``kind``, ``config``
    (hyper-parameters), and where recorded ``dataset``, ``train`` (the recipe), ``metrics``,
    ``git_commit``."""


def load_model(name_or_path: str | Path, kind: str | None = None) -> LoadedModel:
    """Load a model from a zoo name or run directory.

    Args:
        name_or_path: zoo name (see ``vaecodec zoo``) or a directory with config.json and
            model.safetensors.
        kind: if given ("vae", "codec", ...), refuse models of another kind.

    Returns:
        :class:`LoadedModel` ``(model, meta)``: the model in eval mode and the dict from
        config.json.

    Raises:
        ModelError: unknown name, missing/corrupt files, or weights that do not match.
    """
    d = resolve_model_dir(name_or_path)
    meta = read_json(d / CONFIG_FILE)
    if "model" not in meta or "config" not in meta:
        raise ModelError(f"{d / CONFIG_FILE} lacks the 'model' or 'config' key")
    if not isinstance(meta["model"], str) or not isinstance(meta["config"], dict):
        raise ModelError(f"{d / CONFIG_FILE}: 'model' must be a name and 'config' an object")
    _check_shapes_before_building(meta, d)
    model = build_model(meta["model"], meta["config"])
    if kind is not None and getattr(model, "kind", None) != kind:
        raise ModelError(
            f"{d} holds a {getattr(model, 'kind', '?')} model ({meta['model']}), "
            f"but this command needs a {kind} model"
        )
    tensors = load_tensors(d / WEIGHTS_FILE)
    require_finite(tensors, d / WEIGHTS_FILE)
    load_state_into(model, tensors, d / WEIGHTS_FILE)
    model.eval()
    return LoadedModel(model, meta)


def _check_shapes_before_building(meta: dict, d: Path) -> None:
    """Refuse a config.json that does not describe the weights next to it before the model is
    allocated: build it on torch's ``meta`` device (no memory) and compare every tensor's
    shape with the safetensors header (read without loading the tensors). A config asking for
    absurd sizes (N = 1e6) thus fails here instead of in the allocator."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(d / WEIGHTS_FILE), framework="pt") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()
                      if not k.endswith(INT8_SCALE_SUFFIX)}  # fmt: skip
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"corrupt or unreadable weights file {d / WEIGHTS_FILE}: {e}") from None
    try:
        with torch.device("meta"):
            skeleton = build_model(meta["model"], meta["config"])
        wanted = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    except ModelError:
        raise
    except Exception:  # a constructor that cannot run on the meta device: checked after
        return
    if wanted != stored:
        bad = sorted(k for k in set(wanted) | set(stored) if wanted.get(k) != stored.get(k))
        k = bad[0]
        raise ModelError(
            f"weights in {d / WEIGHTS_FILE} do not match the model in its config ("
            f"{d / CONFIG_FILE}): {k} is {stored.get(k, 'missing')} in the file, "
            f"{wanted.get(k, 'absent')} for the config ({len(bad)} tensor(s) differ)"
        )
