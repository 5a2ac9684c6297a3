"""The transforms of the learned image codecs (Ballé et al. 2018): ``g_a``, ``g_s`` and the
(de)convolutions the hyperpriors are built from, and the padding that lets any image size be
coded.

Shapes: ``x [B, 3, H, W]`` in [0, 1] -> ``g_a`` -> ``y [B, M, H/16, W/16]`` -> ``g_s`` ->
``x^ [B, 3, H, W]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaecodec.nn.gdn import GDN, IGDN

__all__ = ["analysis_transform", "conv", "crop_image", "deconv", "pad_image",
           "synthesis_transform"]  # fmt: skip


def conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    """Convolution with "same" padding, downsampling by ``stride``."""
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution upsampling exactly by ``stride``."""
    return nn.ConvTranspose2d(
        cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1
    )


def analysis_transform(N: int, M: int) -> nn.Sequential:
    """g_a: ``[B, 3, H, W] -> [B, M, H/16, W/16]`` (4 x (conv 5x5 /2), GDN between)."""
    return nn.Sequential(
        conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M)
    )  # fmt: skip


def synthesis_transform(N: int, M: int) -> nn.Sequential:
    """g_s: ``[B, M, h, w] -> [B, 3, 16h, 16w]`` (4 x (deconv 5x5 x2), IGDN between)."""
    return nn.Sequential(
        deconv(M, N), IGDN(N), deconv(N, N), IGDN(N), deconv(N, N), IGDN(N), deconv(N, 3)
    )  # fmt: skip


def pad_image(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``x [B, C, H, W]`` on the right and bottom by edge replication to multiples of
    ``multiple``; returns the padded tensor and the original ``(H, W)``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


def crop_image(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`pad_image`: keep the top-left ``size = (H, W)``."""
    return x[..., : size[0], : size[1]]
