"""Image-codec quality metrics on 8-bit RGB: PSNR, MS-SSIM and bits per pixel.

Conventions (DESIGN.md): PSNR is in dB on 8-bit RGB *after rounding and clamping*, so that a
learned codec whose decoder emits floats is scored on the image it would actually write to disk,
exactly like a classical codec. MS-SSIM is computed on the same 8-bit RGB values
(``data_range=255``) with the ``pytorch-msssim`` library (Wang, Simoncelli & Bovik 2003, five
scales, 11x11 Gaussian window with sigma 1.5). bpp = 8 * file bytes / (H * W).

Accepted image types, everywhere in this module:

- numpy ``uint8`` (or other integer) arrays ``[H, W, C]`` or ``[H, W]``: 8-bit values;
- numpy float arrays ``[H, W, C]`` or ``[H, W]``: values in ``[0, 1]``;
- torch tensors ``[C, H, W]`` or ``[1, C, H, W]`` (channel first, the model convention):
  ``uint8`` values as they are, float values in ``[0, 1]``.

Floats are mapped to 8 bits as ``clamp(round(255 * x), 0, 255)``.
"""

from __future__ import annotations

import math

import numpy as np

from vaecodec.errors import ImageError

MS_SSIM_MIN_SIDE = 161
"""Smallest image side MS-SSIM accepts: 5 scales, four 2x downsamplings, and an 11-pixel
window on the coarsest scale need ``min(H, W) > (11 - 1) * 2**4 = 160``."""


class ImageTooSmallError(ImageError, ValueError):
    """The image is smaller than :data:`MS_SSIM_MIN_SIDE` on one side."""


def to_uint8(x) -> np.ndarray:
    """Convert an image to an 8-bit ``[H, W, C]`` numpy array (see the module doc for inputs).

    Raises:
        ValueError: for a batch of more than one image or an array that is not 2-D or 3-D.
    """
    scaled = False  # True once float values are on the 0..255 scale
    if type(x).__module__.startswith("torch"):
        t = x.detach().cpu()
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"expected one image, got a batch of {t.shape[0]}: loop over it")
            t = t[0]
        if t.dim() != 3:
            raise ValueError(f"expected a [C, H, W] tensor, got shape {tuple(t.shape)}")
        if t.is_floating_point():
            t = (t.double() * 255.0).round().clamp(0, 255)
            scaled = True
        x = t.permute(1, 2, 0).numpy()
    a = np.asarray(x)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"expected an [H, W, C] or [H, W] image, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating) and not scaled:
        a = np.rint(a.astype(np.float64) * 255.0)
    return np.clip(a, 0, 255).astype(np.uint8)


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a8, b8 = to_uint8(a), to_uint8(b)
    if a8.shape != b8.shape:
        raise ValueError(f"images differ in shape: {a8.shape} vs {b8.shape}")
    return a8, b8


def mse(a, b) -> float:
    """Mean squared error on 8-bit values, averaged over all pixels and channels."""
    a8, b8 = _pair(a, b)
    d = a8.astype(np.float64) - b8.astype(np.float64)
    return float(np.mean(d * d))


def psnr(a, b) -> float:
    """Peak signal-to-noise ratio in dB on 8-bit RGB: ``10 log10(255^2 / MSE)``.

    The MSE is averaged over all pixels and all channels (RGB jointly, as CompressAI and the
    learned-compression literature report it). Identical images give ``math.inf``; a constant
    error of one level gives ``10 log10(255^2) = 48.13 dB``.

    Raises:
        ValueError: if the two images differ in shape.
    """
    m = mse(a, b)
    return math.inf if m == 0 else 10.0 * math.log10(255.0**2 / m)


def ms_ssim(a, b) -> float:
    """Multi-scale SSIM (Wang et al. 2003) of two RGB images, in ``[0, 1]`` (1 = identical).

    Computed by ``pytorch_msssim.ms_ssim`` on the 8-bit values (``data_range=255``, five scales,
    default weights), in float32 (as CompressAI; float64 differs by < 1e-6 and is
    three times slower on CPU).

    Raises:
        ImageTooSmallError: (a ``ValueError``) if ``min(H, W) < 161``: MS-SSIM is undefined for
            such images; crop or upscale consistently, or report PSNR only.
        ValueError: if the two images differ in shape.
    """
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    a8, b8 = _pair(a, b)
    h, w = a8.shape[:2]
    if min(h, w) < MS_SSIM_MIN_SIDE:
        raise ImageTooSmallError(
            f"MS-SSIM needs images of at least {MS_SSIM_MIN_SIDE}x{MS_SSIM_MIN_SIDE} pixels "
            f"(five scales), got {h}x{w}"
        )
    ta = torch.from_numpy(np.ascontiguousarray(a8.transpose(2, 0, 1))).float()[None]
    tb = torch.from_numpy(np.ascontiguousarray(b8.transpose(2, 0, 1))).float()[None]
    with torch.no_grad():
        return float(_ms_ssim(ta, tb, data_range=255.0, size_average=True))


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, ``-10 log10(1 - MS-SSIM)`` (as plotted by CompressAI)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of a file of ``num_bytes`` bytes for an ``height x width`` image."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    return 8.0 * num_bytes / (height * width)
