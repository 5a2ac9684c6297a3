"""Offline realism for small grey images: FID and KID in a bundled classifier's feature space.

FID (Heusel et al. 2017): fit a Gaussian to the features of each image set and take the Fréchet
distance ``||μ_r − μ_g||² + Tr(Σ_r + Σ_g − 2 (Σ_r Σ_g)^{1/2})``.
KID (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased estimate of the squared MMD
with the polynomial kernel ``k(a, b) = (a·b / F + 1)³``, averaged over random subsets of both
sets (default 50 subsets of 1000), reported with its standard deviation over the subsets.
Unbiased means it is ≈ 0 (and can be slightly negative) for two samples of one distribution.

The features are the 128-d penultimate activations of a small CNN trained by this project on the
dataset's train split (:mod:`vaecodec.models.classifier`; ``mnist-classifier`` in the zoo,
its recipe next to the weights; for Fashion-MNIST or other data, train one with
``vaecodec train-classifier`` and pass its run directory) — the practice of
the MNIST GAN literature. **These numbers are not comparable to Inception-FID** (another network,
another feature space, other scale), nor across classifiers; compare models only under the same
classifier and the same reference set.

Usage::

    from vaecodec.evaluate.fid import realism_metrics
    r = realism_metrics(model, real_x, recon_x=test_x_binarised)  # "fid_samples", "kid_samples", ...
"""

from __future__ import annotations

import numpy as np
import torch

from vaecodec.errors import ModelError

# Zoo name of the classifier for each dataset (``vaecodec eval --fid`` picks by the model's data).
CLASSIFIERS = {"mnist": "mnist-classifier", "fashion-mnist": "fashion-mnist-classifier"}


def load_classifier(name_or_path: str):
    """The classifier ``name_or_path`` (zoo name or run directory) in eval mode.

    Raises:
        ModelError: unknown, missing or not a classifier.
    """
    from vaecodec.zoo import load_model

    model, _ = load_model(name_or_path, kind="classifier")
    return model


def classifier_for(dataset: str | None) -> str:
    """The zoo classifier that measures realism on ``dataset``.

    Raises:
        ModelError: when none is bundled for it (pass ``--fid-classifier``).
    """
    from vaecodec.zoo import ZOO_DIR

    bundled = [d for d, n in CLASSIFIERS.items() if (ZOO_DIR / n / "config.json").is_file()]
    if dataset in bundled:
        return CLASSIFIERS[dataset]
    raise ModelError(
        f"no bundled FID classifier for dataset {dataset!r} (bundled for: "
        f"{', '.join(bundled) or 'none'}); train one with 'vaecodec train-classifier' and pass "
        "--fid-classifier RUN_DIR"
    )


@torch.no_grad()
def features(classifier, x: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Penultimate features of images ``x [N, C, H, W]`` in [0, 1]: float64 ``[N, F]``.

    Raises:
        ModelError: if the images do not have the classifier's shape.
    """
    shape = tuple(classifier.config.input_shape)
    if tuple(x.shape[1:]) != shape:
        raise ModelError(
            f"the FID classifier takes images of shape {shape}, got {tuple(x.shape[1:])}"
        )
    classifier.eval()
    out = [classifier.features(x[i : i + batch_size].float().clamp(0, 1)).double()
           for i in range(0, x.shape[0], batch_size)]  # fmt: skip
    return torch.cat(out).numpy()


def _sqrtm_trace(s1: np.ndarray, s2: np.ndarray) -> float:
    """Tr((Σ1 Σ2)^{1/2}) for symmetric PSD Σ1, Σ2: Σ of the square roots of the eigenvalues of
    Σ1^{1/2} Σ2 Σ1^{1/2} (symmetric, so eigh is exact and stable)."""
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = r @ s2 @ r
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(ev, 0, None)).sum())


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a [N, F]`` and ``b [M, F]``.

    Raises:
        ValueError: fewer than two rows in a set.
    """
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("FID needs at least two images in each set")
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    d = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * _sqrtm_trace(s1, s2))
    return max(d, 0.0)


def kid_from_features(a: np.ndarray, b: np.ndarray, subsets: int = 50, subset_size: int = 1000,
                      seed: int = 0) -> tuple[float, float]:  # fmt: skip
    """KID: unbiased MMD² with the cubic polynomial kernel, mean and std over random subsets.

    Each subset draws ``m = min(subset_size, N, M)`` rows of each set without replacement;
    MMD²_u = (Σ_{i≠j} k(a_i, a_j) + Σ_{i≠j} k(b_i, b_j)) / (m(m−1)) − 2 Σ_{i,j} k(a_i, b_j) / m².

    Raises:
        ValueError: fewer than two rows in a set.
    """
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError("KID needs at least two images in each set")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1))
        vals.append(mmd - 2 * kxy.sum() / (m * m))
    v = np.asarray(vals)
    return float(v.mean()), float(v.std())


def fid_kid(classifier, real: torch.Tensor, fake: torch.Tensor, kid_subsets: int = 50,
            kid_subset_size: int = 1000, seed: int = 0) -> dict:  # fmt: skip
    """``{"fid", "kid", "kid_std"}`` between image sets ``real`` and ``fake`` ``[N, C, H, W]``."""
    fr, ff = features(classifier, real), features(classifier, fake)
    kid, kid_std = kid_from_features(fr, ff, kid_subsets, kid_subset_size, seed)
    return {"fid": fid_from_features(fr, ff), "kid": kid, "kid_std": kid_std}


@torch.no_grad()
def model_samples(model, n: int, seed: int = 0, batch_size: int = 1000) -> torch.Tensor:
    """``n`` decoder means of z ~ N(0, I) (seeded): ``[n, C, H, W]``."""
    g = torch.Generator().manual_seed(seed)
    return torch.cat([model.sample(min(batch_size, n - i), generator=g)
                      for i in range(0, n, batch_size)])  # fmt: skip


@torch.no_grad()
def model_reconstructions(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Decoder means at the posterior means of ``x``: ``[N, C, H, W]``."""
    return torch.cat([model.decode_mean(model.encode(x[i : i + batch_size])[0])
                      for i in range(0, x.shape[0], batch_size)])  # fmt: skip


def realism_metrics(model, real: torch.Tensor, recon_input: torch.Tensor | None = None,
                    classifier="mnist-classifier", n_samples: int | None = None,
                    seed: int = 0) -> dict:  # fmt: skip
    """FID / KID of a generative model's samples (and reconstructions) against ``real``.

    Args:
        model: anything with ``sample(n, generator)``, ``encode`` and ``decode_mean`` (a VAE,
            AE or VAE-GAN).
        real: reference images ``[N, C, H, W]`` in grey levels [0, 1] (the test split).
        recon_input: what to encode for reconstructions (the test split as the model sees it,
            e.g. binarised for a Bernoulli model); None skips reconstructions.
        classifier: a zoo name, run directory or loaded :class:`ImageClassifier`.
        n_samples: prior samples to draw (default: as many as ``real``).
        seed: seed of the prior samples and of the KID subsets.

    Returns:
        ``fid_samples``, ``kid_samples``, ``kid_samples_std`` (and ``fid_recon``,
        ``kid_recon``, ``kid_recon_std``), ``fid_classifier``, ``fid_n_real``.

    Raises:
        ModelError: classifier missing or of another image shape.
    """
    clf = load_classifier(classifier) if isinstance(classifier, str) else classifier
    fr = features(clf, real)
    out = {}
    fake = model_samples(model, n_samples or real.shape[0], seed=seed)
    ff = features(clf, fake)
    out["fid_samples"] = fid_from_features(fr, ff)
    out["kid_samples"], out["kid_samples_std"] = kid_from_features(fr, ff, seed=seed)
    if recon_input is not None:
        fc = features(clf, model_reconstructions(model, recon_input))
        out["fid_recon"] = fid_from_features(fr, fc)
        out["kid_recon"], out["kid_recon_std"] = kid_from_features(fr, fc, seed=seed)
    out["fid_classifier"] = classifier if isinstance(classifier, str) else "(given)"
    out["fid_n_real"] = int(real.shape[0])
    return out


def format_realism(r: dict) -> str:
    """Human-readable lines of :func:`realism_metrics`."""
    lines = [f"FID samples          {r['fid_samples']:.3f}   KID {r['kid_samples']:.3f} "
             f"± {r['kid_samples_std']:.3f}"]  # fmt: skip
    if "fid_recon" in r:
        lines.append(f"FID reconstructions  {r['fid_recon']:.3f}   KID {r['kid_recon']:.3f} "
                     f"± {r['kid_recon_std']:.3f}")  # fmt: skip
    lines.append(f"                     ({r['fid_classifier']} features vs {r['fid_n_real']} grey "
                 "test images; not comparable to Inception-FID)")  # fmt: skip
    return "\n".join(lines)
