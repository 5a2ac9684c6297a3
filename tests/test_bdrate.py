"""Bjøntegaard delta rate / PSNR (vaecodec.evaluate.bdrate) on hand-computable curves."""

import math

import numpy as np
import pytest

from vaecodec.errors import VaecodecError
from vaecodec.evaluate.bdrate import BDRateError, bd_psnr, bd_rate
from vaecodec.evaluate.rd import bd_rate_table, bd_table_markdown, curves, value_at_bpp

PSNR = np.array([26.0, 29.0, 32.0, 35.0, 38.0])
RATE = np.array([0.12, 0.25, 0.5, 1.0, 2.1])  # a realistic, slightly bent curve
METHODS = ("pchip", "cubic")


@pytest.mark.parametrize("method", METHODS)
def test_identical_curves_give_zero(method):
    assert bd_rate(RATE, PSNR, RATE, PSNR, method=method) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(RATE, PSNR, RATE, PSNR, method=method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_half_and_double_rate(method):
    assert bd_rate(RATE, PSNR, RATE / 2, PSNR, method=method) == pytest.approx(-50.0)
    assert bd_rate(RATE, PSNR, RATE * 2, PSNR, method=method) == pytest.approx(100.0)
    # the anchor against the test: the inverse relation
    assert bd_rate(RATE / 2, PSNR, RATE, PSNR, method=method) == pytest.approx(100.0)


@pytest.mark.parametrize("method", METHODS)
def test_bd_psnr_constant_shift(method):
    assert bd_psnr(RATE, PSNR, RATE, PSNR + 1.0, method=method) == pytest.approx(1.0)
    assert bd_psnr(RATE, PSNR, RATE, PSNR - 0.5, method=method) == pytest.approx(-0.5)


@pytest.mark.parametrize("method", METHODS)
def test_partial_overlap_linear_gain(method):
    # anchor: ln R = 0.2 p - 7 on [26, 42]; test: ln R shifted by c(p) = -(p - 30) / 10 on
    # [30, 40]. Both linear in p, so both methods are exact: mean c over the overlap [30, 40]
    # is -0.5, BD-rate = exp(-0.5) - 1.
    pa = np.linspace(26, 42, 6)
    pt = np.linspace(30, 40, 5)
    ra = np.exp(0.2 * pa - 7)
    rt = np.exp(0.2 * pt - 7 - (pt - 30) / 10)
    assert bd_rate(ra, pa, rt, pt, method=method) == pytest.approx(100 * math.expm1(-0.5))


def test_point_order_and_non_finite_points_do_not_matter():
    perm = [3, 0, 4, 2, 1]
    ref = bd_rate(RATE, PSNR, RATE * 0.8, PSNR + 0.3)
    assert bd_rate(RATE[perm], PSNR[perm], RATE * 0.8, PSNR + 0.3) == pytest.approx(ref)
    # a lossless point (inf dB) is ignored
    r2, p2 = np.append(RATE, 9.0), np.append(PSNR, np.inf)
    assert bd_rate(r2, p2, RATE * 0.8, PSNR + 0.3) == pytest.approx(ref)


def test_pchip_and_cubic_agree_roughly_on_smooth_curves():
    test_rate = RATE * np.array([0.7, 0.75, 0.8, 0.85, 0.9])
    a = bd_rate(RATE, PSNR, test_rate, PSNR, method="pchip")
    b = bd_rate(RATE, PSNR, test_rate, PSNR, method="cubic")
    assert -30 < a < -10 and abs(a - b) < 2.0


def test_no_overlap_raises_value_error():
    with pytest.raises(BDRateError) as e:
        bd_rate(RATE, PSNR, RATE, PSNR + 20)
    assert isinstance(e.value, ValueError) and isinstance(e.value, VaecodecError)
    with pytest.raises(ValueError):
        bd_psnr(RATE, PSNR, RATE * 100, PSNR)
    # touching at one point is no interval either
    with pytest.raises(ValueError):
        bd_rate(RATE, PSNR, RATE, PSNR + 12)
    # a required minimum overlap
    with pytest.raises(ValueError):
        bd_rate(RATE, PSNR, RATE, PSNR + 10, min_overlap=3.0)
    assert math.isfinite(bd_rate(RATE, PSNR, RATE, PSNR + 10, min_overlap=1.0))


def test_too_few_points_and_bad_input():
    with pytest.raises(ValueError):
        bd_rate(RATE[:3], PSNR[:3], RATE[:3], PSNR[:3], method="cubic")  # cubic needs 4
    assert bd_rate(RATE[:3], PSNR[:3], RATE[:3] / 2, PSNR[:3]) == pytest.approx(-50.0)
    with pytest.raises(ValueError):
        bd_rate(RATE[:1], PSNR[:1], RATE, PSNR)
    with pytest.raises(ValueError):
        bd_rate(-RATE, PSNR, RATE, PSNR)
    with pytest.raises(ValueError):
        bd_rate(RATE, PSNR, RATE, PSNR, method="linear")
    with pytest.raises(ValueError):
        bd_rate(RATE, PSNR[:4], RATE, PSNR)


def _rows(codec, rate, quality):
    return [
        {
            "codec": codec,
            "setting": i,
            "bpp": r,
            "psnr": q,
            "ms_ssim": math.nan,
            "ms_ssim_db": math.nan,
        }
        for i, (r, q) in enumerate(zip(rate, quality))
    ]


def test_table_and_interpolation_from_summary_rows():
    rows = _rows("jpeg", RATE, PSNR) + _rows("ours", RATE / 2, PSNR) + _rows("far", RATE, PSNR + 30)
    cv = curves(rows)
    assert list(cv) == ["jpeg", "ours", "far"]
    table = bd_rate_table(cv, anchors=["jpeg", "missing"])
    assert table["ours"]["jpeg"] == pytest.approx(-50.0)
    assert table["jpeg"]["jpeg"] == pytest.approx(0.0)
    assert table["far"]["jpeg"] is None  # no overlap: reported, not raised
    assert "missing" not in table["ours"]
    md = bd_table_markdown(table, "PSNR")
    assert "| ours | -50.0 % |" in md and "n/a" in md
    # interpolation at a measured point is exact; outside the sweep it is nan
    assert value_at_bpp(cv["jpeg"], 0.5) == pytest.approx(32.0)
    assert 29.0 < value_at_bpp(cv["jpeg"], 0.4) < 32.0
    assert math.isnan(value_at_bpp(cv["jpeg"], 0.05))
