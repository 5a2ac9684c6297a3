"""Pretrained models bundled with the package, and loading a model by zoo name or run directory.

Each zoo entry is a folder ``zoo/weights/<name>/`` holding ``model.safetensors`` and
``config.json`` (with the training command, data, steps and commit that produced it), and a
``RECIPE.md``. ``load_model`` accepts either a zoo name or a path to a run directory.
"""

from __future__ import annotations

from pathlib import Path

from vaecodec.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_state_into, load_tensors, read_json
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


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A run directory for ``name_or_path``: a zoo name, a run directory, or its config.json.

    Raises:
        ModelError: if it is neither, listing the zoo names.
    """
    p = Path(name_or_path)
    if p.is_file() and p.name in (CONFIG_FILE, WEIGHTS_FILE):
        p = p.parent
    if p.is_dir():
        if not (p / CONFIG_FILE).is_file():
            raise ModelError(f"{p} is not a model directory: it has no {CONFIG_FILE}")
        return p
    z = ZOO_DIR / str(name_or_path)
    if str(name_or_path) and "/" not in str(name_or_path) and (z / CONFIG_FILE).is_file():
        return z
    names = ", ".join(zoo_entries()) or "(none bundled)"
    raise ModelError(
        f"no model {str(name_or_path)!r}: not a run directory, and not a zoo model ({names})"
    )


def load_model(name_or_path: str | Path, kind: str | None = None):
    """Load a model from a zoo name or run directory.

    Args:
        name_or_path: zoo name (see ``vaecodec zoo``) or a directory with config.json and
            model.safetensors.
        kind: if given ("vae", "codec", ...), refuse models of another kind.

    Returns:
        (model in eval mode, meta dict from config.json)

    Raises:
        ModelError: unknown name, missing/corrupt files, or weights that do not match.
    """
    d = resolve_model_dir(name_or_path)
    meta = read_json(d / CONFIG_FILE)
    if "model" not in meta or "config" not in meta:
        raise ModelError(f"{d / CONFIG_FILE} lacks the 'model' or 'config' key")
    model = build_model(meta["model"], meta["config"])
    if kind is not None and getattr(model, "kind", None) != kind:
        raise ModelError(
            f"{d} holds a {getattr(model, 'kind', '?')} model ({meta['model']}), "
            f"but this command needs a {kind} model"
        )
    load_state_into(model, load_tensors(d / WEIGHTS_FILE), d / WEIGHTS_FILE)
    model.eval()
    return model, meta
