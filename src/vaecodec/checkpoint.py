"""Weights on disk: safetensors plus a JSON config, written atomically.

A run directory (or a zoo entry) holds::

    model.safetensors   the model's state dict (float tensors; fp16 allowed for zoo files, and
                        int8 convolution kernels with per-channel scales: see quantize_int8)
    config.json         {"model": NAME, "kind": "vae" | "codec" | ..., "config": {...},
                         "vaecodec_version": ..., "command": ..., "git_commit": ..., ...}

Training state that is only needed to resume (optimizer, epoch, RNG) lives in
``train_state.safetensors`` + ``train_state.json``. Nothing pickled is ever loaded.

Every write goes to a temporary file in the same directory followed by ``os.replace``, so an
interrupted run leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vaecodec import __version__
from vaecodec.errors import ModelError
from vaecodec.fileio import atomic_write, atomic_write_json

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def atomic_save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata=None) -> None:
    """Save a flat dict of tensors as safetensors to ``path`` atomically."""
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(Path(path), lambda tmp: save_file(flat, tmp, metadata=metadata))


INT8_SCALE_SUFFIX = ".int8_scale"
"""A stored tensor ``K + INT8_SCALE_SUFFIX`` (float32, one value per output channel) marks
``K`` as int8 storage: the weight is ``K.float() * scale`` (see :func:`quantize_int8`)."""


def quantize_int8(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Storage form of a state dict with its convolution kernels in int8.

    Every floating 4-D tensor (a convolution kernel, ``(C_out, C_in, k, k)`` or a transposed
    one's ``(C_in, C_out, k, k)``) becomes int8 ``q`` in [-127, 127] plus a float32 ``scale``
    per index of dim 0 (symmetric, per-channel: ``scale = max|w| / 127``, ``q = round(w /
    scale)``); every other floating tensor is stored as float16 (biases, GDN, gains, the
    entropy models' small tensors). About half the bytes of float16 storage. Loading
    (:func:`load_tensors`) gives back ``q.float() * scale``, one float32 multiply, so every
    machine gets the same weights and the coding stays exact: encoder and decoder both use the
    dequantized weights. The cost in quality must be measured (BENCHMARKS.md, ``cb128-vr10b``).
    """
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        if not v.is_floating_point():
            out[k] = v
        elif v.ndim == 4:
            w = v.detach().float().reshape(v.shape[0], -1)
            scale = (w.abs().amax(dim=1) / 127.0).clamp_min(torch.finfo(torch.float32).tiny)
            q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
            out[k] = q.reshape(v.shape).contiguous()
            out[k + INT8_SCALE_SUFFIX] = scale.contiguous()
        else:
            out[k] = v.detach().half()
    return out


def dequantize_int8(tensors: dict[str, torch.Tensor], source: Path | str = "") -> dict[str, torch.Tensor]:
    """Undo :func:`quantize_int8`: each int8 tensor with a scale becomes float32; a state dict
    without scales is returned as it is. Raises :class:`ModelError` for a scale without its
    tensor, one whose length is not the tensor's dim 0, or one that is not finite and > 0."""
    scales = [k for k in tensors if k.endswith(INT8_SCALE_SUFFIX)]
    if not scales:
        return tensors
    out = dict(tensors)
    for sk in scales:
        k = sk[: -len(INT8_SCALE_SUFFIX)]
        q, scale = out.pop(k, None), out.pop(sk)
        if (q is None or q.dtype != torch.int8 or q.ndim < 1 or scale.ndim != 1
                or scale.shape[0] != q.shape[0] or not scale.is_floating_point()
                or not bool(torch.isfinite(scale).all()) or not bool((scale > 0).all())):  # fmt: skip
            raise ModelError(
                f"corrupt weights file {source}: the int8 scale {sk} does not fit its tensor "
                f"{k} ({'missing' if q is None else f'{q.dtype}, shape {tuple(q.shape)}'}); "
                "export the weights again"
            )
        out[k] = q.float() * scale.float().reshape(-1, *([1] * (q.ndim - 1)))
    return out


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file (int8 storage dequantized, see :func:`quantize_int8`); raises
    :class:`ModelError` naming the file when it is bad."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"corrupt or unreadable weights file {path}: {e}") from None
    return dequantize_int8(tensors, path)


def read_json(path: str | Path) -> dict:
    """Read a JSON object; raises :class:`ModelError` naming the file when it is bad."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"config file not found: {path}")
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"corrupt config file {path}: {e}") from None
    if not isinstance(obj, dict):
        raise ModelError(f"corrupt config file {path}: expected a JSON object")
    return obj


def git_commit() -> str | None:
    """The current git commit of the working directory's repository, or None."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict:
    """Fields recorded next to every saved model: version, command line, git commit."""
    return {
        "vaecodec_version": __version__,
        "command": " ".join(["vaecodec", *sys.argv[1:]])
        if sys.argv and sys.argv[0].endswith("vaecodec")
        else " ".join(sys.argv),
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
    }


def save_model(run_dir: str | Path, model: torch.nn.Module, meta: dict) -> None:
    """Save ``model``'s state dict and ``meta`` (must hold "model" and "config") atomically.

    Raises:
        ValueError: if ``meta`` lacks the "model" or "config" key.
    """
    if "model" not in meta or "config" not in meta:
        raise ValueError("meta must hold 'model' and 'config'")
    run_dir = Path(run_dir)
    atomic_save_tensors(run_dir / WEIGHTS_FILE, model.state_dict())
    atomic_write_json(run_dir / CONFIG_FILE, meta)


def require_finite(tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Raise :class:`ModelError` if a floating-point tensor of ``tensors`` (read from
    ``source``) holds NaN or infinite values: a diverged run or a damaged file, which would
    otherwise reach the entropy coder (a Rust panic) or decode to garbage."""
    for k, v in tensors.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise ModelError(
                f"the weights in {source} hold NaN or infinite values ({k}): the model "
                "diverged or the file is damaged; use another checkpoint"
            )


def load_state_into(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Load ``tensors`` into ``model`` (casting fp16 storage up); clear error on mismatch."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise ModelError(
            f"weights in {source} do not match the model in its config: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for k, v in tensors.items():
        if v.shape != own[k].shape:
            raise ModelError(
                f"weights in {source} do not match the model in its config: "
                f"{k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}"
            )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})


# --------------------------------------------------------------------------------------------
# Training state (optimizer, scheduler, RNG, counters) without pickle
# --------------------------------------------------------------------------------------------
TRAIN_STATE_TENSORS = "train_state.safetensors"
TRAIN_STATE_JSON = "train_state.json"


def _split_tensors(obj, tensors: dict, prefix: str):
    """Replace every tensor in a nested dict/list by a reference, collecting the tensors."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {
            "__dict__": [[_split_tensors(k, tensors, prefix), _split_tensors(v, tensors, prefix)]
                         for k, v in obj.items()]
        }  # fmt: skip
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_split_tensors(v, tensors, prefix) for v in obj],
                "tuple": isinstance(obj, tuple)}  # fmt: skip
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot serialise {type(obj).__name__} in training state")


def _join_tensors(obj, tensors: dict):
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {
                _join_tensors(k, tensors): _join_tensors(v, tensors) for k, v in obj["__dict__"]
            }
        if "__list__" in obj:
            items = [_join_tensors(v, tensors) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
    return obj


def save_train_state(run_dir: str | Path, state: dict) -> None:
    """Save a nested dict of tensors / numbers / strings (optimizer state and the like)
    as safetensors + JSON, atomically (the JSON, written last, names the tensors it needs)."""
    run_dir = Path(run_dir)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split_tensors(state, tensors, "")
    atomic_save_tensors(run_dir / TRAIN_STATE_TENSORS, tensors)
    atomic_write_json(run_dir / TRAIN_STATE_JSON, skeleton)


def load_train_state(run_dir: str | Path) -> dict:
    """Inverse of :func:`save_train_state`. Raises :class:`ModelError` naming a bad file."""
    run_dir = Path(run_dir)
    skeleton = read_json(run_dir / TRAIN_STATE_JSON)
    tensors = load_tensors(run_dir / TRAIN_STATE_TENSORS)
    try:
        return _join_tensors(skeleton, tensors)
    except KeyError as e:
        raise ModelError(
            f"{run_dir / TRAIN_STATE_JSON} refers to tensor {e} missing from "
            f"{run_dir / TRAIN_STATE_TENSORS}: the run directory is inconsistent"
        ) from None
