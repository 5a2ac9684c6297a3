"""The explore page's work: a zoo VAE's samples, decodes of a latent vector, test digits and
interpolations between them.

One :class:`Explorer` holds one VAE and is used from one thread at a time (the server's
interactive pool has a single thread), so its module is never run concurrently. Images come
back as PNG bytes of the decoder mean (28 x 28 for MNIST; the page enlarges them).

The sliders are ordered by the KL per latent dimension, KL(q(z_u|x) || N(0, 1)) averaged over
up to 2000 test images (:func:`vaecodec.viz.grids.kl_per_dimension`, the order of
``vaecodec traverse``), highest first. Without the test split (MNIST not installed) the page
says so, the interpolation strip is off, and the dimensions are ordered by decoder sensitivity
instead: the mean absolute change of the decoded image when z_u moves from -1 to +1 at z = 0.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch

from vaecodec.errors import VaecodecError
from vaecodec.serve.compare import RequestError, png_bytes

MAX_SAMPLES = 64
MAX_STEPS = 16
Z_LIMIT = 10.0
"""Largest |z_u| a decode request may ask for (the sliders span [-3, 3])."""


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[C, H, W]`` float in [0, 1] -> uint8 ``[H, W]`` (C = 1) or ``[H, W, 3]``."""
    a = (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()
    return a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))


def _strip(images: torch.Tensor, pad: int = 2) -> np.ndarray:
    from vaecodec.viz.grids import make_grid

    return make_grid(images, nrow=images.shape[0], pad=pad)


class Explorer:
    """A zoo VAE (or run directory) for the explore page.

    Args:
        model: zoo name or run directory of a VAE (``kind == "vae"``).
        dataset: override of the model's test dataset (None: the one it records).

    Raises:
        ModelError: not a VAE, unknown name.
    """

    def __init__(self, model: str = "mnist-vae", dataset: str | None = None) -> None:
        from vaecodec.zoo import load_model

        self.name = str(model)
        self.model, self.meta = load_model(model, kind="vae")
        self.dataset = dataset
        self._x: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self._info: dict | None = None
        self._why: str | None = None
        self._lock = threading.Lock()

    @property
    def latent_dim(self) -> int:
        return int(self.model.latent_dim)

    def _test_split(self) -> tuple[torch.Tensor | None, str | None]:
        """``(x, None)``, or ``(None, why)`` when the test split cannot be loaded (tried once)."""
        if self._x is None and self._why is None:
            from vaecodec.data import model_test_data

            try:
                ds = model_test_data(self.meta, self.dataset, None)
                self._x, self._labels = ds.x, ds.labels
            except VaecodecError as e:
                self._why = str(e)
        return self._x, self._why

    @torch.no_grad()
    def info(self) -> dict:
        """``name``, ``latent_dim``, ``order`` (dimension indices, highest KL first),
        ``score`` per dimension in that order, ``score_name`` (``"KL (nats)"`` or
        ``"decoder sensitivity"``), ``digits_available``, ``note`` (why not), ``image_shape``."""
        with self._lock:
            if self._info is None:
                x, why = self._test_split()
                d = self.latent_dim
                if x is not None and not self.model.deterministic:
                    from vaecodec.viz.grids import kl_per_dimension

                    score = kl_per_dimension(self.model, x[:2000])
                    name = "KL (nats)"
                else:
                    eye = torch.eye(d)
                    diff = self.model.decode_mean(eye) - self.model.decode_mean(-eye)
                    score = diff.abs().flatten(1).mean(1)
                    name = "decoder sensitivity"
                order = torch.argsort(score, descending=True).tolist()
                self._info = {
                    "name": self.name,
                    "latent_dim": d,
                    "order": order,
                    "score": [float(score[u]) for u in order],
                    "score_name": name,
                    "digits_available": x is not None,
                    "note": None if x is not None else (
                        f"the test split is unavailable ({why}): no interpolation strip, and "
                        "the sliders are ordered by decoder sensitivity instead of KL"),
                    "image_shape": list(self.meta.get("config", {}).get("input_shape", [])),
                }  # fmt: skip
            return dict(self._info)

    def _z(self, z) -> torch.Tensor:
        try:
            t = torch.as_tensor(np.asarray(z, dtype=np.float32))
        except (TypeError, ValueError):
            raise RequestError("z must be a list of numbers") from None
        if t.shape != (self.latent_dim,) or not torch.isfinite(t).all():
            raise RequestError(f"z must be {self.latent_dim} finite numbers")
        return t.clamp(-Z_LIMIT, Z_LIMIT)

    @torch.no_grad()
    def decode(self, z) -> bytes:
        """PNG of the decoder mean at ``z`` (``latent_dim`` numbers, clamped to +-10).

        Raises:
            RequestError: 400 for a wrong length or non-finite values.
        """
        return png_bytes(_to_uint8(self.model.decode_mean(self._z(z)[None])[0]))

    @torch.no_grad()
    def samples(self, n: int = 16, seed: int = 0) -> dict:
        """``n`` draws z ~ N(0, I) with a seeded generator: ``{"z": [[...]], "png": [bytes]}``
        (each image's PNG). Raises RequestError for n outside 1..64."""
        if not 1 <= int(n) <= MAX_SAMPLES:
            raise RequestError(f"n must be from 1 to {MAX_SAMPLES}")
        g = torch.Generator().manual_seed(int(seed) % (2**63))
        z = torch.randn(int(n), self.latent_dim, generator=g)
        x = self.model.decode_mean(z)
        return {"z": z.tolist(), "png": [png_bytes(_to_uint8(xi)) for xi in x]}

    def _require_digits(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, why = self._test_split()
        if x is None:
            raise RequestError(f"test digits are unavailable: {why}", 503)
        return x, self._labels

    @torch.no_grad()
    def digits(self, n: int = 24, seed: int = 0) -> dict:
        """``n`` test images picked with ``seed``: their ``index`` in the test split,
        ``label``, ``png`` bytes and posterior mean ``z``.

        Raises:
            RequestError: 503 when the test split is unavailable; 400 for n outside 1..64.
        """
        if not 1 <= int(n) <= MAX_SAMPLES:
            raise RequestError(f"n must be from 1 to {MAX_SAMPLES}")
        x, labels = self._require_digits()
        g = torch.Generator().manual_seed(int(seed) % (2**63))
        idx = torch.randperm(x.shape[0], generator=g)[: int(n)]
        mu = self.model.encode(x[idx])[0]
        return {
            "index": idx.tolist(),
            "label": [int(labels[i]) for i in idx],
            "png": [png_bytes(_to_uint8(x[i])) for i in idx],
            "z": mu.tolist(),
        }

    @torch.no_grad()
    def interpolate(self, a: int, b: int, steps: int = 10, slerp: bool = False) -> bytes:
        """PNG strip: test image ``a``, ``steps`` decodes on the path between the posterior
        means of ``a`` and ``b`` (linear, or spherical with ``slerp``), test image ``b``.

        Raises:
            RequestError: 503 without the test split; 400 for an index outside it or steps
                outside 2..16.
        """
        x, _ = self._require_digits()
        n = x.shape[0]
        for i in (a, b):
            if not isinstance(i, int) or not 0 <= i < n:
                raise RequestError(f"digit index must be an integer from 0 to {n - 1}")
        if not 2 <= int(steps) <= MAX_STEPS:
            raise RequestError(f"steps must be from 2 to {MAX_STEPS}")
        mu = self.model.encode(x[[a, b]])[0]
        t = torch.linspace(0, 1, int(steps))
        if slerp:
            from vaecodec.viz.grids import slerp as _slerp

            zs = _slerp(mu[0], mu[1], t)
        else:
            zs = (1 - t)[:, None] * mu[0] + t[:, None] * mu[1]
        images = torch.cat([x[a][None], self.model.decode_mean(zs), x[b][None]])
        return png_bytes(_strip(images))


def ms(seconds: float) -> float:
    """Seconds -> milliseconds, rounded to 0.1 ms (for timing headers)."""
    return math.floor(seconds * 1e4 + 0.5) / 10
