"""Encoder effort: per-image refinement of the latents, the decoder untouched.

A learned codec's analysis transform ``g_a`` is *amortised*: one network guesses good latents
for every image at once, and the guess is not the best the decoder could use for a given
image (the "amortisation gap"). Spending encoder time on one image closes part of it: start
from ``y = g_a(x) * gain``, ``z = h_a(y)`` and minimise the codec's own rate-distortion
objective over ``y`` and ``z`` for that image alone,

    L(y, z) = R(y~, z~) + lmbda * 255^2 * MSE(g_s(y~ * inv_gain), x),

where ``y~``, ``z~`` are a differentiable stand-in for rounding. We use **stochastic Gumbel
annealing** (SGA; Yang, Bamler & Mandt, "Improving Inference for Neural Image Compression",
NeurIPS 2020): each value ``v`` (``y - mu`` for the Gaussian conditionals, ``z`` itself) is
replaced by a sample between ``floor(v)`` and ``ceil(v)`` from a two-class Gumbel-softmax
whose logits are ``-atanh(distance) / tau``; the temperature ``tau`` anneals from 0.5 towards
0, so the stand-in turns into rounding by the end. Adam with the paper's learning rate 5e-3 at
its 2000 steps, larger for shorter budgets (:func:`sga_learning_rate`), and the paper's
temperature schedule ``tau(t) = min(0.5, 0.5 exp(-0.001 (t - 700)))`` stretched to the step
budget. The result is then coded exactly as an effort-0 file is (``z^ = round(z)``, the exact
integer ``h_s`` and context, ``k = round(y - mu)``; :meth:`CodecModel.compress_latents`): any
decoder of the model reads it, and nothing in the file says how it was made.

Efforts (:data:`EFFORT_STEPS`) are step budgets, like WebP's ``-m`` or JPEG XL's ``-e``: 0 is
the single pass; each higher effort takes more Adam steps. Deterministic: the Gumbel noise
comes from a generator seeded per image, so the same image, model, quality, effort and thread
count give the same bytes. Images that :mod:`vaecodec.nn.tiling` codes in strips (above 2**21
pixels) are refined window by window (:func:`windows`: 64 x 64 latents, 1024 x 1024 pixels,
each with a fixed halo of 8 latents around it whose pixels and bits do not count), so memory
stays bounded; the windows are refined one after the other, each seeing the ones before it
already refined.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from vaecodec.models.codec_base import CodecModel, rd_value
from vaecodec.nn import tiling

__all__ = ["EFFORT_STEPS", "MAX_EFFORT", "check_effort", "model_lmbda", "refine_latents",
           "sga_learning_rate", "sga_quantizer", "sga_temperature", "windows"]  # fmt: skip

EFFORT_STEPS = (0, 25, 100, 400, 1600)
"""Adam steps of each effort (index = effort). Effort 0 is the amortised single pass."""
MAX_EFFORT = len(EFFORT_STEPS) - 1
EFFORT_HELP = (
    "encoder effort 0-4: 0 is one pass; higher efforts refine the latents for each image "
    "(stochastic Gumbel annealing: 25, 100, 400, 1600 Adam steps), so the same decoder gets "
    "fewer bytes and/or a better image; the files decode like any other. Cost per 768x512 image "
    "on one CPU core (cb-mix11 qualities 1-5 / 6-11, measured on two x86 CPUs; BENCHMARKS.md "
    "'Encoder effort'): effort 0 <1 s, 1 ~10-15 / 30-45 s, 2 ~40-60 s / 2-3 min, "
    "3 ~2.5-4 / 7-12 min, 4 ~10-15 / 30-50 min"
)
"""``--effort``'s help (compress, bench-codec): the step budgets and their measured cost."""


def sga_learning_rate(steps: int) -> float:
    """Adam's step size on the latents for a budget of ``steps``: Yang et al.'s 5e-3 for their
    2000 steps, times ``(2000 / steps) ** 0.3`` (1.9e-2 at 25 steps, 1.2e-2 at 100, 5.3e-3 at
    1600). A short budget needs longer strides to get anywhere before the temperature has
    annealed: on Kodak images with cb-mix11 (BENCHMARKS.md, issue 23) 25 steps gained about
    twice as much RD cost at 2e-2 as at 5e-3, and 100 steps a quarter more at 1.5e-2;
    twice those rates gained less again."""
    return 5e-3 * (2000.0 / max(int(steps), 1)) ** 0.3


def check_effort(effort) -> int:
    """``effort`` as an int, or ValueError naming the valid range."""
    if type(effort) is bool or not isinstance(effort, int) or not 0 <= effort <= MAX_EFFORT:
        raise ValueError(f"effort must be an integer from 0 to {MAX_EFFORT}, got {effort!r}")
    return int(effort)


def model_lmbda(model: CodecModel) -> float:
    """The lambda of the rate level ``model`` codes at (``model.lmbdas``, one per level or one
    for a fixed-rate model, set by :func:`vaecodec.zoo.codecs.load_codec`).

    Raises:
        ValueError: the model does not know its lambdas (built in memory: set
            ``model.lmbdas = [...]``, the ``--lmbda`` values it was trained with).
    """
    lmbdas = getattr(model, "lmbdas", None)
    if not lmbdas:
        raise ValueError("encoder effort above 0 needs the lambda the model was trained with: "
                         "load it with load_codec, or set model.lmbdas = [...] (one per level)")
    return float(lmbdas[model.level if len(lmbdas) > 1 else 0])


def sga_temperature(step: int, steps: int) -> float:
    """Gumbel-softmax temperature at ``step`` of ``steps``: Yang et al.'s schedule for 2000
    steps, ``min(0.5, 0.5 exp(-0.001 (t - 700)))``, with ``t = 2000 step / steps``."""
    t = 2000.0 * step / max(steps, 1)
    return min(0.5, 0.5 * math.exp(-0.001 * (t - 700.0)))


def sga_quantizer(tau: float, generator: torch.Generator) -> Callable:
    """The SGA stand-in for ``round(v - offset) + offset`` at temperature ``tau``: a sample
    of ``floor(r) + b`` (``r = v - offset``, ``b`` in [0, 1] relaxed) from a Gumbel-softmax
    over the two neighbours with logits ``-atanh(|r - neighbour|) / tau`` and the same
    temperature in the Gumbel-softmax (Yang et al. 2020, eq. 5, as their ``sga.py``).
    Differentiable in ``v`` and ``offset``."""
    eps = 1e-5

    def quantize(v: torch.Tensor, offset: torch.Tensor | None) -> torch.Tensor:
        r = v if offset is None else v - offset
        lo = torch.floor(r).detach()
        d_lo = (r - lo).clamp(eps, 1.0 - eps)
        logits = torch.stack([-torch.atanh(d_lo), -torch.atanh(1.0 - d_lo)], dim=-1) / tau
        u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).clamp_(1e-10, 1.0)
        g = -torch.log(-torch.log(u)).to(logits.device)
        p = torch.softmax((logits + g) / tau, dim=-1)  # a Concrete sample at temperature tau
        r_tilde = lo + p[..., 1]
        return r_tilde if offset is None else r_tilde + offset

    return quantize


def _seed(x: torch.Tensor) -> int:
    """A seed from the pixels (same image -> same noise -> same bytes)."""
    q = (x.detach().flatten()[:: max(1, x.numel() // 4096)] * 255).round().to(torch.int64)
    return int((q * torch.arange(1, q.numel() + 1)).sum().item()) % (2**31 - 1)


WINDOW = 64
"""Interior side of a refinement window, in latents of ``y`` (1024 pixels)."""
HALO = 8
"""Latents of ``y`` (128 pixels) held fixed around a window's interior: what the window's
pixels and entropy parameters near its edge depend on, so that the edge of the window is not
mistaken for the edge of the image. A multiple of 4 (``z``'s grid)."""


def windows(h: int, w: int, single: bool):
    """Refinement windows over a ``h x w`` latent grid: tuples ``(outer, inner)`` of slices
    ``(r0, r1, c0, c1)`` in ``y``'s latents, ``inner`` inside ``outer`` by up to
    :data:`HALO` on each side, all multiples of 4 where not at the grid's edge."""
    if single:
        return [((0, h, 0, w), (0, h, 0, w))]
    out = []
    for r in range(0, h, WINDOW):
        for c in range(0, w, WINDOW):
            inner = (r, min(r + WINDOW, h), c, min(c + WINDOW, w))
            outer = (max(r - HALO, 0), min(r + WINDOW + HALO, h),
                     max(c - HALO, 0), min(c + WINDOW + HALO, w))  # fmt: skip
            out.append((outer, inner))
    return out


def refine_latents(model: CodecModel, x: torch.Tensor, steps: int, lmbda: float,
                   image_size: tuple[int, int] | None = None, *, y0: torch.Tensor | None = None,
                   progress: Callable[[int, int], None] | None = None):
    """Refine ``(y, z)`` for one padded image by SGA (module docstring).

    Args:
        model: a codec in eval mode, at the rate level to code at.
        x: ``[1, 3, H, W]`` in [0, 1], already padded to ``model.multiple``.
        steps: Adam steps per window (0: return the amortised latents).
        lmbda: the level's rate-distortion trade-off (``L = R + lmbda 255^2 MSE``, R in bits
            per pixel, as the trainer's loss).
        image_size: ``(H, W)`` before padding: only those pixels count in the distortion
            (default: all).
        y0: ``g_a(x)`` before the gain, if the caller has it (the tiling path computes it in
            strips); default: computed here.
        progress: ``progress(done, total)`` after each step: the steps done so far and the
            total, ``steps`` times the number of windows (a progress bar).

    Returns:
        ``(y, z)``: gained latents ``[1, M, H/16, W/16]`` and hyper-latents
        ``[1, N, H/64, W/64]`` (None for the factorized model), detached float32, for
        :meth:`CodecModel.compress_latents`.
    """
    with torch.no_grad():
        y_all = model._gain_y(model.g_a(x) if y0 is None else y0.to(torch.float32))
        z_all = model.hyper_analysis(y_all)
    if steps <= 0:
        return y_all, z_all
    H, W = x.shape[-2:]
    real = torch.zeros(1, 1, H, W)
    rh, rw = image_size or (H, W)
    real[..., :rh, :rw] = 1.0
    params = list(model.parameters())
    grads = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)  # only the latents are optimised: no weight gradients
    seed, done = _seed(x), 0
    try:
        plan = windows(*y_all.shape[-2:], single=not tiling.uses_tiles(H, W, model.multiple))
        report = None if progress is None else (lambda n: progress(n, steps * len(plan)))
        for i, (outer, inner) in enumerate(plan):
            done = _refine_window(model, x, real, y_all, z_all, outer, inner, steps, lmbda,
                                  torch.Generator().manual_seed(seed + i), report, done)
    finally:
        for p, g in zip(params, grads):
            p.requires_grad_(g)
    return y_all, z_all


def _refine_window(model, x, real, y_all, z_all, outer, inner, steps, lmbda, gen, progress,
                   done) -> int:
    """SGA on one window: the interior's ``y`` (and ``z``) are optimised, the halo held; the
    loss counts the interior's bits and pixels. Writes the interior back into ``y_all`` /
    ``z_all`` in place; returns the steps done so far."""
    r0, r1, c0, c1 = outer
    ir0, ir1, ic0, ic1 = (inner[0] - r0, inner[1] - r0, inner[2] - c0, inner[3] - c0)
    y_fix = y_all[..., r0:r1, c0:c1]
    m_y = torch.zeros_like(y_fix[:, :1])
    m_y[..., ir0:ir1, ic0:ic1] = 1.0
    s = 16
    x_win = x[..., r0 * s : r1 * s, c0 * s : c1 * s]
    m_x = torch.zeros_like(x_win[:, :1])
    m_x[..., ir0 * s : ir1 * s, ic0 * s : ic1 * s] = 1.0
    m_x = m_x * real[..., r0 * s : r1 * s, c0 * s : c1 * s]
    y = y_fix.clone().requires_grad_(True)
    leaves = [y]
    if z_all is not None:
        z_fix = z_all[..., r0 // 4 : -(-r1 // 4), c0 // 4 : -(-c1 // 4)]
        m_z = torch.zeros_like(z_fix[:, :1])
        m_z[..., ir0 // 4 : -(-ir1 // 4), ic0 // 4 : -(-ic1 // 4)] = 1.0
        z = z_fix.clone().requires_grad_(True)
        leaves.append(z)
    opt = torch.optim.Adam(leaves, lr=sga_learning_rate(steps))
    n_px = float(m_x.sum())
    for step in range(steps):
        quantize = sga_quantizer(sga_temperature(step, steps), gen)
        with torch.enable_grad():
            y_in = m_y * y + (1 - m_y) * y_fix
            z_in = None if z_all is None else m_z * z + (1 - m_z) * z_fix
            out = model.relaxed(y_in, z_in, quantize)
            lk = out["likelihoods"]
            bits = -(torch.log2(lk["y"]) * m_y).sum()
            if "z" in lk:
                bits = bits - (torch.log2(lk["z"]) * m_z).sum()
            mse = (((out["x_hat"] - x_win) ** 2) * m_x).sum() / (3.0 * n_px)
            loss = rd_value(bits / n_px, mse, lmbda)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt.step()
        done += 1
        if progress is not None:
            progress(done)
    with torch.no_grad():
        y_all[..., r0 + ir0 : r0 + ir1, c0 + ic0 : c0 + ic1] = y[..., ir0:ir1, ic0:ic1]
        if z_all is not None:
            zr0, zr1, zc0, zc1 = ir0 // 4, -(-ir1 // 4), ic0 // 4, -(-ic1 // 4)
            z_all[..., r0 // 4 + zr0 : r0 // 4 + zr1, c0 // 4 + zc0 : c0 // 4 + zc1] = \
                z[..., zr0:zr1, zc0:zc1]
    return done
