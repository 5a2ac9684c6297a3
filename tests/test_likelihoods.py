import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vaecodec.distributions import gaussian_log_prob, make_likelihood, reparameterize
from vaecodec.priors.standard_normal import kl_std_normal, std_normal_log_prob


def test_kl_matches_torch_distributions():
    mu, logvar = torch.randn(5, 4), torch.randn(5, 4)
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    assert torch.allclose(kl_std_normal(mu, logvar), ref, atol=1e-5)


def test_gaussian_log_probs_match_torch():
    z, mu, logvar = torch.randn(3, 6), torch.randn(3, 6), torch.randn(3, 6)
    ref = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    assert torch.allclose(gaussian_log_prob(z, mu, logvar), ref, atol=1e-5)
    assert torch.allclose(std_normal_log_prob(z), Normal(0.0, 1.0).log_prob(z).sum(-1), atol=1e-5)


def test_reparameterize_has_right_moments_and_gradient():
    torch.manual_seed(0)
    mu = torch.tensor([1.0, -2.0], requires_grad=True)
    logvar = torch.tensor([0.0, math.log(4.0)], requires_grad=True)
    z = reparameterize(mu, logvar, n=20000)
    assert z.shape == (20000, 2)
    assert torch.allclose(z.mean(0), mu.detach(), atol=0.05)
    assert torch.allclose(z.std(0), torch.tensor([1.0, 2.0]), atol=0.05)
    z.sum().backward()
    assert mu.grad is not None and logvar.grad is not None


@pytest.mark.parametrize("name", ["logistic", "beta-binomial", "bernoulli"])
def test_discrete_pmf_normalised_and_consistent_with_log_prob(name):
    torch.manual_seed(0)
    lik = make_likelihood(name)
    params = torch.randn(2, lik.n_params, 4, 4) * 2
    log_pmf = lik.log_pmf(params)  # [B, D, K]
    assert log_pmf.shape == (2, 16, lik.discrete_levels)
    tol = 1e-5 if name != "beta-binomial" else 1e-3
    assert torch.allclose(log_pmf.exp().sum(-1), torch.ones(2, 16), atol=tol)
    # log_prob of a concrete image equals the pmf gathered at its symbols
    k = torch.randint(0, lik.discrete_levels, (2, 1, 4, 4))
    x = k.float() / (lik.discrete_levels - 1)
    gathered = log_pmf.gather(-1, k.flatten(1)[..., None]).squeeze(-1).sum(1)
    assert torch.allclose(lik.log_prob(x, params), gathered, atol=1e-3)


def test_bernoulli_log_prob_formula():
    lik = make_likelihood("bernoulli")
    logits = torch.tensor([[[[0.0, 2.0]]]])
    x = torch.tensor([[[[1.0, 0.0]]]])
    expected = math.log(0.5) + math.log(1 - 1 / (1 + math.exp(-2.0)))
    assert lik.log_prob(x, logits).item() == pytest.approx(expected, rel=1e-5)


def test_fixed_gaussian_sigma_one_formula():
    lik = make_likelihood("gaussian", sigma=1.0)
    params = torch.zeros(1, 1, 1, 2)  # mean sigmoid(0) = 0.5
    x = torch.tensor([[[[0.5, 1.5]]]])
    expected = 2 * (-0.5 * math.log(2 * math.pi)) - 0.5 * 1.0**2
    assert lik.log_prob(x, params).item() == pytest.approx(expected, rel=1e-5)
    assert lik.sigma == pytest.approx(1.0)
    assert not any(p.requires_grad for p in lik.parameters())


def test_learned_sigma_moves_towards_the_error():
    torch.manual_seed(0)
    lik = make_likelihood("gaussian-learned", sigma=1.0)
    opt = torch.optim.Adam(lik.parameters(), lr=0.05)
    x = torch.rand(64, 1, 4, 4)
    params = torch.logit((x + 0.05 * torch.randn_like(x)).clamp(0.01, 0.99))
    for _ in range(300):
        opt.zero_grad()
        (-lik.log_prob(x, params).mean()).backward()
        opt.step()
    rmse = (torch.sigmoid(params) - x).pow(2).mean().sqrt().item()
    assert lik.sigma == pytest.approx(rmse, rel=0.15)


def test_unknown_likelihood_lists_valid():
    with pytest.raises(ValueError, match="bernoulli"):
        make_likelihood("poisson")
