"""The fully factorized ("deep factorized") density of Ballé et al. 2018, appendix 6.1.

Each channel ``c`` has its own monotone cumulative function, a tiny per-channel network::

    F_c(x) = sigmoid(f_K(... f_1(x)))     f_k(x) = g_k(H_k x + b_k),   g_k(x) = x + a_k * tanh(x)

with ``H_k = softplus(raw) > 0`` and ``a_k = tanh(raw) in (-1, 1)``, so ``F_c`` is increasing.
The density of the noisy latent ``y~ = y + U(-1/2, 1/2)`` (training) and the probability of the
rounded latent ``y^ = round(y)`` (coding) are the same expression::

    p(v) = F_c(v + 1/2) - F_c(v - 1/2)

Both faces live here: :meth:`FactorizedDensity.forward` gives likelihoods for training (with a
1e-9 floor), :meth:`FactorizedDensity.pmf_table` the integer tables for the range coder, and
:func:`encode_factorized` / :func:`decode_factorized` code a latent with them (one table row
per channel).

No auxiliary loss is needed (CompressAI learns quantiles with one): the coded range of each
channel is found when the table is built, by bisection on ``F_c`` for the integers where less
than ``tail_mass`` of the mass lies outside; values outside are coded through the escape entry
(see :mod:`vaecodec.coding.entropy`). The table is computed in float64 with
:mod:`vaecodec.coding.detmath`, so it is bit-identical on every machine.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vaecodec.coding import detmath
from vaecodec.coding.entropy import PmfTable, SymbolDecoder, SymbolEncoder, quantize_pmf
from vaecodec.nn.gdn import lower_bound

__all__ = ["FactorizedDensity", "LIKELIHOOD_BOUND", "decode_factorized", "encode_factorized",
           "quantize_noise"]  # fmt: skip

OFFSET_FRAC_BITS = 16
"""Offsets (``FactorizedDensity(offsets=True)``) are coded on the grid ``2**-16``."""
LIKELIHOOD_BOUND = 1e-9
"""Floor of every likelihood, so that the rate term stays finite and gradients stable."""


def quantize_noise(y: torch.Tensor, training: bool, offset: torch.Tensor | None = None):
    """The unit-width uniform posterior: ``y + U(-1/2, 1/2)`` when training, else
    ``round(y - offset) + offset`` (``offset`` is the mean in the mean-scale model)."""
    if training:
        return y + torch.empty_like(y).uniform_(-0.5, 0.5)
    if offset is None:
        return torch.round(y)
    return torch.round(y - offset) + offset


class FactorizedDensity(nn.Module):
    """Deep factorized density over the channels of a latent (Ballé et al. 2018, app. 6.1).

    Args:
        channels: number of channels C (each has its own density).
        filters: hidden widths of the per-channel network (the paper uses (3, 3, 3)).
        init_scale: initial spread of the density, in quantisation bins.
        tail_mass: probability mass left outside the coded range of each channel.
        max_width: cap on the number of symbols in a channel's coded range.
        offsets: keep a per-channel offset ``o`` (buffer ``offsets [C]``, zero until set;
            CompressAI's medians) and quantise around it: the symbol of ``v`` is
            ``round(v - o)`` and the value it codes ``round(v - o) + o``, ``o`` taken on the
            grid ``2**-16`` when coding (:meth:`offsets_fixed`), so that an exact integer
            network can read it.

    ``forward(y)`` with ``y: [B, C, H, W]`` returns ``(y_tilde, likelihood)``, both
    ``[B, C, H, W]``: ``y_tilde = y + noise`` in training mode, ``round(y)`` (or
    ``round(y - o) + o``) in eval mode.
    """

    def __init__(
        self,
        channels: int,
        filters: tuple[int, ...] = (3, 3, 3),
        init_scale: float = 10.0,
        tail_mass: float = 1e-6,
        max_width: int = 4095,
        offsets: bool = False,
    ) -> None:
        super().__init__()
        self.register_buffer("offsets", torch.zeros(channels) if offsets else None)
        self.channels = int(channels)
        self.filters = tuple(int(f) for f in filters)
        self.tail_mass = float(tail_mass)
        self.max_width = int(max_width)
        dims = (1, *self.filters, 1)
        scale = float(init_scale) ** (1.0 / (len(self.filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for k in range(len(dims) - 1):
            init = math.log(math.expm1(1.0 / scale / dims[k + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[k + 1], dims[k]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[k + 1], 1) - 0.5))
            if k < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[k + 1], 1)))

    def logits_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """Logit of ``F_c`` at ``x: [C, 1, n]``; returns ``[C, 1, n]``."""
        for k, (m, b) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(m), x) + b
            if k < len(self.factors):
                x = x + torch.tanh(self.factors[k]) * torch.tanh(x)
        return x

    def likelihood(self, v: torch.Tensor) -> torch.Tensor:
        """``P(round value == v)`` under the density, for ``v: [B, C, H, W]`` (floored at
        :data:`LIKELIHOOD_BOUND`)."""
        b, c, h, w = v.shape
        x = v.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self.logits_cdf(x - 0.5)
        upper = self.logits_cdf(x + 0.5)
        # subtract in the tail where the sigmoid is far from 1 (avoids cancellation)
        sign = -torch.sign(lower + upper).detach()
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        p = p.reshape(c, b, h, w).permute(1, 0, 2, 3)
        return lower_bound(p, LIKELIHOOD_BOUND)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if y.dim() != 4 or y.shape[1] != self.channels:
            raise ValueError(f"expected [B, {self.channels}, H, W], got {tuple(y.shape)}")
        off = None if self.offsets is None else self.offsets[:, None, None]
        y_tilde = quantize_noise(y, self.training, off)
        return y_tilde, self.likelihood(y_tilde)

    # ------------------------------------------------------------------ symbols
    def offsets_fixed(self) -> np.ndarray:
        """The offsets in units of ``2**-16`` (int64 ``[C]``, round half up, exact; zeros
        without offsets): what coding uses."""
        if self.offsets is None:
            return np.zeros(self.channels, dtype=np.int64)
        v = self.offsets.detach().cpu().to(torch.float64).numpy()
        return np.floor(np.ldexp(v, OFFSET_FRAC_BITS) + 0.5).astype(np.int64)

    def _offsets_q(self) -> np.ndarray:
        return np.ldexp(self.offsets_fixed().astype(np.float64), -OFFSET_FRAC_BITS)

    def symbols(self, v: torch.Tensor) -> np.ndarray:
        """The integer symbols of a latent ``v [B, C, h, w]``: ``round(v)``, or
        ``round(v - o)`` with offsets (int64 numpy array, same shape)."""
        t = v.detach().to(torch.float64).cpu()
        if self.offsets is not None:
            t = t - torch.from_numpy(self._offsets_q())[:, None, None]
        return torch.round(t).numpy().astype(np.int64)

    def dequantize(self, symbols: np.ndarray) -> torch.Tensor:
        """The values that ``symbols`` (int64 ``[B, C, h, w]``) code: float32 CPU tensor,
        ``symbols`` (+ the offsets on their grid)."""
        t = torch.from_numpy(np.asarray(symbols)).to(torch.float64)
        if self.offsets is not None:
            t = t + torch.from_numpy(self._offsets_q())[:, None, None]
        return t.to(torch.float32)

    # ------------------------------------------------------------------ coding face
    def _np_params(self):
        def f64(p: torch.Tensor) -> np.ndarray:  # float32 -> float64 is exact
            return p.detach().cpu().to(torch.float64).numpy()

        mats = [detmath.softplus(f64(m)) for m in self.matrices]
        biases = [f64(b) for b in self.biases]
        factors = [detmath.tanh(f64(f)) for f in self.factors]
        return mats, biases, factors

    @staticmethod
    def _np_logits(params, x: np.ndarray) -> np.ndarray:
        """Deterministic float64 twin of :meth:`logits_cdf`: ``x: [C, n] -> [C, n]``.

        Matrix products are written as sums in a fixed order (no BLAS), so the result does
        not depend on the machine.
        """
        mats, biases, factors = params
        h = x[:, None, :]  # [C, 1, n]
        for k, (m, b) in enumerate(zip(mats, biases)):
            out = m[:, :, 0:1] * h[:, 0:1, :]
            for i in range(1, m.shape[2]):
                out = out + m[:, :, i : i + 1] * h[:, i : i + 1, :]
            h = out + b
            if k < len(factors):
                h = h + factors[k] * detmath.tanh(h)
        return h[:, 0, :]

    def pmf_table(self) -> PmfTable:
        """Integer coding tables, one row per channel, built deterministically (see module
        doc); the symbol of a channel is the rounded latent ``round(y)`` (with offsets,
        ``round(y - o)``, see :meth:`symbols`)."""
        params = self._np_params()
        c = self.channels
        off = self._offsets_q()  # symbol k codes the value k + off
        half_tail = self.tail_mass / 2
        logit_tail = float(detmath.log(half_tail / (1 - half_tail)))

        def search(upper: bool) -> np.ndarray:
            # integers k in [-2**15, 2**15]: the smallest k with F(k + 1/2) > 1 - tail/2 (upper)
            # or the largest k with F(k - 1/2) < tail/2 (lower), by vectorised bisection
            lo = np.full(c, -(2.0**15))
            hi = np.full(c, 2.0**15)
            for _ in range(17):
                mid = np.floor((lo + hi) / 2)
                if upper:
                    go_left = self._np_logits(params, (mid + off + 0.5)[:, None])[:, 0] > -logit_tail
                    hi = np.where(go_left, mid, hi)
                    lo = np.where(go_left, lo, mid)
                else:
                    go_right = self._np_logits(params, (mid + off - 0.5)[:, None])[:, 0] < logit_tail
                    lo = np.where(go_right, mid, lo)
                    hi = np.where(go_right, hi, mid)
            return hi if upper else lo

        hi = search(upper=True).astype(np.int64)
        lo = search(upper=False).astype(np.int64)
        lo = np.minimum(lo, hi)
        too_wide = hi - lo + 1 > self.max_width
        if too_wide.any():  # keep the central part; the rest goes through the escape
            mid = (lo + hi) // 2
            lo = np.where(too_wide, mid - self.max_width // 2, lo)
            hi = np.where(too_wide, lo + self.max_width - 1, hi)
        pmfs = []
        for ch in range(c):
            ks = np.arange(lo[ch], hi[ch] + 1, dtype=np.float64) + off[ch]
            p_ch = tuple([a[ch : ch + 1] for a in group] for group in params)
            low = self._np_logits(p_ch, (ks - 0.5)[None, :])[0]
            up = self._np_logits(p_ch, (ks + 0.5)[None, :])[0]
            sign = np.where(low + up > 0, -1.0, 1.0)
            pmf = np.abs(detmath.sigmoid(sign * up) - detmath.sigmoid(sign * low))
            tails = detmath.sigmoid(low[:1]) + detmath.sigmoid(-up[-1:])
            pmfs.append(quantize_pmf(np.concatenate([pmf, tails])))
        return PmfTable(pmfs, lo)


def encode_factorized(enc: SymbolEncoder, symbols: np.ndarray, table: PmfTable) -> None:
    """Append one image's latent ``symbols`` (int64 ``[C, h, w]``) to ``enc``, channel ``c``
    with row ``c`` of ``table`` (:meth:`FactorizedDensity.pmf_table`)."""
    for c in range(symbols.shape[0]):
        enc.encode(symbols[c].ravel(), table, c)


def decode_factorized(dec: SymbolDecoder, table: PmfTable, channels: int, h: int,
                      w: int) -> np.ndarray:  # fmt: skip
    """Inverse of :func:`encode_factorized`: int64 ``[channels, h, w]``. Raises
    :class:`~vaecodec.errors.FormatError` on corrupt data (from the decoder)."""
    rows = [dec.decode(table, c, h * w) for c in range(channels)]
    return np.stack(rows).reshape(channels, h, w)
