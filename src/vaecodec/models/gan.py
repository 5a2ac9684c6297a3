"""Adversarial building blocks: discriminators, GAN losses, and a divergence watchdog.

Shared by the VAE-GAN (:mod:`vaecodec.models.vaegan`) and meant for any other adversarial
decoder (a codec's PatchGAN: :class:`PatchDiscriminator` takes an optional conditioning tensor,
e.g. the decoded latents upsampled to the image size, as in HiFiC, Mentzer et al. 2020).

- :func:`sn` wraps a layer in spectral normalisation (Miyato et al. 2018): every weight matrix is
  divided by its largest singular value (one power iteration per training step), so the
  discriminator is 1-Lipschitz per layer and its logits cannot run away.
- :class:`ConvDiscriminator`: stride-2 4×4 convolutions, LeakyReLU(0.2), a linear head. Returns
  one logit per image and the last convolutional features, the Dis_l of Larsen et al. 2016 whose
  distance is the "learned similarity metric".
- :class:`MLPDiscriminator`: the same interface with fully connected layers (fast on a CPU).
- :class:`PatchDiscriminator`: the same convolutions without the head, one logit per patch
  (pix2pix / HiFiC).
- Losses, all means over the batch (and patches): the hinge loss (Lim & Ye 2017; Miyato et al.
  2018) and the non-saturating loss (Goodfellow et al. 2014): :func:`d_loss` and :func:`g_loss`.
- :class:`GANMonitor` collects per-step discriminator statistics and says when a run has
  diverged (non-finite values) or the discriminator has collapsed (it wins outright, or it
  outputs the same logit for every input), so that a trainer can stop with a clear message.

Shapes: images ``[B, C, H, W]``; logits ``[B]`` (image) or ``[B, 1, h, w]`` (patch); features
``[B, F]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

GAN_LOSSES = ("hinge", "ns")


def sn(layer: nn.Module, enabled: bool = True) -> nn.Module:
    """``layer`` with spectral normalisation of its ``weight`` (Miyato et al. 2018), or as is."""
    return nn.utils.parametrizations.spectral_norm(layer) if enabled else layer


def conv_stack(c_in: int, channels: list[int], spectral_norm: bool = True) -> nn.Sequential:
    """Stride-2 4×4 convolutions (padding 1) with LeakyReLU(0.2): ``[B, c_in, H, W]`` ->
    ``[B, channels[-1], H / 2^n, W / 2^n]`` (floor at each stage), n = ``len(channels)``."""
    layers: list[nn.Module] = []
    c = c_in
    for w in channels:
        layers += [sn(nn.Conv2d(c, w, 4, 2, 1), spectral_norm), nn.LeakyReLU(0.2)]
        c = w
    return nn.Sequential(*layers)


def _out_size(n: int, stages: int) -> int:
    for _ in range(stages):
        n = (n + 2 - 4) // 2 + 1
    return n


class ConvDiscriminator(nn.Module):
    """An image discriminator D(x) -> (logit, features).

    Args:
        input_shape: (C, H, W) of the images.
        channels: widths of the stride-2 stages (default 32, 64, 128: 28×28 -> 3×3).
        spectral_norm: spectral normalisation of every layer (Miyato et al. 2018).

    ``forward(x [B, C, H, W])`` returns ``(logits [B], features [B, F])``, features being the
    flattened output of the last convolution (Larsen et al. 2016's Dis_l).

    Raises:
        ValueError: if the images are too small for the number of stages.
    """

    def __init__(self, input_shape, channels=(32, 64, 128), spectral_norm: bool = True):
        super().__init__()
        c, h, w = (int(v) for v in input_shape)
        channels = [int(v) for v in channels]
        oh, ow = _out_size(h, len(channels)), _out_size(w, len(channels))
        if oh < 1 or ow < 1:
            raise ValueError(f"images of {h}x{w} are too small for {len(channels)} stride-2 stages")
        self.features = conv_stack(c, channels, spectral_norm)
        self.n_features = channels[-1] * oh * ow
        self.head = sn(nn.Linear(self.n_features, 1), spectral_norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x).flatten(1)
        return self.head(f).squeeze(1), f


class MLPDiscriminator(nn.Module):
    """A fully connected discriminator D(x) -> (logit, features) for small images.

    Args:
        input_shape: (C, H, W) of the images.
        hidden: widths of the hidden layers (default 512, 256), LeakyReLU(0.2).
        spectral_norm: spectral normalisation of every layer.

    ``forward(x [B, C, H, W])`` returns ``(logits [B], features [B, hidden[-1]])`` (the last
    hidden layer is Dis_l). On a CPU it is several times faster than :class:`ConvDiscriminator`
    for 28×28 images (matrix products instead of small convolutions).
    """

    def __init__(self, input_shape, hidden=(512, 256), spectral_norm: bool = True):
        super().__init__()
        sizes = [math.prod(int(v) for v in input_shape), *(int(h) for h in hidden)]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [sn(nn.Linear(a, b), spectral_norm), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.n_features = sizes[-1]
        self.head = sn(nn.Linear(self.n_features, 1), spectral_norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.head(f).squeeze(1), f


class PatchDiscriminator(nn.Module):
    """A (conditional) PatchGAN: one logit per receptive field.

    Args:
        in_channels: image channels.
        cond_channels: channels of an optional conditioning map concatenated to the image
            (0: unconditional). The map must have the image's H×W (upsample latents first).
        channels: widths of the stride-2 stages; a final 3×3 convolution gives the logits.
        spectral_norm: spectral normalisation of every layer.

    ``forward(x [B, C, H, W], cond [B, C', H, W] | None)`` -> logits ``[B, 1, H/2^n, W/2^n]``.
    """

    def __init__(self, in_channels: int = 3, cond_channels: int = 0, channels=(64, 128, 256),
                 spectral_norm: bool = True):  # fmt: skip
        super().__init__()
        channels = [int(v) for v in channels]
        self.cond_channels = int(cond_channels)
        self.body = conv_stack(in_channels + self.cond_channels, channels, spectral_norm)
        self.head = sn(nn.Conv2d(channels[-1], 1, 3, 1, 1), spectral_norm)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.cond_channels:
            if cond is None or cond.shape[1] != self.cond_channels:
                raise ValueError(f"this discriminator needs a {self.cond_channels}-channel cond")
            x = torch.cat([x, cond], 1)
        return self.head(self.body(x))


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """Discriminator loss (scalar, mean over elements).

    - ``"hinge"``: E[relu(1 − D(x))] + E[relu(1 + D(x̃))].
    - ``"ns"``: the cross-entropy of the original GAN, E[softplus(−D(x))] + E[softplus(D(x̃))].

    Raises:
        ValueError: unknown ``kind``.
    """
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    if kind == "ns":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    raise ValueError(f"unknown GAN loss {kind!r}; valid: {', '.join(GAN_LOSSES)}")


def g_loss(fake_logits: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """Generator (decoder) loss (scalar): −E[D(x̃)] for ``"hinge"``, the non-saturating
    E[softplus(−D(x̃))] = −E[log σ(D(x̃))] for ``"ns"``.

    Raises:
        ValueError: unknown ``kind``.
    """
    if kind == "hinge":
        return -fake_logits.mean()
    if kind == "ns":
        return F.softplus(-fake_logits).mean()
    raise ValueError(f"unknown GAN loss {kind!r}; valid: {', '.join(GAN_LOSSES)}")


@dataclass
class GANMonitor:
    """Per-epoch discriminator statistics and a verdict on whether training still works.

    Call :meth:`update` once per step with the logits D gave real and fake images, then
    :meth:`summary` at the end of the epoch (which also resets the counters).

    An epoch is *collapsed* when the discriminator
    - wins outright: it classifies at least ``win_accuracy`` of real and fake images correctly
      and its mean logit margin E[D(x)] − E[D(x̃)] exceeds ``win_margin`` (with spectral norm a
      margin of tens means the decoder no longer moves it), or
    - is dead: the standard deviation of all its logits is below ``dead_std`` (it says the same
      thing for every input, so it gives the decoder no gradient).
    """

    win_accuracy: float = 0.995
    win_margin: float = 10.0
    dead_std: float = 1e-4

    def __post_init__(self):
        self._reset()

    def _reset(self):
        self.n = 0
        self.correct = 0
        self.sum_real = self.sum_fake = 0.0
        self.sum_sq = self.sum_all = 0.0

    @torch.no_grad()
    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> bool:
        """Add one step's logits; returns False if any of them is NaN or inf."""
        r, f = real_logits.detach().double().flatten(), fake_logits.detach().double().flatten()
        if not (torch.isfinite(r).all() and torch.isfinite(f).all()):
            return False
        self.n += r.numel() + f.numel()
        self.correct += int((r > 0).sum()) + int((f < 0).sum())
        self.sum_real += float(r.sum())
        self.sum_fake += float(f.sum())
        both = torch.cat([r, f])
        self.sum_all += float(both.sum())
        self.sum_sq += float((both * both).sum())
        return True

    def summary(self) -> dict:
        """``{"d_accuracy", "d_real", "d_fake", "d_std", "collapsed": reason | None}`` for the
        steps since the last call (``d_real`` / ``d_fake``: mean logits)."""
        n = max(self.n, 1)
        half = n / 2
        mean = self.sum_all / n
        std = math.sqrt(max(self.sum_sq / n - mean * mean, 0.0))
        s = {
            "d_accuracy": self.correct / n,
            "d_real": self.sum_real / half,
            "d_fake": self.sum_fake / half,
            "d_std": std,
        }
        reason = None
        if self.n and std < self.dead_std:
            reason = f"the discriminator is dead (the same logit {mean:.3g} for every input)"
        elif (self.n and s["d_accuracy"] >= self.win_accuracy
              and s["d_real"] - s["d_fake"] > self.win_margin):  # fmt: skip
            reason = (f"the discriminator wins outright ({100 * s['d_accuracy']:.1f} % correct, "
                      f"logit margin {s['d_real'] - s['d_fake']:.1f})")  # fmt: skip
        s["collapsed"] = reason
        self._reset()
        return s
