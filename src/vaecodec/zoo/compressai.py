"""CompressAI checkpoints in and out: ``vaecodec import-compressai`` / ``export-compressai``.

CompressAI (InterDigital, https://github.com/InterDigitalInc/CompressAI) is where most users of
learned image compression start. Three of its architectures are, layer for layer, models of
this package (Ballé et al. 2018; Minnen et al. 2018)::

    CompressAI              vaecodec      config it needs
    bmshj2018-factorized    factorized    density_filters [3, 3, 3, 3], density_offsets
    bmshj2018-hyperprior    hyperprior    density_filters [3, 3, 3, 3], density_offsets
    mbt2018-mean            mean-scale    ... and hyper_slope 0.01 (LeakyReLU in h_a / h_s),
                                          fine_mean_rounding

The state dicts use the same names for ``g_a``, ``g_s``, ``h_a``, ``h_s`` and the factorized
density's ``matrices`` / ``biases`` / ``factors``; GDN's ``beta`` / ``gamma`` are stored with
the same reparametrisation (``NonNegativeParametrizer``, offset ``2**-18``, ``beta_min``
1e-6), so every weight is copied bit for bit. The entropy bottleneck's medians
(``quantiles[:, 0, 1]``) become the density's ``offsets``; its ``quantiles`` bounds, its
``_quantized_cdf`` / ``_offset`` / ``_cdf_length`` tables and the Gaussian conditional's
``scale_table`` are not read: this package derives its own integer tables from the weights
(deterministic float64), and runs ``h_s`` in exact integer arithmetic, which is why a file
it writes decodes to the same pixels on every machine.

What is not bit for bit the same as CompressAI's own coder (so the decoded images differ by
far less than a quantisation step, and the sizes by a few per cent): ``h_s`` in fixed point
(weights on the grid ``2**-16``), the scale level chosen nearest in log scale (CompressAI
rounds up), means on the grid 1/64 (the encoder still rounds ``y - mu`` with the mean at
``2**-16``, as CompressAI rounds with its float mean: ``fine_mean_rounding``; rounding
around the 1/64 mean instead puts ~0.5 % of the elements of ``y`` one step away from
CompressAI's), the medians on the grid ``2**-16``, and the entropy coder
(constriction's range coder against CompressAI's rANS).

Refused, with the reason: architectures with a component this package has no exact form of
(``mbt2018``'s serial autoregressive context, ``cheng2020-*``'s attention and
sub-pixel layers, ``bmshj2018-factorized-relu``'s ReLU transforms, the ``-vbr`` models'
quantisation offsets, ``ssf2020``'s video model).

Export is the inverse, for a factorized, hyperprior or mean-scale model whose activations
match CompressAI's (a mean-scale model with ReLU in ``h_a`` / ``h_s`` is refused: CompressAI's
``mbt2018-mean`` has LeakyReLU). A variable-rate model is exported at one quality, its gains
folded into ``g_a``'s last and ``g_s``'s first convolution. A density with ``(3, 3, 3)``
filters gets one more hidden layer that is exactly the identity (softplus of its matrix is
exactly the identity in float32, bias and factor zero), since CompressAI's ``from_state_dict``
builds ``(3, 3, 3, 3)``; import drops such layers again, so ours -> CompressAI -> ours gives
the same weights, bit for bit, and the same ``.vcz`` files.

Nothing here imports CompressAI: the checkpoints are read with
``torch.load(weights_only=True)`` (tensors only; no code in a pickle runs).
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vaecodec.checkpoint import provenance, save_model
from vaecodec.errors import ModelError
from vaecodec.fileio import atomic_write, atomic_write_json, file_sha256, os_error_message

__all__ = [
    "ARCHITECTURES",
    "export_compressai",
    "import_compressai",
    "read_checkpoint",
    "to_compressai_state_dict",
]

ARCHITECTURES = {
    "bmshj2018-factorized": "factorized",
    "bmshj2018-hyperprior": "hyperprior",
    "mbt2018-mean": "mean-scale",
}
"""CompressAI architecture -> the vaecodec model that represents it exactly."""

REFUSED = {
    "bmshj2018-factorized-relu": "its g_a / g_s have ReLU where vaecodec's have GDN / IGDN",
    "mbt2018": "its context model is autoregressive (a serial masked 5x5 convolution), which "
    "vaecodec's exact coder does not have (its checkerboard context is another model)",
    "cheng2020-anchor": "its residual blocks, sub-pixel convolutions and autoregressive context "
    "have no counterpart in vaecodec",
    "cheng2020-attn": "its attention blocks, residual blocks and autoregressive context have no "
    "counterpart in vaecodec",
    "bmshj2018-hyperprior-vbr": "its variable-rate quantisation (lambda-dependent steps and "
    "offsets) differs from vaecodec's gain vectors",
    "mbt2018-mean-vbr": "its variable-rate quantisation (lambda-dependent steps and offsets) "
    "differs from vaecodec's gain vectors",
    "mbt2018-vbr": "its autoregressive context and variable-rate quantisation have no "
    "counterpart in vaecodec",
    "ssf2020": "it is a video model (scale-space flow)",
}

CAI_SLOPE = 0.01
"""Negative slope of ``nn.LeakyReLU()`` (PyTorch's default), in CompressAI's ``mbt2018-mean``."""
_PEDESTAL = 2.0**-36  # NonNegativeParametrizer's reparam_offset ** 2
_BETA_MIN = 1e-6
_IDENTITY_RAW = float(np.float32(math.log(math.expm1(1.0))))  # softplus(.) == 1.0 in float32
_ZERO_RAW = -200.0  # softplus(.) == 0.0 in float32
_STATE_KEYS = ("state_dict", "network", "model_state_dict", "model")


# -------------------------------------------------------------------------------- reading
def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a CompressAI checkpoint file, read with ``weights_only=True``.

    Accepts a plain state dict, or a training checkpoint holding it under ``state_dict`` /
    ``network`` / ``model_state_dict`` / ``model``; a ``module.`` prefix (DataParallel) is
    removed, and the entropy bottleneck's older parameter names (``_matrices.0``,
    ``_matrix0``, ..., as in CompressAI's zoo files) get their current ones.

    Raises:
        ModelError: missing or unreadable file, a pickle that is not tensors only, or not a
            dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message opens with advice to load with weights_only=False (arbitrary code
        # execution); the reason itself follows "WeightsUnpickler error:"
        text = str(e).split("WeightsUnpickler error:", 1)[-1].split("Check the documentation")[0]
        first = " ".join(text.split()) or type(e).__name__
        raise ModelError(
            f"{path} is not a checkpoint of tensors only (torch.load(weights_only=True) "
            f"refused it: {first[:200]})"
        ) from None
    except Exception as e:  # torch.load's errors on a file that is not its format vary
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path} is not a PyTorch checkpoint ({first[:200]})") from None
    if isinstance(obj, dict):
        for key in _STATE_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise ModelError(f"{path} does not hold a state dict (it holds a {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        k = bad[0]
        raise ModelError(
            f"{path} does not hold a state dict: entry {str(k)[:60]!r} is a "
            f"{type(obj[k]).__name__}, not a tensor"
        )
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return {_new_key(k): v for k, v in obj.items()}


_OLD_NAMES = {"_matrices.": "matrices.", "_biases.": "biases.", "_factors.": "factors.",
              "_matrix": "matrices.", "_bias": "biases.", "_factor": "factors."}  # fmt: skip


def _new_key(key: str) -> str:
    """CompressAI's current name for an entropy-bottleneck key of older checkpoints (its zoo's
    files among them): ``_matrices.0`` or ``_matrix0`` -> ``matrices.0`` (what its
    ``rename_key`` and ``remap_old_keys`` do on load)."""
    head, dot, tail = key.partition("entropy_bottleneck.")
    if not dot or head:
        return key
    for old, new in _OLD_NAMES.items():
        if tail.startswith(old) and tail[len(old) :].isdigit():
            return f"entropy_bottleneck.{new}{int(tail[len(old):])}"
    return key


def _guess_architecture(sd: dict) -> str | None:
    """CompressAI's name for the architecture a state dict looks like (None: none of its)."""
    if "g_a.0.weight" not in sd:
        return None
    if any(k.startswith("context_prediction.") for k in sd):
        return "mbt2018"
    if "g_a.1.beta" not in sd:
        return "bmshj2018-factorized-relu" if "g_a.6.weight" in sd else None
    if "h_s.0.weight" not in sd:
        return "bmshj2018-factorized"
    if "h_s.4.weight" in sd and "g_a.6.weight" in sd:
        m = sd["g_a.6.weight"].shape[0]
        return "mbt2018-mean" if sd["h_s.4.weight"].shape[0] == 2 * m else "bmshj2018-hyperprior"
    return None


def _density_filters(sd: dict, where: str) -> list[int]:
    n = 0
    while f"entropy_bottleneck.matrices.{n}" in sd:
        n += 1
    if n < 2:
        raise ModelError(f"{where}: missing entropy_bottleneck.matrices.0/1")
    return [int(sd[f"entropy_bottleneck.matrices.{i}"].shape[1]) for i in range(n - 1)]


def _drop_identity_layers(sd: dict) -> dict:
    """Remove hidden layers of the entropy bottleneck that compute exactly the identity in
    float32 (square, softplus(matrix) == I, bias 0, factor 0): what export adds to turn a
    ``(3, 3, 3)`` density into CompressAI's ``(3, 3, 3, 3)``."""
    pre = "entropy_bottleneck."
    n = 0
    while f"{pre}matrices.{n}" in sd:
        n += 1
    keep = []
    for i in range(n):
        m = sd[f"{pre}matrices.{i}"].to(torch.float32)
        b, f = sd.get(f"{pre}biases.{i}"), sd.get(f"{pre}factors.{i}")
        ident = (
            0 < i < n - 1 and f is not None and b is not None
            and m.shape[1] == m.shape[2] and len(keep) + (n - i) > 2
            and torch.equal(F.softplus(m), torch.eye(m.shape[1]).expand_as(m))
            and not b.any() and not f.any()
        )  # fmt: skip
        if not ident:
            keep.append(i)
    if len(keep) == n:
        return sd
    out = {k: v for k, v in sd.items() if not k.startswith((f"{pre}matrices.", f"{pre}biases.",
                                                              f"{pre}factors."))}  # fmt: skip
    for new, old in enumerate(keep):
        out[f"{pre}matrices.{new}"] = sd[f"{pre}matrices.{old}"]
        out[f"{pre}biases.{new}"] = sd[f"{pre}biases.{old}"]
        if old < n - 1:
            out[f"{pre}factors.{new}"] = sd[f"{pre}factors.{old}"]
    return out


def _ignored(key: str) -> bool:
    """CompressAI state-dict entries that hold nothing vaecodec needs (derived tables and
    constants; the constants are checked in :func:`_check_constants`)."""
    if key.startswith("gaussian_conditional."):
        return True
    if key.startswith("entropy_bottleneck.") and key.split(".", 1)[1] in (
        "_offset", "_quantized_cdf", "_cdf_length", "target", "likelihood_lower_bound.bound",
        "quantiles",
    ):  # fmt: skip
        return True
    return ".beta_reparam." in key or ".gamma_reparam." in key


def _check_constants(sd: dict, where: str) -> None:
    """GDN's reparametrisation constants must be vaecodec's (offset 2**-18, beta_min 1e-6)."""
    want = {
        "beta_reparam.pedestal": _PEDESTAL,
        "gamma_reparam.pedestal": _PEDESTAL,
        "beta_reparam.lower_bound.bound": (_BETA_MIN + _PEDESTAL) ** 0.5,
        "gamma_reparam.lower_bound.bound": _PEDESTAL**0.5,
    }
    for k, v in sd.items():
        for suffix, value in want.items():
            if k.endswith("." + suffix) and v.numel() == 1:
                if not math.isclose(float(v), value, rel_tol=1e-5):
                    raise ModelError(
                        f"{where}: {k} is {float(v):.6g}, vaecodec's GDN has {value:.6g} "
                        "(another beta_min or reparam_offset cannot be represented)"
                    )


# ------------------------------------------------------------------------------ importing
def _check_architecture(arch: str) -> None:
    if arch in REFUSED:
        raise ModelError(f"CompressAI's {arch} cannot be represented exactly: {REFUSED[arch]}")
    if arch not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {arch!r}; importable: {', '.join(ARCHITECTURES)}"
                         f" (refused: {', '.join(REFUSED)})")  # fmt: skip


def to_vaecodec_model(sd: dict[str, torch.Tensor], arch: str, where: str = "checkpoint"):
    """The vaecodec model (eval mode) and its registered name for a CompressAI state dict.

    Args:
        sd: the state dict (:func:`read_checkpoint`).
        arch: CompressAI's architecture name (:data:`ARCHITECTURES`).
        where: how error messages name the source.

    Raises:
        ModelError: an architecture that cannot be represented (with the reason), a state
            dict of another architecture, missing or unexpected keys, shapes that do not
            fit, non-finite values.
    """
    from vaecodec.checkpoint import load_state_into, require_finite
    from vaecodec.models.registry import build_model

    _check_architecture(arch)
    guess = _guess_architecture(sd)
    hint = f" (it looks like {guess})" if guess and guess != arch else ""
    for k in ("g_a.0.weight", "g_a.6.weight"):
        if k not in sd or sd[k].dim() != 4:
            raise ModelError(f"{where} is not a CompressAI {arch} state dict: no {k}{hint}")
    require_finite(sd, Path(where))
    sd = _drop_identity_layers(sd)
    _check_constants(sd, where)
    name = ARCHITECTURES[arch]
    config = {"N": int(sd["g_a.0.weight"].shape[0]), "M": int(sd["g_a.6.weight"].shape[0]),
              "ste": False}  # fmt: skip
    filters = _density_filters(sd, where)
    if filters != [3, 3, 3]:
        config["density_filters"] = filters
    q = sd.get("entropy_bottleneck.quantiles")
    if q is None or q.dim() != 3 or q.shape[1:] != (1, 3):
        raise ModelError(f"{where} is not a CompressAI {arch} state dict: "
                         f"entropy_bottleneck.quantiles missing or not [C, 1, 3]{hint}")  # fmt: skip
    medians = q[:, 0, 1].to(torch.float32)
    if medians.any():
        config["density_offsets"] = True
    if arch == "mbt2018-mean":
        config["hyper_slope"] = CAI_SLOPE
        config["fine_mean_rounding"] = True
    try:
        model = build_model(name, config)
    except ModelError as e:
        raise ModelError(f"{where}: {e}") from None
    own = model.state_dict()
    mapped = {k: sd[k] for k in own if k in sd}
    if "entropy_bottleneck.offsets" in own:
        mapped["entropy_bottleneck.offsets"] = medians
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(k for k in set(sd) - set(mapped) if not _ignored(k))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}{'...' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}"
                         f"{'...' if len(unexpected) > 4 else ''}")  # fmt: skip
        raise ModelError(f"{where} is not a CompressAI {arch} state dict: "
                         f"{'; '.join(parts)}{hint}")  # fmt: skip
    for k, v in mapped.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ModelError(
                f"{where} is not a CompressAI {arch} state dict with N={config['N']}, "
                f"M={config['M']}: {k} is {tuple(v.shape)}, expected {tuple(own[k].shape)}{hint}"
            )
    load_state_into(model, {k: v.to(torch.float32) for k, v in mapped.items()}, Path(where))
    return model.eval(), name


def _fresh_output(out: Path, force: bool) -> None:
    if (out.exists() or out.is_symlink()) and not force:
        raise ModelError(f"{out} exists; pass --force to replace it")


def import_compressai(checkpoints, arch: str, out: str | Path, qualities=None, lmbdas=None,
                      force: bool = False) -> dict:  # fmt: skip
    """Convert CompressAI checkpoints of one architecture into a vaecodec run directory (one
    checkpoint) or codec family (several: one quality each, as CompressAI's qualities 1-8),
    usable by every command that takes ``--model``.

    Args:
        checkpoints: paths of CompressAI checkpoints (``.pth`` / ``.pth.tar``), in quality
            order (fewest bits first).
        arch: CompressAI's architecture name, one of :data:`ARCHITECTURES`.
        out: the folder to write (must not exist unless ``force``).
        qualities: the quality number of each checkpoint (default 1, 2, ...).
        lmbdas: the lambda each was trained with, recorded in the family (optional).
        force: replace an existing ``out``.

    Returns:
        ``{"out", "model", "qualities": [{"quality", "dir", "config", "checkpoint"}]}``.

    Raises:
        ModelError: a bad checkpoint (see :func:`read_checkpoint`, :func:`to_vaecodec_model`),
            an existing output, bad qualities; nothing is written then.
    """
    _check_architecture(arch)
    checkpoints = [Path(c) for c in checkpoints]
    out = Path(out)
    if not checkpoints:
        raise ModelError("no checkpoint given")
    qualities = list(qualities) if qualities else list(range(1, len(checkpoints) + 1))
    if len(qualities) != len(checkpoints) or len(set(qualities)) != len(qualities) or any(
        type(q) is not int or not 1 <= q <= 255 for q in qualities
    ):
        raise ModelError(f"--qualities must give one different integer from 1 to 255 per "
                         f"checkpoint, got {qualities}")  # fmt: skip
    if lmbdas is not None and len(lmbdas) != len(checkpoints):
        raise ModelError(f"{len(lmbdas)} lambdas for {len(checkpoints)} checkpoints")
    _fresh_output(out, force)
    models = []
    for path in checkpoints:  # convert everything before writing anything
        model, name = to_vaecodec_model(read_checkpoint(path), arch, str(path))
        models.append((path, model, name))
    family = len(models) > 1
    record = {"out": str(out), "model": models[0][2], "qualities": []}
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name[:64]}.", dir=parent))
    except OSError as e:
        raise ModelError(os_error_message(out, e)) from None
    try:
        entries = []
        for i, (path, model, name) in enumerate(models):
            q = qualities[i]
            sub = f"q{q}" if family else "."
            meta = {
                "model": name, "kind": "codec", "config": model.config_dict(),
                "lmbda": None if lmbdas is None else float(lmbdas[i]),
                "quality_index": q,
                "description": f"CompressAI {arch} imported from {path.name}",
                "source": {"format": "compressai", "arch": arch, "checkpoint": str(path),
                           "sha256": file_sha256(path)},
                **provenance(),
            }  # fmt: skip
            d = tmp / sub
            d.mkdir(exist_ok=True)
            save_model(d, model, meta)
            entries.append({"quality": q, "dir": sub, "lmbda": meta["lmbda"]})
            record["qualities"].append({"quality": q, "dir": sub, "config": meta["config"],
                                        "checkpoint": str(path)})  # fmt: skip
        if family:
            entries.sort(key=lambda e: e["quality"])
            fam = {"name": out.name, "model": models[0][2],
                   "description": f"CompressAI {arch}, imported ({len(entries)} qualities)",
                   "qualities": entries,
                   "default_quality": entries[len(entries) // 2]["quality"]}  # fmt: skip
            atomic_write_json(tmp / "family.json", fam)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished folder ``tmp`` to ``out`` (an existing ``out`` is replaced only
    after the new one is complete)."""
    old = None
    try:
        if out.exists() or out.is_symlink():
            old = out.with_name(f".{out.name[:64]}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp, out)
    except OSError as e:
        if old is not None and not out.exists():
            os.replace(old, out)
        raise ModelError(os_error_message(out, e)) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


# ------------------------------------------------------------------------------ exporting
def _compressai_arch(name: str, model) -> str:
    if name == "factorized":
        return "bmshj2018-factorized"
    if name == "hyperprior" and not model.hyper_slope:
        return "bmshj2018-hyperprior"
    if name == "mean-scale" and model.hyper_slope == CAI_SLOPE:
        return "mbt2018-mean"
    if name == "mean-scale":
        raise ModelError(
            "this mean-scale model has ReLU in h_a / h_s; CompressAI's mbt2018-mean has "
            "LeakyReLU(0.01), so no CompressAI architecture computes it"
        )
    if name == "checkerboard":
        raise ModelError("CompressAI has no checkerboard context model (its mbt2018 context "
                         "is autoregressive): it cannot compute this model")  # fmt: skip
    raise ModelError(f"no CompressAI architecture computes a vaecodec {name} model "
                     f"with this config")  # fmt: skip


def _scale_table() -> torch.Tensor:
    """CompressAI's default ``get_scale_table()``: 64 levels, 0.11 to 256, log-spaced."""
    return torch.exp(torch.linspace(math.log(0.11), math.log(256), 64))


def to_compressai_state_dict(model, name: str) -> tuple[dict[str, torch.Tensor], str]:
    """A CompressAI state dict computing ``model`` (a factorized, hyperprior or mean-scale
    vaecodec codec at its current level) and CompressAI's architecture name for it.

    Raises:
        ModelError: a model no CompressAI architecture computes (named in the message).
    """
    arch = _compressai_arch(name, model)
    sd = {k: v.detach().clone().to(torch.float32) for k, v in model.state_dict().items()}
    for k in ("log_gain", "log_inv_gain"):
        sd.pop(k, None)
    if getattr(model, "levels", 0):  # fold the level's gains into g_a's last / g_s's first
        level = model.level
        gain = torch.exp(model.log_gain[level].detach())
        inv = torch.exp(model.log_inv_gain[level].detach())
        sd["g_a.6.weight"] = sd["g_a.6.weight"] * gain[:, None, None, None]
        sd["g_a.6.bias"] = sd["g_a.6.bias"] * gain
        sd["g_s.0.weight"] = sd["g_s.0.weight"] * inv[:, None, None, None]
    eb = model.entropy_bottleneck
    offsets = sd.pop("entropy_bottleneck.offsets", None)
    med = torch.zeros(eb.channels) if offsets is None else offsets
    table = eb.pmf_table()
    lo = torch.from_numpy(table.lo).to(torch.float32)
    hi = torch.from_numpy(table.hi).to(torch.float32)
    sd["entropy_bottleneck.quantiles"] = torch.stack([lo + med, med, hi + med], 1)[:, None, :]
    n_layers = len(eb.matrices)
    if n_layers == 4:  # (3, 3, 3): one identity layer more, CompressAI builds (3, 3, 3, 3)
        sd = _insert_identity(sd, eb.filters[-1])
    target = math.log(2 / 1e-9 - 1)
    empty = torch.zeros(0, dtype=torch.int32)
    sd.update({
        "entropy_bottleneck._offset": empty, "entropy_bottleneck._quantized_cdf": empty,
        "entropy_bottleneck._cdf_length": empty,
        "entropy_bottleneck.target": torch.tensor([-target, 0.0, target]),
        "entropy_bottleneck.likelihood_lower_bound.bound": torch.tensor([1e-9]),
    })  # fmt: skip
    for t in ("g_a", "g_s"):
        for i in (1, 3, 5):
            for p, bound in (("beta", (_BETA_MIN + _PEDESTAL) ** 0.5), ("gamma", _PEDESTAL**0.5)):
                sd[f"{t}.{i}.{p}_reparam.pedestal"] = torch.tensor([_PEDESTAL])
                sd[f"{t}.{i}.{p}_reparam.lower_bound.bound"] = torch.tensor([bound])
    if name != "factorized":
        sd.update({
            "gaussian_conditional._offset": empty, "gaussian_conditional._quantized_cdf": empty,
            "gaussian_conditional._cdf_length": empty,
            "gaussian_conditional.scale_table": _scale_table(),
            "gaussian_conditional.scale_bound": torch.tensor([0.11]),
            "gaussian_conditional.likelihood_lower_bound.bound": torch.tensor([1e-9]),
            "gaussian_conditional.lower_bound_scale.bound": torch.tensor([0.11]),
        })  # fmt: skip
    return {k: v.contiguous() for k, v in sd.items()}, arch


def _insert_identity(sd: dict, width: int) -> dict:
    """Insert, before the density's output layer, a ``width x width`` hidden layer that is
    exactly the identity in float32 (see module doc)."""
    pre = "entropy_bottleneck."
    n = 0
    while f"{pre}matrices.{n}" in sd:
        n += 1
    c = sd[f"{pre}matrices.0"].shape[0]
    raw = torch.full((width, width), _ZERO_RAW)
    raw.fill_diagonal_(_IDENTITY_RAW)
    sd[f"{pre}matrices.{n}"] = sd.pop(f"{pre}matrices.{n - 1}")
    sd[f"{pre}biases.{n}"] = sd.pop(f"{pre}biases.{n - 1}")
    sd[f"{pre}matrices.{n - 1}"] = raw.expand(c, width, width).clone()
    sd[f"{pre}biases.{n - 1}"] = torch.zeros(c, width, 1)
    sd[f"{pre}factors.{n - 1}"] = torch.zeros(c, width, 1)
    return sd


def export_compressai(model_name: str | Path, out: str | Path, quality: int | None = None,
                      force: bool = False) -> dict:  # fmt: skip
    """Write a vaecodec codec (zoo family, family folder or run directory; ``quality``
    within a family) as a CompressAI state dict (``torch.save``; a plain dict of tensors),
    which CompressAI's ``Model.from_state_dict`` / ``load_state_dict`` and
    ``python -m compressai.utils.eval_model checkpoint ... -a ARCH -p FILE`` accept.

    Returns:
        ``{"out", "arch", "N", "M", "quality"}``.

    Raises:
        ModelError: an unknown model, a model CompressAI cannot compute, an existing ``out``
            (without ``force``).
    """
    from vaecodec.zoo.codecs import load_codec

    out = Path(out)
    if out.exists() and not force:
        raise ModelError(f"{out} exists; pass --force to replace it")
    if out.is_dir():
        raise ModelError(f"{out} is a folder; give a file name (e.g. model.pth.tar)")
    model = load_codec(model_name, quality)
    sd, arch = to_compressai_state_dict(model, model.codec_id.model)
    try:
        atomic_write(out, lambda tmp: torch.save(sd, tmp))
    except OSError as e:
        raise ModelError(os_error_message(out, e)) from None
    return {"out": str(out), "arch": arch, "N": model.N, "M": model.M,
            "quality": model.codec_id.quality}  # fmt: skip
