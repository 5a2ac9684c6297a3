"""Decoder likelihoods p(x|z) and the diagonal-Gaussian posterior q(z|x).

Images are float tensors ``x: [B, C, H, W]`` in ``[0, 1]``. A decoder network outputs
``params: [B, C * n_params, H, W]``; a likelihood turns them into

- ``log_prob(x, params) -> [B]``: log p(x|z) in nats, summed over all C*H*W dimensions;
- ``mean(params) -> [B, C, H, W]`` in [0, 1], the picture to show;
- ``sample(params) -> [B, C, H, W]``;
- for the discrete ones, ``log_pmf(params) -> [B, D, K]``, the log-probabilities of each of the
  K symbols per dimension, used by bits-back coding.

Likelihoods:

==================== ============================== =========================================
name                 data                           reference
==================== ============================== =========================================
``bernoulli``        binarised pixels {0, 1}        Kingma & Welling 2014
``gaussian``         continuous [0, 1], fixed σ     σ = 1 is the classic "MSE VAE"
``gaussian-learned`` continuous [0, 1], learned σ   σ-VAE, Rybkin et al. 2021 (one shared σ)
``logistic``         8-bit {0..255}                 discretised logistic, Salimans et al. 2017
``beta-binomial``    8-bit {0..255}                 Townsend et al. 2019 (BB-ANS)
==================== ============================== =========================================

Continuous likelihoods give densities, so their "nats" are not code lengths; the discrete ones
(Bernoulli, logistic, beta-binomial) give true probabilities and their nats are code lengths.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


# --------------------------------------------------------------------------------------------
# Posterior q(z|x) = N(mu, diag(exp(logvar))) and prior p(z) = N(0, I)
# --------------------------------------------------------------------------------------------


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I) (the reparameterisation trick, Kingma & Welling 2014).

    Args:
        mu, logvar: ``[B, d]``.
        n: if given, draw ``n`` samples: returns ``[n, B, d]``; else ``[B, d]``.
    """
    std = torch.exp(0.5 * logvar)
    shape = mu.shape if n is None else (n, *mu.shape)
    return mu + std * torch.randn(shape, dtype=mu.dtype, device=mu.device)


def gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last dim, in nats (broadcasts)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


# --------------------------------------------------------------------------------------------
# Decoder likelihoods
# --------------------------------------------------------------------------------------------


class Likelihood(nn.Module):
    """Base class. ``n_params`` = decoder output channels per data channel."""

    name = "base"
    n_params = 1
    discrete_levels: int | None = None  # K for discrete likelihoods over {0..K-1}

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def sample(self, params: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def log_prob_samples(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x|z_k), ``[K, B]`` nats, for decoder outputs ``params [K, B, ...]`` of K latent
        samples per example of ``x [B, C, H, W]`` (used by importance sampling)."""
        k, b = params.shape[:2]
        xk = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])
        return self.log_prob(xk, params.reshape(k * b, *params.shape[2:])).view(k, b)

    def split(self, params: torch.Tensor) -> list[torch.Tensor]:
        """Split ``[B, C*n, H, W]`` into n tensors ``[B, C, H, W]``."""
        return list(params.chunk(self.n_params, dim=1)) if self.n_params > 1 else [params]

    def extra_repr(self) -> str:
        return self.name


class Bernoulli(Likelihood):
    """p(x|z) = prod Bernoulli(x_i; sigmoid(logit_i)) for binarised pixels x in {0, 1}."""

    name = "bernoulli"
    discrete_levels = 2

    def log_prob(self, x, params):
        return -F.binary_cross_entropy_with_logits(params, x, reduction="none").flatten(1).sum(1)

    def log_prob_samples(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x|z_k) for K decoder outputs per example without repeating x.

        Args:
            x: ``[B, C, H, W]`` in {0, 1}; params: logits ``[K, B, C, H, W]``.
        Returns:
            ``[K, B]`` nats: sum_i x_i l_i - softplus(l_i), the x term as one batched product.
        """
        k, b = params.shape[:2]
        logits = params.reshape(k, b, -1)
        xl = torch.einsum("kbd,bd->kb", logits, x.reshape(b, -1).to(logits.dtype))
        return xl - F.softplus(logits).sum(-1)

    def mean(self, params):
        return torch.sigmoid(params)

    def sample(self, params):
        return torch.bernoulli(torch.sigmoid(params))

    def log_pmf(self, params):
        """``[B, D, 2]``: log P(x_i = 0), log P(x_i = 1)."""
        logits = params.flatten(1)
        return torch.stack([F.logsigmoid(-logits), F.logsigmoid(logits)], dim=-1)


class Gaussian(Likelihood):
    """Gaussian with mean sigmoid(params) and a fixed σ (σ = 1 is the classic MSE VAE)."""

    name = "gaussian"

    def __init__(self, sigma: float = 1.0):
        super().__init__()
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.register_buffer("log_sigma", torch.tensor(math.log(sigma)), persistent=False)

    def _log_sigma(self, like: torch.Tensor) -> torch.Tensor:
        return self.log_sigma

    def log_prob(self, x, params):
        mu = torch.sigmoid(params)
        ls = self._log_sigma(x)
        lp = -0.5 * LOG_2PI - ls - 0.5 * ((x - mu) * torch.exp(-ls)).pow(2)
        return lp.flatten(1).sum(1)

    def mean(self, params):
        return torch.sigmoid(params)

    def sample(self, params):
        return (self.mean(params) + torch.exp(self.log_sigma) * torch.randn_like(params)).clamp(
            0, 1
        )

    @property
    def sigma(self) -> float:
        return float(torch.exp(self.log_sigma))


class GaussianLearned(Gaussian):
    """σ-VAE (Rybkin et al. 2021, "Simple and Effective VAE Training with Calibrated Decoders").

    One σ shared by all pixels, learned by gradient descent jointly with the networks. log σ is
    clamped below at log(1e-3) (their soft clip) so the density cannot collapse onto a pixel.
    """

    name = "gaussian-learned"
    MIN_LOG_SIGMA = math.log(1e-3)

    def __init__(self, sigma: float = 1.0):
        super().__init__(sigma)
        del self.log_sigma
        # inverse of the soft clip, so that the initial effective σ is exactly ``sigma``
        excess = math.log(sigma) - self.MIN_LOG_SIGMA
        raw = self.MIN_LOG_SIGMA + (
            excess + math.log(-math.expm1(-excess)) if excess < 30 else excess
        )
        self.log_sigma = nn.Parameter(torch.tensor(raw))

    def _log_sigma(self, like):
        return self.MIN_LOG_SIGMA + F.softplus(self.log_sigma - self.MIN_LOG_SIGMA)

    def sample(self, params):
        ls = self._log_sigma(params)
        return (self.mean(params) + torch.exp(ls) * torch.randn_like(params)).clamp(0, 1)

    @property
    def sigma(self) -> float:
        with torch.no_grad():
            return float(torch.exp(self._log_sigma(self.log_sigma)))


def _to_levels(x: torch.Tensor, levels: int) -> torch.Tensor:
    """[0, 1] floats -> integer levels {0..levels-1} as float."""
    return torch.round(x.clamp(0, 1) * (levels - 1))


class DiscretizedLogistic(Likelihood):
    """Discretised logistic over 256 grey levels (Salimans et al. 2017, PixelCNN++).

    params = (mean in [0, 1] via sigmoid, log scale). The outermost bins take the tails.
    """

    name = "logistic"
    n_params = 2
    discrete_levels = 256

    def _mu_logs(self, params):
        m, ls = self.split(params)
        return torch.sigmoid(m), ls.clamp(min=-7.0)

    def _log_bin_probs(self, k, mu, log_s):
        """log P(x = k) for integer level tensor k (float), with mu, log_s broadcastable."""
        half = 0.5 / 255
        c = k / 255
        inv_s = torch.exp(-log_s)
        plus = inv_s * (c + half - mu)
        minus = inv_s * (c - half - mu)
        log_cdf_plus = F.logsigmoid(plus)  # log sigmoid(plus)
        log_one_minus_cdf_minus = -F.softplus(minus)  # log (1 - sigmoid(minus))
        # log(sig(p) - sig(m)) = log sig(p) + log(1 - sig(m)) + log(1 - e^{m - p}), stable
        mid = (
            log_cdf_plus
            + log_one_minus_cdf_minus
            + torch.log((-torch.expm1(minus - plus)).clamp_min(1e-12))
        )
        out = torch.where(k <= 0, log_cdf_plus, mid)
        out = torch.where(k >= 255, log_one_minus_cdf_minus, out)
        return out

    def log_prob(self, x, params):
        mu, ls = self._mu_logs(params)
        return self._log_bin_probs(_to_levels(x, 256), mu, ls).flatten(1).sum(1)

    def mean(self, params):
        return self._mu_logs(params)[0]

    def sample(self, params):
        mu, ls = self._mu_logs(params)
        u = torch.rand_like(mu).clamp(1e-5, 1 - 1e-5)
        v = mu + torch.exp(ls) * (torch.log(u) - torch.log1p(-u))
        return _to_levels(v, 256) / 255

    def log_pmf(self, params):
        """``[B, D, 256]`` log-probabilities of every grey level, per pixel."""
        mu, ls = self._mu_logs(params)
        k = torch.arange(256, dtype=mu.dtype, device=mu.device)
        return self._log_bin_probs(k, mu.flatten(1)[..., None], ls.flatten(1)[..., None])


class BetaBinomial(Likelihood):
    """Beta-binomial over n = 255 (256 levels), as in BB-ANS (Townsend et al. 2019).

    params = (log alpha, log beta). P(k) = C(n,k) B(k+a, n-k+b) / B(a, b).
    """

    name = "beta-binomial"
    n_params = 2
    discrete_levels = 256
    N = 255

    def concentrations(self, params):
        """The Beta concentrations ``(alpha, beta)`` of every pixel, each ``[B, C, H, W]``
        (softplus of the decoder outputs, plus 1e-4)."""
        la, lb = self.split(params)
        return F.softplus(la) + 1e-4, F.softplus(lb) + 1e-4

    @staticmethod
    def _log_beta(a, b):
        return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)

    def _log_pk(self, k, a, b):
        n = self.N
        log_comb = math.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
        return log_comb + self._log_beta(k + a, n - k + b) - self._log_beta(a, b)

    def log_prob(self, x, params):
        a, b = self.concentrations(params)
        return self._log_pk(_to_levels(x, 256), a, b).flatten(1).sum(1)

    def mean(self, params):
        a, b = self.concentrations(params)
        return a / (a + b)

    def sample(self, params):
        a, b = self.concentrations(params)
        p = torch.distributions.Beta(a, b).sample()
        return torch.distributions.Binomial(self.N, p).sample() / self.N

    def log_pmf(self, params):
        a, b = self.concentrations(params)
        k = torch.arange(256, dtype=a.dtype, device=a.device)
        return self._log_pk(k, a.flatten(1)[..., None], b.flatten(1)[..., None])


LIKELIHOODS = {
    "bernoulli": Bernoulli,
    "gaussian": Gaussian,
    "gaussian-learned": GaussianLearned,
    "logistic": DiscretizedLogistic,
    "beta-binomial": BetaBinomial,
}


def make_likelihood(name: str, sigma: float = 1.0) -> Likelihood:
    """Build a likelihood by name; ``sigma`` is used by the Gaussian ones (initial σ if learned).

    Raises:
        ValueError: unknown name (lists the valid ones).
    """
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; valid: {', '.join(LIKELIHOODS)}")
    cls = LIKELIHOODS[name]
    return cls(sigma) if issubclass(cls, Gaussian) else cls()
