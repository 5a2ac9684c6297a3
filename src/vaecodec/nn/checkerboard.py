"""Checkerboard context building blocks (He et al. 2021, "Checkerboard context model for
efficient learned image compression", CVPR): the anchor mask and the masked convolution that
reads only anchors. Used by :class:`vaecodec.models.codecs.CheckerboardMeanScale`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CheckerboardConv2d", "anchor_mask"]


def anchor_mask(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Checkerboard anchors: ``[1, 1, h, w]`` with 1 where ``(i + j)`` is even, else 0."""
    i = torch.arange(h, device=device)[:, None]
    j = torch.arange(w, device=device)[None, :]
    return ((i + j) % 2 == 0).to(dtype)[None, None]


class CheckerboardConv2d(nn.Conv2d):
    """A ``k x k`` convolution (k odd) that only reads the taps at odd offset parity
    ``(di + dj) % 2 == 1`` from the centre: at a non-anchor position these are exactly the
    anchors (He et al. 2021). The masked weights stay in the state dict but never act."""

    def __init__(self, cin: int, cout: int, kernel: int = 5) -> None:
        super().__init__(cin, cout, kernel, stride=1, padding=kernel // 2)
        d = torch.arange(kernel) - kernel // 2
        self.register_buffer(
            "mask", ((d[:, None] + d[None, :]) % 2 != 0).float()[None, None], persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding)

    def masked_copy(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with the mask applied to its weights (for the exact form)."""
        out = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, 1, self.padding)
        with torch.no_grad():
            out.weight.copy_(self.weight * self.mask)
            out.bias.copy_(self.bias)
        return out
