"""Generalized divisive normalization (GDN) and its inverse (IGDN).

Ballé, Laparra & Simoncelli, "Density Modeling of Images using a Generalized Normalization
Transformation", ICLR 2016; used as the nonlinearity of the analysis / synthesis transforms of
the learned image codecs (Ballé et al. 2017, 2018)::

    GDN:   y_i = x_i / sqrt(beta_i + sum_j gamma_ij * x_j^2)
    IGDN:  y_i = x_i * sqrt(beta_i + sum_j gamma_ij * x_j^2)

``beta`` (> 0) and ``gamma`` (>= 0) are kept in range with Ballé's reparametrisation: the stored
parameter ``p`` maps to ``max(p, sqrt(bound + pedestal))**2 - pedestal`` with
``pedestal = 2**-36``, so that gradients stay well scaled near zero and the constraint can never
be violated by an optimiser step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GDN", "IGDN", "LowerBound", "NonNegativeParametrizer", "lower_bound"]


class _LowerBound(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        # Let the gradient through where x is above the bound, or where descending would push
        # x up towards the admissible region (so a parameter stuck below the bound can recover).
        pass_through = (x >= ctx.bound) | (grad < 0)
        return grad * pass_through.to(grad.dtype), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """``max(x, bound)`` whose gradient is not zeroed when it would move ``x`` back up.

    Used for the likelihood floor (1e-9), the scale floor (0.11) and the GDN parameters.
    """
    return _LowerBound.apply(x, float(bound))


class LowerBound(nn.Module):
    """Module form of :func:`lower_bound` with a fixed ``bound``."""

    def __init__(self, bound: float) -> None:
        super().__init__()
        self.bound = float(bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lower_bound(x, self.bound)


class NonNegativeParametrizer(nn.Module):
    """Ballé's reparametrisation of a parameter constrained to ``>= minimum``.

    ``init(v)`` turns a value into the stored parameter ``sqrt(max(v + pedestal, pedestal))``;
    ``forward(p)`` maps it back to ``max(p, sqrt(minimum + pedestal))**2 - pedestal``.
    """

    def __init__(self, minimum: float = 0.0, reparam_offset: float = 2**-18) -> None:
        super().__init__()
        self.pedestal = float(reparam_offset) ** 2
        self.bound = (float(minimum) + self.pedestal) ** 0.5

    def init(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.clamp_min(v + self.pedestal, self.pedestal))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return lower_bound(p, self.bound) ** 2 - self.pedestal


class _GDNRows(torch.autograd.Function):
    """GDN / IGDN on rows ``flat [P, C]`` (channels last) with a hand-written backward.

    ``out = flat * r`` with ``r = n**(-1/2)`` (GDN) or ``n**(1/2)`` (IGDN),
    ``n = flat**2 @ gamma.T + beta``. Autograd's generic graph of the same expression makes
    ~11 passes over the activations in the backward; this one makes ~7 (the elementwise
    passes, not the arithmetic, dominate the cost of GDN on a CPU).
    """

    @staticmethod
    def forward(ctx, flat, gamma, beta, inverse: bool):
        s = flat * flat
        norm = torch.addmm(beta, s, gamma.t())
        r = norm.sqrt_() if inverse else norm.rsqrt_()
        ctx.save_for_backward(flat, s, r, gamma)
        ctx.inverse = inverse
        return flat * r

    @staticmethod
    def backward(ctx, grad):
        flat, s, r, gamma = ctx.saved_tensors
        grad_x = grad * r
        # d out / d norm = flat * d r / d norm = -flat r**3 / 2 (GDN) or flat / (2 r) (IGDN)
        if ctx.inverse:
            q, coef = torch.mul(grad, flat).div_(r), 0.5
        else:
            q, coef = torch.mul(grad_x, flat).mul_(r).mul_(r), -0.5
        grad_x.addcmul_(torch.mm(q, gamma), flat, value=2.0 * coef)
        return grad_x, torch.mm(q.t(), s).mul_(coef), q.sum(0).mul_(coef), None


class GDN(nn.Module):
    """Generalized divisive normalization over channels (Ballé et al. 2016).

    Args:
        channels: number of channels C of the input ``[B, C, H, W]``.
        inverse: compute IGDN (multiply instead of divide), used in synthesis transforms.
        beta_min: lower bound of beta (keeps the denominator away from zero).
        gamma_init: initial value of the diagonal of gamma.

    Shapes: ``[B, C, H, W] -> [B, C, H, W]``. A channels-last input (the codecs code and
    train in that memory format; it is faster on CPU) is normalised with one matrix product
    and gives a channels-last output; any other layout goes through a 1x1 convolution.
    """

    def __init__(
        self,
        channels: int,
        inverse: bool = False,
        beta_min: float = 1e-6,
        gamma_init: float = 0.1,
    ) -> None:
        super().__init__()
        self.channels = int(channels)
        self.inverse = bool(inverse)
        self.beta_reparam = NonNegativeParametrizer(minimum=beta_min)
        self.gamma_reparam = NonNegativeParametrizer(minimum=0.0)
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(channels)))
        self.gamma = nn.Parameter(self.gamma_reparam.init(gamma_init * torch.eye(channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.channels
        beta = self.beta_reparam(self.beta)
        gamma = self.gamma_reparam(self.gamma)
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            # channels-last: the 1x1 convolution is one matrix product over [B*H*W, C] rows
            # (oneDNN would otherwise fall back to a slow 1x1 path and copy the layout)
            xl = x.permute(0, 2, 3, 1)  # [B, H, W, C], a contiguous view
            flat = xl.reshape(-1, c)
            if flat.dtype != gamma.dtype:  # bf16 activations under autocast: GDN in float32
                flat = flat.to(gamma.dtype)  # (its squares and roots need the mantissa)
            if torch.is_grad_enabled():
                out = _GDNRows.apply(flat, gamma, beta, self.inverse)
            else:  # inference: in place, one large allocation fewer per call
                norm = torch.addmm(beta, flat * flat, gamma.t())
                out = (norm.sqrt_() if self.inverse else norm.rsqrt_()).mul_(flat)
            return out.view(xl.shape).permute(0, 3, 1, 2)
        norm = torch.sqrt(F.conv2d(x * x, gamma.reshape(c, c, 1, 1), beta))
        return x * norm if self.inverse else x / norm

    def extra_repr(self) -> str:
        return f"{self.channels}, inverse={self.inverse}"


class IGDN(GDN):
    """Inverse GDN: ``y_i = x_i * sqrt(beta_i + sum_j gamma_ij x_j^2)`` (synthesis side)."""

    def __init__(self, channels: int, **kw) -> None:
        super().__init__(channels, inverse=True, **kw)
