"""Bjøntegaard delta rate and delta PSNR: one number comparing two rate-distortion curves.

G. Bjøntegaard, "Calculation of average PSNR differences between RD-curves", ITU-T SG16
VCEG-M33, 2001. Each curve is a few (rate, quality) points, e.g. (bpp, PSNR) of one codec at
several settings averaged over a test set.

- **BD-rate** (:func:`bd_rate`): express log(rate) as a function of quality for each curve,
  integrate both over the quality interval the two curves share, and turn the mean difference of
  log-rates into a percentage: ``100 * (exp(mean(ln R_test - ln R_anchor)) - 1)``. Negative
  means the test codec needs fewer bits for the same quality (-50 % = half the bits).
- **BD-PSNR** (:func:`bd_psnr`): the same with the roles swapped: quality as a function of
  log(rate), averaged over the shared log-rate interval; positive means the test codec is that
  many dB better at the same rate.

Two interpolation methods:

- ``"pchip"`` (the default): piecewise cubic Hermite interpolation (Fritsch-Carlson, scipy's
  ``PchipInterpolator``) through the points, integrated exactly. It passes through every point
  and does not overshoot, so it stays sane with many points and curves that bend; it is what
  JVET's CTC sheets, CompressAI and most recent learned-compression papers use.
- ``"cubic"``: VCEG-M33's original least-squares cubic polynomial fit (needs >= 4 points per
  curve); kept for comparison with older tables.

The quality may be any "higher is better" number: PSNR in dB, or MS-SSIM in dB
(``-10 log10(1 - MS-SSIM)``; see :func:`vaecodec.evaluate.metrics.ms_ssim_db`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from vaecodec.errors import VaecodecError

METHODS = ("pchip", "cubic")


class BDRateError(VaecodecError, ValueError):
    """Two curves cannot be compared: too few points, or no overlapping interval."""


def _prepare(x: Sequence[float], y: Sequence[float], method: str, who: str):
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise BDRateError(f"{who}: {x.size} x values but {y.size} y values")
    keep = np.isfinite(x) & np.isfinite(y)  # drop lossless (inf dB) or failed points
    x, y = x[keep], y[keep]
    # merge points with equal x (e.g. two settings that produced the same file): mean of y
    ux, inv = np.unique(x, return_inverse=True)
    uy = np.bincount(inv, weights=y) / np.bincount(inv)
    need = 4 if method == "cubic" else 2
    if ux.size < need:
        raise BDRateError(
            f"{who}: {ux.size} distinct finite points, the {method!r} method needs at least {need}"
        )
    return ux, uy


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    if method == "cubic":
        c = x.mean()  # centre x: a cubic in PSNR ~ 30..40 is badly conditioned otherwise
        p = np.polyint(np.polyfit(x - c, y, 3))
        return float(np.polyval(p, hi - c) - np.polyval(p, lo - c))
    from scipy.interpolate import PchipInterpolator

    return float(PchipInterpolator(x, y).integrate(lo, hi))


def _mean_difference(xa, ya, xt, yt, method: str, min_overlap: float, what: str) -> float:
    if method not in METHODS:
        raise BDRateError(f"unknown BD method {method!r}; choose from {', '.join(METHODS)}")
    xa, ya = _prepare(xa, ya, method, "anchor curve")
    xt, yt = _prepare(xt, yt, method, "test curve")
    lo, hi = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    if not hi - lo > min_overlap:
        raise BDRateError(
            f"the curves share no {what} interval long enough to compare: anchor "
            f"[{xa[0]:.4g}, {xa[-1]:.4g}], test [{xt[0]:.4g}, {xt[-1]:.4g}] "
            f"(need an overlap > {min_overlap:g}); sweep more settings so that they overlap"
        )
    return (_integral(xt, yt, lo, hi, method) - _integral(xa, ya, lo, hi, method)) / (hi - lo)


def bd_rate(
    rate_anchor: Sequence[float],
    quality_anchor: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
    method: str = "pchip",
    min_overlap: float = 0.0,
) -> float:
    """Bjøntegaard delta rate of the test curve against the anchor, in percent.

    Args:
        rate_anchor, rate_test: rates of each point (bpp, bits or bytes: any positive unit,
            the same for both curves).
        quality_anchor, quality_test: quality of each point, higher is better (PSNR in dB, or
            MS-SSIM in dB). Non-finite points (e.g. a lossless inf dB) are ignored.
        method: ``"pchip"`` (default) or ``"cubic"`` (VCEG-M33 polynomial fit).
        min_overlap: the shared quality interval must be longer than this (in quality units).

    Returns:
        Average rate difference in percent at equal quality; negative = the test saves bits.

    Raises:
        BDRateError: (a ``ValueError``) with too few points, non-positive rates, or no overlap.
    """
    la, lt = _log_rates(rate_anchor, rate_test, "BD-rate")
    d = _mean_difference(quality_anchor, la, quality_test, lt, method, min_overlap, "quality")
    return 100.0 * math.expm1(d)


def bd_psnr(
    rate_anchor: Sequence[float],
    psnr_anchor: Sequence[float],
    rate_test: Sequence[float],
    psnr_test: Sequence[float],
    method: str = "pchip",
    min_overlap: float = 0.0,
) -> float:
    """Bjøntegaard delta PSNR (or any quality in dB) of the test curve against the anchor.

    Quality is interpolated as a function of ln(rate) and averaged over the shared log-rate
    interval (``min_overlap`` is in ln-rate units). Arguments as in :func:`bd_rate`.

    Returns:
        Average quality difference in dB at equal rate; positive = the test is better.

    Raises:
        BDRateError: (a ``ValueError``) with too few points, non-positive rates, or no overlap.
    """
    la, lt = _log_rates(rate_anchor, rate_test, "BD-PSNR")
    return _mean_difference(la, psnr_anchor, lt, psnr_test, method, min_overlap, "log-rate")


def _log_rates(rate_anchor, rate_test, what: str) -> tuple[np.ndarray, np.ndarray]:
    """ln of both curves' rates; a BDRateError unless every rate is positive."""
    ra, rt = np.asarray(rate_anchor, float), np.asarray(rate_test, float)
    if np.any(ra <= 0) or np.any(rt <= 0):
        raise BDRateError(f"{what} needs positive rates")
    return np.log(ra), np.log(rt)
