"""The standard-normal prior p(z) = N(0, I) of the generative VAEs, with both faces.

Training face: :func:`kl_std_normal` (the KL term of the ELBO, in closed form for a diagonal
Gaussian posterior) and :func:`std_normal_log_prob` (for importance-weighted bounds).

Coding face: :class:`LatentBuckets`, the discretisation that bits-back coding (BB-ANS,
Townsend et al. 2019; :mod:`vaecodec.models.bitsback`) codes a latent with: ``2**P`` buckets of
equal mass under N(0, 1) per dimension, so p(z) is uniform over buckets (P bits per dimension),
and q(z|x) is the posterior's mass on each bucket.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import torch

from vaecodec.coding import detmath

__all__ = ["DEFAULT_LATENT_PREC", "LatentBuckets", "kl_std_normal", "std_normal_log_prob"]

LOG_2PI = math.log(2 * math.pi)

DEFAULT_LATENT_PREC = 8
"""P: each latent dimension has ``2**P`` buckets of equal prior mass."""


def kl_std_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per latent dimension, in nats: ``[B, d]``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def std_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dim, in nats."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


class LatentBuckets:
    """``2**prec`` buckets of equal mass under N(0, 1) for one latent dimension.

    Attributes:
        prec: P.
        edges: float64 ``[2**P - 1]``, the interior edges ``Φ⁻¹(j / 2**P)``, j = 1 .. 2**P − 1.
        centres: float64 ``[2**P]``, ``Φ⁻¹((j + ½) / 2**P)``: the latent value of bucket j.

    Both are rounded to multiples of 2**-40 so that a last-ulp difference in the platform's
    ``log`` cannot change them.
    """

    # Φ tabulated on t = -8 .. 8 in steps of 2**-12 (linear interpolation error < 3e-9, far
    # below the coder's 2**-24 resolution); built once with detmath (IEEE-exact operations).
    _T_MAX = 8.0
    _T_STEPS = 1 << 12
    _table: tuple[np.ndarray, np.ndarray] | None = None

    def __init__(self, prec: int = DEFAULT_LATENT_PREC):
        if not 2 <= prec <= 16:
            raise ValueError(f"latent precision must be in [2, 16] bits, got {prec}")
        self.prec = prec
        n = 1 << prec
        nd = statistics.NormalDist()
        q = 2.0**40
        self.edges = np.array([round(nd.inv_cdf(j / n) * q) / q for j in range(1, n)])
        self.centres = np.array([round(nd.inv_cdf((j + 0.5) / n) * q) / q for j in range(n)])

    @property
    def n(self) -> int:
        return 1 << self.prec

    @classmethod
    def _cdf_table(cls) -> tuple[np.ndarray, np.ndarray]:
        if cls._table is None:
            m = int(2 * cls._T_MAX * cls._T_STEPS)
            t = np.arange(m + 2, dtype=np.float64) / cls._T_STEPS - cls._T_MAX
            cdf = detmath.normal_sf(-t)
            cls._table = (cdf[:-1].copy(), np.diff(cdf))
        return cls._table

    def posterior(self, mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
        """Mass of N(mu, exp(logvar)) on every bucket: float64 ``[..., d, 2**P]``.

        ``q_j = Φ((e_{j+1} − mu)/σ) − Φ((e_j − mu)/σ)`` with ``e_0 = −∞``, ``e_{2**P} = +∞``.
        Φ is interpolated linearly in a table (error < 3e-9) and σ = exp(logvar / 2) comes from
        :mod:`vaecodec.coding.detmath`: only IEEE-exact operations, so the result does not depend
        on the machine or on how the work is batched.
        """
        table, slope = self._cdf_table()
        steps = float(self._T_STEPS)
        scale = detmath.exp(-0.5 * logvar) * steps  # table steps per unit of z
        offset = self._T_MAX * steps - mu * scale
        u = self.edges * scale[..., None]
        u += offset[..., None]
        np.clip(u, 0.0, float(len(table) - 1), out=u)
        i = u.astype(np.intp)
        u -= i
        cdf = np.empty(u.shape[:-1] + (u.shape[-1] + 2,))
        cdf[..., 0] = 0.0
        cdf[..., -1] = 1.0
        inner = cdf[..., 1:-1]
        np.multiply(u, slope[i], out=inner)
        inner += table[i]
        q = np.diff(cdf, axis=-1)
        return np.maximum(q, 0.0, out=q)
