"""A hierarchical VAE with a Markov chain of latent layers, the model Bit-Swap codes.

Kingma, Abbeel & Ho 2019, "Bit-Swap: recursive bits-back coding for lossless compression with
hierarchical latent variables" (ICML); the MLP layers of Burda et al. 2016 (two stochastic layers).
L layers of diagonal-Gaussian latents z_1 (next to x) .. z_L (top)::

    generative  p(x, z) = p(x|z_1) · p(z_1|z_2) ··· p(z_{L-1}|z_L) · p(z_L),   p(z_L) = N(0, I)
    inference   q(z|x)  = q(z_1|x) · q(z_2|z_1) ··· q(z_L|z_{L-1})

          x ──enc_1──> q(z_1|x) ──enc_2──> q(z_2|z_1) ── ... ──> q(z_L|z_{L-1})
          ^                 |  ^                |                        |
        dec_0            dec_1 ··· p(z_1|z_2) <─┘                 p(z_L) = N(0, I)
          └──── p(x|z_1) <──┘

Each arrow is an MLP (two hidden layers of ``hidden[l]`` units, ELU). Both chains are Markov:
every q and every p depends on one neighbouring layer only. That is what lets Bit-Swap
interleave the pops (q) and pushes (p) layer by layer, so that the initial bits it needs are
those of q(z_1|x) only (:mod:`vaecodec.models.bitswap`); a ladder VAE's top-down q(z_l|z_{l+1}, x)
would need the whole hierarchy's worth of initial bits.

Loss (nats per example)::

    −ELBO = E_q[−log p(x|z_1)] + Σ_l KL_l,
    KL_l  = E_q[log q(z_l|·) − log p(z_l|z_{l+1})]   (analytic for the top layer; for l < L the
            entropy of q is analytic and log p(z_l|z_{l+1}) is taken at the sample of z_{l+1})

with KL warm-up (β) and free bits per latent dimension as in :mod:`vaecodec.models.vae`.

Registered as ``hvae-mlp``. The interface is the VAE's (``encode`` / ``decode`` / ``sample`` /
``forward`` / ``iwae_log_likelihood``), with z the concatenation [z_1, .., z_L] of all layers
(``latent_dim`` = Σ d_l): ``encode`` gives the means and log-variances along the chain of means,
``decode`` uses z_1 (x depends on the rest only through it). ``layer_slices`` says which
dimensions belong to which layer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from vaecodec.distributions.likelihoods import LOG_2PI, gaussian_log_prob, make_likelihood
from vaecodec.models.registry import register_model
from vaecodec.models.vae import IWAEMixin, _mlp
from vaecodec.priors.standard_normal import kl_std_normal, std_normal_log_prob

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


@dataclass
class HVAEConfig:
    """Hyper-parameters of a hierarchical VAE; stored as ``config`` in config.json.

    Attributes:
        input_shape: (C, H, W) of the data.
        latent_dims: d_1 .. d_L, bottom (next to x) first; L >= 1.
        hidden: hidden width of the MLPs of each level (``len == L``): level 1 is x <-> z_1,
            level l is z_{l-1} <-> z_l.
        likelihood: decoder likelihood name (see ``vaecodec.distributions``).
        sigma: σ of the "gaussian" likelihood.
        bucket_loc, bucket_scale: per latent dimension (``Σ d_l`` entries), the location and
            scale of the aggregate posterior of the layers below the top, set by
            :meth:`HVAE.calibrate_buckets` after training (None: 0 and 1). Bits-back coding
            cuts dimension u into buckets of equal mass under N(loc_u, scale_u²) instead of
            N(0, 1), so that a layer whose learned prior spreads it wide is still finely cut.
    """

    input_shape: tuple[int, int, int] = (1, 28, 28)
    latent_dims: list[int] = field(default_factory=lambda: [64, 32])
    hidden: list[int] = field(default_factory=lambda: [512, 256])
    likelihood: str = "bernoulli"
    sigma: float = 1.0
    bucket_loc: list[float] | None = None
    bucket_scale: list[float] | None = None

    def __post_init__(self):
        self.input_shape = tuple(int(v) for v in self.input_shape)
        self.latent_dims = [int(d) for d in self.latent_dims]
        self.hidden = [int(h) for h in self.hidden]
        if len(self.input_shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {self.input_shape}")
        if not self.latent_dims or min(self.latent_dims) < 1:
            raise ValueError("latent_dims must list at least one layer, each >= 1 dimensions")
        if len(self.hidden) != len(self.latent_dims):
            raise ValueError(
                f"hidden must give one width per latent layer ({len(self.latent_dims)}), "
                f"got {self.hidden}"
            )
        if min(self.hidden) < 1:
            raise ValueError("hidden widths must be >= 1")
        for name in ("bucket_loc", "bucket_scale"):
            v = getattr(self, name)
            if v is not None:
                v = [float(a) for a in v]
                setattr(self, name, v)
                if len(v) != sum(self.latent_dims) or not all(math.isfinite(a) for a in v):
                    raise ValueError(f"{name} must give one finite number per latent dimension")
        if self.bucket_scale is not None and min(self.bucket_scale) <= 0:
            raise ValueError("bucket_scale must be positive")


def _gauss_head(sizes: list[int]) -> nn.Sequential:
    """An MLP whose output is (mu, logvar) of a diagonal Gaussian: last width is 2·d."""
    return _mlp(sizes)


def _split(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu, logvar = h.chunk(2, dim=-1)
    return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)


@register_model("hvae-mlp")
class HVAE(IWAEMixin, nn.Module):
    """Hierarchical VAE with Markov inference and generative chains (Bit-Swap's model).

    Args:
        config: :class:`HVAEConfig`.

    Shapes: x ``[B, C, H, W]`` in [0, 1]; layer l's latent ``[B, d_l]``; concatenated z
    ``[B, Σ d_l]``; decoder params ``[B, C * likelihood.n_params, H, W]``. Nats per example.
    """

    kind = "vae"
    deterministic = False

    def __init__(self, config: HVAEConfig):
        super().__init__()
        self.config = config
        c, h, w = config.input_shape
        dims, hid = config.latent_dims, config.hidden
        self.likelihood = make_likelihood(config.likelihood, config.sigma)
        c_out = c * self.likelihood.n_params
        # inference q(z_1|x), q(z_l|z_{l-1})
        self.enc = nn.ModuleList(
            [nn.Sequential(nn.Flatten(), _gauss_head([c * h * w, hid[0], hid[0], 2 * dims[0]]))]
            + [_gauss_head([dims[i - 1], hid[i], hid[i], 2 * dims[i]]) for i in range(1, len(dims))]
        )
        # generative p(x|z_1), p(z_{l-1}|z_l)
        self.dec_x = nn.Sequential(
            _mlp([dims[0], hid[0], hid[0], c_out * h * w]), nn.Unflatten(1, (c_out, h, w))
        )
        self.dec = nn.ModuleList(
            [_gauss_head([dims[i], hid[i], hid[i], 2 * dims[i - 1]]) for i in range(1, len(dims))]
        )

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict) -> HVAE:
        return cls(HVAEConfig(**config))

    def config_dict(self) -> dict:
        return asdict(self.config)

    model_name = "hvae-mlp"

    @property
    def n_layers(self) -> int:
        return len(self.config.latent_dims)

    @property
    def latent_dim(self) -> int:
        """Σ d_l, the length of the concatenated latent."""
        return sum(self.config.latent_dims)

    @property
    def layer_slices(self) -> list[slice]:
        """Which dimensions of the concatenated z each layer holds (bottom layer first)."""
        out, start = [], 0
        for d in self.config.latent_dims:
            out.append(slice(start, start + d))
            start += d
        return out

    @property
    def data_dims(self) -> int:
        return math.prod(self.config.input_shape)

    # -- the conditionals (each returns (mu, logvar), last dim d_l) ----------------------------
    def posterior(self, level: int, below: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z_{level+1} | below): ``below`` is x ``[B, C, H, W]`` for level 0, else z_level
        ``[..., d_level]`` (levels count from 0: level 0 gives z_1)."""
        return _split(self.enc[level](below))

    def prior(self, level: int, above: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z_{level+1} | z_{level+2}) for level < L−1, from ``above`` ``[..., d_{level+2}]``."""
        return _split(self.dec[level](above))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder params ``[B, C*n_params, H, W]`` of p(x|z_1), for z ``[B, Σ d_l]`` (only its
        first d_1 entries, z_1, are used) or z_1 ``[B, d_1]``."""
        return self.dec_x(z[..., : self.config.latent_dims[0]])

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """The mean image E[x|z_1] in [0, 1], ``[B, C, H, W]``."""
        return self.likelihood.mean(self.decode(z))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) along the chain of means (z_l = its mean when computing layer l+1): returns
        (mu, logvar), each ``[B, Σ d_l]``."""
        mus, lvs = [], []
        h = x
        for level in range(self.n_layers):
            mu, lv = self.posterior(level, h)
            mus.append(mu)
            lvs.append(lv)
            h = mu
        return torch.cat(mus, -1), torch.cat(lvs, -1)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, keep_from: int | None = None,
        z: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Ancestral samples: z_L ~ N(0, I), z_l ~ p(z_l|z_{l+1}); mean images ``[n, C, H, W]``.

        Args:
            n: number of images.
            generator: torch RNG for reproducible draws.
            keep_from, z: with both given, layers ``keep_from`` .. L (1-based) are taken from
                ``z`` (``[n, Σ d_l]``) and only the layers below are drawn: what the upper
                layers decide and what is left to the lower ones.
        """
        device = next(self.parameters()).device
        dims = self.config.latent_dims
        sl = self.layer_slices

        def draw(shape):
            return torch.randn(shape, generator=generator, device=device)

        top = self.n_layers - 1
        if keep_from is not None and z is not None:
            cur = z[:, sl[top]]
        else:
            cur = draw((n, dims[top]))
        for level in range(top - 1, -1, -1):
            if keep_from is not None and z is not None and level + 1 >= keep_from:
                cur = z[:, sl[level]]
                continue
            mu, lv = self.prior(level, cur)
            cur = mu + torch.exp(0.5 * lv) * draw(mu.shape)
        return self.decode_mean(cur)

    @torch.no_grad()
    def calibrate_buckets(self, x: torch.Tensor, batch_size: int = 1000, seed: int = 0) -> None:
        """Set ``config.bucket_loc`` / ``bucket_scale`` from training images ``x [N, C, H, W]``.

        For every dimension u of the layers below the top: loc_u = the mean of the posterior
        means, scale_u = sqrt(mean posterior variance + variance of the means) (the aggregate
        posterior's moments, one sample of the chain per image, seeded), rounded to multiples
        of 2**-6 (scale at least 2**-6) so that the JSON numbers are exact. The top layer keeps
        0 and 1 (its prior is N(0, I)). Changes no weight.
        """
        was = self.training
        self.eval()
        dims = self.config.latent_dims
        s1 = torch.zeros(sum(dims), dtype=torch.float64)
        s2 = torch.zeros_like(s1)
        var = torch.zeros_like(s1)
        n = 0
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            for i in range(0, x.shape[0], batch_size):
                zs, qs = self._chain(x[i : i + batch_size])
                mu = torch.cat([q[0] for q in qs], -1).double()
                s1 += mu.sum(0)
                s2 += mu.pow(2).sum(0)
                var += torch.cat([q[1] for q in qs], -1).double().exp().sum(0)
                n += mu.shape[0]
        mean = s1 / n
        scale = (var / n + (s2 / n - mean.pow(2)).clamp(min=0)).sqrt()
        grid = 64.0
        loc = torch.round(mean * grid) / grid
        scale = torch.clamp(torch.ceil(scale * grid) / grid, min=1 / grid)
        top = self.layer_slices[-1]
        loc[top], scale[top] = 0.0, 1.0
        self.config.bucket_loc = loc.tolist()
        self.config.bucket_scale = scale.tolist()
        self.train(was)

    # -- objectives --------------------------------------------------------------------------
    def _chain(self, x: torch.Tensor, k: int | None = None):
        """Draw z_l ~ q along the chain (``k`` samples per example: shapes ``[k, B, d_l]``).

        Returns (zs, qs): lists over layers of the samples and of q's (mu, logvar)."""
        zs, qs = [], []
        h = x
        for level in range(self.n_layers):
            mu, lv = self.posterior(level, h)
            if level == 0 and k is not None:
                mu, lv = mu.expand(k, *mu.shape), lv.expand(k, *lv.shape)
            zl = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
            zs.append(zl)
            qs.append((mu, lv))
            h = zl
        return zs, qs

    def _kl_terms(self, zs, qs) -> list[torch.Tensor]:
        """Per-dimension KL_l terms ``[..., d_l]`` per layer: analytic for the top layer; for
        l < L the analytic entropy of q minus log p(z_l|z_{l+1}) at the sampled z's."""
        per_dim = []
        top = self.n_layers - 1
        for level in range(self.n_layers):
            mu, lv = qs[level]
            if level == top:
                per_dim.append(kl_std_normal(mu, lv))
                continue
            pm, plv = self.prior(level, zs[level + 1])
            neg_entropy = -0.5 * (LOG_2PI + lv + 1.0)
            log_p = -0.5 * (LOG_2PI + plv + (zs[level] - pm).pow(2) * torch.exp(-plv))
            per_dim.append(neg_entropy - log_p)
        return per_dim

    def forward(self, x: torch.Tensor, beta: float = 1.0, free_bits: float = 0.0) -> dict:
        """One-sample estimate of the (β-weighted) negative ELBO.

        Returns the VAE's dict: ``loss`` (scalar), ``elbo`` ``[B]`` (nats, β = 1, unclamped),
        ``recon`` ``[B]``, ``kl`` ``[B]`` (all layers), ``kl_per_dim`` ``[Σ d_l]`` (batch mean,
        nats; for l < L a one-sample estimate, which can be negative), and ``kl_layers``
        ``[L]`` (batch-mean KL_l, nats).
        """
        zs, qs = self._chain(x)
        recon = -self.likelihood.log_prob(x, self.decode(zs[0]))
        per_dim = torch.cat(self._kl_terms(zs, qs), -1)  # [B, Σ d]
        kl_per_dim = per_dim.mean(0)
        if free_bits > 0:
            kl_term = torch.clamp(kl_per_dim, min=free_bits).sum()
        else:
            kl_term = per_dim.sum(1).mean()
        kl = per_dim.sum(1)
        return {
            "loss": recon.mean() + beta * kl_term,
            "elbo": -(recon + kl),
            "recon": recon,
            "kl": kl,
            "kl_per_dim": kl_per_dim,
            "kl_layers": torch.stack([kl_per_dim[s].sum() for s in self.layer_slices]),
        }

    @torch.no_grad()
    def log_importance_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """log w_k = log p(x, z_k) − log q(z_k|x), z_k ~ q(z|x): ``[k, B]`` nats."""
        zs, qs = self._chain(x, k)
        b = x.shape[0]
        params = self.decode(zs[0].reshape(k * b, -1))
        log_px = self.likelihood.log_prob_samples(x, params.view(k, b, *params.shape[1:]))
        log_w = log_px + std_normal_log_prob(zs[-1])
        for level in range(self.n_layers):
            mu, lv = qs[level]
            log_w = log_w - gaussian_log_prob(zs[level], mu, lv)
            if level < self.n_layers - 1:
                pm, plv = self.prior(level, zs[level + 1])
                log_w = log_w + gaussian_log_prob(zs[level], pm, plv)
        return log_w
