"""Entropy models and the range coder: integer tables, escapes, determinism, both faces."""

import math

import numpy as np
import pytest
import torch
from scipy.special import expit, ndtr

from vaecodec.coding import detmath
from vaecodec.coding.entropy import (
    PMF_BITS,
    PmfTable,
    SymbolDecoder,
    SymbolEncoder,
    quantize_pmf,
)
from vaecodec.errors import FormatError
from vaecodec.priors import (
    LEVELS,
    FactorizedDensity,
    GaussianConditional,
    gaussian_pmf_table,
    quantize_means,
    scale_indexes,
    scale_table,
)

torch.set_num_threads(1)


def test_detmath_matches_reference_functions():
    x = np.linspace(-30, 30, 2001)
    assert np.allclose(detmath.exp(x), np.exp(x), rtol=1e-14, atol=0)
    assert np.allclose(detmath.log(np.exp(x)), x, rtol=0, atol=1e-13)
    assert np.allclose(detmath.softplus(x), np.logaddexp(0, x), rtol=0, atol=1e-13)
    assert np.allclose(detmath.sigmoid(x), expit(x), rtol=0, atol=1e-15)
    assert np.allclose(detmath.tanh(x), np.tanh(x), rtol=0, atol=1e-15)
    z = np.linspace(-12, 12, 2001)
    assert np.allclose(detmath.normal_sf(z), ndtr(-z), rtol=2e-7, atol=0)


def test_quantize_pmf_is_a_valid_integer_distribution():
    pmf = np.array([0.5, 0.25, 1e-12, 0.0, 0.25])
    q = quantize_pmf(pmf)
    assert q.sum() == 1 << PMF_BITS and q.min() >= 1
    assert q[0] > q[1] > q[2]
    with pytest.raises(ValueError):
        quantize_pmf(np.array([np.nan, 1.0]))


def _table():
    k = np.arange(-6, 7)
    p = detmath.normal_sf((np.abs(k) - 0.5) / 2.0) - detmath.normal_sf((np.abs(k) + 0.5) / 2.0)
    rows = [np.concatenate([p, [1 - p.sum()]]), np.array([0.7, 0.2, 0.1])]
    return PmfTable([quantize_pmf(r) for r in rows], [-6, 3])


def test_range_coder_round_trip_with_escapes_and_small_overhead():
    rng = np.random.default_rng(0)
    t = _table()
    a = np.round(rng.normal(0, 2, 20000)).astype(np.int64)
    a[:6] = [7, -7, 1000, -(2**30), 2**30, 0]  # just outside, far outside, extreme
    b = rng.integers(0, 4, 500)  # row 1 codes {3}; 0..2 are escapes below, none above
    enc = SymbolEncoder()
    enc.encode(a, t, 0)
    enc.encode(b, t, 1)
    enc.encode(np.zeros(0, dtype=np.int64), t, 0)
    data = enc.finish()
    dec = SymbolDecoder(data)
    assert np.array_equal(dec.decode(t, 0, len(a)), a)
    assert np.array_equal(dec.decode(t, 1, len(b)), b)
    info = t.bits(a, 0) + t.bits(b, 1)
    assert info <= 8 * len(data) <= info * 1.001 + 64


def test_too_far_symbol_is_refused():
    with pytest.raises(ValueError, match="too far"):
        SymbolEncoder().encode(np.array([2**33]), _table(), 0)


@pytest.mark.parametrize("data", [b"\x01\x02\x03", bytes(range(256)) * 3])
def test_decoding_garbage_fails_cleanly(data):
    t = _table()
    with pytest.raises(FormatError):
        dec = SymbolDecoder(data)
        for _ in range(50):
            dec.decode(t, 0, 10000)


def test_scale_table_and_level_indexes():
    s = scale_table()
    assert len(s) == LEVELS and s[0] == 0.11 and abs(s[-1] - 256) < 1e-9
    assert np.all(np.diff(s) > 0)
    frac = 16
    rng = np.random.default_rng(1)
    sigma = np.exp(rng.uniform(np.log(0.05), np.log(400), 5000))
    fixed = np.round(sigma * 2**frac)
    idx = scale_indexes(fixed, frac)
    # reference: the nearest level in log scale
    ref = np.argmin(np.abs(np.log(s)[None, :] - np.log(fixed / 2**frac)[:, None]), axis=1)
    assert np.mean(idx == ref) > 0.999 and np.all(np.abs(idx - ref) <= 1)
    mid = np.sqrt(s[:-1] * s[1:])  # at the geometric means the level changes
    assert np.array_equal(scale_indexes(np.floor(mid * 2**frac), frac), np.arange(LEVELS - 1))
    assert np.array_equal(scale_indexes(np.floor(mid * 2**frac) + 2, frac), np.arange(1, LEVELS))
    assert scale_indexes(np.array([-5.0, 0.0]), frac).tolist() == [0, 0]


def test_quantize_means_to_64th_grid():
    frac = 16
    m = np.array([0.0, 1 / 128, -1 / 128, 0.3, -2.71828, 1000.5])
    q = quantize_means(np.round(m * 2**frac), frac)
    assert np.all(np.abs(q / 64 - m) <= 1 / 128 + 1e-12)
    assert q.dtype == np.int64


def test_gaussian_tables_match_the_training_likelihood():
    t = gaussian_pmf_table()
    gc = GaussianConditional().eval()
    for j in (0, 20, 40, 63):
        s = scale_table()[j]
        k = torch.arange(int(t.lo[j]), int(t.hi[j]) + 1, dtype=torch.float64)
        lk = gc.likelihood(k, torch.full_like(k, s)).numpy()
        q = t.pmfs[j][:-1] / 2**PMF_BITS
        # the quantised table is close to the continuous model in KL (bits per symbol)
        kl = float(np.sum(lk * np.log2(lk / q)))
        assert kl < 0.02, (j, kl)


def test_gaussian_likelihood_sums_to_one_and_training_face_adds_noise():
    gc = GaussianConditional()
    k = torch.arange(-60.0, 61.0)
    for s in (0.05, 0.7, 9.0):
        p = gc.likelihood(k, torch.full_like(k, s), torch.full_like(k, 0.3))
        assert abs(p.sum().item() - 1) < 1e-5
    y = torch.randn(2, 4, 3, 3) * 5
    gc.train()
    y_tilde, lk = gc(y, torch.ones_like(y))
    assert 0 < (y_tilde - y).abs().max() <= 0.5
    gc.eval()
    mu = torch.rand_like(y)
    y_hat, lk = gc(y, torch.ones_like(y), mu)
    assert torch.allclose(y_hat - mu, torch.round(y - mu))
    assert lk.min() >= 1e-9


def test_factorized_density_pmf_and_table():
    torch.manual_seed(0)
    fd = FactorizedDensity(3, init_scale=4.0)
    with torch.no_grad():
        fd.biases[-1].add_(torch.tensor([[[0.0]], [[3.0]], [[-2.0]]]))
    k = torch.arange(-80.0, 81.0).reshape(1, 1, -1, 1).expand(1, 3, -1, 1).contiguous()
    p = fd.likelihood(k)
    assert torch.allclose(p.sum(dim=2).squeeze(), torch.ones(3), atol=1e-4)
    t1, t2 = fd.pmf_table(), fd.pmf_table()
    assert all(np.array_equal(a, b) for a, b in zip(t1.pmfs, t2.pmfs))
    for c in range(3):
        ks = torch.arange(int(t1.lo[c]), int(t1.hi[c]) + 1, dtype=torch.float32)
        with torch.no_grad():
            grid = ks.reshape(1, 1, -1, 1).expand(1, 3, -1, 1).contiguous()
            ref = fd.likelihood(grid)[0, c, :, 0]
        q = t1.pmfs[c][:-1] / 2**PMF_BITS
        assert np.allclose(q, ref.double().numpy(), atol=4 / 2**PMF_BITS)
        assert ref.sum() > 1 - 1e-5  # the coded range holds (almost) all the mass


def test_factorized_density_gradients_and_noise():
    fd = FactorizedDensity(4)
    y = torch.randn(2, 4, 5, 5, requires_grad=True)
    y_tilde, lk = fd(y)
    (-torch.log2(lk)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in fd.parameters())
    assert y.grad is not None and 0 < (y_tilde - y).abs().max() <= 0.5
    fd.eval()
    assert torch.equal(fd(y)[0], torch.round(y))
    with pytest.raises(ValueError):
        fd(torch.zeros(1, 3, 2, 2))


def test_tables_bits_agree_with_negative_log_likelihood():
    t = gaussian_pmf_table()
    rng = np.random.default_rng(2)
    j = 30
    s = scale_table()[j]
    sym = np.round(rng.normal(0, s, 5000)).astype(np.int64)
    lk = GaussianConditional().likelihood(torch.from_numpy(sym).double(), torch.tensor(s))
    nll = float((-torch.log2(lk)).sum())
    assert math.isclose(t.bits(sym, j), nll, rel_tol=0.01)
