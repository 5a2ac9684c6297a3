"""Evaluating a VAE: negative ELBO, importance-weighted NLL bound, KL per dimension, active units.

All likelihood numbers are in nats per example; bits/dim = nats / (D · ln 2), D = C·H·W.

- ELBO (one posterior sample per example): E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)).
- IWAE bound with K samples (Burda et al. 2016): log (1/K) Σ_k p(x, z_k)/q(z_k|x), z_k ~ q(z|x);
  a lower bound on log p(x) that tightens with K. Its negative is the reported ``nll_nats``.
  Batched: a batch of B examples draws K·B latents and decodes them in chunks, no Python loop
  over examples.
- Active units (Burda et al. 2016): dimension u is active if Cov_x(E_q[z_u|x]) > 0.01.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

ACTIVE_UNIT_THRESHOLD = 0.01


@torch.no_grad()
def evaluate_vae(
    model,
    x: torch.Tensor,
    iw_samples: int = 0,
    batch_size: int = 500,
    seed: int = 0,
    progress: bool = True,
    iw_chunk: int | None = None,
) -> dict:
    """Evaluate a VAE (or AE) on images ``x: [N, C, H, W]`` in [0, 1].

    Args:
        model: a :class:`vaecodec.models.vae.VAE`.
        x: the evaluation images (already binarised for a binary model).
        iw_samples: K for the importance-weighted bound; 0 skips it (``nll_nats`` is None).
        batch_size: examples per batch.
        seed: seed of the posterior samples (the numbers are reproducible).
        progress: show a tqdm bar (on a terminal only).
        iw_chunk: samples decoded at once per batch; default ≈ 10k latents (≈ 31 MB of decoder
            output for MNIST: large enough for fast matrix products, small enough for the
            allocator to reuse memory instead of mapping fresh pages each time).

    Returns:
        dict with ``neg_elbo_nats`` (the negative ELBO, mean over examples; None for a plain
        autoencoder, which has no ELBO), ``neg_elbo_bits_per_dim`` (of ``neg_elbo_nats``, or None),
        ``recon_nats`` (−log p(x|z) at a posterior sample; for an autoencoder its
        reconstruction loss at its code, not a bound on anything), ``kl_nats`` (0 for an
        autoencoder), ``nll_nats`` (−IWAE bound, None if not computed or for an autoencoder),
        ``bits_per_dim`` (of ``nll_nats``; None when ``nll_nats`` is None, never a value of
        another quantity), ``autoencoder`` (True for a plain autoencoder), ``active_units``,
        ``kl_per_dim`` (list, nats), ``au_variance`` (list), ``iw_samples``, ``n_examples``,
        ``discrete`` (False for the Gaussian decoders, whose nats are densities, not code
        lengths).
    """
    model.eval()
    n = x.shape[0]
    d_data = math.prod(x.shape[1:])
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    recon_sum = kl_sum = nll_sum = 0.0
    kl_dim = torch.zeros(model.latent_dim, dtype=torch.float64)
    mus = []
    if iw_chunk is None:
        iw_chunk = max(1, min(iw_samples or 1, 10_000 // batch_size))
    batches = range(0, n, batch_size)
    bar = tqdm(batches, desc="eval", unit="batch", disable=None if progress else True, leave=False)
    try:
        for i in bar:
            xb = x[i : i + batch_size]
            out = model(xb)
            recon_sum += out["recon"].double().sum().item()
            kl_sum += out["kl"].double().sum().item()
            kl_dim += out["kl_per_dim"].double() * xb.shape[0]
            mus.append(model.encode(xb)[0].double())
            if iw_samples and not model.deterministic:
                nll_sum -= (
                    model.iwae_log_likelihood(xb, iw_samples, chunk=iw_chunk).double().sum().item()
                )
    finally:
        torch.set_rng_state(gen_state)
    mu = torch.cat(mus)
    au_var = mu.var(0, unbiased=False) if n > 1 else torch.zeros(model.latent_dim)
    ae = bool(model.deterministic)
    elbo = None if ae else (recon_sum + kl_sum) / n
    nll = nll_sum / n if iw_samples and not ae else None
    per_dim = d_data * math.log(2)
    return {
        "neg_elbo_nats": elbo,
        "neg_elbo_bits_per_dim": None if elbo is None else elbo / per_dim,
        "recon_nats": recon_sum / n,
        "kl_nats": kl_sum / n,
        "nll_nats": nll,
        "bits_per_dim": None if nll is None else nll / per_dim,
        "autoencoder": ae,
        "active_units": int((au_var > ACTIVE_UNIT_THRESHOLD).sum()),
        "kl_per_dim": (kl_dim / n).tolist(),
        "au_variance": au_var.tolist(),
        "iw_samples": int(iw_samples) if not model.deterministic else 0,
        "n_examples": int(n),
        "discrete": model.likelihood.discrete_levels is not None,
    }


def format_summary(r: dict) -> str:
    """A few human-readable lines of an :func:`evaluate_vae` result."""
    lines = [f"test examples        {r['n_examples']}"]
    if r.get("neg_elbo_nats") is None:  # a plain autoencoder: no likelihood bound at all
        lines.append(
            f"reconstruction loss  {r['recon_nats']:.2f} nats  (-log p(x|x^) at the code; an "
            "autoencoder has no ELBO: not comparable with a VAE's -ELBO or NLL)"
        )
    else:
        lines.append(
            f"-ELBO                {r['neg_elbo_nats']:.2f} nats  "
            f"(reconstruction {r['recon_nats']:.2f} + KL {r['kl_nats']:.2f}) "
            f"= {r['neg_elbo_bits_per_dim']:.4f} bits/dim"
        )
    if r["nll_nats"] is not None:
        lines.append(
            f"NLL (IWAE, K={r['iw_samples']:<5}) {r['nll_nats']:.2f} nats  "
            f"= {r['bits_per_dim']:.4f} bits/dim"
        )
    if not r.get("discrete", True):
        lines.append(
            "                     (Gaussian decoder: a continuous density on [0, 1], "
            "so nats and bits/dim are not code lengths)"
        )
    kl = r["kl_per_dim"]
    order = sorted(range(len(kl)), key=lambda u: -kl[u])
    top = ", ".join(f"z{u}:{kl[u]:.2f}" for u in order[:8])
    lines.append(f"active units         {r['active_units']} / {len(kl)}  (Cov_x E_q[z_u] > 0.01)")
    if r.get("neg_elbo_nats") is not None:  # an autoencoder has no KL term
        lines.append(f"KL per dim (top 8)   {top}")
    return "\n".join(lines)
