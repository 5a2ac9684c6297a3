"""Machine-independent float64 math for the entropy coder's probability tables.

The integer probability tables that drive the entropy coder must be *bit-identical* on the
encoder and on the decoder, whatever the machine, the C math library, the CPU's vector unit
or the torch build. ``exp``, ``log``, ``erfc`` and friends from libm / SLEEF / CUDA are only
accurate to about one ulp and differ between platforms, so a table computed with them could
differ in a last bit, and after rounding to integers, in a probability.

This module therefore builds every function the tables need from operations that IEEE 754
specifies exactly (``+ - * /`` correctly rounded, ``floor``, ``ldexp``, ``frexp``,
comparisons), evaluated elementwise by numpy in float64 in a fixed order. The results are the
same on every IEEE 754 machine. They are accurate to ~1e-15 (``phi`` to ~1e-7 relative, which
is far below what a 16-bit table resolves); accuracy is not the point, reproducibility is.

Functions take and return ``numpy.ndarray`` of float64.
"""

from __future__ import annotations

import numpy as np

__all__ = ["exp", "log", "softplus", "sigmoid", "tanh", "normal_sf"]

_LN2_HI = 6.93147180369123816490e-01  # ln 2 split in two (Cody & Waite); _HI has 32 zero bits
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_SQRT1_2 = 0.70710678118654752440
# 1/k! for k = 13 .. 0, for Horner evaluation of exp on [-ln2/2, ln2/2]
_EXP_COEF = [
    1.6059043836821613e-10,
    2.08767569878681e-09,
    2.505210838544172e-08,
    2.755731922398589e-07,
    2.7557319223985893e-06,
    2.48015873015873e-05,
    0.0001984126984126984,
    0.001388888888888889,
    0.008333333333333333,
    0.041666666666666664,
    0.16666666666666666,
    0.5,
    1.0,
    1.0,
]


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def exp(x) -> np.ndarray:
    """``e**x`` (Cody-Waite range reduction + degree-13 Taylor polynomial); saturates outside
    [-745, 709]."""
    x = np.clip(_f64(x), -745.0, 709.0)
    k = np.floor(x * _INV_LN2 + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = np.full_like(r, _EXP_COEF[0])
    for c in _EXP_COEF[1:]:
        p = p * r + c
    # Two ldexp steps so that 2**k stays representable when k is near the range ends.
    k1 = np.floor(k * 0.5)
    return np.ldexp(np.ldexp(p, k1.astype(np.int64)), (k - k1).astype(np.int64))


def log(x) -> np.ndarray:
    """Natural logarithm for ``x > 0`` (exponent split + atanh series)."""
    x = _f64(x)
    m, e = np.frexp(x)  # x = m * 2**e, m in [0.5, 1)
    small = m < _SQRT1_2
    m = np.where(small, m * 2.0, m)  # m in [0.707, 1.414)
    e = (e - small.astype(np.int64)).astype(np.float64)
    t = (m - 1.0) / (m + 1.0)  # |t| < 0.172
    t2 = t * t
    s = np.zeros_like(t)
    for k in range(27, 0, -2):  # sum_{k odd} t**k / k, error < 0.172**29 / 29
        s = s * t2 + 1.0 / k
    return (e * _LN2_HI + 2.0 * t * s) + e * _LN2_LO


def softplus(x) -> np.ndarray:
    """``log(1 + e**x)``, evaluated stably as ``max(x, 0) + log(1 + e**-|x|)``."""
    x = _f64(x)
    return np.maximum(x, 0.0) + log(1.0 + exp(-np.abs(x)))


def sigmoid(x) -> np.ndarray:
    """``1 / (1 + e**-x)``."""
    return 1.0 / (1.0 + exp(-_f64(x)))


def tanh(x) -> np.ndarray:
    """``tanh(x) = sign(x) (1 - 2 / (e**(2|x|) + 1))`` (absolute error ~1e-16)."""
    x = _f64(x)
    a = 1.0 - 2.0 / (exp(2.0 * np.abs(x)) + 1.0)
    return np.where(x < 0, -a, a)


def normal_sf(x) -> np.ndarray:
    """Upper tail ``P(X > x)`` of the standard normal, ``erfc(x / sqrt 2) / 2``.

    Chebyshev-fitted ``erfc`` with fractional error below 1.2e-7 everywhere (Press et al.,
    *Numerical Recipes*, section 6.2), accurate in *relative* terms deep into the tail.
    """
    z = np.abs(_f64(x)) * _SQRT1_2
    t = 1.0 / (1.0 + 0.5 * z)
    poly = 0.17087277
    for c in (
        -0.82215223,
        1.48851587,
        -1.13520398,
        0.27886807,
        -0.18628806,
        0.09678418,
        0.37409196,
        1.00002368,
        -1.26551223,
    ):
        poly = poly * t + c
    erfc_abs = t * exp(-z * z + poly)
    return np.where(_f64(x) >= 0, 0.5 * erfc_abs, 1.0 - 0.5 * erfc_abs)
