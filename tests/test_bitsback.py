"""Bits-back ANS (vaecodec.models.bitsback): exact round trips, rate vs −ELBO, determinism."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch

from vaecodec.coding.lossless_format import seed_words
from vaecodec.distributions.likelihoods import BetaBinomial
from vaecodec.errors import FormatError, ModelError
from vaecodec.evaluate.lossless import neg_elbo_nats
from vaecodec.models.bitsback import BitsBackCodec, _BetaBinomialPixels, default_lanes
from vaecodec.models.vae import VAE, VAEConfig
from vaecodec.priors.standard_normal import LatentBuckets


def cross_images(n: int, seed: int, binary: bool) -> np.ndarray:
    """uint8 [n, 8, 8]: a bright row and column (a cross) at random places, plus noise.
    Binary sets hold 0/255."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, 8, 8), np.uint8)
    for i in range(n):
        r, c = rng.integers(0, 8, 2)
        imgs[i, r, :] = 1
        imgs[i, :, c] = 1
    if binary:
        flip = rng.random(imgs.shape) < 0.03
        return ((imgs ^ flip) * 255).astype(np.uint8)
    bright = rng.integers(150, 256, imgs.shape)
    dim = np.where(rng.random(imgs.shape) < 0.15, rng.integers(1, 60, imgs.shape), 0)
    return np.where(imgs == 1, bright, dim).astype(np.uint8)


def train_tiny(likelihood: str, images: np.ndarray, steps: int = 300, seed: int = 0) -> VAE:
    """A tiny VAE (8x8, d = 4) trained for a few hundred Adam steps."""
    torch.manual_seed(seed)
    model = VAE(VAEConfig(input_shape=(1, 8, 8), latent_dim=4, hidden=[64],
                          likelihood=likelihood))  # fmt: skip
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (64,), generator=g)
        loss = model(x[idx])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def symbols(images: np.ndarray, binary: bool) -> np.ndarray:
    s = images.reshape(images.shape[0], -1).astype(np.int32)
    return (s != 0).astype(np.int32) if binary else s


@pytest.fixture(scope="module")
def binary_model():
    return train_tiny("bernoulli", cross_images(600, 0, binary=True))


@pytest.fixture(scope="module")
def gray_model():
    return train_tiny("beta-binomial", cross_images(600, 0, binary=False))


# -- pieces ------------------------------------------------------------------------------------


def test_latent_buckets_have_equal_prior_mass_and_exact_posteriors():
    b = LatentBuckets(6)
    nd = statistics.NormalDist()
    assert len(b.edges) == 63 and len(b.centres) == 64
    mass = np.diff([0.0] + [nd.cdf(e) for e in b.edges] + [1.0])
    np.testing.assert_allclose(mass, 1 / 64, atol=1e-9)
    assert np.all(np.diff(b.centres) > 0) and np.all(b.edges[:-1] < b.centres[1:-1])
    mu = np.array([[0.3, -2.0, 0.0]])
    logvar = np.array([[np.log(0.04), np.log(0.5), 0.0]])
    q = b.posterior(mu, logvar)
    e = [-math.inf, *b.edges, math.inf]
    for k in range(3):
        g = statistics.NormalDist(mu[0, k], math.exp(0.5 * logvar[0, k]))
        ref = np.diff([g.cdf(v) if math.isfinite(v) else float(v > 0) for v in e])
        np.testing.assert_allclose(q[0, k], ref, atol=3e-7)
    np.testing.assert_allclose(q.sum(-1), 1.0, atol=1e-12)
    # the prior itself is uniform over buckets
    np.testing.assert_allclose(
        b.posterior(np.zeros((1, 1)), np.zeros((1, 1)))[0, 0], 1 / 64, atol=3e-7
    )


def test_posterior_does_not_depend_on_batching():
    b = LatentBuckets(8)
    rng = np.random.default_rng(1)
    mu, logvar = rng.normal(size=(7, 5)), rng.uniform(-6, 1, size=(7, 5))
    full = b.posterior(mu, logvar)
    for i in range(7):
        assert np.array_equal(b.posterior(mu[i : i + 1], logvar[i : i + 1])[0], full[i])


def test_beta_binomial_tables_match_log_pmf():
    torch.manual_seed(0)
    lik = BetaBinomial()
    params = torch.randn(2, 2, 3, 4, dtype=torch.float64) * 3
    ref = lik.log_pmf(params).exp().numpy().reshape(-1, 256)
    pm = _BetaBinomialPixels(lik)
    a, b = pm._ab(params.numpy())
    p_nz = pm._p_nonzero(a, b).reshape(-1)
    rows = pm._rows(a.numpy().reshape(-1), b.numpy().reshape(-1)).astype(np.float64)
    rows /= rows.sum(1, keepdims=True)
    full = np.concatenate([(1 - p_nz)[:, None], p_nz[:, None] * rows], axis=1)
    np.testing.assert_allclose(full, ref, atol=5e-6)


def test_seed_words_are_fixed():
    a = seed_words(3, 20)
    assert a.dtype == np.uint32 and len(a) == 20 and a[-1] != 0
    assert np.array_equal(a, seed_words(3, 20)) and not np.array_equal(a, seed_words(4, 20))
    assert default_lanes(1) == 1 and default_lanes(10_000) == 16


def test_refuses_models_it_cannot_code():
    with pytest.raises(ModelError):
        BitsBackCodec(VAE(VAEConfig(input_shape=(1, 8, 8), latent_dim=2, likelihood="gaussian")))
    with pytest.raises(ModelError):
        BitsBackCodec(VAE(VAEConfig(input_shape=(1, 8, 8), latent_dim=2, deterministic=True)))


# -- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lanes", [1, 3])
def test_round_trip_binary_chained(binary_model, lanes):
    sym = symbols(cross_images(11, 5, binary=True), binary=True)
    codec = BitsBackCodec(binary_model)
    streams = codec.encode(sym, lanes=lanes)
    assert len(streams) == lanes and sum(s.n_images for s in streams) == 11
    assert np.array_equal(codec.decode(streams, 11), sym)


@pytest.mark.parametrize("likelihood", ["beta-binomial", "logistic"])
def test_round_trip_8bit(gray_model, likelihood):
    model = gray_model if likelihood == "beta-binomial" else VAE(
        VAEConfig(input_shape=(1, 8, 8), latent_dim=3, hidden=[16], likelihood=likelihood))  # fmt: skip
    sym = symbols(cross_images(9, 6, binary=False), binary=False)
    sym[0] = 0  # an all-black image
    sym[1] = 255  # an all-white one
    sym[2] = np.arange(64) * 4  # every pixel non-zero
    codec = BitsBackCodec(model)
    streams = codec.encode(sym, lanes=2)
    assert np.array_equal(codec.decode(streams, 9), sym)


def test_single_image_uses_only_the_initial_bits_it_needs(binary_model):
    codec = BitsBackCodec(binary_model)
    sym = symbols(cross_images(1, 7, binary=True), binary=True)
    (s,) = codec.encode(sym)
    # the untouched bottom of the seed is not stored; what is stored is about the image's rate
    # plus the bits its latent's pop consumed (at most P bits per latent dimension)
    assert 0 < s.seed_prefix < codec.seed_len
    assert 32 * len(s.words) <= 64 + codec.latent_dim * codec.latent_prec + 64
    assert np.array_equal(codec.decode([s], 1), sym)


def test_corrupt_lane_never_gives_a_wrong_image_silently(binary_model):
    codec = BitsBackCodec(binary_model)
    sym = symbols(cross_images(6, 8, binary=True), binary=True)
    streams = codec.encode(sym, lanes=2)
    streams[1].words = streams[1].words.copy()
    streams[1].words[len(streams[1].words) // 2] ^= 0x00100000
    try:
        out = codec.decode(streams, 6)
    except FormatError:
        return
    assert np.array_equal(out, sym)  # a flip that cannot change anything (never happens here)


# -- rates ---------------------------------------------------------------------------------------


def rate_and_neg_elbo_bits(model, binary: bool) -> tuple[float, float]:
    """Bits per image of one lane's stream of 300 crosses, and the model's -ELBO in bits on
    them; the stream must decode to the same symbols."""
    images = cross_images(300, 11, binary=binary)
    sym = symbols(images, binary)
    codec = BitsBackCodec(model)
    streams = codec.encode(sym, lanes=1)
    assert np.array_equal(codec.decode(streams, len(sym)), sym)
    rate_bits = 32 * sum(len(s.words) for s in streams) / len(sym)
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    return rate_bits, float(neg_elbo_nats(model, x).mean()) / math.log(2)


@pytest.mark.parametrize("binary", [True, False])
def test_rate_is_close_to_neg_elbo(binary_model, gray_model, binary):
    rate_bits, elbo_bits = rate_and_neg_elbo_bits(binary_model if binary else gray_model, binary)
    assert abs(rate_bits / elbo_bits - 1) < 0.10, (rate_bits, elbo_bits)
