"""Variational autoencoders (Kingma & Welling 2014; Rezende et al. 2014) and a plain autoencoder.

::

    x [B,C,H,W] --encoder--> (mu, logvar) [B,d] --reparameterise--> z [B,d]
                                                                     |
    p(x|z) <--likelihood-- params [B, C*n_params, H, W] <--decoder---+

    loss = -ELBO = E_q[-log p(x|z)] + beta * KL(q(z|x) || N(0, I))       (nats per example)

Registered models (see ``vaecodec.models.registry``):

- ``vae-mlp``: MLP encoder/decoder (default hidden 512-512), as in Kingma & Welling.
- ``vae-conv``: small convolutional encoder/decoder (two stride-2 4x4 convolutions, then a
  fully connected layer; the decoder mirrors it with transposed convolutions; H, W divisible by 4).
- ``ae-mlp`` / ``ae-conv``: the same networks as a deterministic autoencoder: z = mu(x), no KL.
  It reconstructs but has no reason to place codes where N(0, I) puts mass, so decoding prior
  samples gives non-images: the baseline that shows what the KL term buys.

Free bits (Kingma et al. 2016): each latent dimension's batch-mean KL is clamped below at
``free_bits`` nats in the training loss (the reported KL is never clamped).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from vaecodec.distributions.likelihoods import gaussian_log_prob, make_likelihood, reparameterize
from vaecodec.models.registry import register_model
from vaecodec.priors.standard_normal import kl_std_normal, std_normal_log_prob

ARCHS = ("mlp", "conv")


@dataclass
class VAEConfig:
    """Hyper-parameters of a VAE / AE; stored as ``config`` in config.json.

    Attributes:
        input_shape: (C, H, W) of the data.
        latent_dim: d, the number of latent dimensions.
        arch: "mlp" or "conv".
        hidden: MLP hidden widths (encoder; the decoder mirrors them). For "conv", the width of
            the fully connected layer between the conv stack and the latent.
        channels: conv widths of the two stride-2 stages ("conv" only).
        likelihood: decoder likelihood name (see ``vaecodec.distributions``).
        sigma: σ of the "gaussian" likelihood (initial σ for "gaussian-learned").
        deterministic: True for the plain autoencoder (no posterior noise, no KL).
    """

    input_shape: tuple[int, int, int] = (1, 28, 28)
    latent_dim: int = 16
    arch: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [512, 512])
    channels: list[int] = field(default_factory=lambda: [32, 64])
    likelihood: str = "bernoulli"
    sigma: float = 1.0
    deterministic: bool = False

    def __post_init__(self):
        self.input_shape = tuple(int(v) for v in self.input_shape)
        self.hidden = [int(h) for h in self.hidden]
        self.channels = [int(c) for c in self.channels]
        if len(self.input_shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {self.input_shape}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.latent_dim < 1:
            raise ValueError("latent_dim must be >= 1")
        if self.arch == "conv":
            _, h, w = self.input_shape
            if h % 4 or w % 4:
                raise ValueError(f"the conv architecture needs H and W divisible by 4, got {h}x{w}")
            if len(self.channels) != 2:
                raise ValueError("channels must list two widths for the conv architecture")

    @property
    def model_name(self) -> str:
        return f"{'ae' if self.deterministic else 'vae'}-{self.arch}"


def _mlp(sizes: list[int], act=nn.ELU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


class _ConvEncoder(nn.Module):
    def __init__(self, c: int, h: int, w: int, ch: list[int], hidden: int, out: int):
        super().__init__()
        c1, c2 = ch
        self.net = nn.Sequential(
            nn.Conv2d(c, c1, 4, 2, 1), nn.ELU(),
            nn.Conv2d(c1, c2, 4, 2, 1), nn.ELU(),
            nn.Flatten(),
            nn.Linear(c2 * (h // 4) * (w // 4), hidden), nn.ELU(),
            nn.Linear(hidden, out),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)


class _ConvDecoder(nn.Module):
    def __init__(self, d: int, c_out: int, h: int, w: int, ch: list[int], hidden: int):
        super().__init__()
        c1, c2 = ch
        self.shape = (c2, h // 4, w // 4)
        self.fc = nn.Sequential(
            nn.Linear(d, hidden), nn.ELU(), nn.Linear(hidden, c2 * (h // 4) * (w // 4)), nn.ELU()
        )
        self.net = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.ELU(),
            nn.ConvTranspose2d(c1, c_out, 4, 2, 1),
        )  # fmt: skip

    def forward(self, z):
        return self.net(self.fc(z).view(-1, *self.shape))


class IWAEMixin:
    """The importance-weighted bound of any model with ``log_importance_weights(x, k) -> [k, B]``
    and a ``deterministic`` flag (the VAE here, the hierarchical VAE in ``models.hvae``)."""

    @torch.no_grad()
    def iwae_log_likelihood(self, x: torch.Tensor, k: int, chunk: int = 100) -> torch.Tensor:
        """Importance-weighted lower bound on log p(x) with k samples (Burda et al. 2016).

        log p(x) >= log (1/k) sum_k w_k; tightens as k grows (k = 1 is the ELBO).
        Computed in chunks of ``chunk`` samples to bound memory. Returns ``[B]`` nats.

        Raises:
            ValueError: for a deterministic autoencoder (it has no density).
        """
        if self.deterministic:
            raise ValueError("an autoencoder has no likelihood; IWAE needs a VAE")
        parts = []
        left = k
        while left > 0:
            n = min(chunk, left)
            parts.append(self.log_importance_weights(x, n))
            left -= n
        log_w = torch.cat(parts, 0)
        return torch.logsumexp(log_w, 0) - math.log(k)


@register_model("vae-mlp", "vae-conv", "ae-mlp", "ae-conv")
class VAE(IWAEMixin, nn.Module):
    """A VAE with a diagonal-Gaussian posterior and a standard-normal prior (or a plain AE).

    Args:
        config: :class:`VAEConfig`.

    Shapes: x ``[B, C, H, W]`` in [0, 1]; mu, logvar, z ``[B, d]``; decoder params
    ``[B, C * likelihood.n_params, H, W]``. All log-densities are in nats per example.
    """

    kind = "vae"

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        c, h, w = config.input_shape
        d = config.latent_dim
        self.likelihood = make_likelihood(config.likelihood, config.sigma)
        n_out = 1 if config.deterministic else 2
        c_out = c * self.likelihood.n_params
        if config.arch == "mlp":
            self.encoder = nn.Sequential(nn.Flatten(), _mlp([c * h * w, *config.hidden, n_out * d]))
            self.decoder = nn.Sequential(
                _mlp([d, *reversed(config.hidden), c_out * h * w]), nn.Unflatten(1, (c_out, h, w))
            )
        else:
            hid = config.hidden[0]
            self.encoder = _ConvEncoder(c, h, w, config.channels, hid, n_out * d)
            self.decoder = _ConvDecoder(d, c_out, h, w, config.channels, hid)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict) -> VAE:
        return cls(VAEConfig(**config))

    def config_dict(self) -> dict:
        return asdict(self.config)

    @property
    def model_name(self) -> str:
        return self.config.model_name

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def deterministic(self) -> bool:
        return self.config.deterministic

    @property
    def data_dims(self) -> int:
        """D = C*H*W, the number of data dimensions (for bits/dim)."""
        return math.prod(self.config.input_shape)

    # -- the three objects -------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x): returns (mu, logvar), each ``[B, d]``. For an AE, logvar is -inf-like (zeros
        variance is represented by ``logvar = -30``)."""
        h = self.encoder(x)
        if self.config.deterministic:
            return h, torch.full_like(h, -30.0)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder params ``[B, C*n_params, H, W]`` for z ``[B, d]``."""
        return self.decoder(z)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """The mean image E[x|z] in [0, 1], ``[B, C, H, W]``."""
        return self.likelihood.mean(self.decode(z))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode n draws from the prior N(0, I): mean images ``[n, C, H, W]``."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return self.decode_mean(z)

    # -- objectives --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, beta: float = 1.0, free_bits: float = 0.0) -> dict:
        """One-sample estimate of the (β-weighted) negative ELBO.

        Returns a dict of tensors: ``loss`` (scalar, mean over the batch, what to minimise),
        ``elbo`` ``[B]`` (nats, β = 1, unclamped), ``recon`` ``[B]`` (-log p(x|z), nats),
        ``kl`` ``[B]`` (nats), ``kl_per_dim`` ``[d]`` (batch mean, nats).
        """
        mu, logvar = self.encode(x)
        if self.config.deterministic:
            z = mu
            kl = torch.zeros_like(mu)
        else:
            z = reparameterize(mu, logvar)
            kl = kl_std_normal(mu, logvar)
        recon = -self.likelihood.log_prob(x, self.decode(z))
        kl_per_dim = kl.mean(0)
        if free_bits > 0:
            kl_term = torch.clamp(kl_per_dim, min=free_bits).sum()
        else:
            kl_term = kl.sum(1).mean()
        loss = recon.mean() + beta * kl_term
        kl_sum = kl.sum(1)
        return {
            "loss": loss,
            "elbo": -(recon + kl_sum),
            "recon": recon,
            "kl": kl_sum,
            "kl_per_dim": kl_per_dim,
        }

    @torch.no_grad()
    def log_importance_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q(z|x): ``[k, B]`` nats."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, n=k)  # [k, B, d]
        b = x.shape[0]
        params = self.decode(z.reshape(k * b, -1))
        log_px = self.likelihood.log_prob_samples(x, params.view(k, b, *params.shape[1:]))
        return log_px + std_normal_log_prob(z) - gaussian_log_prob(z, mu, logvar)
