"""The base of the learned image codecs: :class:`CodecModel`.

What every codec model shares: its config (``N``, ``M``, ``ste``, ``levels``) and the limits a
config.json may ask for, the transforms ``g_a`` / ``g_s`` (:mod:`vaecodec.models.transforms`),
the variable-rate gains (Cui et al. 2021: ``y = g_a(x) * gain[l]``, ``x^ = g_s(y^ *
inv_gain[l])``), the cache of coding tables derived from the weights, and the two faces a
codec has: ``forward(x)`` -> ``{"x_hat", "likelihoods"}`` for training (rate in bits =
:meth:`CodecModel.estimate_bits`), and ``compress(x)`` / ``decompress(strings, shape)`` for
coding (strings only: the ``.vcz`` header is :mod:`vaecodec.compression.lossy`'s). The four
models are in :mod:`vaecodec.models.codecs`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vaecodec.errors import FormatError
from vaecodec.models.transforms import (
    analysis_transform,
    crop_image,
    pad_image,
    synthesis_transform,
)
from vaecodec.priors.factorized import FactorizedDensity, quantize_noise

__all__ = ["MAX_CHANNELS", "MAX_LEVELS", "CodecModel", "rate_bits", "rd_value", "same_lmbda",
           "to_symbols"]  # fmt: skip

def same_lmbda(a: float, b: float) -> bool:
    """Whether two lambdas name the same rate level (relative difference below 1e-9: the same
    decimal read twice, from a command line or a JSON record, gives the same float)."""
    return abs(float(a) - float(b)) <= 1e-9 * max(abs(float(a)), abs(float(b)))


DENSITY_FILTERS = (3, 3, 3)
"""Hidden widths of the factorized density's per-channel network (Ballé et al. 2018)."""
_OPTIONS = ("density_filters", "density_offsets", "hyper_slope", "fine_mean_rounding")

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
        levels: rate levels of a variable-rate model (0: one fixed rate).
        density_filters: hidden widths of the factorized density's per-channel network
            (``(3, 3, 3)``; CompressAI's ``EntropyBottleneck`` uses ``(3, 3, 3, 3)``).
        density_offsets: quantise the factorized latent around a per-channel offset,
            ``round(v - offset) + offset`` (CompressAI's medians), instead of ``round(v)``.
        hyper_slope: negative slope of the activations of ``h_a`` / ``h_s`` (0: ReLU;
            CompressAI's ``mbt2018-mean`` uses LeakyReLU 0.01).
        fine_mean_rounding: (mean-scale) the encoder picks ``k = round(y - mu)`` with ``h_s``'s
            full-precision mean (``2**-16``), as CompressAI rounds with its float mean, instead
            of with the mean on the coded 1/64 grid; the decoder is the same (``y^ = k + mu_q``).

    The last four exist so that CompressAI's models can be represented exactly
    (:mod:`vaecodec.zoo.compressai`); their defaults are this project's models.
    """

    kind = "codec"
    fine_rounding_applies = False
    """Whether the ``fine_mean_rounding`` option means something for this model."""
    multiple = 64
    """Images are padded to multiples of this many pixels for coding."""
    streams = 2
    """Number of entropy-coded strings per image (y, then z)."""

    def __init__(self, N: int = 128, M: int = 192, ste: bool = False, levels: int = 0,
                 density_filters=DENSITY_FILTERS, density_offsets: bool = False,
                 hyper_slope: float = 0.0, fine_mean_rounding: bool = False) -> None:  # fmt: skip
        super().__init__()
        if int(N) < 1 or int(M) < 1 or int(levels) < 0:
            raise ValueError(f"N, M must be positive and levels >= 0, got {N}, {M}, {levels}")
        self.N, self.M, self.ste, self.levels = int(N), int(M), bool(ste), int(levels)
        self.density_filters = tuple(int(f) for f in density_filters)
        self.density_offsets = bool(density_offsets)
        self.hyper_slope = float(hyper_slope)
        self.fine_mean_rounding = bool(fine_mean_rounding)
        if self.fine_mean_rounding and not self.fine_rounding_applies:
            raise ValueError(f"fine_mean_rounding: a {type(self).__name__} does not round "
                             "around a hyperprior mean")  # fmt: skip
        if not 0.0 <= self.hyper_slope < 1.0:
            raise ValueError(f"hyper_slope must be in [0, 1), got {hyper_slope}")
        self.g_a = analysis_transform(self.N, self.M)
        self.g_s = synthesis_transform(self.N, self.M)
        if self.levels:
            self.log_gain = nn.Parameter(torch.zeros(self.levels, self.M))
            self.log_inv_gain = nn.Parameter(torch.zeros(self.levels, self.M))
        self.level = self.levels - 1 if self.levels else 0
        self._coding: dict | None = None
        self.register_load_state_dict_post_hook(lambda module, keys: module.reset_coding())

    def _density(self, channels: int) -> FactorizedDensity:
        """The factorized density of this model's config over ``channels`` channels."""
        return FactorizedDensity(channels, self.density_filters, offsets=self.density_offsets)

    def _act(self) -> nn.Module:
        """An activation of ``h_a`` / ``h_s``: ReLU, or LeakyReLU(``hyper_slope``)."""
        return nn.LeakyReLU(self.hyper_slope) if self.hyper_slope else nn.ReLU()

    @classmethod
    def from_config(cls, config: dict) -> CodecModel:
        """Build from ``{"N": int, "M": int, "ste": bool, "levels": int}`` (``levels`` optional,
        0 = one fixed rate), and optionally ``"density_filters"`` (list of 1-8 integers from 1
        to 64), ``"density_offsets"`` (bool), ``"hyper_slope"`` (number in [0, 1)),
        ``"fine_mean_rounding"`` (bool); unknown keys are refused."""
        config = dict(config)
        unknown = set(config) - {"N", "M", "ste", "levels", *_OPTIONS}
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        bounds = {"N": (1, MAX_CHANNELS), "M": (1, MAX_CHANNELS), "levels": (0, MAX_LEVELS)}
        for key, (lo, hi) in bounds.items():
            v = config.get(key, lo)
            if type(v) is not int or not lo <= v <= hi:  # not bool, float or str
                raise ValueError(f"{key} must be an integer from {lo} to {hi}, got {v!r}")
        for key in ("ste", "density_offsets", "fine_mean_rounding"):
            if type(config.get(key, False)) is not bool:
                raise ValueError(f"{key} must be true or false, got {config[key]!r}")
        f = config.get("density_filters", list(DENSITY_FILTERS))
        if (not isinstance(f, list) or not 1 <= len(f) <= 8
                or any(type(v) is not int or not 1 <= v <= 64 for v in f)):  # fmt: skip
            raise ValueError(f"density_filters must be 1-8 integers from 1 to 64, got {f!r}")
        slope = config.get("hyper_slope", 0.0)
        if type(slope) not in (int, float) or not 0 <= slope < 1:
            raise ValueError(f"hyper_slope must be a number in [0, 1), got {slope!r}")
        return cls(**config)

    def config_dict(self) -> dict:
        """JSON-serialisable config; ``from_config(config_dict())`` rebuilds the model (the
        options at their defaults are left out, so older run directories read the same)."""
        out = {"N": self.N, "M": self.M, "ste": self.ste}
        if self.levels:
            out["levels"] = self.levels
        if self.density_filters != DENSITY_FILTERS:
            out["density_filters"] = list(self.density_filters)
        if self.density_offsets:
            out["density_offsets"] = True
        if self.hyper_slope:
            out["hyper_slope"] = self.hyper_slope
        if self.fine_mean_rounding:
            out["fine_mean_rounding"] = True
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
        """Rate in bits per image ``[B]`` from ``forward``'s likelihoods (:func:`rate_bits`)."""
        return rate_bits(out["likelihoods"])

    @torch.no_grad()
    def compress(self, x: torch.Tensor) -> dict:
        """Entropy-code images.

        Args:
            x: ``[B, 3, H, W]`` in [0, 1], any ``H, W`` (padded by edge replication to
                multiples of :attr:`multiple`; :meth:`decompress` crops back).

        Returns:
            ``{"strings": [[bytes] * B, ...]`` (one list per
            latent, y first), ``"shape"``: (h, w) of the coarsest latent, ``"image_size"``:
            (H, W), ``"y_hat"``: ``[B, M, ceil(H/64)*4, ...]`` the latents the decoder will
            reconstruct}. :func:`vaecodec.compression.lossy.encode_image` writes them as a ``.vcz``
            file (header + strings).

        Raises:
            ValueError: ``x`` is not ``[B, 3, H, W]``.
        """
        x, size = self._prepare(x)
        return self.compress_analyzed(self.g_a(x), size)

    @torch.no_grad()
    def compress_analyzed(self, y: torch.Tensor, image_size: tuple[int, int]) -> dict:
        """Entropy-code ``y = g_a(x)`` computed by the caller (before the gain): what
        :meth:`compress` does after its ``g_a``. For an image too big for one ``g_a`` call,
        :func:`vaecodec.nn.tiling.analyze_tiled` computes ``y`` in strips.

        Args:
            y: ``[B, M, h, w]`` float32, ``h, w`` = the padded image's size / 16.
            image_size: ``(H, W)`` of the image before padding.

        Returns:
            As :meth:`compress`.
        """
        return self.compress_latents(self._gain_y(y.to(self._device, torch.float32)), None,
                                     image_size)  # fmt: skip

    @torch.no_grad()
    def compress_latents(self, y: torch.Tensor, z: torch.Tensor | None,
                         image_size: tuple[int, int]) -> dict:
        """Entropy-code chosen latents: what :meth:`compress_analyzed` does after the gain.
        The encoder may pick ``y`` and ``z`` however it likes (per-image refinement,
        :mod:`vaecodec.compression.refine`); the symbols are computed exactly as always
        (``z^ = round(z)``, the exact integer ``h_s`` and context give the means,
        ``k = round(y - mu)``), so any decoder of this model reads the result.

        Args:
            y: ``[B, M, h, w]`` float32, *gained* latents (``g_a(x) * gain[level]``).
            z: ``[B, N, h/4, w/4]`` float32 hyper-latents, or None for ``h_a(y)`` (ignored by
                the factorized model, which has no ``z``).
            image_size: ``(H, W)`` of the image before padding.

        Returns:
            As :meth:`compress`.
        """
        y = y.detach().to(self._device, torch.float32)
        z = None if z is None else z.detach().to(self._device, torch.float32)
        strings, shape, y_hat = self._code(y, z)
        return {"strings": strings, "shape": shape, "image_size": tuple(image_size),
                "y_hat": y_hat}  # fmt: skip

    def _code(self, y: torch.Tensor, z: torch.Tensor | None):
        """``(strings, shape, y_hat)`` of gained latents ``y`` and hyper-latents ``z``
        (None: ``h_a(y)``)."""
        raise NotImplementedError

    def _density_offsets(self) -> torch.Tensor | None:
        """``[1, C, 1, 1]`` offsets the factorized density rounds around (CompressAI's
        medians, :attr:`density_offsets`), or None: for :meth:`relaxed`'s quantiser."""
        off = getattr(self.entropy_bottleneck, "offsets", None)
        return None if off is None else off.detach()[None, :, None, None]

    def hyper_analysis(self, y: torch.Tensor) -> torch.Tensor | None:
        """``z = h_a(y)`` of gained latents ``y``; None for a model without hyper-latents."""
        return None

    def relaxed(self, y: torch.Tensor, z: torch.Tensor | None, quantize) -> dict:
        """The differentiable stand-in for coding ``(y, z)`` that per-image refinement
        minimises (Yang, Bamler & Mandt 2020, "Improving inference for neural image
        compression", NeurIPS): ``quantize(v, offset)`` replaces ``round(v - offset) + offset``
        (``offset`` None: ``round(v)``), e.g. by stochastic Gumbel annealing; everything else
        is the coder's order (``z~`` -> ``h_s`` -> means -> ``y~``; anchors before the
        context for the checkerboard model) in float32.

        Args:
            y: ``[B, M, h, w]`` gained latents; z: ``[B, N, h/4, w/4]`` (None for the
                factorized model).
            quantize: callable ``(v, offset) -> v~`` of the same shape.

        Returns:
            ``{"x_hat": [B, 3, 16h, 16w] (not clamped), "likelihoods": {"y", "z"}}`` as
            ``forward`` (rate in bits: :func:`rate_bits`).
        """
        raise NotImplementedError

    def _relaxed_result(self, y_tilde: torch.Tensor, likelihoods: dict) -> dict:
        """:meth:`relaxed`'s result: ``g_s`` of the ungained ``y~`` (channels-last, as
        :meth:`synthesize`, but with gradients and not clamped) and the ``likelihoods``."""
        x_hat = self.g_s(self._ungain_y(y_tilde).contiguous(memory_format=torch.channels_last))
        return {"x_hat": x_hat, "likelihoods": likelihoods}

    @torch.no_grad()
    def decompress_latents(self, strings, shape) -> torch.Tensor:
        """Decode ``y^ [B, M, h, w]`` (float32, on the model's device) from :meth:`compress`'s
        ``strings`` and ``shape``. Raises :class:`vaecodec.errors.FormatError` on corrupt data."""
        raise NotImplementedError

    @torch.no_grad()
    def hyper_symbols(self, strings, shape) -> np.ndarray | None:
        """The integer symbols of ``z^`` (int64 ``[B, N, h, w]``) decoded from
        :meth:`compress`'s ``strings`` and ``shape``, or None for a model without a
        hyper-latent (the factorized prior). For the ``.vcz`` symbols check.

        Raises:
            FormatError: corrupt data.
        """
        return None

    def ungain(self, y_hat: torch.Tensor, level=None) -> torch.Tensor:
        """What ``g_s`` decodes from ``y^``: ``y^ * inv_gain[level]`` (variable rate; default
        :attr:`level`), or ``y^`` itself for a fixed-rate model."""
        return self._ungain_y(y_hat, level)

    @torch.no_grad()
    def synthesize(self, y_in: torch.Tensor, image_size=None) -> torch.Tensor:
        """``x^ = g_s(y_in)`` clamped to [0, 1] and cropped to ``image_size`` ``(H, W)`` (default:
        not cropped); ``y_in`` is :meth:`ungain`'s output ``[B, M, h, w]``."""
        # channels-last: the convolutions and GDN run ~2x faster in it on CPU
        x_hat = self.g_s(y_in.contiguous(memory_format=torch.channels_last)).clamp_(0.0, 1.0)
        return x_hat if image_size is None else crop_image(x_hat, image_size)

    @torch.no_grad()
    def synthesis_input(self, strings, shape, level=None) -> torch.Tensor:
        """What ``g_s`` decodes: ``y^ * inv_gain[level]`` ``[B, M, h, w]`` from the strings
        (for a fixed-rate model, ``y^``). :meth:`decompress` is ``g_s`` of it; for an image too
        big for one ``g_s`` call, :func:`vaecodec.nn.tiling.synthesize_tiled` runs it in strips.

        Raises:
            FormatError: corrupt data, or not :attr:`streams` strings.
        """
        if len(strings) != self.streams:
            raise FormatError(
                f"{len(strings)} coded streams given, this model codes {self.streams}"
            )
        return self._ungain_y(self.decompress_latents(strings, shape), level)

    @torch.no_grad()
    def decompress(self, strings, shape=None, image_size=None, level=None) -> torch.Tensor:
        """Decode images.

        Args:
            strings: :meth:`compress`'s ``"strings"`` (a ``.vcz`` file's bytes are decoded by
                :func:`vaecodec.compression.lossy.decode_image`, which reads its header).
            shape: :meth:`compress`'s ``"shape"``.
            image_size: ``(H, W)`` to crop to (default: no cropping).
            level: rate level of a variable-rate model (default :attr:`level`, the one
                :meth:`compress` used).

        Returns:
            ``x^ [B, 3, H, W]`` in [0, 1] on the model's device.

        Raises:
            FormatError: corrupt data.
        """
        return self.synthesize(self.synthesis_input(strings, shape, level), image_size)

    @property
    def _device(self) -> torch.device:
        return next(self.parameters()).device


def rate_bits(likelihoods: dict) -> torch.Tensor:
    """The rate of a batch, one place for it: ``-sum(log2 p)`` over every latent's
    likelihoods (``forward``'s ``out["likelihoods"]``, each ``[B, ...]``), bits per image
    ``[B]``. Divide by ``H * W`` for bpp."""
    total = 0
    for lk in likelihoods.values():
        total = total + (-torch.log2(lk)).flatten(1).sum(1)
    return total


def rd_value(bpp, mse, lmbda):
    """The rate-distortion objective, one place for it (the trainer's loss, the encoder's
    refinement): ``lmbda * 255**2 * mse + bpp`` (MSE on [0, 1] images, so ``255**2 * mse`` is
    the 8-bit MSE; CompressAI's convention). Floats or tensors (broadcast)."""
    return lmbda * 255.0**2 * mse + bpp


def to_symbols(t: torch.Tensor) -> np.ndarray:
    """Round a latent tensor to integer symbols: int64 numpy array of the same shape."""
    return torch.round(t).to(torch.float64).cpu().numpy().astype(np.int64)
