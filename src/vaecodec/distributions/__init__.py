"""Posteriors q(z|x) (the reparameterisation, Gaussian log-densities) and decoder likelihoods
p(x|z) (Bernoulli, Gaussian with fixed or learned sigma, discretized logistic, beta-binomial).
The prior p(z) = N(0, I) and its KL term live with the other priors, in
:mod:`vaecodec.priors.standard_normal`."""

from vaecodec.distributions.likelihoods import (
    LIKELIHOODS,
    Likelihood,
    gaussian_log_prob,
    make_likelihood,
    reparameterize,
)

__all__ = [
    "LIKELIHOODS",
    "Likelihood",
    "gaussian_log_prob",
    "make_likelihood",
    "reparameterize",
]
