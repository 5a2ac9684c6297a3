"""Priors / entropy models: one interface, two faces (likelihoods for training, integer
probability tables for the entropy coder).

- :class:`FactorizedDensity`: the deep factorized density (Ballé et al. 2018, appendix 6.1).
- :class:`GaussianConditional`: Gaussian with quantised scale table, optional mean
  (scale hyperprior, Ballé et al. 2018; mean-scale, Minnen et al. 2018).
"""

from vaecodec.priors.factorized import LIKELIHOOD_BOUND, FactorizedDensity, quantize_noise
from vaecodec.priors.gaussian import (
    LEVELS,
    MEAN_STEP_BITS,
    SCALE_MAX,
    SCALE_MIN,
    GaussianConditional,
    dequantize_means,
    gaussian_pmf_table,
    quantize_means,
    scale_indexes,
    scale_table,
)

__all__ = [
    "LEVELS",
    "LIKELIHOOD_BOUND",
    "MEAN_STEP_BITS",
    "SCALE_MAX",
    "SCALE_MIN",
    "FactorizedDensity",
    "GaussianConditional",
    "dequantize_means",
    "gaussian_pmf_table",
    "quantize_means",
    "quantize_noise",
    "scale_indexes",
    "scale_table",
]
