"""Learned image codecs: factorized prior, scale hyperprior and mean-scale hyperprior.

- ``factorized``  Ballé, Laparra & Simoncelli 2017 / Ballé et al. 2018 ("bmshj2018-factorized")
- ``hyperprior``  Ballé, Minnen, Singh, Hwang & Johnston 2018, "Variational image compression
  with a scale hyperprior" ("bmshj2018-hyperprior")
- ``mean-scale``  Minnen, Ballé & Toderici 2018, "Joint autoregressive and hierarchical priors
  for learned image compression", the mean-scale hyperprior without the context model

Block diagram (hyperprior models)::

    x ──g_a──> y ──h_a──> z ──Q──> z^ ──[factorized density]──> bits(z)
               │                    │
               │                  h_s (exact integer arithmetic when coding)
               │                    │  sigma (and mu)
               └──Q─────────────> y^ ──[Gaussian conditional]──> bits(y)
                                    │
                                   g_s ──> x^

``g_a``/``g_s``: four stride-2 5x5 convolutions with GDN / IGDN between them; ``h_a``/``h_s``:
convolutions with ReLU. Shapes: ``x [B, 3, H, W]`` in [0, 1], ``y [B, M, H/16, W/16]``,
``z [B, N, H/64, W/64]``. ``forward(x)`` returns ``{"x_hat", "likelihoods": {"y", "z"}}``
(the factorized model has only ``"y"``); rate in bits is ``-sum(log2(likelihoods))``.

Determinism of coding. The decoder must rebuild the encoder's probabilities bit for bit on
any machine, thread count or device. Three measures make sure of it:

1. The integer probability tables are computed in machine-independent float64
   (:mod:`vaecodec.coding.detmath`) from the weights.
2. When coding, the hyper-synthesis ``h_s`` runs in *exact integer arithmetic*: weights are
   rounded to multiples of ``2**-16``, activations to ``2**-16`` after every layer (round half
   up), and the convolutions are evaluated in float64 on the CPU on these integers. Every
   product and partial sum is an integer below ``2**53`` (activations are clamped to a bound
   derived from each layer's weight L1 norm to guarantee it), so the result is exact and does
   not depend on the summation order the BLAS library or the thread count chooses.
3. Its integer outputs are mapped to a scale-table level by integer comparison and the means
   onto the 1/64 grid (``vaecodec.priors.gaussian``); the decoder reconstructs
   ``y^ = k + mu_q`` with the same quantised mean the encoder used.

``g_a`` and ``g_s`` run in ordinary float32 on the model's device: ``g_a`` only feeds the
encoder, and ``g_s`` only turns the (exactly decoded) ``y^`` into pixels.

Variable rate (``levels > 0``). Following Cui et al. 2021, "Asymmetric gained deep image
compression with continuous rate adaptation" (CVPR), one model serves ``levels`` rate-distortion
trade-offs: a learned gain vector per level scales ``y`` channel-wise before quantisation
(``y = g_a(x) * gain[l]``) and a second, inverse gain vector rescales the decoded latents before
the synthesis (``x^ = g_s(y^ * inv_gain[l])``). Gains are stored as logarithms (``log_gain``,
``log_inv_gain``: ``[levels, M]``). They act outside the entropy model, so coding stays exact:
``h_a`` / ``h_s`` see the gained latents, and the inverse gain only feeds ``g_s``. The level a
model codes at is :attr:`CodecModel.level` (0-based; a family's quality ``q`` is level ``q - 1``).

Any image size can be coded: :meth:`CodecModel.compress` pads to multiples of
:attr:`CodecModel.multiple` (64; 16 for the factorized model) by edge replication and
:meth:`CodecModel.decompress` crops back.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vaecodec.coding.entropy import SymbolDecoder, SymbolEncoder
from vaecodec.errors import FormatError
from vaecodec.models.registry import register_model
from vaecodec.nn.gdn import GDN, IGDN
from vaecodec.priors.factorized import FactorizedDensity, quantize_noise
from vaecodec.priors.gaussian import (
    MEAN_STEP_BITS,
    GaussianConditional,
    dequantize_means,
    gaussian_pmf_table,
    quantize_means,
    scale_indexes,
)

__all__ = [
    "ACT_FRAC_BITS",
    "WEIGHT_FRAC_BITS",
    "CheckerboardMeanScale",
    "CodecModel",
    "CompressedImages",
    "FactorizedPrior",
    "MeanScaleHyperprior",
    "ScaleHyperprior",
    "crop_image",
    "exact_forward",
    "exact_layers",
    "pad_image",
    "same_lmbda",
]

WEIGHT_FRAC_BITS = 16
"""Exact hyper-synthesis: weights are rounded to multiples of 2**-16."""
ACT_FRAC_BITS = 16
"""Exact hyper-synthesis: activations are rounded to multiples of 2**-16."""
_EXACT_LIMIT = 2.0**52  # keep every partial sum below this (float64 integers are exact < 2**53)


def same_lmbda(a: float, b: float) -> bool:
    """Whether two lambdas name the same rate level (relative difference below 1e-9: the same
    decimal read twice, from a command line or a JSON record, gives the same float)."""
    return abs(float(a) - float(b)) <= 1e-9 * max(abs(float(a)), abs(float(b)))


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


# ---------------------------------------------------------------------------------------------
# Exact (integer) evaluation of the hyper-synthesis
# ---------------------------------------------------------------------------------------------
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


class _ExactCheckerboardContext(_ExactLayer):
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
    """Leaky ReLU with a power-of-two slope on fixed-point integers: ``a`` for ``a >= 0``,
    else ``floor(a * slope + 1/2)`` (exact in float64)."""

    def __init__(self, slope: float) -> None:
        mantissa, _ = np.frexp(slope)
        if not 0 < slope < 1 or mantissa != 0.5:
            raise TypeError(f"no exact integer form for LeakyReLU({slope}): use a power of two")
        self.slope = float(slope)

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        return torch.where(a < 0, torch.floor(a * self.slope + 0.5), a)


def exact_layers(layers: nn.Sequential, frac_in: int = 0) -> list:
    """The exact fixed-point form of a Sequential of Conv2d / ConvTranspose2d / ReLU /
    LeakyReLU (power-of-two slope): a list
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
MAX_CHANNELS = 4096
"""Largest ``N`` / ``M`` a config.json may ask for (the bundled codecs use 64 / 96)."""
MAX_LEVELS = 255
"""Most rate levels a variable-rate config may ask for (a ``.vcz`` quality is one byte)."""


class CodecModel(nn.Module):
    """Base of the learned image codecs: config handling, coding caches, helpers.

    Args:
        N: channels of the transforms' hidden layers and of ``z``.
        M: channels of ``y``.
        ste: feed the synthesis ``round(y - mu) + mu`` with a straight-through gradient while
            training (the rate term still uses additive uniform noise).
    """

    kind = "codec"
    multiple = 64
    """Images are padded to multiples of this many pixels for coding."""
    streams = 2
    """Number of entropy-coded strings per image (y, then z)."""

    def __init__(self, N: int = 128, M: int = 192, ste: bool = False, levels: int = 0) -> None:
        super().__init__()
        if int(N) < 1 or int(M) < 1 or int(levels) < 0:
            raise ValueError(f"N, M must be positive and levels >= 0, got {N}, {M}, {levels}")
        self.N, self.M, self.ste, self.levels = int(N), int(M), bool(ste), int(levels)
        self.g_a = analysis_transform(self.N, self.M)
        self.g_s = synthesis_transform(self.N, self.M)
        if self.levels:
            self.log_gain = nn.Parameter(torch.zeros(self.levels, self.M))
            self.log_inv_gain = nn.Parameter(torch.zeros(self.levels, self.M))
        self.level = self.levels - 1 if self.levels else 0
        self._coding: dict | None = None
        self.register_load_state_dict_post_hook(lambda module, keys: module.reset_coding())

    @classmethod
    def from_config(cls, config: dict) -> CodecModel:
        """Build from ``{"N": int, "M": int, "ste": bool, "levels": int}`` (``levels`` optional,
        0 = one fixed rate; unknown keys are refused)."""
        config = dict(config)
        unknown = set(config) - {"N", "M", "ste", "levels"}
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        bounds = {"N": (1, MAX_CHANNELS), "M": (1, MAX_CHANNELS), "levels": (0, MAX_LEVELS)}
        for key, (lo, hi) in bounds.items():
            v = config.get(key, lo)
            if type(v) is not int or not lo <= v <= hi:  # not bool, float or str
                raise ValueError(f"{key} must be an integer from {lo} to {hi}, got {v!r}")
        if type(config.get("ste", False)) is not bool:
            raise ValueError(f"ste must be true or false, got {config['ste']!r}")
        return cls(**config)

    def config_dict(self) -> dict:
        """JSON-serialisable config; ``from_config(config_dict())`` rebuilds the model."""
        out = {"N": self.N, "M": self.M, "ste": self.ste}
        if self.levels:
            out["levels"] = self.levels
        return out

    # -- variable rate (gain units) --
    def init_gains(self, lmbdas) -> None:
        """Initialise the gains of a variable-rate model from its levels' ``lmbdas`` (one per
        level, increasing): ``gain = sqrt(lmbda / lmbda_ref)`` (the quantiser step of an MSE
        codec scales as ``lmbda ** -1/2``), ``inv_gain = 1 / gain``; ``lmbda_ref`` is their
        geometric mean.

        Raises:
            ValueError: not a variable-rate model, or ``len(lmbdas) != levels``.
        """
        if not self.levels or len(lmbdas) != self.levels:
            raise ValueError(f"{len(lmbdas)} lmbdas for a model with {self.levels} levels")
        log_l = torch.log(torch.tensor([float(v) for v in lmbdas], dtype=torch.float32))
        g = 0.5 * (log_l - log_l.mean())
        with torch.no_grad():
            self.log_gain.copy_(g[:, None].expand(-1, self.M))
            self.log_inv_gain.copy_(-g[:, None].expand(-1, self.M))

    def with_levels(self, lmbdas, new_lmbdas) -> CodecModel:
        """A copy of this variable-rate model with rate levels for ``new_lmbdas`` (increasing):
        every module is shared-weight copied; a level whose lambda is one of this model's
        ``lmbdas`` keeps its learned gains, the others get gains interpolated (or, beyond the
        ends, extrapolated from the two nearest levels) per channel, linearly in
        ``log lambda`` (the relation :meth:`init_gains` starts from). Used to add rate points
        to a trained model before training it further (``train-codec --init-from``).

        Raises:
            ValueError: not a variable-rate model, ``len(lmbdas) != levels``, or
                ``new_lmbdas`` not increasing and positive.
        """
        old = [float(v) for v in lmbdas]
        new = [float(v) for v in new_lmbdas]
        if not self.levels or len(old) != self.levels:
            raise ValueError(f"{len(old)} lmbdas for a model with {self.levels} levels")
        if len(new) < 2 or new[0] <= 0 or any(b <= a for a, b in zip(new, new[1:])):
            raise ValueError(f"new lmbdas {new} must be two or more, positive and increasing")
        x_old = np.log(old)
        rows = []
        for value, lm in zip(new, np.log(new)):
            hit = [i for i, v in enumerate(old) if same_lmbda(v, value)]
            if hit:
                rows.append((hit[0], hit[0], 0.0))
                continue
            j = int(np.clip(np.searchsorted(x_old, lm), 1, len(old) - 1))  # segment [j-1, j]
            rows.append((j - 1, j, float((lm - x_old[j - 1]) / (x_old[j] - x_old[j - 1]))))
        out = type(self).from_config({**self.config_dict(), "levels": len(new)})
        state = {k: v for k, v in self.state_dict().items()
                 if k not in ("log_gain", "log_inv_gain")}  # fmt: skip
        out.load_state_dict(state, strict=False)
        with torch.no_grad():
            for name in ("log_gain", "log_inv_gain"):
                src = getattr(self, name).detach()
                rows_t = [src[a] + t * (src[b] - src[a]) for a, b, t in rows]
                getattr(out, name).copy_(torch.stack(rows_t))
        return out

    def set_level(self, level: int) -> CodecModel:
        """Select the rate level (0-based) that :meth:`compress` / :meth:`decompress` use.

        Raises:
            ValueError: ``level`` outside ``[0, levels)`` (only 0 for a fixed-rate model).
        """
        n = max(self.levels, 1)
        if not 0 <= int(level) < n:
            raise ValueError(f"level {level} out of range: this model has levels 0..{n - 1}")
        self.level = int(level)
        return self

    def _gains(self, level, inverse: bool) -> torch.Tensor | None:
        """``[B or 1, M, 1, 1]`` gain for ``level`` (int or LongTensor [B]); None if fixed-rate."""
        if not self.levels:
            return None
        table = self.log_inv_gain if inverse else self.log_gain
        if level is None:
            level = self.level
        if isinstance(level, torch.Tensor):
            g = table[level.to(table.device)]
        else:
            g = table[int(level)][None]
        return torch.exp(g)[:, :, None, None]

    def _gain_y(self, y: torch.Tensor, level=None) -> torch.Tensor:
        g = self._gains(level, inverse=False)
        return y if g is None else y * g

    def _ungain_y(self, y_hat: torch.Tensor, level=None) -> torch.Tensor:
        g = self._gains(level, inverse=True)
        return y_hat if g is None else y_hat * g

    # -- coding caches: tables derived from the weights, rebuilt after training / loading --
    def reset_coding(self) -> None:
        """Forget the coding tables (they are rebuilt from the weights at the next use)."""
        self._coding = None

    def train(self, mode: bool = True):
        if mode:
            self.reset_coding()
        return super().train(mode)

    def coding_tables(self) -> dict:
        """The integer tables the coder uses (built once from the current weights)."""
        if self._coding is None:
            self._coding = self._build_coding()
        return self._coding

    def _build_coding(self) -> dict:
        raise NotImplementedError

    def _decoder_input(self, y: torch.Tensor, y_tilde: torch.Tensor, means=None) -> torch.Tensor:
        """What g_s sees while training: ``y_tilde`` (noise) or STE rounding."""
        if self.training and self.ste:
            target = quantize_noise(y, False, means)
            return y + (target - y).detach()
        return y_tilde

    autocast_dtype: torch.dtype | None = None
    """Set by the trainer, not saved: while training, run ``g_a`` and ``g_s`` under
    ``torch.autocast`` to this dtype (bf16 on a GPU) and hand their outputs on in float32, so
    that the gains, the entropy models, the likelihoods and the loss stay float32. Coding
    (eval mode) never uses it."""

    def _transform(self, module: nn.Module, t: torch.Tensor) -> torch.Tensor:
        if self.autocast_dtype is None or not self.training:
            return module(t)
        with torch.autocast(t.device.type, dtype=self.autocast_dtype):
            out = module(t)
        return out.float()

    def _analysis(self, x: torch.Tensor) -> torch.Tensor:
        """``g_a(x)`` as ``forward`` runs it (see :attr:`autocast_dtype`)."""
        return self._transform(self.g_a, x)

    def _synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        """``g_s(y_hat)`` as ``forward`` runs it (see :attr:`autocast_dtype`)."""
        return self._transform(self.g_s, y_hat)

    def latent_shape(self, height: int, width: int) -> tuple[int, int]:
        """``shape`` that :meth:`decompress` needs for an image of ``height x width``: the
        spatial size of the coarsest latent (``z``; ``y`` for the factorized model)."""
        return (-(-height // self.multiple), -(-width // self.multiple))

    def _prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected x of shape [B, 3, H, W], got {tuple(x.shape)}")
        x, size = pad_image(x.to(self._device, torch.float32), self.multiple)
        return x.contiguous(memory_format=torch.channels_last), size

    def estimate_bits(self, out: dict) -> torch.Tensor:
        """Rate in bits per image ``[B]`` from ``forward``'s likelihoods."""
        total = 0
        for lk in out["likelihoods"].values():
            total = total + (-torch.log2(lk)).flatten(1).sum(1)
        return total

    @torch.no_grad()
    def compress(self, x: torch.Tensor) -> CompressedImages:
        """Entropy-code images.

        Args:
            x: ``[B, 3, H, W]`` in [0, 1], any ``H, W`` (padded by edge replication to
                multiples of :attr:`multiple`; :meth:`decompress` crops back).

        Returns:
            :class:`CompressedImages`, a dict ``{"strings": [[bytes] * B, ...]`` (one list per
            latent, y first), ``"shape"``: (h, w) of the coarsest latent, ``"image_size"``:
            (H, W), ``"y_hat"``: ``[B, M, ceil(H/64)*4, ...]`` the latents the decoder will
            reconstruct}; ``.to_bytes()`` gives a ``.vcz`` file (batch of one).

        Raises:
            ValueError: ``x`` is not ``[B, 3, H, W]``.
        """
        x, size = self._prepare(x)
        strings, shape, y_hat = self._compress(x)
        return CompressedImages(self, strings=strings, shape=shape, image_size=size, y_hat=y_hat)

    def _compress(self, x: torch.Tensor):
        raise NotImplementedError

    @torch.no_grad()
    def decompress_latents(self, strings, shape) -> torch.Tensor:
        """Decode ``y^ [B, M, h, w]`` (float32, on the model's device) from :meth:`compress`'s
        ``strings`` and ``shape``. Raises :class:`vaecodec.errors.FormatError` on corrupt data."""
        raise NotImplementedError

    @torch.no_grad()
    def decompress(self, strings, shape=None, image_size=None, level=None) -> torch.Tensor:
        """Decode images.

        Args:
            strings: :meth:`compress`'s ``"strings"``, or the bytes of a ``.vcz`` file made
                with this model (then ``shape``, ``image_size`` and the level come from its
                header).
            shape: :meth:`compress`'s ``"shape"``.
            image_size: ``(H, W)`` to crop to (default: no cropping).
            level: rate level of a variable-rate model (default :attr:`level`, the one
                :meth:`compress` used).

        Returns:
            ``x^ [B, 3, H, W]`` in [0, 1] on the model's device.

        Raises:
            FormatError: corrupt data, or a file made by other weights.
        """
        if isinstance(strings, (bytes, bytearray, memoryview)):
            from vaecodec.coding.container import check_codec, header_level, unpack

            header, streams = unpack(strings)
            check_codec(header, self)
            level = header_level(header, self)
            strings = [[s] for s in streams]
            shape = self.latent_shape(header.height, header.width)
            image_size = (header.height, header.width)
        if len(strings) != self.streams:
            raise FormatError(
                f"{len(strings)} coded streams given, this model codes {self.streams}"
            )
        y_hat = self._ungain_y(self.decompress_latents(strings, shape), level)
        # channels-last: the convolutions and GDN run ~2x faster in it on CPU
        x_hat = self.g_s(y_hat.contiguous(memory_format=torch.channels_last)).clamp_(0.0, 1.0)
        return x_hat if image_size is None else crop_image(x_hat, image_size)

    @property
    def _device(self) -> torch.device:
        return next(self.parameters()).device

    # -- shared coding of a factorized latent (rows = channels) --
    @staticmethod
    def _encode_factorized(enc: SymbolEncoder, sym: np.ndarray, table) -> None:
        for c in range(sym.shape[0]):
            enc.encode(sym[c].ravel(), table, c)

    @staticmethod
    def _decode_factorized(dec: SymbolDecoder, table, channels: int, h: int, w: int):
        rows = [dec.decode(table, c, h * w) for c in range(channels)]
        return np.stack(rows).reshape(channels, h, w)


class CompressedImages(dict):
    """What :meth:`CodecModel.compress` returns: a dict (``strings``, ``shape``,
    ``image_size``, ``y_hat``) that also knows its model, so that :meth:`to_bytes` can write
    a complete ``.vcz`` file."""

    def __init__(self, model: CodecModel, **fields) -> None:
        super().__init__(**fields)
        self.model = model

    def to_bytes(self) -> bytes:
        """The ``.vcz`` file of a batch of one RGB image (see ``docs/format.md``)."""
        from vaecodec.coding.container import Header, codec_id, pack

        if len(self["strings"][0]) != 1:
            raise ValueError("to_bytes() writes one image: compress a batch of one")
        h, w = self["image_size"]
        header = Header(codec_id(self.model), h, w, "RGB")
        return pack(header, [s[0] for s in self["strings"]])


def _to_int_array(t: torch.Tensor) -> np.ndarray:
    return torch.round(t).to(torch.float64).cpu().numpy().astype(np.int64)


@register_model("factorized")
class FactorizedPrior(CodecModel):
    """Factorized-prior codec (Ballé et al. 2018, "bmshj2018-factorized"): ``y`` is coded
    with a deep factorized density. Config: ``N`` (default 128), ``M`` (default 192)."""

    multiple = 16
    streams = 1

    def __init__(self, N: int = 128, M: int = 192, ste: bool = False, levels: int = 0) -> None:
        super().__init__(N, M, ste, levels)
        self.entropy_bottleneck = FactorizedDensity(self.M)

    def forward(self, x: torch.Tensor, level=None) -> dict:
        """``x [B, 3, H, W]`` -> ``{"x_hat", "likelihoods": {"y"}}``; ``level``: int or
        LongTensor ``[B]`` for a variable-rate model (default :attr:`level`)."""
        y = self._gain_y(self._analysis(x), level)
        y_tilde, y_lk = self.entropy_bottleneck(y)
        x_hat = self._synthesis(self._ungain_y(self._decoder_input(y, y_tilde), level))
        return {"x_hat": x_hat, "likelihoods": {"y": y_lk}}

    def _build_coding(self) -> dict:
        return {"y": self.entropy_bottleneck.pmf_table()}

    def _compress(self, x: torch.Tensor):
        tables = self.coding_tables()
        y = self._gain_y(self.g_a(x))
        sym = _to_int_array(y)
        strings = []
        for b in range(sym.shape[0]):
            enc = SymbolEncoder()
            self._encode_factorized(enc, sym[b], tables["y"])
            strings.append(enc.finish())
        y_hat = torch.from_numpy(sym).to(torch.float32).to(y.device)
        return [strings], tuple(y.shape[-2:]), y_hat

    @torch.no_grad()
    def decompress_latents(self, strings, shape) -> torch.Tensor:
        tables = self.coding_tables()
        h, w = shape
        out = []
        for data in strings[0]:
            dec = SymbolDecoder(data)
            out.append(self._decode_factorized(dec, tables["y"], self.M, h, w))
            dec.finish()
        return torch.from_numpy(np.stack(out)).to(torch.float32).to(self._device)


@register_model("hyperprior")
class ScaleHyperprior(CodecModel):
    """Scale-hyperprior codec (Ballé et al. 2018, "bmshj2018-hyperprior").

    ``z = h_a(|y|)`` is coded with a deep factorized density; ``sigma = h_s(z^)`` gives a
    zero-mean Gaussian conditional for ``y``. Config: ``N`` (128), ``M`` (192).
    """

    def __init__(self, N: int = 128, M: int = 192, ste: bool = False, levels: int = 0) -> None:
        super().__init__(N, M, ste, levels)
        self.h_a = self._hyper_analysis()
        self.h_s = self._hyper_synthesis()
        self.entropy_bottleneck = FactorizedDensity(self.N)
        self.gaussian_conditional = GaussianConditional()

    def _hyper_analysis(self) -> nn.Sequential:
        N, M = self.N, self.M
        return nn.Sequential(conv(M, N, 3, 1), nn.ReLU(), conv(N, N), nn.ReLU(), conv(N, N))

    def _hyper_synthesis(self) -> nn.Sequential:
        N, M = self.N, self.M
        return nn.Sequential(
            deconv(N, N), nn.ReLU(), deconv(N, N), nn.ReLU(), conv(N, M, 3, 1), nn.ReLU()
        )

    def _hyper_input(self, y: torch.Tensor) -> torch.Tensor:
        return torch.abs(y)

    def _params(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(scales, means) from the float hyper-synthesis (training / rate estimation)."""
        return self.h_s(z_hat), None

    def _split_fixed(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(scale, mean) fixed-point integers from the exact hyper-synthesis output."""
        return out, None

    def forward(self, x: torch.Tensor, level=None) -> dict:
        """``x [B, 3, H, W]`` -> ``{"x_hat", "likelihoods": {"y", "z"}}``; ``level``: int or
        LongTensor ``[B]`` for a variable-rate model (default :attr:`level`)."""
        y = self._gain_y(self._analysis(x), level)
        z = self.h_a(self._hyper_input(y))
        z_tilde, z_lk = self.entropy_bottleneck(z)
        scales, means = self._params(z_tilde)
        y_tilde, y_lk = self.gaussian_conditional(y, scales, means)
        x_hat = self._synthesis(self._ungain_y(self._decoder_input(y, y_tilde, means), level))
        return {"x_hat": x_hat, "likelihoods": {"y": y_lk, "z": z_lk}}

    def _build_coding(self) -> dict:
        return {
            "z": self.entropy_bottleneck.pmf_table(),
            "y": gaussian_pmf_table(),
            "h_s": exact_layers(self.h_s),
        }

    def _coding_params(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact (level index, mean in 1/64 units) for ``z_sym [B, N, h, w]`` int64."""
        out = exact_forward(self.coding_tables()["h_s"], torch.from_numpy(z_sym))
        scale_fx, mean_fx = self._split_fixed(out)
        idx = scale_indexes(scale_fx.numpy(), ACT_FRAC_BITS)
        if mean_fx is None:
            return idx, np.zeros_like(idx)
        return idx, quantize_means(mean_fx.numpy(), ACT_FRAC_BITS)

    def latent_params(self, z_sym: np.ndarray, y_hat: torch.Tensor):
        """Exact coding parameters of every element of ``y``: (scale level, mean in 1/64
        units), int64 ``[B, M, h, w]`` each, given ``z``'s symbols and the decoded ``y^``
        (which only models with a context read). For checks and analysis tools."""
        return self._coding_params(z_sym)

    @staticmethod
    def _order(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coding order of ``y``'s elements: grouped by scale level (stable), and the group
        boundaries; the decoder derives the same from the same indices."""
        flat = idx.ravel()
        order = np.argsort(flat, kind="stable")
        bounds = np.concatenate(
            [[0], np.cumsum(np.bincount(flat, minlength=len(gaussian_pmf_table())))]
        )
        return order, bounds

    def _encode_grouped(self, enc, k_flat, idx_flat, pos=None) -> None:
        """Append the residuals ``k_flat`` (of the flat positions ``pos``; all when None),
        grouped by their scale levels ``idx_flat`` (:meth:`_order`)."""
        if pos is not None:
            k_flat, idx_flat = k_flat[pos], idx_flat[pos]
        order, bounds = self._order(idx_flat)
        kb = k_flat[order]
        table = self.coding_tables()["y"]
        for j in range(len(bounds) - 1):
            enc.encode(kb[bounds[j] : bounds[j + 1]], table, j)

    def _decode_grouped(self, dec, k_flat, idx_flat, pos=None) -> None:
        """Inverse of :meth:`_encode_grouped`: fill ``k_flat`` (in place) at ``pos``."""
        if pos is None:
            pos = np.arange(idx_flat.size)
        order, bounds = self._order(idx_flat[pos])
        table = self.coding_tables()["y"]
        for j in range(len(bounds) - 1):
            sel = pos[order[bounds[j] : bounds[j + 1]]]
            k_flat[sel] = dec.decode(table, j, int(bounds[j + 1] - bounds[j]))

    def _decode_z(self, z_strings, h: int, w: int) -> np.ndarray:
        """The symbols of ``z^``, int64 ``[B, N, h, w]``, from its strings."""
        table = self.coding_tables()["z"]
        out = []
        for s in z_strings:
            dec = SymbolDecoder(s)
            out.append(self._decode_factorized(dec, table, self.N, h, w))
            dec.finish()
        return np.stack(out)

    def _compress(self, x: torch.Tensor):
        tables = self.coding_tables()
        y = self._gain_y(self.g_a(x))
        z = self.h_a(self._hyper_input(y))
        z_sym = _to_int_array(z)
        idx, mean64 = self._coding_params(z_sym)
        mean_q = torch.from_numpy(dequantize_means(mean64))
        k = torch.round(y.double().cpu() - mean_q).to(torch.int64).numpy()
        y_strings, z_strings = [], []
        for b in range(y.shape[0]):
            enc = SymbolEncoder()
            self._encode_factorized(enc, z_sym[b], tables["z"])
            z_strings.append(enc.finish())
            enc = SymbolEncoder()
            self._encode_grouped(enc, k[b].ravel(), idx[b].ravel())
            y_strings.append(enc.finish())
        y_hat = (torch.from_numpy(k).double() + mean_q).to(torch.float32).to(y.device)
        return [y_strings, z_strings], tuple(z.shape[-2:]), y_hat

    @torch.no_grad()
    def decompress_latents(self, strings, shape) -> torch.Tensor:
        y_strings, z_strings = strings
        idx, mean64 = self._coding_params(self._decode_z(z_strings, *shape))
        k = np.empty(idx.shape, dtype=np.int64)
        for b, data in enumerate(y_strings):
            dec = SymbolDecoder(data)
            self._decode_grouped(dec, k[b].reshape(-1), idx[b].ravel())
            dec.finish()
        y_hat = k + dequantize_means(mean64)
        return torch.from_numpy(y_hat).to(torch.float32).to(self._device)


@register_model("mean-scale")
class MeanScaleHyperprior(ScaleHyperprior):
    """Mean-scale hyperprior codec (Minnen et al. 2018, without the context model).

    ``z = h_a(y)`` (the same h_a as the scale hyperprior, on y instead of |y|); ``h_s(z^)``
    gives both the scale and the mean of the Gaussian conditional. ReLU (not leaky ReLU) in
    ``h_s`` so that its exact integer form stays simple.
    Config: ``N`` (128), ``M`` (192).
    """

    def _hyper_synthesis(self) -> nn.Sequential:
        N, M = self.N, self.M
        return nn.Sequential(
            deconv(N, M), nn.ReLU(), deconv(M, M * 3 // 2), nn.ReLU(), conv(M * 3 // 2, 2 * M, 3, 1)
        )

    def _hyper_input(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def _params(self, z_hat):
        scales, means = self.h_s(z_hat).chunk(2, dim=1)
        return scales, means

    def _split_fixed(self, out):
        return out[:, : self.M], out[:, self.M :]


EP_SLOPE = 2.0**-6
"""Negative slope of the checkerboard model's entropy-parameters LeakyReLUs (a power of two,
so that their exact integer form stays exact). With plain ReLU and its last layer starting at
zero, the whole second hidden layer died within the first ~14k steps of training (Adam moves
every weight by ~lr whatever its gradient's size), leaving a constant and an unused context."""


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


@register_model("checkerboard")
class CheckerboardMeanScale(MeanScaleHyperprior):
    """Mean-scale hyperprior with a checkerboard context model (He et al. 2021, "Checkerboard
    context model for efficient learned image compression", CVPR; the context idea is Minnen
    et al. 2018's, made two-pass parallel).

    ``y``'s positions are split like a checkerboard. *Anchors* (``(i + j)`` even) are coded
    first, with parameters from the hyperprior alone; the *non-anchors* then get parameters
    that also see the decoded anchors around them through a masked 5x5 convolution
    (:class:`CheckerboardConv2d`, ``M -> M`` channels). Both pass through the same
    entropy-parameters network (1x1 convolutions with leaky ReLU of slope 1/64,
    ``3M -> 2M -> 2M -> 2M``, :data:`EP_SLOPE`), used
    here as a *residual* on the hyper-synthesis output::

        (sigma, mu) = h_s(z^) + ep(cat(h_s(z^), ctx))     ctx = 0 for anchors,
                                                           ctx = context(y^ * anchors) else

    The last layer of ``ep`` starts at zero, so a fresh model computes exactly the mean-scale
    hyperprior it extends, and ``vaecodec train-codec --model checkerboard --init-from
    <mean-scale model>`` continues a trained mean-scale model with the context added.

    Coding stays exact: the context convolution and ``ep`` run in the same fixed-point integer
    arithmetic as ``h_s`` (the context's input ``y^ = k + mu_q`` is an integer multiple of
    1/64). One ``y`` string holds the anchors, then the non-anchors. Config as
    :class:`MeanScaleHyperprior`.
    """

    warm_start_from = ("mean-scale",)
    """Models whose weights ``--init-from`` may start this one from (its new modules fresh)."""

    def __init__(self, N: int = 128, M: int = 192, ste: bool = False, levels: int = 0) -> None:
        super().__init__(N, M, ste, levels)
        M = self.M
        self.context = CheckerboardConv2d(M, M, 5)
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(3 * M, 2 * M, 1), nn.LeakyReLU(EP_SLOPE), nn.Conv2d(2 * M, 2 * M, 1),
            nn.LeakyReLU(EP_SLOPE), nn.Conv2d(2 * M, 2 * M, 1),
        )  # fmt: skip
        with torch.no_grad():
            self.entropy_parameters[-1].weight.zero_()
            self.entropy_parameters[-1].bias.zero_()

    def _ep(self, hyper: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return hyper + self.entropy_parameters(torch.cat([hyper, ctx], dim=1))

    def forward(self, x: torch.Tensor, level=None) -> dict:
        """As :meth:`ScaleHyperprior.forward`. Training: one noisy ``y~`` feeds both the
        context and the likelihood; eval: anchors rounded around their means first, the
        context computed from them, then the non-anchors (what the coder does)."""
        y = self._gain_y(self._analysis(x), level)
        z = self.h_a(y)
        z_tilde, z_lk = self.entropy_bottleneck(z)
        y_tilde, scales, means = self.two_pass(y, self.h_s(z_tilde))
        y_lk = self.gaussian_conditional.likelihood(y_tilde, scales, means)
        x_hat = self._synthesis(self._ungain_y(self._decoder_input(y, y_tilde, means), level))
        return {"x_hat": x_hat, "likelihoods": {"y": y_lk, "z": z_lk}}

    def two_pass(self, y: torch.Tensor, hyper: torch.Tensor):
        """The float (training / estimation) face of the two coding passes.

        Args:
            y: ``[B, M, h, w]`` latents (gained).
            hyper: ``h_s(z~)``, ``[B, 2M, h, w]`` (scales, then means).

        Returns:
            ``(y_tilde, scales, means)``, each ``[B, M, h, w]``.
        """
        m, (h, w) = self.M, y.shape[-2:]
        mask = anchor_mask(h, w, y.device, y.dtype)
        params_a = self._ep(hyper, torch.zeros_like(y))
        if self.training:
            y_tilde = quantize_noise(y, True)
            y_anchor = y_tilde
        else:
            y_anchor = quantize_noise(y, False, params_a[:, m:])
        params_n = self._ep(hyper, self.context(y_anchor * mask))
        params = torch.where(mask.bool(), params_a, params_n)
        scales, means = params[:, :m], params[:, m:]
        if not self.training:
            y_tilde = quantize_noise(y, False, means)
        return y_tilde, scales, means

    def _build_coding(self) -> dict:
        tables = super()._build_coding()
        tables["context"] = _ExactCheckerboardContext(self.context, MEAN_STEP_BITS)
        tables["ep"] = exact_layers(self.entropy_parameters, ACT_FRAC_BITS)
        return tables

    def _fixed_params(self, hyper_fx: torch.Tensor, ctx_fx: torch.Tensor | None):
        """Exact (level index, mean in 1/64 units), int64 ``[B, M, h, w]``, from fixed-point
        ``h_s`` and context outputs, computed at the anchors (``ctx_fx=None``: context zero) or
        at the non-anchors (``ctx_fx``: the context there, ``[B, M, P]`` as
        :class:`_ExactCheckerboardContext` returns it); the other positions are left at 0."""
        b, c, h, w = hyper_fx.shape
        anchors = ctx_fx is None
        sel = torch.from_numpy(np.flatnonzero(anchor_mask(h, w).numpy().ravel() == anchors))
        hyp = hyper_fx.reshape(b, c, h * w)[:, :, sel]
        ctx = torch.zeros_like(hyp[:, : self.M]) if anchors else ctx_fx
        a = torch.cat([hyp, ctx], dim=1)[..., None]
        for op in self.coding_tables()["ep"]:
            a = op(a)
        out = torch.zeros_like(hyper_fx).reshape(b, c, h * w)
        out[:, :, sel] = hyp + a[..., 0]
        out = out.reshape(b, c, h, w).numpy()
        m = self.M
        return scale_indexes(out[:, :m], ACT_FRAC_BITS), quantize_means(out[:, m:], ACT_FRAC_BITS)

    def _context_fixed(self, y64: np.ndarray) -> torch.Tensor:
        """Exact context output (``ACT_FRAC_BITS`` fixed point) at the non-anchors,
        ``[B, M, P]`` float64 integers, from ``y^`` in 1/64 units (only anchors are read)."""
        return self.coding_tables()["context"](torch.from_numpy(y64).to(torch.float64))

    def _anchor_params(self, hyper_fx: torch.Tensor):
        """First pass: the anchors' exact (level index, mean in 1/64 units), context zero."""
        return self._fixed_params(hyper_fx, None)

    def _all_params(self, hyper_fx: torch.Tensor, y64: np.ndarray, idx_a, mean_a):
        """Second pass: (level index, mean in 1/64 units) of every element, int64
        ``[B, M, h, w]``: the anchors' from the first pass, the non-anchors' from the context
        of the anchors' ``y^`` (``y64``: ``y^`` in 1/64 units; only its anchors are read)."""
        is_a = anchor_mask(*hyper_fx.shape[-2:], dtype=torch.bool).numpy()
        idx_n, mean_n = self._fixed_params(hyper_fx, self._context_fixed(y64))
        return np.where(is_a, idx_a, idx_n), np.where(is_a, mean_a, mean_n)

    def latent_params(self, z_sym: np.ndarray, y_hat: torch.Tensor):
        hyper_fx = exact_forward(self.coding_tables()["h_s"], torch.from_numpy(z_sym))
        y64 = np.ldexp(y_hat.detach().cpu().double().numpy(), MEAN_STEP_BITS)
        return self._all_params(hyper_fx, y64, *self._anchor_params(hyper_fx))

    @staticmethod
    def _positions(h: int, w: int, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices into ``[m, h, w]`` of the anchors and of the non-anchors."""
        a = np.broadcast_to(anchor_mask(h, w).numpy()[0].astype(bool), (m, h, w)).ravel()
        return np.flatnonzero(a), np.flatnonzero(~a)

    def _compress(self, x: torch.Tensor):
        tables = self.coding_tables()
        y = self._gain_y(self.g_a(x))
        z = self.h_a(y)
        z_sym = _to_int_array(z)
        hyper_fx = exact_forward(tables["h_s"], torch.from_numpy(z_sym))
        b, m, h, w = y.shape
        y64 = y.double().cpu().numpy() * 2.0**MEAN_STEP_BITS  # y in 1/64 units (float)
        idx_a, mean_a = self._anchor_params(hyper_fx)
        k_a = np.floor((y64 - mean_a) * 2.0**-MEAN_STEP_BITS + 0.5)
        yhat_a = np.ldexp(k_a, MEAN_STEP_BITS) + mean_a
        idx, mean64 = self._all_params(hyper_fx, yhat_a, idx_a, mean_a)
        k = np.floor((y64 - mean64) * 2.0**-MEAN_STEP_BITS + 0.5).astype(np.int64)
        pos_a, pos_n = self._positions(h, w, m)
        y_strings, z_strings = [], []
        for i in range(b):
            enc = SymbolEncoder()
            self._encode_factorized(enc, z_sym[i], tables["z"])
            z_strings.append(enc.finish())
            enc = SymbolEncoder()
            kf, idf = k[i].ravel(), idx[i].ravel()
            self._encode_grouped(enc, kf, idf, pos_a)
            self._encode_grouped(enc, kf, idf, pos_n)
            y_strings.append(enc.finish())
        y_hat = torch.from_numpy(k + dequantize_means(mean64)).to(torch.float32).to(y.device)
        return [y_strings, z_strings], tuple(z.shape[-2:]), y_hat

    @torch.no_grad()
    def decompress_latents(self, strings, shape) -> torch.Tensor:
        y_strings, z_strings = strings
        z_sym = self._decode_z(z_strings, *shape)
        hyper_fx = exact_forward(self.coding_tables()["h_s"], torch.from_numpy(z_sym))
        b, m = hyper_fx.shape[0], self.M
        yh, yw = hyper_fx.shape[-2:]
        pos_a, pos_n = self._positions(yh, yw, m)
        idx_a, mean_a = self._anchor_params(hyper_fx)
        decs = [SymbolDecoder(data) for data in y_strings]
        k = np.zeros((b, m, yh, yw), dtype=np.int64)
        for i, dec in enumerate(decs):
            self._decode_grouped(dec, k[i].reshape(-1), idx_a[i].ravel(), pos_a)
        yhat_a = np.ldexp(k.astype(np.float64), MEAN_STEP_BITS) + mean_a
        idx, mean64 = self._all_params(hyper_fx, yhat_a, idx_a, mean_a)
        for i, dec in enumerate(decs):
            self._decode_grouped(dec, k[i].reshape(-1), idx[i].ravel(), pos_n)
            dec.finish()
        y_hat = k + dequantize_means(mean64)
        return torch.from_numpy(y_hat).to(torch.float32).to(self._device)
