"""Gaussian conditional entropy model with a quantised scale table (Ballé et al. 2018;
mean-scale: Minnen, Ballé & Toderici 2018).

Each latent element ``y_i`` is modelled as ``N(mu_i, sigma_i^2)`` convolved with a unit-width
uniform, the parameters coming from the hyperprior::

    p(y^_i) = Phi((y^_i - mu_i + 1/2) / sigma_i) - Phi((y^_i - mu_i - 1/2) / sigma_i)

Training face: :meth:`GaussianConditional.forward` returns the noisy (or, in eval mode,
rounded) latent and its likelihood, with ``sigma`` floored at :data:`SCALE_MIN` = 0.11 and the
likelihood floored at 1e-9.

Coding face: ``sigma`` is quantised to a table of :data:`LEVELS` = 64 log-spaced scales from
0.11 to 256 (as CompressAI); each table level has an integer pmf over the residual
``k = round(y - mu)`` on ``[-T, T]``, ``T = max(1, ceil(5 sigma_j))``, plus an escape entry.
The level of an element is the nearest ``sigma_j`` to ``sigma`` in log scale (bounds at the
geometric means of neighbouring levels; always rounding up, as CompressAI does, costs ~3 % more
bits at low rates), computed from the *fixed-point integer* scale that the exact hyper-synthesis produces (see
``vaecodec.models.codecs``), by integer comparison with ``floor(sigma_j * 2**frac_bits)``.
Means are quantised to the grid ``1/64`` (:data:`MEAN_STEP_BITS` = 6) from the same
fixed-point integers, and the decoder reconstructs ``y^ = k + mu_q``.

:func:`encode_grouped` / :func:`decode_grouped` code the residuals with the table: grouped by
scale level (a stable sort of the levels, which the decoder derives from the same levels), one
run of symbols per table row.

The table levels are built by repeated float64 multiplication (``sigma_{j+1} = sigma_j * r``
with a literal ratio ``r``) and the pmfs with :mod:`vaecodec.coding.detmath`, so every
machine gets the same integers.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn

from vaecodec.coding import detmath
from vaecodec.coding.entropy import PmfTable, SymbolDecoder, SymbolEncoder, quantize_pmf
from vaecodec.nn.gdn import lower_bound
from vaecodec.priors.factorized import LIKELIHOOD_BOUND, quantize_noise

__all__ = [
    "decode_grouped",
    "encode_grouped",
    "LEVELS",
    "MEAN_STEP_BITS",
    "SCALE_MAX",
    "SCALE_MIN",
    "GaussianConditional",
    "dequantize_means",
    "gaussian_pmf_table",
    "level_bounds",
    "quantize_means",
    "scale_indexes",
    "scale_table",
]

SCALE_MIN = 0.11
"""Smallest scale (also the training floor of sigma)."""
SCALE_MAX = 256.0
"""Largest scale of the table (approximately: the 64th level is 255.99999999999946)."""
LEVELS = 64
"""Number of scale levels in the table."""
_SCALE_RATIO = 1.1309463943519327  # (256 / 0.11) ** (1 / 63), written as a literal on purpose
_TAIL_SIGMAS = 5.0
MEAN_STEP_BITS = 6
"""Means are coded on the grid ``2**-MEAN_STEP_BITS`` (1/64)."""


@functools.lru_cache(maxsize=1)
def scale_table() -> np.ndarray:
    """The ``LEVELS`` scale levels (float64, increasing), identical on every machine."""
    s = [SCALE_MIN]
    for _ in range(LEVELS - 1):
        s.append(s[-1] * _SCALE_RATIO)
    return np.array(s, dtype=np.float64)


@functools.lru_cache(maxsize=1)
def gaussian_pmf_table() -> PmfTable:
    """Integer pmfs of the residual ``k = round(y - mu)`` for every scale level."""
    pmfs, offsets = [], []
    for s in scale_table():
        t = max(1, math.ceil(_TAIL_SIGMAS * s))
        k = np.abs(np.arange(-t, t + 1, dtype=np.float64))
        # P(k) = Q((|k| - 1/2) / s) - Q((|k| + 1/2) / s), upper tails Q for accuracy
        pmf = detmath.normal_sf((k - 0.5) / s) - detmath.normal_sf((k + 0.5) / s)
        tail = 2.0 * detmath.normal_sf(np.array([(t + 0.5) / s]))
        pmfs.append(quantize_pmf(np.concatenate([pmf, tail])))
        offsets.append(-t)
    return PmfTable(pmfs, offsets)


def level_bounds() -> np.ndarray:
    """Upper bounds of the scale levels but the last: ``sigma_j * sqrt(r)``, the geometric
    means of neighbouring levels (``sqrt`` and ``*`` are correctly rounded, so exact
    everywhere)."""
    return scale_table()[:-1] * math.sqrt(_SCALE_RATIO)


def scale_indexes(scale_fixed: np.ndarray, frac_bits: int) -> np.ndarray:
    """Table level of each scale, from fixed-point integers ``scale * 2**frac_bits``.

    The level nearest to ``scale`` in log scale (level 0 for everything below, the last level
    for everything above the table): ``#{j < LEVELS-1 : floor(b_j 2**frac_bits) < scale_fixed}``
    with ``b_j`` the :func:`level_bounds`; integer comparisons only.

    Args:
        scale_fixed: integer-valued array (any int or float dtype holding integers).

    Returns:
        int64 array of the same shape, values in ``[0, LEVELS)``.
    """
    thresholds = np.floor(np.ldexp(level_bounds(), frac_bits))  # exact
    v = np.asarray(scale_fixed, dtype=np.float64)
    return np.searchsorted(thresholds, v, side="left").astype(np.int64)


def quantize_means(mean_fixed: np.ndarray, frac_bits: int) -> np.ndarray:
    """Means on the 1/64 grid, as int64 multiples of ``2**-MEAN_STEP_BITS``, from fixed-point
    integers ``mean * 2**frac_bits`` (round half up, exact float64 arithmetic)."""
    v = np.asarray(mean_fixed, dtype=np.float64)
    return np.floor(np.ldexp(v, MEAN_STEP_BITS - frac_bits) + 0.5).astype(np.int64)


def dequantize_means(mean64: np.ndarray) -> np.ndarray:
    """The float64 means ``mean64 / 64`` that the coder uses (exact)."""
    return np.ldexp(np.asarray(mean64, dtype=np.float64), -MEAN_STEP_BITS)


class GaussianConditional(nn.Module):
    """Gaussian conditional entropy model (see module doc).

    ``forward(y, scales, means=None)`` with all three ``[B, M, h, w]`` returns
    ``(y_tilde, likelihood)``: ``y_tilde = y + U(-1/2, 1/2)`` when training, else
    ``round(y - means) + means``; ``likelihood`` floored at 1e-9.
    """

    def likelihood(
        self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``P(y)`` of the unit-bin-integrated Gaussian, ``[B, M, h, w]``."""
        v = torch.abs(y - means) if means is not None else torch.abs(y)
        s = lower_bound(scales, SCALE_MIN)
        # Phi((1/2 - v)/s) - Phi((-1/2 - v)/s), with Phi(x) = erfc(-x / sqrt 2) / 2
        c = -(2**-0.5)
        upper = 0.5 * torch.erfc(c * (0.5 - v) / s)
        lower = 0.5 * torch.erfc(c * (-0.5 - v) / s)
        return lower_bound(upper - lower, LIKELIHOOD_BOUND)

    def forward(
        self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        y_tilde = quantize_noise(y, self.training, means)
        return y_tilde, self.likelihood(y_tilde, scales, means)

    @staticmethod
    def pmf_table() -> PmfTable:
        """The coding tables (:func:`gaussian_pmf_table`); shared by every model."""
        return gaussian_pmf_table()


def _coding_order(levels: np.ndarray, n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Coding order of the elements with scale ``levels`` (1-D): grouped by level (stable),
    and the group boundaries ``[n_levels + 1]``."""
    order = np.argsort(levels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(levels, minlength=n_levels))])
    return order, bounds


def encode_grouped(enc: SymbolEncoder, table: PmfTable, k: np.ndarray, levels: np.ndarray,
                   pos: np.ndarray | None = None) -> None:  # fmt: skip
    """Append the residuals ``k`` (1-D int64; only the flat positions ``pos`` when given) with
    the rows of ``table`` (:func:`gaussian_pmf_table`) their scale ``levels`` name, grouped by
    level."""
    if pos is not None:
        k, levels = k[pos], levels[pos]
    order, bounds = _coding_order(levels, len(table))
    kb = k[order]
    for j in range(len(bounds) - 1):
        enc.encode(kb[bounds[j] : bounds[j + 1]], table, j)


def decode_grouped(dec: SymbolDecoder, table: PmfTable, k: np.ndarray, levels: np.ndarray,
                   pos: np.ndarray | None = None) -> None:  # fmt: skip
    """Inverse of :func:`encode_grouped`: fill ``k`` (1-D, in place) at ``pos`` (all when
    None). Raises :class:`~vaecodec.errors.FormatError` on corrupt data."""
    if pos is None:
        pos = np.arange(levels.size)
    order, bounds = _coding_order(levels[pos], len(table))
    for j in range(len(bounds) - 1):
        sel = pos[order[bounds[j] : bounds[j + 1]]]
        k[sel] = dec.decode(table, j, int(bounds[j + 1] - bounds[j]))
