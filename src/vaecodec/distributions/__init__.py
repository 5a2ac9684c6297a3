"""Posteriors q(z|x) and decoder likelihoods p(x|z)."""

from vaecodec.distributions.likelihoods import (
    LIKELIHOODS,
    Likelihood,
    gaussian_log_prob,
    make_likelihood,
    reparameterize,
)
from vaecodec.priors.standard_normal import kl_std_normal, std_normal_log_prob

__all__ = [
    "LIKELIHOODS",
    "Likelihood",
    "gaussian_log_prob",
    "kl_std_normal",
    "make_likelihood",
    "reparameterize",
    "std_normal_log_prob",
]
