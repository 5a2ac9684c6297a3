"""Priors / entropy models: one interface, two faces (likelihoods for training, integer
probability tables for the entropy coder).

- :class:`FactorizedDensity`: the deep factorized density (Ballé et al. 2018, appendix 6.1).
- :class:`GaussianConditional`: Gaussian with quantised scale table, optional mean
  (scale hyperprior, Ballé et al. 2018; mean-scale, Minnen et al. 2018).
- :mod:`.standard_normal`: the VAE's N(0, I): its KL term and its bits-back buckets.

Each owns its coding face: the integer tables *and* the loops that code a latent with them
(:func:`encode_factorized` / :func:`decode_factorized`, :func:`encode_grouped` /
:func:`decode_grouped`), so a codec model only says which latent goes with which prior.
"""

from vaecodec.priors.factorized import (
    LIKELIHOOD_BOUND,
    FactorizedDensity,
    decode_factorized,
    encode_factorized,
    quantize_noise,
)
from vaecodec.priors.gaussian import (
    LEVELS,
    MEAN_STEP_BITS,
    SCALE_MAX,
    SCALE_MIN,
    GaussianConditional,
    decode_grouped,
    dequantize_means,
    encode_grouped,
    gaussian_pmf_table,
    quantize_means,
    scale_indexes,
    scale_table,
)

__all__ = [
    "decode_factorized",
    "decode_grouped",
    "encode_factorized",
    "encode_grouped",
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
