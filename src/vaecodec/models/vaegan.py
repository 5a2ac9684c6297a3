"""VAE-GAN (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity metric").

A VAE whose decoder is also the generator of a GAN::

    x ──encoder──> q(z|x) ──z──> decoder ──> x̃ = E[x|z] ──┐
    z_p ~ N(0, I) ─────────────> decoder ──> x_p ─────────┼──> D ──> real / fake logit
    x (grey levels) ──────────────────────────────────────┘    └──> Dis_l features

    encoder + decoder:  w_px·E_q[−log p(x|z)] + β·KL                       (the −ELBO terms)
                      + w_feat·½‖Dis_l(x) − Dis_l(x̃)‖²                     (learned similarity)
                      + w_gan·½(L_G(D(x̃)) + L_G(D(x_p)))   (decoder only: z of x̃ is detached)
    discriminator:      L_D(D(x), D(x̃)) and L_D(D(x), D(x_p)), averaged

with L_G / L_D the hinge or non-saturating losses of :mod:`vaecodec.models.gan` and a
spectral-normalised discriminator. Larsen et al. replace the pixel likelihood by the
feature-space one (``w_px = 0``); keeping the pixel term (the default, ``w_px = 1``) keeps an
ELBO to report — −ELBO, KL (the rate the model spends) and the IWAE bound are computed exactly as
for a VAE — and makes training far more stable on a CPU budget. As in the paper, the adversarial
loss does not update the encoder.

The discriminator's "real" images are grey levels in [0, 1] and its fakes are decoder means:
for a Bernoulli decoder trained on dynamically binarised digits, the grey image is exactly the
mean of the binarised targets, so both sides live in the same space.

Registered as ``vaegan-conv`` (the encoder / decoder of ``vae-conv``, a convolutional
discriminator) and ``vaegan-mlp`` (those of ``vae-mlp``, a fully connected discriminator: several
times faster on a CPU). The
model is a :class:`~vaecodec.models.vae.VAE` (encode, decode, decode_mean, sample, forward's
ELBO, IWAE) plus ``discriminator``; every VAE command works on it. Training:
:mod:`vaecodec.train.vaegan_trainer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vaecodec.distributions.likelihoods import reparameterize
from vaecodec.models.gan import GAN_LOSSES, ConvDiscriminator, MLPDiscriminator, d_loss, g_loss
from vaecodec.models.registry import register_model
from vaecodec.models.vae import VAE, VAEConfig
from vaecodec.priors.standard_normal import kl_std_normal


@dataclass
class VAEGANConfig(VAEConfig):
    """A :class:`VAEConfig` plus the discriminator.

    Attributes:
        disc_channels: the discriminator's widths: of its stride-2 convolutions for ``conv``
            (default 32, 64, 128), of its hidden layers for ``mlp`` (default 256, 128). The
            discriminator has the generator's architecture family.
        spectral_norm: spectral normalisation in the discriminator (Miyato et al. 2018).
    """

    disc_channels: list[int] | None = None
    spectral_norm: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.disc_channels is None:
            self.disc_channels = [32, 64, 128] if self.arch == "conv" else [256, 128]
        self.disc_channels = [int(c) for c in self.disc_channels]
        if self.deterministic:
            raise ValueError("a VAE-GAN has a stochastic encoder (deterministic must be False)")
        if not self.disc_channels:
            raise ValueError("disc_channels must list at least one width")

    @property
    def model_name(self) -> str:
        return f"vaegan-{self.arch}"


@register_model("vaegan-conv", "vaegan-mlp")
class VAEGAN(VAE):
    """VAE-GAN: a :class:`VAE` with a discriminator (Larsen et al. 2016).

    Args:
        config: :class:`VAEGANConfig`.

    Shapes: x ``[B, C, H, W]`` in [0, 1]; z ``[B, d]``; discriminator logits ``[B]``, features
    ``[B, F]``. Losses are means over the batch; the −ELBO terms in nats per example.
    """

    def __init__(self, config: VAEGANConfig):
        super().__init__(config)
        disc = ConvDiscriminator if config.arch == "conv" else MLPDiscriminator
        self.discriminator = disc(config.input_shape, config.disc_channels, config.spectral_norm)

    @classmethod
    def from_config(cls, config: dict) -> VAEGAN:
        return cls(VAEGANConfig(**config))

    def generator_parameters(self) -> list[torch.nn.Parameter]:
        """Encoder, decoder and likelihood parameters (what the VAE optimiser updates)."""
        return [p for n, p in self.named_parameters() if not n.startswith("discriminator.")]

    def generator_losses(self, x: torch.Tensor, x_real: torch.Tensor, beta: float = 1.0,
                         free_bits: float = 0.0, pixel_weight: float = 1.0,
                         feature_weight: float = 1.0, gan_weight: float = 1.0,
                         gan_loss: str = "hinge") -> dict:  # fmt: skip
        """The encoder + decoder objective on one batch.

        Args:
            x: the likelihood's targets ``[B, C, H, W]`` (binarised for a Bernoulli decoder).
            x_real: the same images as the discriminator sees real data (grey levels).
            beta, free_bits: the KL term, as for :meth:`VAE.forward`.
            pixel_weight, feature_weight, gan_weight: w_px, w_feat, w_gan of the objective.
            gan_loss: "hinge" or "ns".

        Returns:
            dict: ``loss`` (scalar to minimise), ``elbo``, ``recon``, ``kl`` ``[B]`` (nats),
            ``kl_per_dim``, ``feat`` and ``adv`` (scalars), and ``fakes`` ``[2B, C, H, W]``
            (detached reconstructions and prior samples for the discriminator's step).
        """
        if gan_loss not in GAN_LOSSES:
            raise ValueError(f"unknown GAN loss {gan_loss!r}; valid: {', '.join(GAN_LOSSES)}")
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar)
        kl = kl_std_normal(mu, logvar)
        params = self.decode(z)
        recon = -self.likelihood.log_prob(x, params)
        kl_per_dim = kl.mean(0)
        kl_term = (torch.clamp(kl_per_dim, min=free_bits).sum() if free_bits > 0
                   else kl.sum(1).mean())  # fmt: skip
        kl_sum = kl.sum(1)
        out = {"elbo": -(recon + kl_sum), "recon": recon, "kl": kl_sum, "kl_per_dim": kl_per_dim}
        loss = pixel_weight * recon.mean() + beta * kl_term
        x_rec = self.likelihood.mean(params)
        z_p = torch.randn_like(z)
        x_p = self.decode_mean(z_p)
        d = self.discriminator
        feat = torch.zeros((), device=x.device)
        if feature_weight:
            with torch.no_grad():
                _, f_real = d(x_real)
            _, f_rec = d(x_rec)
            feat = 0.5 * (f_rec - f_real).pow(2).sum(1).mean()
        adv = torch.zeros((), device=x.device)
        if gan_weight:
            # the adversarial term moves the decoder only (Larsen et al.): decode the detached z
            logits_fake, _ = d(torch.cat([self.decode_mean(z.detach()), x_p]))
            adv = g_loss(logits_fake, gan_loss)
        loss = loss + feature_weight * feat + gan_weight * adv
        out.update(loss=loss, feat=feat.detach(), adv=adv.detach(),
                   fakes=torch.cat([x_rec, x_p]).detach())  # fmt: skip
        return out

    def discriminator_loss(self, x_real: torch.Tensor, fakes: torch.Tensor,
                           gan_loss: str = "hinge") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """L_D on real ``[B, ...]`` and fake ``[B', ...]`` images: (loss, real logits, fake
        logits)."""
        real_logits, _ = self.discriminator(x_real)
        fake_logits, _ = self.discriminator(fakes)
        return d_loss(real_logits, fake_logits, gan_loss), real_logits, fake_logits
