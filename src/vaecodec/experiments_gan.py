"""AE vs VAE vs VAE-GAN on the same data (``vaecodec experiment --only gan``).

The seed's comparison: three models with the same MLP encoder / decoder (and the same latent
size, data, epochs and optimiser) trained as

- a plain autoencoder (``ae-mlp``: no KL, no prior to sample from),
- a VAE (``vae-mlp``: −ELBO),
- a VAE-GAN (``vaegan-mlp``: −ELBO + an adversarial decoder loss, Larsen et al. 2016),

plus, unless ``match_time=False``, a second VAE trained for as many epochs as fit in the
VAE-GAN's measured training time ("same size and training time": the discriminator makes a
VAE-GAN epoch several times dearer).

For each model: prior samples z ~ N(0, I) decoded, test reconstructions, the rate it spends
(KL(q(z|x) ‖ N(0, I)) in nats per image; 0 for the AE, which has no posterior), the
reconstruction NLL, and FID / KID of samples and reconstructions against the grey test images
in the bundled classifier's features (:mod:`vaecodec.evaluate.fid`; not Inception-FID).

Writes into ``out``: ``gan_samples.png``, ``gan_reconstructions.png``, ``gan_rate_fid.png``,
one run directory per model, and the ``"gan"`` entry of ``results.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from vaecodec.fileio import atomic_write_json


def _run_seconds(run_dir: Path) -> float:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return sum(json.loads(x)["seconds"] for x in lines if x)


def gan_experiment(dataset: str = "mnist", out: Path = Path("runs/experiment"), epochs: int = 10,
                   latent_dim: int = 16, hidden=(512, 512), gan_weight: float = 1.0,
                   feature_weight: float = 0.0, disc_lr: float | None = None,
                   fid_classifier: str | None = None, match_time: bool = True,
                   iw_samples: int = 0, progress: bool = False) -> dict:  # fmt: skip
    """Train and compare AE, VAE, VAE-GAN (and a time-matched VAE); returns the results dict.

    Raises:
        ModelError: no FID classifier for ``dataset`` (pass ``fid_classifier``).
        TrainingError: a run diverged.
    """
    from vaecodec.data import load_dataset
    from vaecodec.evaluate.fid import classifier_for, load_classifier, realism_metrics
    from vaecodec.experiments import _panels
    from vaecodec.train.vae_trainer import TrainConfig, train_vae

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clf_name = fid_classifier or classifier_for(dataset)  # loaded once the models are trained
    common = dict(dataset=dataset, latent_dim=latent_dim, hidden=list(hidden),
                  eval_iw_samples=iw_samples, artifacts=False, progress=progress)  # fmt: skip
    gan_kw = dict(gan_weight=gan_weight, feature_weight=feature_weight, disc_lr=disc_lr)
    plan = [("ae", "ae-mlp", epochs, {}), ("vae", "vae-mlp", epochs, {}),
            ("vae-gan", "vaegan-mlp", epochs, gan_kw)]  # fmt: skip
    models, evals = {}, {}
    for name, model_name, ep, kw in plan:
        print(f"\n=== {name} ({model_name}, {ep} epochs) ===")
        cfg = TrainConfig(out=str(out / f"gan-{name}"), model=model_name, epochs=ep, **common, **kw)
        models[name], evals[name] = train_vae(cfg)
    if match_time:
        ratio = _run_seconds(out / "gan-vae-gan") / max(_run_seconds(out / "gan-vae"), 1e-9)
        ep = max(epochs, math.ceil(epochs * ratio))
        print(f"\n=== vae-same-time (vae-mlp, {ep} epochs = the VAE-GAN's training time) ===")
        cfg = TrainConfig(out=str(out / "gan-vae-same-time"), model="vae-mlp", epochs=ep, **common)
        models["vae-same-time"], evals["vae-same-time"] = train_vae(cfg)

    clf = load_classifier(clf_name)
    grey = load_dataset(dataset, "test").x
    seen = load_dataset(dataset, "test", binarize="static").x  # what the Bernoulli models encode
    results = {"dataset": dataset, "epochs": epochs, "latent_dim": latent_dim,
               "hidden": list(hidden), **gan_kw, "models": {}}  # fmt: skip
    for name, m in models.items():
        m.eval()
        with torch.no_grad():
            r = realism_metrics(m, grey, recon_input=seen, classifier=clf)
        e = evals[name]
        results["models"][name] = {
            "model": m.model_name, "epochs": json.loads((out / f"gan-{name}" / "config.json")
                                                        .read_text())["train"]["epochs"],
            "train_seconds": round(_run_seconds(out / f"gan-{name}"), 1),
            "kl_nats": 0.0 if m.deterministic else e["kl_nats"], "recon_nats": e["recon_nats"],
            "neg_elbo_nats": None if m.deterministic else e["neg_elbo_nats"],
            "active_units": e["active_units"],
            **{k: v for k, v in r.items() if k.startswith(("fid_", "kid_"))},
            "fid_classifier": clf_name,
        }  # fmt: skip
        print(f"{name:>14}: FID samples {r['fid_samples']:8.3f}  recon {r['fid_recon']:7.3f}  "
              f"KL {results['models'][name]['kl_nats']:6.2f} nats")  # fmt: skip
    with torch.no_grad():
        from vaecodec.evaluate.fid import fid_kid

        floor = fid_kid(clf, grey, load_dataset(dataset, "train").x[:10000])
    results["real_train_vs_test"] = floor
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, latent_dim, generator=g)
    names = list(models)
    with torch.no_grad():
        _panels([(f"{n}: FID {results['models'][n]['fid_samples']:.2f}",
                  models[n].decode_mean(z)) for n in names],
                out / "gan_samples.png", "Prior samples z ~ N(0, I), the same z for every model")
        x = seen[:32]
        _panels([("test images (grey)", grey[:32])] + [
            (f"{n}: FID {results['models'][n]['fid_recon']:.2f}",
             models[n].decode_mean(models[n].encode(x)[0])) for n in names],
            out / "gan_reconstructions.png", "Reconstructions of the binarised test images")  # fmt: skip
    _rate_fid_plot(results, out / "gan_rate_fid.png")
    path = out / "results.json"
    all_results = json.loads(path.read_text()) if path.exists() else {}
    all_results["gan"] = results
    atomic_write_json(path, all_results)
    print(f"\nwrote {path}, gan_samples.png, gan_reconstructions.png, gan_rate_fid.png")
    return results


def _rate_fid_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["models"])
    ms = results["models"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = range(len(names))
    w = 0.38
    axes[0].bar([i - w / 2 for i in xs], [ms[n]["fid_samples"] for n in names], w, label="samples")
    axes[0].bar([i + w / 2 for i in xs], [ms[n]["fid_recon"] for n in names], w,
                label="reconstructions")  # fmt: skip
    axes[0].axhline(results["real_train_vs_test"]["fid"], color="grey", ls=":", lw=1,
                    label="real train vs test")  # fmt: skip
    axes[0].set_yscale("log")
    axes[0].set_ylabel("digit FID (classifier features; lower is better)")
    axes[1].bar(xs, [ms[n]["kl_nats"] for n in names], 0.6, color="tab:green")
    axes[1].set_ylabel("rate = KL(q(z|x) ‖ N(0, I))  [nats / image]")
    for ax in axes:
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, fontsize=8)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"AE vs VAE vs VAE-GAN on {results['dataset']} (d = {results['latent_dim']}, "
                 f"{results['epochs']} epochs)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
