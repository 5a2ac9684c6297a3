"""Classical codecs (vaecodec.evaluate.classical): real round trips and real file sizes."""

import warnings

import numpy as np
import pytest

from vaecodec.errors import FormatError, ImageError, VaecodecError
from vaecodec.evaluate import classical
from vaecodec.evaluate.metrics import bpp, psnr
from vaecodec.evaluate.rd import evaluate_classical, evaluate_codec

AVAILABLE = [c for c, why in classical.available_codecs().items() if why is None]
MAGIC = {
    "jpeg": lambda d: d[:3] == b"\xff\xd8\xff",
    "webp": lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP",
    "avif": lambda d: d[4:12] in (b"ftypavif", b"ftypavis"),
    "jpeg2000": lambda d: d[:4] == b"\xff\x4f\xff\x51",  # raw J2K codestream: SOC, SIZ
    "jpegxl": lambda d: d[:2] == b"\xff\x0a" or d[4:8] == b"JXL ",
}


def _image(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 3, yy * 4, 128 + 60 * np.sin(xx / 5.0)], axis=-1)
    return np.clip(base + rng.integers(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def test_the_usual_codecs_are_available_here():
    # this environment's Pillow 13 / imagecodecs builds have all five; a missing one is a
    # packaging regression worth noticing
    assert set(AVAILABLE) == set(classical.CLASSICAL_CODECS)


@pytest.mark.parametrize("codec", AVAILABLE)
def test_round_trip_and_rate_ordering(codec):
    a = _image()
    low, high = classical.DEFAULT_SETTINGS[codec][0], classical.DEFAULT_SETTINGS[codec][-1]
    d_low = classical.encode(codec, a, low)
    d_high = classical.encode(codec, a, high)
    assert isinstance(d_high, bytes) and MAGIC[codec](d_high)
    r_low, r_high = classical.decode(codec, d_low), classical.decode(codec, d_high)
    for r in (r_low, r_high):
        assert r.dtype == np.uint8 and r.shape == a.shape
    # default sweeps run from low to high rate, and quality follows the rate
    assert len(d_low) < len(d_high)
    assert psnr(a, r_low) < psnr(a, r_high)
    assert psnr(a, r_high) > 30.0


def test_bpp_comes_from_the_real_bytes():
    a = _image(40, 52)
    recs = evaluate_codec([("x.png", a)], classical.ClassicalCodec("jpeg", [20, 80]))
    assert [r["setting"] for r in recs] == [20, 80]
    for r in recs:
        n = len(classical.encode("jpeg", a, r["setting"]))  # deterministic encoder
        assert r["bytes"] == n
        assert r["bpp"] == pytest.approx(bpp(n, 40, 52)) == pytest.approx(8 * n / (40 * 52))
        assert r["psnr"] == pytest.approx(
            psnr(a, classical.decode("jpeg", classical.encode("jpeg", a, r["setting"])))
        )
        assert np.isnan(r["ms_ssim"])  # 40x52 is below MS-SSIM's minimum size
        assert r["enc_s"] >= 0 and r["dec_s"] >= 0


def test_bad_inputs():
    with pytest.raises(VaecodecError, match="unknown classical codec"):
        classical.encode("bpg", _image(), 30)
    with pytest.raises(ImageError):
        classical.encode("jpeg", _image().astype(np.float32), 50)
    with pytest.raises(ImageError):
        classical.encode("jpeg", _image()[:, :, 0], 50)
    with pytest.raises(FormatError):
        classical.decode("jpeg", b"not a jpeg at all")
    if "jpegxl" in AVAILABLE:
        with pytest.raises(FormatError):
            classical.decode("jpegxl", b"\xff\x0a garbage")


def test_unavailable_codec_is_reported_and_skipped(monkeypatch):
    real = classical._pil_feature

    def fake(feature, what):
        return (
            (False, "pretend this build lacks WebP") if feature == "webp" else real(feature, what)
        )

    monkeypatch.setattr(classical, "_pil_feature", fake)
    assert classical.available_codecs()["webp"] == "pretend this build lacks WebP"
    with pytest.raises(classical.CodecUnavailableError, match="lacks WebP"):
        classical.encode("webp", _image(), 50)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        recs = evaluate_classical([("x.png", _image())], ["webp", "jpeg"], settings={"jpeg": [50]})
    assert {r["codec"] for r in recs} == {"jpeg"} and len(recs) == 1
    assert any("skipping webp" in str(x.message) for x in w)


def test_avif_falls_back_to_imagecodecs(monkeypatch):
    import imagecodecs

    if not imagecodecs.AVIF.available:
        pytest.skip("imagecodecs has no AVIF")
    real = classical._pil_feature
    monkeypatch.setattr(
        classical,
        "_pil_feature",
        lambda f, w: (False, "no avif") if f == "avif" else real(f, w),
    )
    assert classical.codec_status("avif")[0] and "imagecodecs" in classical.codec_status("avif")[1]
    a = _image()
    d = classical.encode("avif", a, 80)
    assert MAGIC["avif"](d)
    assert psnr(a, classical.decode("avif", d)) > 30.0


def test_codec_info_records_options():
    info = classical.codec_info("jpeg")
    assert info["setting"] == "quality" and info["options"]["subsampling"] == "4:2:0"
    assert classical.codec_info("jpeg2000")["setting"] == "compression_ratio"


@pytest.mark.parametrize("codec", AVAILABLE)
def test_match_size_finds_the_nearest_file(codec):
    a = _image(64, 80, seed=3)
    lo, hi = (len(classical.encode(codec, a, s)) for s in classical.DEFAULT_SETTINGS[codec][2:6:3])
    target = (lo + hi) // 2
    setting, data = classical.match_size(codec, a, target)
    assert data == classical.encode(codec, a, setting)  # real bytes of that setting
    err = abs(len(data) - target)
    if classical.SETTING_RANGES[codec][2]:  # integer quality: no neighbour is nearer
        assert isinstance(setting, int)
        for other in (setting - 1, setting + 1):
            if classical.SETTING_RANGES[codec][0] <= other <= classical.SETTING_RANGES[codec][1]:
                assert abs(len(classical.encode(codec, a, other)) - target) >= err
    else:
        assert err <= 0.1 * target, (setting, len(data), target)
