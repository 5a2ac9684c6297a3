"""Weight fingerprints: how a file names the exact weights that can decode it. One module for
every rule of it.

A decoder must refuse a file made by other weights (a wrong model decodes to garbage, never to
an error, otherwise). Two formats, two fingerprints, fixed by the bytes they have written since
format version 1:

- ``.vcz`` (lossy, 8 bytes in the header): the first 8 bytes of the SHA-256 of the weights'
  safetensors serialisation. For a zoo codec that is the weights *file*
  (:func:`file_fingerprint`); for weights in memory, the bytes
  :func:`vaecodec.checkpoint.save_model` would write (:func:`state_dict_fingerprint`), so a run
  saved in float32 and reloaded keeps its fingerprint.
- ``VCZL`` (lossless, 32 bytes): the SHA-256 of the registered model name and config and every
  tensor in float64 (:func:`content_fingerprint`), so float16 and float32 copies of the same
  weights agree.

A single definition for both would change the bytes of every new file, which needs a new format
version (with these readers kept for version 1); until then, these are the rules.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from vaecodec.fileio import file_sha256

__all__ = ["content_fingerprint", "file_fingerprint", "state_dict_fingerprint"]


def file_fingerprint(path: str | Path) -> bytes:
    """``.vcz``: first 8 bytes of the SHA-256 of a weights file (read in 1 MiB blocks)."""
    return bytes.fromhex(file_sha256(path))[:8]


def state_dict_fingerprint(state_dict) -> bytes:
    """``.vcz``: first 8 bytes of the SHA-256 of the safetensors serialisation of in-memory
    weights (the bytes ``save_model`` writes, so it equals :func:`file_fingerprint` of that
    file)."""
    from safetensors.torch import save

    flat = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    return hashlib.sha256(save(flat)).digest()[:8]


def content_fingerprint(model, meta: dict | None = None) -> bytes:
    """``VCZL``: SHA-256 (32 bytes) of ``[meta["model"], meta["config"]]`` as sorted JSON (when
    ``meta`` is given) and every tensor of ``model.state_dict()`` in float64, by sorted key,
    each as ``key \\0 shape \\0 little-endian float64 bytes``."""
    h = hashlib.sha256()
    if meta is not None:
        h.update(json.dumps([meta.get("model"), meta.get("config")], sort_keys=True).encode())
    for k, v in sorted(model.state_dict().items()):
        a = v.detach().cpu().double().contiguous().numpy().astype("<f8")
        h.update(k.encode() + b"\0" + str(tuple(a.shape)).encode() + b"\0" + a.tobytes())
    return h.digest()
