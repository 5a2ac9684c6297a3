"""The four learned image codecs: factorized prior, scale hyperprior, mean-scale hyperprior and
the checkerboard context model. Each is a composition of the shared base
(:class:`~vaecodec.models.codec_base.CodecModel`: transforms, gains, coding caches) with priors
that own their coding face (:mod:`vaecodec.priors`); a model's ``_compress`` /
``decompress_latents`` only say which latent is coded with which prior, in which order.

- ``factorized``  Ballé, Laparra & Simoncelli 2017 / Ballé et al. 2018 ("bmshj2018-factorized")
- ``hyperprior``  Ballé, Minnen, Singh, Hwang & Johnston 2018, "Variational image compression
  with a scale hyperprior" ("bmshj2018-hyperprior")
- ``mean-scale``  Minnen, Ballé & Toderici 2018, "Joint autoregressive and hierarchical priors
  for learned image compression", the mean-scale hyperprior without the context model
- ``checkerboard`` He et al. 2021, the mean-scale hyperprior with a checkerboard context model

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
any machine, thread count or device: the integer tables come from machine-independent float64
(:mod:`vaecodec.coding.detmath`); ``h_s`` (and the checkerboard context) run in exact integer
arithmetic (:mod:`vaecodec.models.exact`); their outputs map to a scale-table level and a mean
on the 1/64 grid by integer comparison (:mod:`vaecodec.priors.gaussian`), and the decoder
reconstructs ``y^ = k + mu_q`` with the same quantised mean the encoder used.

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

Why one module of this size: the four models are one chain of subclasses (each adds one idea to
the previous), best read top to bottom.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vaecodec.coding.entropy import SymbolDecoder, SymbolEncoder
from vaecodec.errors import FormatError
from vaecodec.models.codec_base import MAX_CHANNELS, MAX_LEVELS, CodecModel, same_lmbda
from vaecodec.models.exact import (
    ACT_FRAC_BITS,
    ExactCheckerboardContext,
    exact_forward,
    exact_layers,
)
from vaecodec.models.registry import register_model
from vaecodec.models.transforms import conv, crop_image, deconv, pad_image
from vaecodec.nn.checkerboard import CheckerboardConv2d, anchor_mask
from vaecodec.priors import (
    MEAN_STEP_BITS,
    GaussianConditional,
    decode_factorized,
    decode_grouped,
    dequantize_means,
    encode_factorized,
    encode_grouped,
    gaussian_pmf_table,
    quantize_means,
    quantize_noise,
    scale_indexes,
)

__all__ = [
    "EP_SLOPE",
    "MAX_CHANNELS",
    "MAX_LEVELS",
    "CheckerboardMeanScale",
    "CodecModel",
    "FactorizedPrior",
    "MeanScaleHyperprior",
    "ScaleHyperprior",
    "crop_image",
    "pad_image",
    "same_lmbda",
]
"""``CodecModel``, ``MAX_*``, ``same_lmbda``, ``pad_image`` and ``crop_image`` are defined in
:mod:`~vaecodec.models.codec_base` / :mod:`~vaecodec.models.transforms` and named here too,
since a codec's users (trainer, zoo) meet them together with the models."""


@register_model("factorized")
class FactorizedPrior(CodecModel):
    """Factorized-prior codec (Ballé et al. 2018, "bmshj2018-factorized"): ``y`` is coded
    with a deep factorized density. Config: ``N`` (default 128), ``M`` (default 192)."""

    multiple = 16
    streams = 1

    def __init__(self, N: int = 128, M: int = 192, ste: bool = False, levels: int = 0,
                 **options) -> None:  # fmt: skip
        super().__init__(N, M, ste, levels, **options)
        if self.hyper_slope:
            raise ValueError("hyper_slope: the factorized model has no h_a / h_s")
        self.entropy_bottleneck = self._density(self.M)

    def forward(self, x: torch.Tensor, level=None) -> dict:
        """``x [B, 3, H, W]`` -> ``{"x_hat", "likelihoods": {"y"}}``; ``level``: int or
        LongTensor ``[B]`` for a variable-rate model (default :attr:`level`)."""
        y = self._gain_y(self._analysis(x), level)
        y_tilde, y_lk = self.entropy_bottleneck(y)
        x_hat = self._synthesis(self._ungain_y(self._decoder_input(y, y_tilde), level))
        return {"x_hat": x_hat, "likelihoods": {"y": y_lk}}

    def _build_coding(self) -> dict:
        return {"y": self.entropy_bottleneck.pmf_table()}

    def relaxed(self, y: torch.Tensor, z: torch.Tensor | None, quantize) -> dict:
        """See :meth:`CodecModel.relaxed` (``z`` is unused: this model has none)."""
        y_tilde = quantize(y, self._density_offsets())
        return self._relaxed_result(y_tilde, {"y": self.entropy_bottleneck.likelihood(y_tilde)})

    def _code(self, y: torch.Tensor, z: torch.Tensor | None):
        tables = self.coding_tables()
        sym = self.entropy_bottleneck.symbols(y)
        strings = []
        for b in range(sym.shape[0]):
            enc = SymbolEncoder()
            encode_factorized(enc, sym[b], tables["y"])
            strings.append(enc.finish())
        y_hat = self.entropy_bottleneck.dequantize(sym).to(y.device)
        return [strings], tuple(y.shape[-2:]), y_hat

    @torch.no_grad()
    def decompress_latents(self, strings, shape) -> torch.Tensor:
        tables = self.coding_tables()
        h, w = shape
        out = []
        for data in strings[0]:
            dec = SymbolDecoder(data)
            out.append(decode_factorized(dec, tables["y"], self.M, h, w))
            dec.finish()
        return self.entropy_bottleneck.dequantize(np.stack(out)).to(self._device)


@register_model("hyperprior")
class ScaleHyperprior(CodecModel):
    """Scale-hyperprior codec (Ballé et al. 2018, "bmshj2018-hyperprior").

    ``z = h_a(|y|)`` is coded with a deep factorized density; ``sigma = h_s(z^)`` gives a
    zero-mean Gaussian conditional for ``y``. Config: ``N`` (128), ``M`` (192).
    """

    def __init__(self, N: int = 128, M: int = 192, ste: bool = False, levels: int = 0,
                 **options) -> None:  # fmt: skip
        super().__init__(N, M, ste, levels, **options)
        self.h_a = self._hyper_analysis()
        self.h_s = self._hyper_synthesis()
        self.entropy_bottleneck = self._density(self.N)
        self.gaussian_conditional = GaussianConditional()

    def _hyper_analysis(self) -> nn.Sequential:
        N, M = self.N, self.M
        return nn.Sequential(conv(M, N, 3, 1), self._act(), conv(N, N), self._act(), conv(N, N))

    def _hyper_synthesis(self) -> nn.Sequential:
        N, M = self.N, self.M
        return nn.Sequential(
            deconv(N, N), self._act(), deconv(N, N), self._act(), conv(N, M, 3, 1), nn.ReLU()
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
            "h_s": exact_layers(self.h_s, self._z_frac_bits()),
        }

    def _z_frac_bits(self) -> int:
        """Fractional bits of ``h_s``'s exact input: 0 (``z^`` = its integer symbols), or
        ``ACT_FRAC_BITS`` when ``z^`` = symbols + the density's offsets."""
        return ACT_FRAC_BITS if self.density_offsets else 0

    def _hyper_fixed(self, z_sym: np.ndarray) -> torch.Tensor:
        """Exact ``h_s(z^)`` (float64 integers scaled by ``2**ACT_FRAC_BITS``) from the symbols
        of ``z^``, int64 ``[B, N, h, w]``."""
        z = torch.from_numpy(z_sym)
        if self.density_offsets:  # z^ = k + offset, the offset on the 2**-16 grid (exact)
            off = torch.from_numpy(self.entropy_bottleneck.offsets_fixed())
            z = z.to(torch.float64) * 2.0**ACT_FRAC_BITS + off.to(torch.float64)[:, None, None]
        return exact_forward(self.coding_tables()["h_s"], z)

    def _coding_params(self, z_sym: np.ndarray, fine: bool = False):
        """Exact (level index, mean in 1/64 units) for ``z_sym [B, N, h, w]`` int64; with
        ``fine``, also the means at ``h_s``'s full precision (float64, ``2**-16`` grid; None
        without means)."""
        out = self._hyper_fixed(z_sym)
        scale_fx, mean_fx = self._split_fixed(out)
        idx = scale_indexes(scale_fx.numpy(), ACT_FRAC_BITS)
        if mean_fx is None:
            res = (idx, np.zeros_like(idx))
        else:
            res = (idx, quantize_means(mean_fx.numpy(), ACT_FRAC_BITS))
        if not fine:
            return res
        return (*res, None if mean_fx is None else np.ldexp(mean_fx.numpy(), -ACT_FRAC_BITS))

    def latent_params(self, z_sym: np.ndarray, y_hat: torch.Tensor):
        """Exact coding parameters of every element of ``y``: (scale level, mean in 1/64
        units), int64 ``[B, M, h, w]`` each, given ``z``'s symbols and the decoded ``y^``
        (which only models with a context read). For checks and analysis tools."""
        return self._coding_params(z_sym)

    @torch.no_grad()
    def hyper_symbols(self, strings, shape) -> np.ndarray:
        if len(strings) != self.streams:
            raise FormatError(
                f"{len(strings)} coded streams given, this model codes {self.streams}"
            )
        return self._decode_z(strings[1], *shape)

    def _decode_z(self, z_strings, h: int, w: int) -> np.ndarray:
        """The symbols of ``z^``, int64 ``[B, N, h, w]``, from its strings."""
        table = self.coding_tables()["z"]
        out = []
        for s in z_strings:
            dec = SymbolDecoder(s)
            out.append(decode_factorized(dec, table, self.N, h, w))
            dec.finish()
        return np.stack(out)

    def hyper_analysis(self, y: torch.Tensor) -> torch.Tensor:
        """``z = h_a(y)`` of gained latents ``y [B, M, h, w]`` (the scale hyperprior reads
        ``|y|``), ``[B, N, h/4, w/4]``."""
        return self.h_a(self._hyper_input(y))

    def relaxed(self, y: torch.Tensor, z: torch.Tensor | None, quantize) -> dict:
        """See :meth:`CodecModel.relaxed`."""
        z_tilde = quantize(z, self._density_offsets())
        y_tilde, scales, means = self._relaxed_y(y, z_tilde, quantize)
        return self._relaxed_result(y_tilde, {
            "y": self.gaussian_conditional.likelihood(y_tilde, scales, means),
            "z": self.entropy_bottleneck.likelihood(z_tilde)})  # fmt: skip

    def _relaxed_y(self, y: torch.Tensor, z_tilde: torch.Tensor, quantize):
        """``(y~, scales, means)`` of :meth:`relaxed`, given ``z~``."""
        scales, means = self._params(z_tilde)
        return quantize(y, means), scales, means

    def _code(self, y: torch.Tensor, z: torch.Tensor | None):
        tables = self.coding_tables()
        z = self.hyper_analysis(y) if z is None else z
        z_sym = self.entropy_bottleneck.symbols(z)
        idx, mean64, fine = self._coding_params(z_sym, fine=True)
        mean_q = torch.from_numpy(dequantize_means(mean64))
        center = torch.from_numpy(fine) if self.fine_mean_rounding else mean_q
        k = torch.round(y.double().cpu() - center).to(torch.int64).numpy()
        y_strings, z_strings = [], []
        for b in range(y.shape[0]):
            enc = SymbolEncoder()
            encode_factorized(enc, z_sym[b], tables["z"])
            z_strings.append(enc.finish())
            enc = SymbolEncoder()
            encode_grouped(enc, self.coding_tables()["y"], k[b].ravel(), idx[b].ravel())
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
            decode_grouped(dec, self.coding_tables()["y"], k[b].reshape(-1), idx[b].ravel())
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
            deconv(N, M), self._act(), deconv(M, M * 3 // 2), self._act(),
            conv(M * 3 // 2, 2 * M, 3, 1),
        )

    fine_rounding_applies = True

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

    fine_rounding_applies = False
    warm_start_from = ("mean-scale",)
    """Models whose weights ``--init-from`` may start this one from (its new modules fresh)."""

    def __init__(self, N: int = 128, M: int = 192, ste: bool = False, levels: int = 0,
                 **options) -> None:  # fmt: skip
        super().__init__(N, M, ste, levels, **options)
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

    def two_pass(self, y: torch.Tensor, hyper: torch.Tensor, quantize=None):
        """The float (training / estimation / refinement) face of the two coding passes.

        Args:
            y: ``[B, M, h, w]`` latents (gained).
            hyper: ``h_s(z~)``, ``[B, 2M, h, w]`` (scales, then means).
            quantize: ``(v, offset) -> v~`` used in both passes (:meth:`relaxed`: per-image
                refinement's relaxed rounding; the anchors keep the sample the context read);
                default: noise while training, rounding around the means in eval.

        Returns:
            ``(y_tilde, scales, means)``, each ``[B, M, h, w]``.
        """
        m, (h, w) = self.M, y.shape[-2:]
        mask = anchor_mask(h, w, y.device, y.dtype)
        params_a = self._ep(hyper, torch.zeros_like(y))
        if quantize is not None:
            y_anchor = quantize(y, params_a[:, m:])
        elif self.training:
            y_tilde = quantize_noise(y, True)
            y_anchor = y_tilde
        else:
            y_anchor = quantize_noise(y, False, params_a[:, m:])
        params_n = self._ep(hyper, self.context(y_anchor * mask))
        params = torch.where(mask.bool(), params_a, params_n)
        scales, means = params[:, :m], params[:, m:]
        if quantize is not None:
            y_tilde = torch.where(mask.bool(), y_anchor, quantize(y, means))
        elif not self.training:
            y_tilde = quantize_noise(y, False, means)
        return y_tilde, scales, means

    def _build_coding(self) -> dict:
        tables = super()._build_coding()
        tables["context"] = ExactCheckerboardContext(self.context, MEAN_STEP_BITS)
        tables["ep"] = exact_layers(self.entropy_parameters, ACT_FRAC_BITS)
        return tables

    def _fixed_params(self, hyper_fx: torch.Tensor, ctx_fx: torch.Tensor | None):
        """Exact (level index, mean in 1/64 units), int64 ``[B, M, h, w]``, from fixed-point
        ``h_s`` and context outputs, computed at the anchors (``ctx_fx=None``: context zero) or
        at the non-anchors (``ctx_fx``: the context there, ``[B, M, P]`` as
        :class:`ExactCheckerboardContext` returns it); the other positions are left at 0."""
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
        hyper_fx = self._hyper_fixed(z_sym)
        y64 = np.ldexp(y_hat.detach().cpu().double().numpy(), MEAN_STEP_BITS)
        return self._all_params(hyper_fx, y64, *self._anchor_params(hyper_fx))

    @staticmethod
    def _positions(h: int, w: int, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices into ``[m, h, w]`` of the anchors and of the non-anchors."""
        a = np.broadcast_to(anchor_mask(h, w).numpy()[0].astype(bool), (m, h, w)).ravel()
        return np.flatnonzero(a), np.flatnonzero(~a)

    def _relaxed_y(self, y: torch.Tensor, z_tilde: torch.Tensor, quantize):
        """:meth:`relaxed`'s ``y``: the anchors quantised first and the context reading them,
        as the coder's two passes do (:meth:`two_pass`)."""
        return self.two_pass(y, self.h_s(z_tilde), quantize)

    def _code(self, y: torch.Tensor, z: torch.Tensor | None):
        tables = self.coding_tables()
        z = self.hyper_analysis(y) if z is None else z
        z_sym = self.entropy_bottleneck.symbols(z)
        hyper_fx = self._hyper_fixed(z_sym)
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
            encode_factorized(enc, z_sym[i], tables["z"])
            z_strings.append(enc.finish())
            enc = SymbolEncoder()
            kf, idf = k[i].ravel(), idx[i].ravel()
            encode_grouped(enc, self.coding_tables()["y"], kf, idf, pos_a)
            encode_grouped(enc, self.coding_tables()["y"], kf, idf, pos_n)
            y_strings.append(enc.finish())
        y_hat = torch.from_numpy(k + dequantize_means(mean64)).to(torch.float32).to(y.device)
        return [y_strings, z_strings], tuple(z.shape[-2:]), y_hat

    @torch.no_grad()
    def decompress_latents(self, strings, shape) -> torch.Tensor:
        y_strings, z_strings = strings
        z_sym = self._decode_z(z_strings, *shape)
        hyper_fx = self._hyper_fixed(z_sym)
        b, m = hyper_fx.shape[0], self.M
        yh, yw = hyper_fx.shape[-2:]
        pos_a, pos_n = self._positions(yh, yw, m)
        idx_a, mean_a = self._anchor_params(hyper_fx)
        decs = [SymbolDecoder(data) for data in y_strings]
        k = np.zeros((b, m, yh, yw), dtype=np.int64)
        for i, dec in enumerate(decs):
            decode_grouped(dec, self.coding_tables()["y"], k[i].reshape(-1), idx_a[i].ravel(), pos_a)
        yhat_a = np.ldexp(k.astype(np.float64), MEAN_STEP_BITS) + mean_a
        idx, mean64 = self._all_params(hyper_fx, yhat_a, idx_a, mean_a)
        for i, dec in enumerate(decs):
            decode_grouped(dec, self.coding_tables()["y"], k[i].reshape(-1), idx[i].ravel(), pos_n)
            dec.finish()
        y_hat = k + dequantize_means(mean64)
        return torch.from_numpy(y_hat).to(torch.float32).to(self._device)
