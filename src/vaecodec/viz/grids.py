"""Pictures of what a VAE does: sample grids, reconstructions, interpolations, traversals and
latent embeddings. Images in, PNG files out (Pillow for grids, matplotlib for the scatter).

All image tensors are ``[N, C, H, W]`` floats in [0, 1].
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaecodec.priors.standard_normal import kl_std_normal


def make_grid(images: torch.Tensor, nrow: int, pad: int = 2, scale: int = 1) -> np.ndarray:
    """Tile ``images [N, C, H, W]`` into rows of ``nrow``; returns uint8 ``[H', W']`` or
    ``[H', W', 3]``. Padding is mid-grey so white and black digits both stand out."""
    images = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = images.shape
    ncol = nrow
    nrows = math.ceil(n / ncol)
    grid = np.full((c, nrows * (h + pad) + pad, ncol * (w + pad) + pad), 0.5, dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, ncol)
        y, xo = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, y : y + h, xo : xo + w] = images[i].numpy()
    arr = np.round(grid * 255).astype(np.uint8)
    arr = arr[0] if c == 1 else np.transpose(arr[:3], (1, 2, 0))
    if scale > 1:
        arr = np.kron(arr, np.ones((scale, scale) + ((1,) if arr.ndim == 3 else ()), np.uint8))
    return arr


def save_grid(images: torch.Tensor, path: str | Path, nrow: int, scale: int | None = None) -> Path:
    """Save ``images`` as one PNG grid (upscaled so small digits stay visible)."""
    h = images.shape[-2]
    if scale is None:
        scale = max(1, 56 // h)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_grid(images, nrow, scale=scale)).save(path)
    return path


@torch.no_grad()
def sample_grid(model, path, n: int = 64, seed: int = 0) -> Path:
    """Decode ``n`` draws z ~ N(0, I) (decoder means) into a square-ish grid."""
    g = torch.Generator().manual_seed(seed)
    return save_grid(model.sample(n, generator=g), path, nrow=int(math.ceil(math.sqrt(n))))


@torch.no_grad()
def reconstruction_grid(model, x: torch.Tensor, path, nrow: int = 16) -> Path:
    """Originals in the odd rows, reconstructions (decoder mean at z = posterior mean) below."""
    x = x[: (x.shape[0] // nrow) * nrow or x.shape[0]]
    nrow = min(nrow, x.shape[0])
    recon = model.decode_mean(model.encode(x)[0])
    rows = []
    for i in range(0, x.shape[0], nrow):
        rows += [x[i : i + nrow], recon[i : i + nrow]]
    return save_grid(torch.cat(rows), path, nrow=nrow)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latents (White 2016), ``t [T]`` -> ``[T, d]``; falls back
    to linear interpolation when a and b are (anti)parallel."""
    an, bn = a / a.norm(), b / b.norm()
    omega = torch.arccos((an * bn).sum().clamp(-1 + 1e-6, 1 - 1e-6))
    so = torch.sin(omega)
    if so.abs() < 1e-4:
        return (1 - t)[:, None] * a + t[:, None] * b
    return (torch.sin((1 - t) * omega) / so)[:, None] * a + (torch.sin(t * omega) / so)[:, None] * b


@torch.no_grad()
def interpolation_grid(
    model, x: torch.Tensor, path, rows: int = 8, steps: int = 10, seed: int = 0,
    method: str = "linear",
) -> Path:  # fmt: skip
    """Each row: the path between the posterior means of two test images, decoded.

    The first and last columns are the two original images; between them ``steps`` decoded
    points on the (linear or spherical) path between their latent means.
    """
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(x.shape[0], generator=g)[: 2 * rows]
    mu = model.encode(x[idx])[0]
    t = torch.linspace(0, 1, steps)
    out = []
    for r in range(min(rows, idx.numel() // 2)):
        a, b = mu[2 * r], mu[2 * r + 1]
        if method == "slerp":
            zs = slerp(a, b, t)
        else:
            zs = (1 - t)[:, None] * a + t[:, None] * b
        out += [x[idx[2 * r]][None], model.decode_mean(zs), x[idx[2 * r + 1]][None]]
    return save_grid(torch.cat(out), path, nrow=steps + 2)


@torch.no_grad()
def kl_per_dimension(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Mean KL(q(z_u|x) || N(0,1)) per latent dimension over ``x``: ``[d]`` nats."""
    total = torch.zeros(model.latent_dim)
    for i in range(0, x.shape[0], batch_size):
        mu, logvar = model.encode(x[i : i + batch_size])
        total += kl_std_normal(mu, logvar).sum(0)
    return total / x.shape[0]


@torch.no_grad()
def traversal_grid(
    model, path, x: torch.Tensor | None = None, dims: int | None = None, steps: int = 11,
    span: float = 3.0,
) -> Path:  # fmt: skip
    """One row per latent dimension: z_u swept over [-span, span] with the others at 0 (or at the
    posterior mean of the first image of ``x``). Rows ordered by KL, highest first, so the
    dimensions the model uses come on top; the KL of each row is printed on the left by the
    caller's choice of ``dims`` (how many rows)."""
    d = model.latent_dim
    if x is not None and not model.deterministic:
        order = torch.argsort(kl_per_dimension(model, x), descending=True)
        base = model.encode(x[:1])[0][0]
    else:
        order = torch.arange(d)
        base = torch.zeros(d)
    if dims is not None:
        order = order[:dims]
    vals = torch.linspace(-span, span, steps)
    zs = []
    for u in order.tolist():
        z = base.repeat(steps, 1)
        z[:, u] = vals
        zs.append(z)
    imgs = model.decode_mean(torch.cat(zs))
    return save_grid(imgs, path, nrow=steps)


@torch.no_grad()
def embedding_plot(
    model, x: torch.Tensor, labels: torch.Tensor | None, path, batch_size: int = 1000,
    title: str | None = None,
) -> Path:  # fmt: skip
    """Scatter of the posterior means of ``x``, coloured by label; PCA to 2-D when d > 2."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mu = torch.cat(
        [model.encode(x[i : i + batch_size])[0] for i in range(0, x.shape[0], batch_size)]
    )
    m = mu.double().numpy()
    xlabel, ylabel = "z0", "z1"
    if m.shape[1] > 2:
        m = m - m.mean(0)
        _, s, vt = np.linalg.svd(m, full_matrices=False)
        m = m @ vt[:2].T
        ev = s**2 / (s**2).sum()
        xlabel, ylabel = f"PC1 ({ev[0]:.0%} var.)", f"PC2 ({ev[1]:.0%} var.)"
    elif m.shape[1] == 1:
        m = np.concatenate([m, np.zeros_like(m)], 1)
    fig, ax = plt.subplots(figsize=(6.5, 6))
    c = labels.numpy() if labels is not None else None
    sc = ax.scatter(m[:, 0], m[:, 1], c=c, cmap="tab10", s=3, alpha=0.7, linewidths=0)
    if c is not None:
        fig.colorbar(sc, ax=ax, ticks=sorted(set(c.tolist()))[:20], label="label")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"posterior means E_q[z|x] of {x.shape[0]} test images")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
