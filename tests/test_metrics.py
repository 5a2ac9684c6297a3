"""PSNR, MS-SSIM and bpp on 8-bit RGB (vaecodec.evaluate.metrics)."""

import math

import numpy as np
import pytest
import torch

from vaecodec.errors import ImageError
from vaecodec.evaluate.metrics import (
    ImageTooSmallError,
    bpp,
    ms_ssim,
    ms_ssim_db,
    mse,
    psnr,
    to_uint8,
)


def _image(h=40, w=56, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 3, yy * 4, (xx + yy) * 2], axis=-1) + rng.integers(0, 40, (h, w, 3))
    return np.clip(base + 20, 0, 235).astype(np.uint8)


def test_psnr_identical_is_inf():
    a = _image()
    assert psnr(a, a) == math.inf
    assert mse(a, a) == 0.0


def test_psnr_constant_offset_of_one_level():
    a = _image()
    assert psnr(a, a + 1) == pytest.approx(48.1308, abs=1e-4)  # 10 log10(255^2)
    assert psnr(a + 1, a) == pytest.approx(10 * math.log10(255**2))


def test_psnr_known_mse():
    a = _image()
    b = a.copy()
    b[: a.shape[0] // 2] += 2  # half the pixels off by 2 levels: MSE = 4 / 2 = 2
    assert mse(a, b) == pytest.approx(2.0)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 2.0))


def test_float_tensor_is_rounded_and_clamped_to_8_bit():
    a = _image()
    t = torch.from_numpy(a.transpose(2, 0, 1).copy()).float() / 255.0
    assert psnr(a, t) == math.inf  # exact 8-bit values survive the float round trip
    assert psnr(t[None], a) == math.inf  # [1, C, H, W] accepted
    # sub-level noise disappears after rounding to 8 bits
    assert psnr(a, t + 0.3 / 255) == math.inf
    # out-of-range floats are clamped, as when the decoded image is written to disk
    assert np.array_equal(to_uint8(torch.full((3, 2, 2), 1.7)), np.full((2, 2, 3), 255, np.uint8))
    assert np.array_equal(to_uint8(np.full((2, 2, 3), -0.2)), np.zeros((2, 2, 3), np.uint8))
    # a float numpy array [H, W, C] in [0, 1]
    assert psnr(a, a.astype(np.float64) / 255.0) == math.inf


def test_psnr_float_one_level_offset_matches_uint8():
    a = _image()
    t = torch.from_numpy(a.transpose(2, 0, 1).copy()).float() / 255.0
    assert psnr(a, t + 1.0 / 255) == pytest.approx(48.1308, abs=1e-4)


def test_shape_mismatch_and_batches_are_rejected():
    a = _image()
    with pytest.raises(ValueError):
        psnr(a, a[:-1])
    with pytest.raises(ValueError):
        to_uint8(torch.zeros(2, 3, 4, 4))


def test_ms_ssim_identical_and_monotone():
    a = _image(176, 180)
    rng = np.random.default_rng(1)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    small = np.clip(a + rng.integers(-4, 5, a.shape), 0, 255).astype(np.uint8)
    big = np.clip(a + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    s_small, s_big = ms_ssim(a, small), ms_ssim(a, big)
    assert 0.0 < s_big < s_small < 1.0
    assert ms_ssim(small, a) == pytest.approx(s_small, abs=1e-6)  # symmetric


def test_ms_ssim_rejects_images_below_161_pixels():
    a = _image(160, 200)
    with pytest.raises(ImageTooSmallError) as e:
        ms_ssim(a, a)
    assert isinstance(e.value, ValueError) and isinstance(e.value, ImageError)
    assert "161" in str(e.value)


def test_ms_ssim_db_and_bpp():
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    assert ms_ssim_db(0.9) == pytest.approx(10.0)
    assert ms_ssim_db(1.0) == math.inf
    assert math.isnan(ms_ssim_db(math.nan))
    assert bpp(1000, 100, 80) == pytest.approx(1.0)
    assert bpp(768 * 512 // 8, 512, 768) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        bpp(10, 0, 5)
