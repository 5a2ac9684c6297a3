"""Exact (integer) evaluation of the hyper-synthesis ``h_s`` and the context model.

The decoder must rebuild the encoder's probabilities bit for bit on any machine, thread count
or device. When coding, ``h_s`` (and the checkerboard context and entropy-parameters network)
run in fixed-point integer arithmetic: weights rounded to multiples of ``2**-16``
(:data:`WEIGHT_FRAC_BITS`), activations to ``2**-16`` after every layer (round half up,
:data:`ACT_FRAC_BITS`), the convolutions evaluated in float64 on the CPU on these integers.
Every product and partial sum is an integer below ``2**53`` (activations are clamped to a
bound derived from each layer's weight L1 norm to guarantee it), so the result is exact and
does not depend on the summation order the BLAS library or the thread count chooses.

    ops = exact_layers(model.h_s)            # once per set of weights
    out = exact_forward(ops, z_int)          # float64 integers, scaled by 2**ACT_FRAC_BITS
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vaecodec.nn.checkerboard import CheckerboardConv2d, anchor_mask

__all__ = ["ACT_FRAC_BITS", "WEIGHT_FRAC_BITS", "ExactCheckerboardContext", "exact_forward",
           "exact_layers"]  # fmt: skip

WEIGHT_FRAC_BITS = 16
"""Exact hyper-synthesis: weights are rounded to multiples of 2**-16."""
ACT_FRAC_BITS = 16
"""Exact hyper-synthesis: activations are rounded to multiples of 2**-16."""
_EXACT_LIMIT = 2.0**52  # keep every partial sum below this (float64 integers are exact < 2**53)


class _ExactLayer:
    def __init__(self, layer: nn.Module, frac_in: int) -> None:
        self.transposed = isinstance(layer, nn.ConvTranspose2d)
        self.stride, self.padding = layer.stride, layer.padding
        self.output_padding = getattr(layer, "output_padding", (0, 0))
        w = layer.weight.detach().cpu().to(torch.float64)
        b = layer.bias.detach().cpu().to(torch.float64)
        # power-of-two scaling and rounding of float32 values are exact in float64
        self.weight = torch.round(w * 2.0**WEIGHT_FRAC_BITS)
        self.bias = torch.round(b * 2.0 ** (frac_in + WEIGHT_FRAC_BITS))
        self.shift = frac_in + WEIGHT_FRAC_BITS - ACT_FRAC_BITS
        l1 = self.weight.abs().sum(dim=(0, 2, 3) if self.transposed else (1, 2, 3)).max()
        room = _EXACT_LIMIT - float(self.bias.abs().max())
        self.amax = float(np.floor(room / float(l1))) if float(l1) > 0 else _EXACT_LIMIT
        pointwise = not self.transposed and tuple(layer.kernel_size) == (1, 1)
        pointwise = pointwise and tuple(self.stride) == (1, 1) and tuple(self.padding) == (0, 0)
        # a 1x1 convolution as one matrix product (float64 convolutions are slow on CPU)
        self.matrix = self.weight[:, :, 0, 0].contiguous() if pointwise else None

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        a = a.clamp(-self.amax, self.amax)
        if self.transposed:
            acc = F.conv_transpose2d(
                a, self.weight, self.bias, self.stride, self.padding, self.output_padding
            )
        elif self.matrix is not None:
            b, _, h, w = a.shape
            acc = torch.matmul(self.matrix, a.reshape(b, -1, h * w))
            acc = acc.add_(self.bias[:, None]).reshape(b, -1, h, w)
        else:
            acc = F.conv2d(a, self.weight, self.bias, self.stride, self.padding)
        return acc.mul_(2.0**-self.shift).add_(0.5).floor_()


class ExactCheckerboardContext(_ExactLayer):
    """The exact form of a :class:`CheckerboardConv2d`, evaluated only where it is used: at
    the non-anchors, from the taps that land on anchors, as one float64 matrix product over the
    gathered taps (a full float64 5x5 convolution is slow on CPU and half of its outputs and
    half of its taps are discarded). Integer sums below ``_EXACT_LIMIT`` are exact in any
    order, so the result equals the full convolution's at those positions."""

    def __init__(self, conv: CheckerboardConv2d, frac_in: int) -> None:
        super().__init__(conv.masked_copy(), frac_in)
        k = conv.kernel_size[0]
        self.pad = k // 2
        self.taps = [(di, dj) for di in range(k) for dj in range(k) if conv.mask[0, 0, di, dj]]
        # [C_out, taps * C_in], taps outermost: matches the stacking in __call__
        self.matrix = torch.cat([self.weight[:, :, di, dj] for di, dj in self.taps], 1)

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        """``a``: ``[B, C, h, w]`` fixed-point integers (float64; non-anchors are not read).
        Returns ``[B, C_out, P]``: the output at the ``P`` non-anchors in row-major order."""
        h, w = a.shape[-2:]
        a = F.pad(a.clamp(-self.amax, self.amax), (self.pad,) * 4)
        rows, cols = np.nonzero(~anchor_mask(h, w, dtype=torch.bool).numpy()[0, 0])
        rows, cols = torch.from_numpy(rows), torch.from_numpy(cols)
        taps = torch.cat([a[:, :, rows + di, cols + dj] for di, dj in self.taps], 1)
        acc = torch.matmul(self.matrix, taps).add_(self.bias[:, None])
        return acc.mul_(2.0**-self.shift).add_(0.5).floor_()


def _relu_(a: torch.Tensor) -> torch.Tensor:
    return a.clamp_min_(0.0)


class _ExactLeakyReLU:
    """Leaky ReLU on fixed-point integers: ``a`` for ``a >= 0``, else
    ``floor(a * s / 2**16 + 1/2)`` with the slope on the grid ``2**-16``
    (``s = round(slope * 2**16)``; a power-of-two slope, as the checkerboard model's, is on it
    exactly; CompressAI's 0.01 becomes 655 / 2**16). Negative inputs are clamped to
    ``-2**52 / s`` first (beyond ``2**25`` in real units, far beyond any activation), so that
    every product is an integer below ``2**53``: exact in float64."""

    def __init__(self, slope: float) -> None:
        if not 0 < slope < 1:
            raise TypeError(f"no exact integer form for LeakyReLU({slope}): need 0 < slope < 1")
        self.slope_fixed = float(np.floor(np.ldexp(float(slope), WEIGHT_FRAC_BITS) + 0.5))
        if self.slope_fixed < 1:
            raise TypeError(f"no exact integer form for LeakyReLU({slope}): below 2**-16")
        self.floor = -float(np.floor(2.0**52 / self.slope_fixed))

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        neg = a.clamp(self.floor, 0.0).mul_(self.slope_fixed).mul_(2.0**-WEIGHT_FRAC_BITS)
        return torch.where(a < 0, neg.add_(0.5).floor_(), a)


def exact_layers(layers: nn.Sequential, frac_in: int = 0) -> list:
    """The exact fixed-point form of a Sequential of Conv2d / ConvTranspose2d / ReLU /
    LeakyReLU (slope on the grid ``2**-16``): a list
    of callables on float64 integer tensors (weights rounded once, here). The codecs build it
    once with their coding tables; :func:`exact_forward` runs it.

    Args:
        layers: the Sequential.
        frac_in: fractional bits of the input integers (0: the input is integer-valued;
            ``ACT_FRAC_BITS`` when it is another exact network's output).

    Raises:
        TypeError: for a layer type that has no exact form.
    """
    ops, frac = [], int(frac_in)
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            ops.append(_ExactLayer(layer, frac))
            frac = ACT_FRAC_BITS
        elif isinstance(layer, nn.ReLU):
            ops.append(_relu_)
        elif isinstance(layer, nn.LeakyReLU):
            ops.append(_ExactLeakyReLU(layer.negative_slope))
        else:
            raise TypeError(f"no exact integer form for {type(layer).__name__}")
    if frac != ACT_FRAC_BITS:  # no conv at all: scale the input
        ops.append(lambda a, bits=ACT_FRAC_BITS - frac: a * 2.0**bits)
    return ops


def exact_forward(layers, z_int: torch.Tensor) -> torch.Tensor:
    """Run a Sequential of Conv2d / ConvTranspose2d / ReLU in exact fixed-point arithmetic.

    Args:
        layers: the hyper-synthesis ``h_s`` (``nn.Sequential``), or its :func:`exact_layers`.
        z_int: integer-valued tensor ``[B, N, h, w]`` (the symbols of ``z^``).

    Returns:
        float64 CPU tensor of integers: the output times ``2**ACT_FRAC_BITS``. Identical on
        every machine and thread count (see module doc).

    Raises:
        TypeError: for a layer type that has no exact form.
    """
    ops = exact_layers(layers) if isinstance(layers, nn.Module) else layers
    a = z_int.detach().cpu().to(torch.float64, copy=True)  # the ops may work in place
    for op in ops:
        a = op(a)
    return a


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
