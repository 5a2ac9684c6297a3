"""The KL-term experiment on a hierarchy of latents (``vaecodec experiment --only hvae``).

The same hierarchical VAE (:mod:`vaecodec.models.hvae`, layers z_1 next to x .. z_L on top)
trained three ways, with the same data, epochs and optimiser:

- ``plain``: the −ELBO from the first step (β = 1, no free bits);
- ``warmup``: KL warm-up, β ramped from 0 to 1 over the first half of the epochs (Bowman et al.
  2016; Sønderby et al. 2016);
- ``free-bits``: warm-up plus free bits (Kingma et al. 2016): each latent dimension's
  batch-mean KL is clamped below at ``free_bits`` nats in the loss.

For each: −ELBO, IWAE NLL, and per layer the KL (nats per image), the active units
(Cov_x E_q[z_u] > 0.01; Burda et al. 2016) and the informative units (KL_u > 0.01 nats): which
layers carry information, which collapse.
Layer samples (``hvae_layers.png``, from the ``warmup`` model): one panel per level k = L .. 1;
in panel k each row keeps one draw of the layers k .. L and each column redraws the layers
below k from their priors, so what stays the same along a row is what layers k.. decide.

Writes into ``out``: ``hvae_layers.png``, one run directory per model and the ``"hvae"``
entry of ``results.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vaecodec.fileio import atomic_write_json

VARIANTS = ("plain", "warmup", "free-bits")
INFORMATIVE_KL = 0.01
"""A dimension whose KL term exceeds this (nats per image) carries information. For a lower
layer this says more than the active-unit test: its posterior means can vary with x while the
layer above predicts them (p(z_l|z_{l+1}) follows), which costs no KL and carries nothing."""


def layer_stats(model, res: dict) -> list[dict]:
    """Per layer (bottom first): dims, KL (nats per image) and active units, from an
    :func:`vaecodec.evaluate.elbo.evaluate_vae` result of a hierarchical model."""
    from vaecodec.evaluate.elbo import ACTIVE_UNIT_THRESHOLD

    out = []
    for sl in model.layer_slices:
        kl = res["kl_per_dim"][sl]
        var = res["au_variance"][sl]
        out.append({"dims": len(kl), "kl_nats": float(sum(kl)),
                    "active_units": int(sum(v > ACTIVE_UNIT_THRESHOLD for v in var)),
                    "informative_units": int(sum(k > INFORMATIVE_KL for k in kl))})  # fmt: skip
    return out


@torch.no_grad()
def layer_samples(model, path: Path, rows: int = 6, cols: int = 8, seed: int = 0) -> Path:
    """One panel per level k = L .. 1: row r keeps a draw of layers k..L, columns redraw the
    layers below (see the module docstring). Writes a PNG."""
    from vaecodec.experiments import _panels

    g = torch.Generator().manual_seed(seed)
    n_layers = model.n_layers
    # one ancestral draw per row of every layer (top down), then redraw below level k
    z_rows = torch.zeros(rows, model.latent_dim)
    sl = model.layer_slices
    cur = torch.randn(rows, model.config.latent_dims[-1], generator=g)
    z_rows[:, sl[-1]] = cur
    for level in range(n_layers - 2, -1, -1):
        mu, lv = model.prior(level, cur)
        cur = mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, generator=g)
        z_rows[:, sl[level]] = cur
    panels = []
    for k in range(n_layers, 0, -1):
        z = z_rows.repeat_interleave(cols, 0)
        imgs = model.sample(rows * cols, g, keep_from=k, z=z)
        kept = f"z_{k}" if k == n_layers else f"z_{k}..z_{n_layers}"
        below = "z_1" if k == 2 else f"z_1..z_{k - 1}"
        label = (f"{kept} kept (one draw per row), {below} redrawn" if k > 1
                 else "all layers kept: the decoder's mean")  # fmt: skip
        panels.append((label, imgs))
    path = Path(path)
    _panels(panels, path, "What each level decides: samples with the layers above kept",
            nrow=cols)  # fmt: skip
    return path


def hvae_experiment(dataset: str = "mnist", out: Path = Path("runs/experiment"), epochs: int = 10,
                    latent_dims=(64, 32), hidden=(512, 256), free_bits: float = 0.25,
                    iw_samples: int = 100, variants=VARIANTS, progress: bool = False) -> dict:  # fmt: skip
    """Train the variants and record KL and active units per layer; returns the results dict.

    Raises:
        TrainingError: a run diverged. DatasetError: unknown dataset.
    """
    from vaecodec.train.vae_trainer import TrainConfig, train_vae

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    settings = {"plain": {}, "warmup": {"warmup_epochs": epochs / 2},
                "free-bits": {"warmup_epochs": epochs / 2, "free_bits": free_bits}}  # fmt: skip
    entry = results.setdefault("hvae", {})
    entry["setup"] = {"dataset": dataset, "epochs": epochs, "latent_dims": list(latent_dims),
                      "hidden": list(hidden), "free_bits": free_bits, "iw_samples": iw_samples}  # fmt: skip
    models = {}
    for name in variants:
        print(f"\n=== hvae {name} ===")
        cfg = TrainConfig(dataset=dataset, model="hvae-mlp", latent_dims=list(latent_dims),
                          hidden=list(hidden), epochs=epochs, eval_iw_samples=iw_samples,
                          artifacts=False, progress=progress, out=str(out / f"hvae-{name}"),
                          **settings[name])  # fmt: skip
        model, res = train_vae(cfg)
        models[name] = model
        entry[name] = {
            "neg_elbo_nats": res["neg_elbo_nats"], "nll_nats": res["nll_nats"],
            "recon_nats": res["recon_nats"], "kl_nats": res["kl_nats"],
            "active_units": res["active_units"], "layers": layer_stats(model, res),
            **settings[name],
        }  # fmt: skip
        atomic_write_json(results_path, results)
    show = models.get("warmup") or next(iter(models.values()))
    layer_samples(show.eval(), out / "hvae_layers.png")
    print(format_layers(entry))
    print(f"\nwrote {results_path}, {out / 'hvae_layers.png'}")
    return entry


def format_layers(entry: dict) -> str:
    """A table: one line per variant and layer."""
    lines = [f"{'variant':<10} {'-ELBO':>7} {'NLL':>7}  layer  dims  KL (nats)  active  "
             "informative"]  # fmt: skip
    for name in VARIANTS:
        r = entry.get(name)
        if not r:
            continue
        nll = f"{r['nll_nats']:7.2f}" if r["nll_nats"] is not None else f"{'-':>7}"
        for i, layer in enumerate(r["layers"]):
            head = f"{name:<10} {r['neg_elbo_nats']:7.2f} {nll}" if i == 0 else " " * 26
            lines.append(f"{head}  z_{i + 1:<4} {layer['dims']:>4}  {layer['kl_nats']:9.2f}  "
                         f"{layer['active_units']:>3}/{layer['dims']:<3} "
                         f"{layer.get('informative_units', '-'):>4}/{layer['dims']}")  # fmt: skip
    return "\n".join(lines)
