"""The seed questions about the KL term, as one reproducible experiment (``vaecodec experiment``).

1. **AE vs VAE** (binarised data, Bernoulli decoder): the same MLP trained as a plain
   autoencoder (no KL) and as a VAE; samples z ~ N(0, I) decoded through each, side by side.
   The AE never asked its codes to look like N(0, I), so its "samples" are not digits.
2. **Decoder σ fixed to 1 vs learned** (grey-level data in [0, 1], Gaussian decoder): with σ = 1
   the reconstruction term is worth at most ~D/2 · MSE ≈ tens of nats, so the optimiser buys
   KL by ignoring z — posterior collapse: few active units, blurry samples. The σ-VAE
   (Rybkin et al. 2021) learns σ ≈ the reconstruction error and keeps the latents in use.
3. **β sweep**: β ∈ {0.5, 1, 2, 4}; each model is a point (rate = KL, distortion = reconstruction
   NLL) on a rate–distortion plane (Alemi et al. 2018, "Fixing a Broken ELBO").

Writes ``results.json``, ``ae_vs_vae.png``, ``sigma.png``, ``beta_rd.png`` and one run
directory per model into ``out``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vaecodec.fileio import atomic_write_json


def _train(out: Path, name: str, epochs: int, **kw):
    from vaecodec.train.vae_trainer import TrainConfig, train_vae

    cfg = TrainConfig(out=str(out / name), epochs=epochs, artifacts=False, **kw)
    print(f"\n=== {name} ===")
    model, res = train_vae(cfg)
    return model, res


def _short(res: dict, model) -> dict:
    keep = ("neg_elbo_nats", "recon_nats", "kl_nats", "nll_nats", "bits_per_dim", "active_units")
    r = {k: res[k] for k in keep}
    r["latent_dim"] = model.latent_dim
    if hasattr(model.likelihood, "sigma"):
        r["sigma"] = model.likelihood.sigma
    return r


def _panels(grids: list[tuple[str, torch.Tensor]], path: Path, title: str, nrow: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vaecodec.viz.grids import make_grid

    fig, axes = plt.subplots(1, len(grids), figsize=(4.2 * len(grids), 4.6))
    for ax, (label, imgs) in zip(axes, grids):
        ax.imshow(make_grid(imgs, nrow=nrow), cmap="gray", vmin=0, vmax=255)
        ax.set_title(label, fontsize=10)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_experiments(
    dataset: str = "mnist",
    out: Path = Path("runs/experiment"),
    epochs: int = 10,
    latent_dim: int = 16,
    betas=(0.5, 1.0, 2.0, 4.0),
    iw_samples: int = 100,
    only=None,
) -> dict:
    """Run the three experiments (or those named in ``only``); returns and saves the results."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    common = dict(dataset=dataset, latent_dim=latent_dim, eval_iw_samples=iw_samples)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, latent_dim, generator=g)

    vae = vae_res = None
    if only is None or "ae-vs-vae" in only:
        ae, ae_res = _train(out, "ae", epochs, model="ae-mlp", **common)
        vae, vae_res = _train(out, "vae", epochs, model="vae-mlp", **common)
        with torch.no_grad():
            _panels([("AE: decoder(z), z ~ N(0, I)", ae.decode_mean(z)),
                     ("VAE: decoder(z), z ~ N(0, I)", vae.decode_mean(z))],
                    out / "ae_vs_vae.png", "Samples from the prior through each decoder")  # fmt: skip
        results["ae_vs_vae"] = {"ae": _short(ae_res, ae), "vae": _short(vae_res, vae)}
        atomic_write_json(results_path, results)

    if only is None or "sigma" in only:
        fixed, fixed_res = _train(out, "sigma-fixed-1", epochs, model="vae-mlp", binarize="none",
                                  likelihood="gaussian", sigma=1.0, **common)  # fmt: skip
        learned, learned_res = _train(out, "sigma-learned", epochs, model="vae-mlp",
                                      binarize="none", likelihood="gaussian-learned", sigma=1.0,
                                      **common)  # fmt: skip
        with torch.no_grad():
            _panels([(f"σ fixed = 1: {fixed_res['active_units']} active units, "
                      f"KL {fixed_res['kl_nats']:.1f} nats", fixed.decode_mean(z)),
                     (f"σ learned (σ-VAE, σ = {learned.likelihood.sigma:.3f}): "
                      f"{learned_res['active_units']} active units, "
                      f"KL {learned_res['kl_nats']:.1f} nats", learned.decode_mean(z))],
                    out / "sigma.png", "Gaussian decoder on [0, 1] pixels: prior samples")  # fmt: skip
        results["sigma"] = {"fixed_1": _short(fixed_res, fixed),
                            "learned": _short(learned_res, learned)}  # fmt: skip
        atomic_write_json(results_path, results)

    if only is None or "beta" in only:
        pts = {}
        for b in betas:
            if b == 1.0 and vae is not None:  # the same run as the VAE of the first experiment
                m, r = vae, vae_res
            else:
                m, r = _train(out, f"beta-{b:g}", epochs, model="vae-mlp", beta=b, **common)
            pts[f"{b:g}"] = _short(r, m)
            results["beta"] = pts
            atomic_write_json(results_path, results)
        _rd_plot(pts, out / "beta_rd.png")

    atomic_write_json(results_path, results)
    print(f"\nwrote {results_path}")
    return results


def _rd_plot(pts: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    rates = [p["kl_nats"] for p in pts.values()]
    dists = [p["recon_nats"] for p in pts.values()]
    ax.plot(rates, dists, "o-")
    for b, r, d in zip(pts, rates, dists):
        ax.annotate(f"β={b}", (r, d), textcoords="offset points", xytext=(6, 4))
    best = min(r + d for r, d in zip(rates, dists))
    xs = [min(rates) * 0.9, max(rates) * 1.05]
    ax.plot(
        xs,
        [best - x for x in xs],
        ":",
        color="grey",
        lw=0.8,
        label=f"R + D = {best:.1f} (best -ELBO)",
    )
    ax.legend(fontsize=8)
    ax.set_xlabel("rate R = KL(q(z|x) || p(z))  [nats]")
    ax.set_ylabel("distortion D = E_q[-log p(x|z)]  [nats]")
    ax.set_title("β-VAE on binarised MNIST: each β a point on the R–D plane\n"
                 "(dotted: the iso-ELBO line through the best point)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
