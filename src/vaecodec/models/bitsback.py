"""Lossless compression with a VAE by bits-back coding with ANS (BB-ANS).

Townsend, Bird & Barber 2019, "Practical lossless compression with latent variables using bits
back coding" (ICLR). A VAE with a discrete likelihood p(x|z), a posterior q(z|x) and the prior
p(z) = N(0, I) codes an image x in about −ELBO(x) nats::

    encode x (stack grows to the right)               decode (exact inverse, right to left)
    ------------------------------------------------  -----------------------------------------
    1. pop  z ~ q(z|x)   ("get the bits back")          3'. pop  z with p(z)
    2. push x with p(x|z)                              2'. pop  x with p(x|z)
    3. push z with p(z)                                1'. push z with q(z|x)

    net bits = −log2 p(x|z) − log2 p(z) + log2 q(z|x)  →  E_q[...] = −ELBO(x) / ln 2

Hierarchies, with Bit-Swap's order (Kingma, Abbeel & Ho 2019). For the Markov hierarchy of
:mod:`vaecodec.models.hvae` (q(z_1|x) q(z_2|z_1) ···, p(z_L) p(z_{L-1}|z_L) ··· p(x|z_1)) the pops
and pushes are interleaved layer by layer::

    encode                                            decode (right to left)
    1. pop  z_1 ~ q(z_1|x);  push x with p(x|z_1)     pop z_L; for l = L-1 .. 1: pop z_l with
    2. for l = 1 .. L-1: pop z_{l+1} ~ q(z_{l+1}|z_l),   p(z_l|z_{l+1}), push z_{l+1} with
       then push z_l with p(z_l|z_{l+1})                 q(z_{l+1}|z_l); pop x; push z_1 with q
    3. push z_L with p(z_L)

so every pop after the first finds the bits that the push before it left: the initial bits are
about those of q(z_1|x) alone, where popping the whole hierarchy first (BB-ANS) would need
those of every layer. Net bits: −log2 p(x, z) + log2 q(z|x), as for one layer. With L = 1 this
is exactly the one-layer order above.

Discretised latents. Each latent dimension is cut into ``2**latent_prec`` buckets of equal mass
under the N(0, 1) prior (edges ``Φ⁻¹(j / 2**P)``), so p(z) is uniform over buckets (P bits per
dimension) and q(z|x) is the Gaussian posterior's mass on each bucket (a ``2**P``-way
categorical per dimension). The latent handed to the decoder is the bucket's centre
``Φ⁻¹((j + ½) / 2**P)``.

Pixels. The decoder's per-pixel distribution is coded symbol by symbol with constriction's
``Categorical`` / ``Bernoulli`` models (24-bit fixed point, every symbol codable):

- ``bernoulli``: one binary symbol per pixel, P(1) = sigmoid(logit).
- ``beta-binomial``: a "zero flag" per pixel (Bernoulli with P(x ≠ 0) = 1 − P(0)), then, for the
  non-zero pixels only, a 255-way categorical P(k | k ≥ 1). This is the same distribution
  factorised exactly (P(k) = P(k ≠ 0)·P(k | k ≠ 0)); on MNIST it cuts the work by ~5x since
  ~80 % of the pixels are 0.
- any other likelihood with ``log_pmf`` (e.g. ``logistic``): a K-way categorical per pixel from
  ``exp(log_pmf)``.

Lanes. N images are dealt round-robin to S independent ANS stacks ("lanes", image i goes to lane
i mod S) that are coded in lock step, so that the networks run on batches of S latents/images
instead of one at a time (a batch-1 float64 MLP is memory-bound); the decode of step t only
needs what lane ℓ wrote at step t. Every lane pays the initial-bits cost once.

Initial bits. The very first pop (image 0 of a lane, step 1) needs bits on the stack before
anything was pushed. Each lane's stack is seeded with ``seed_words(...)``: fixed pseudo-random
32-bit words (SHA-256 in counter mode, identical everywhere). The first pop consumes some of
them; the words at the bottom that were never touched are identical to the seed and are not
stored (the stream records how many to re-insert). The cost is therefore only the bits the first
pop actually used, about −log2 q(z_0|x_0) ≈ d·P − KL bits, once per lane. After decoding, each
lane must be back exactly at its seed: a strong end-to-end check.

Determinism. The probabilities handed to the coder must be bit-identical on encode and decode:

- All torch work runs in float64 with ``torch.set_num_threads(1)`` for the duration of a call
  (restored afterwards), and the encoder and decoder networks see exactly the same batches on
  both sides (step t of the lanes), so their outputs are bit-identical on a given machine
  whatever the caller's thread count.
- Network outputs (posterior mean / log-variance, decoder logits / log-parameters) are rounded
  to a grid of ``2**-PARAM_GRID_BITS`` before use, so ulp-level differences between machines
  (other BLAS kernels) almost never change a probability.
- The posterior bucket masses and the Bernoulli probabilities use
  :mod:`vaecodec.coding.detmath` (only IEEE-exact operations: identical on every machine); the
  beta-binomial tables use numpy / torch elementwise functions on arrays of identical shape on
  both sides (identical on the same machine type).

A stream whose probabilities did not match (or that is corrupt) decodes to wrong symbols; the
stream reader (:mod:`vaecodec.compression.lossless`) checks a CRC-32 of the pixels and the
return to the seed, so that shows up as a :class:`~vaecodec.errors.FormatError`, never as a
wrong image.

Typical use::

    codec = BitsBackCodec(model)                  # a VAE with a discrete likelihood
    lanes = codec.encode(symbols)                 # symbols: uint8 [N, D] (pixel levels)
    back = codec.decode(lanes, n_images=N)        # == symbols

Why one module of this size: the BB-ANS codec and the coding faces of the three pixel
likelihoods it drives are only used together, and their push/pop order must be read as one.
"""

from __future__ import annotations

import contextlib
import math

import constriction
import numpy as np
import torch

from vaecodec.coding import detmath
from vaecodec.coding.lossless_format import LaneStream, round_grid, seed_words
from vaecodec.errors import FormatError, ModelError
from vaecodec.priors.standard_normal import DEFAULT_LATENT_PREC, LatentBuckets

__all__ = ["DEFAULT_LATENT_PREC", "BitsBackCodec", "default_lanes", "single_thread"]

MAX_LANES = 16
IMAGES_PER_LANE = 625  # below this many images per lane, fewer lanes (initial-bits overhead)

_CM = constriction.stream.model


@contextlib.contextmanager
def single_thread():
    """Run torch single-threaded inside the block (restoring the caller's setting)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def default_lanes(n_images: int) -> int:
    """Number of lanes for ``n_images``: one per 625 images, at least 1, at most 16."""
    return max(1, min(MAX_LANES, n_images // IMAGES_PER_LANE))


# ---------------------------------------------------------------------------------------------
# Pixel models: push / pop the pixels of a batch of lanes given the decoder's output
# ---------------------------------------------------------------------------------------------


class _PixelModel:
    """Codes ``symbols [S, D]`` (one row per lane) given decoder params ``[S, C*n, H, W]``."""

    levels: int

    def __init__(self, likelihood):
        self.likelihood = likelihood

    def push(self, coders, symbols: np.ndarray, params: np.ndarray) -> None:  # pragma: no cover
        raise NotImplementedError

    def pop(self, coders, params: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class _BernoulliPixels(_PixelModel):
    levels = 2

    def __init__(self, likelihood):
        super().__init__(likelihood)
        self.family = _CM.Bernoulli(perfect=False)

    def _p1(self, params):
        return detmath.sigmoid(params.reshape(params.shape[0], -1))

    def push(self, coders, symbols, params):
        p1 = self._p1(params)
        for lane, coder in enumerate(coders):
            coder.encode_reverse(symbols[lane].astype(np.int32), self.family, p1[lane])

    def pop(self, coders, params):
        p1 = self._p1(params)
        return np.stack([c.decode(self.family, p1[lane]) for lane, c in enumerate(coders)])


class _BetaBinomialPixels(_PixelModel):
    """Beta-binomial over n = 255: a zero flag per pixel, then P(k | k ≥ 1) for the others.

    P(0) = Γ(n+β)Γ(α+β) / (Γ(β)Γ(n+α+β)) (torch float64 ``lgamma``); for k ≥ 1 the table
    comes from the ratio ``P(k+1)/P(k) = (n−k)(α+k) / ((k+1)(n−k−1+β))`` accumulated in log space
    (numpy float32); constriction normalises each row.
    """

    levels = 256
    N = 255

    def __init__(self, likelihood):
        super().__init__(likelihood)
        self.flag = _CM.Bernoulli(perfect=False)
        self.cat = _CM.Categorical(perfect=False)
        j = np.arange(1, self.N, dtype=np.float64)  # ratio P(k+1)/P(k) for k = 1 .. 254
        self._j32 = j.astype(np.float32)
        self._jb32 = (self.N - 1.0 - j).astype(np.float32)
        self._log_const32 = (np.log(self.N - j) - np.log(j + 1.0)).astype(np.float32)

    def _ab(self, params):
        """(α, β) per pixel, float64 tensors ``[S, D]``, exactly as the likelihood computes them."""
        a, b = self.likelihood.concentrations(torch.from_numpy(params))
        return a.flatten(1), b.flatten(1)

    def _p_nonzero(self, a, b):
        """P(x ≠ 0) per pixel, float64 numpy ``[S, D]``."""
        n = float(self.N)
        log_p0 = (
            torch.lgamma(n + b) + torch.lgamma(a + b) - torch.lgamma(b) - torch.lgamma(n + a + b)
        )
        p0 = np.minimum(np.exp(log_p0.numpy()), 1.0)
        return np.clip(1.0 - p0, 0.0, 1.0)

    def _rows(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Unnormalised P(k | k ≥ 1), k = 1..255, for each (α, β) pair: ``[M, 255]``.

        ``log P(k+1)/P(k)`` summed over k (a running sum along the 255 levels, vectorised over
        the M pixels), computed in float32: relative error ~1e-5, far below what the 24-bit
        coder resolves; handed over as float64. The coder normalises each row itself.
        """
        m = a.shape[0]
        if m == 0:
            return np.zeros((0, self.N), dtype=np.float32)
        log_r = self._j32[:, None] + a.astype(np.float32)  # [254, M]: (α + k) / (n−k−1 + β)
        log_r /= self._jb32[:, None] + b.astype(np.float32)
        np.log(log_r, out=log_r)
        log_r += self._log_const32[:, None]
        s = np.empty((self.N, m), dtype=np.float32)
        s[0] = 0.0
        for k in range(self.N - 1):
            np.add(s[k], log_r[k], out=s[k + 1])
        s -= s.max(axis=0)
        np.maximum(s, -80.0, out=s)  # e**-80 is far below the coder's resolution (no denormals)
        np.exp(s, out=s)
        # float64 and C-contiguous for constriction: it ignores strides, and its float32 path
        # can fail an internal assertion on very peaked rows (constriction 0.5)
        return np.ascontiguousarray(s.T, dtype=np.float64)

    def push(self, coders, symbols, params):
        a, b = self._ab(params)
        pnz = self._p_nonzero(a, b)
        sym = symbols.astype(np.int32)
        nz = sym != 0
        a_np, b_np = a.numpy(), b.numpy()
        rows = self._rows(a_np[nz], b_np[nz])
        counts = nz.sum(axis=1)
        start = 0
        for lane, coder in enumerate(coders):
            stop = start + int(counts[lane])
            if stop > start:  # values first, so that the decoder pops the flags first
                coder.encode_reverse(sym[lane][nz[lane]] - 1, self.cat, rows[start:stop])
            coder.encode_reverse(nz[lane].astype(np.int32), self.flag, pnz[lane])
            start = stop

    def pop(self, coders, params):
        a, b = self._ab(params)
        pnz = self._p_nonzero(a, b)
        flags = np.stack([c.decode(self.flag, pnz[lane]) for lane, c in enumerate(coders)])
        nz = flags != 0
        a_np, b_np = a.numpy(), b.numpy()
        rows = self._rows(a_np[nz], b_np[nz])
        out = np.zeros(flags.shape, dtype=np.int32)
        counts = nz.sum(axis=1)
        start = 0
        for lane, coder in enumerate(coders):
            stop = start + int(counts[lane])
            if stop > start:
                out[lane][nz[lane]] = coder.decode(self.cat, rows[start:stop]) + 1
            start = stop
        return out


class _CategoricalPixels(_PixelModel):
    """Any likelihood with ``log_pmf(params) -> [B, D, K]``: a K-way categorical per pixel."""

    def __init__(self, likelihood):
        super().__init__(likelihood)
        self.levels = int(likelihood.discrete_levels)
        self.cat = _CM.Categorical(perfect=False)

    def _tables(self, params):
        lp = self.likelihood.log_pmf(torch.from_numpy(params))
        return np.ascontiguousarray(np.exp(lp.numpy()))  # constriction ignores strides

    def push(self, coders, symbols, params):
        p = self._tables(params)
        for lane, coder in enumerate(coders):
            coder.encode_reverse(symbols[lane].astype(np.int32), self.cat, p[lane])

    def pop(self, coders, params):
        p = self._tables(params)
        return np.stack([c.decode(self.cat, p[lane]) for lane, c in enumerate(coders)])


def _pixel_model(likelihood) -> _PixelModel:
    name = getattr(likelihood, "name", None)
    if name == "bernoulli":
        return _BernoulliPixels(likelihood)
    if name == "beta-binomial":
        return _BetaBinomialPixels(likelihood)
    if getattr(likelihood, "discrete_levels", None) and hasattr(likelihood, "log_pmf"):
        return _CategoricalPixels(likelihood)
    raise ModelError(
        f"lossless coding needs a VAE with a discrete likelihood (bernoulli, logistic, "
        f"beta-binomial); this model's decoder is {name!r}"
    )


# ---------------------------------------------------------------------------------------------
# The codec
# ---------------------------------------------------------------------------------------------


class BitsBackCodec:
    """BB-ANS (Townsend et al. 2019) for a :class:`vaecodec.models.vae.VAE`, and Bit-Swap
    (Kingma et al. 2019) for a :class:`vaecodec.models.hvae.HVAE`.

    Args:
        model: a VAE or hierarchical VAE (not a plain autoencoder) whose likelihood is discrete (``bernoulli``,
            ``logistic``, ``beta-binomial``). A float64 copy is made; the caller's model is not
            changed.
        latent_prec: P, ``2**P`` equal-prior-mass buckets per latent dimension (default 8).

    Symbols are pixel levels: ``{0, 1}`` for a Bernoulli model, ``{0 .. 255}`` for the 8-bit
    likelihoods; the network input is ``level / (K − 1)`` in [0, 1].

    Raises:
        ModelError: the model is an autoencoder or its likelihood is not discrete.
    """

    def __init__(self, model, latent_prec: int = DEFAULT_LATENT_PREC):
        if getattr(model, "kind", None) != "vae" or getattr(model, "deterministic", False):
            raise ModelError("bits-back coding needs a VAE (with a posterior q(z|x)), not an AE")
        import copy

        self.model = copy.deepcopy(model).double().eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.pixels = _pixel_model(self.model.likelihood)
        self.levels = self.pixels.levels
        self.input_shape = tuple(self.model.config.input_shape)
        self.data_dims = math.prod(self.input_shape)
        self.latent_dim = int(self.model.latent_dim)
        # a hierarchical VAE (vaecodec.models.hvae) lists its layers, bottom first
        self.hierarchical = hasattr(self.model, "layer_slices")
        self.layer_dims = (list(self.model.config.latent_dims) if self.hierarchical
                           else [self.latent_dim])  # fmt: skip
        self.buckets = LatentBuckets(latent_prec)
        self.latent_prec = latent_prec
        # per layer, the buckets' location and scale (N(loc, scale²) equal-mass buckets; the
        # top layer, and a one-layer VAE, use N(0, 1): loc 0, scale 1)
        cfg = self.model.config
        total = sum(self.layer_dims)
        loc = np.array(getattr(cfg, "bucket_loc", None) or [0.0] * total, dtype=np.float64)
        scale = np.array(getattr(cfg, "bucket_scale", None) or [1.0] * total, dtype=np.float64)
        bounds = np.cumsum([0, *self.layer_dims])
        self._loc = [loc[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self._scale = [scale[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self._log_var_scale = [2.0 * detmath.log(sc) for sc in self._scale]
        if not (np.all(self._loc[-1] == 0.0) and np.all(self._scale[-1] == 1.0)):
            raise ModelError("the top latent layer's buckets must be those of N(0, 1)")
        self._cat = _CM.Categorical(perfect=False)
        self._uniform = _CM.Uniform(self.buckets.n)
        # enough seed bits for the pops before the stack has grown (at most P bits per latent
        # dimension of every layer, the worst case of Bit-Swap's interleaving) plus slack; the
        # words no pop touched are not stored, so a longer seed costs nothing
        self.seed_len = (self.latent_dim * latent_prec + 31) // 32 + 8

    # -- networks (float64, grid-rounded outputs) ------------------------------------------
    def _posterior_params(self, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """q(z_1|x) (q(z|x) for a one-layer VAE) for pixel levels ``[S, D]``."""
        x = torch.from_numpy(symbols.astype(np.float64) / (self.levels - 1))
        x = x.view(-1, *self.input_shape)
        mu, logvar = self.model.posterior(0, x) if self.hierarchical else self.model.encode(x)
        return round_grid(mu.numpy()), round_grid(logvar.numpy())

    def _q_up(self, level: int, z_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """q(z_{level+1}|z_level) (0-based layer ``level`` from layer ``level − 1``) at the
        bucket values of ``z_idx [S, d]``."""
        mu, logvar = self.model.posterior(level, torch.from_numpy(self._centres(level - 1, z_idx)))
        return round_grid(mu.numpy()), round_grid(logvar.numpy())

    def _p_down(self, level: int, z_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """p(z_{level+1}|z_{level+2}) (0-based layer ``level`` from layer ``level + 1``) at the
        bucket values of ``z_idx [S, d]``."""
        mu, logvar = self.model.prior(level, torch.from_numpy(self._centres(level + 1, z_idx)))
        return round_grid(mu.numpy()), round_grid(logvar.numpy())

    def _q(self, mu: np.ndarray, logvar: np.ndarray, lane: int, layer: int = 0) -> np.ndarray:
        """A Gaussian's mass on the buckets of ``layer`` for one lane, ``[d, 2**P]``: one lane
        at a time, since all lanes at once take ``lanes * d * 2**P`` float64 (several times
        over, for the temporaries): 512 MiB for 8 lanes at P = 16, which a 200-byte stream could
        ask for. The values are the same either way (elementwise arithmetic). A layer with
        buckets of N(loc, scale²) is handled by standardising the Gaussian (exact IEEE
        operations and detmath's log)."""
        m, lv = mu[lane], logvar[lane]
        if layer < len(self.layer_dims) - 1:
            m = (m - self._loc[layer]) / self._scale[layer]
            lv = lv - self._log_var_scale[layer]
        return self.buckets.posterior(m, lv)

    def _centres(self, layer: int, z_idx: np.ndarray) -> np.ndarray:
        """The latent values of bucket indices ``z_idx [S, d]`` of ``layer`` (float64)."""
        c = self.buckets.centres[z_idx]
        if layer < len(self.layer_dims) - 1:
            c = self._loc[layer] + self._scale[layer] * c
        return c

    def _pop(self, coders, mu: np.ndarray, logvar: np.ndarray, layer: int = 0) -> np.ndarray:
        """Pop one bucket index per dimension of ``layer`` from each lane with the Gaussian's
        bucket masses: ``[S, d]``."""
        return np.stack([c.decode(self._cat, self._q(mu, logvar, lane, layer))
                         for lane, c in enumerate(coders)])  # fmt: skip

    def _push(self, coders, z_idx: np.ndarray, mu: np.ndarray, logvar: np.ndarray,
              layer: int = 0) -> None:  # fmt: skip
        """Push bucket indices ``z_idx [S, d]`` of ``layer`` with the Gaussian's bucket masses."""
        for lane, c in enumerate(coders):
            c.encode_reverse(z_idx[lane], self._cat, self._q(mu, logvar, lane, layer))

    def _decoder_params(self, z_idx: np.ndarray) -> np.ndarray:
        z = torch.from_numpy(self._centres(0, z_idx))
        return round_grid(self.model.decode(z).numpy())

    def _check_symbols(self, symbols) -> np.ndarray:
        s = np.asarray(symbols)
        if s.ndim != 2 or s.shape[1] != self.data_dims:
            raise ValueError(f"symbols must be [N, {self.data_dims}], got {s.shape}")
        if s.shape[0] < 1:
            raise ValueError("nothing to encode: no images")
        if s.min() < 0 or s.max() >= self.levels:
            raise ValueError(f"symbols must lie in [0, {self.levels - 1}]")
        return s.astype(np.int32)

    # -- encode / decode -------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, symbols, lanes: int | None = None, order: str = "bitswap") -> list[LaneStream]:
        """Encode images into ``lanes`` chained BB-ANS stacks.

        Args:
            symbols: int ``[N, D]`` pixel levels (D = C·H·W), N >= 1.
            lanes: number of lanes S (default :func:`default_lanes`); image i goes to lane i mod S.
            order: for a hierarchy, ``"bitswap"`` (interleaved, the format's order) or
                ``"bbans"`` (pop every layer first, then push x and the layers: the order
                Bit-Swap improves on, for comparison; decode with the same ``order``). The
                same for a one-layer VAE.

        Returns:
            ``S`` :class:`LaneStream` objects.

        Raises:
            ValueError: bad shape or out-of-range symbols.
        """
        sym = self._check_symbols(symbols)
        self._check_order(order)
        n = sym.shape[0]
        lanes = default_lanes(n) if lanes is None else int(lanes)
        if not 1 <= lanes <= n:
            raise ValueError(f"lanes must be in [1, {n}], got {lanes}")
        seeds = [seed_words(lane, self.seed_len) for lane in range(lanes)]
        coders = [constriction.stream.stack.AnsCoder(s) for s in seeds]
        with single_thread():
            for t in range(math.ceil(n / lanes)):
                x = sym[t * lanes : (t + 1) * lanes]
                active = coders[: x.shape[0]]
                mu, logvar = self._posterior_params(x)
                z = self._pop(active, mu, logvar)  # z_1 ~ q(z_1|x)
                if order == "bbans":
                    self._encode_bbans(active, x, z)
                    continue
                params = self._decoder_params(z)
                self.pixels.push(active, x, params)
                for level in range(1, len(self.layer_dims)):  # Bit-Swap: pop one layer up,
                    mu, logvar = self._q_up(level, z)
                    z_up = self._pop(active, mu, logvar, level)  # z_{l+1} ~ q(z_{l+1}|z_l)
                    mu, logvar = self._p_down(level - 1, z_up)
                    self._push(active, z, mu, logvar, level - 1)  # push z_l, p(z_l|z_{l+1})
                    z = z_up
                for lane, c in enumerate(active):
                    c.encode_reverse(z[lane], self._uniform)
        out = []
        for lane, (coder, seed) in enumerate(zip(coders, seeds)):
            words = coder.get_compressed()
            k = 0
            m = min(len(words), len(seed))
            while k < m and words[k] == seed[k]:
                k += 1
            n_lane = len(range(lane, n, lanes))
            out.append(LaneStream(n_lane, k, np.array(words[k:], dtype=np.uint32)))
        return out

    @staticmethod
    def _check_order(order: str) -> None:
        if order not in ("bitswap", "bbans"):
            raise ValueError(f"order must be 'bitswap' or 'bbans', not {order!r}")

    def _encode_bbans(self, active, x: np.ndarray, z1: np.ndarray) -> None:
        """The rest of one step in BB-ANS order: pop z_2 .. z_L, push x, z_1 .. z_L."""
        zs = [z1]
        for level in range(1, len(self.layer_dims)):
            mu, logvar = self._q_up(level, zs[-1])
            zs.append(self._pop(active, mu, logvar, level))
        self.pixels.push(active, x, self._decoder_params(zs[0]))
        for level in range(len(self.layer_dims) - 1):
            mu, logvar = self._p_down(level, zs[level + 1])
            self._push(active, zs[level], mu, logvar, level)
        for lane, c in enumerate(active):
            c.encode_reverse(zs[-1][lane], self._uniform)

    def _decode_bbans(self, active, z_top: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`_encode_bbans` after popping z_L; returns the pixels."""
        n_layers = len(self.layer_dims)
        zs = [None] * (n_layers - 1) + [z_top]
        for level in reversed(range(n_layers - 1)):
            mu, logvar = self._p_down(level, zs[level + 1])
            zs[level] = self._pop(active, mu, logvar, level)
        x = self.pixels.pop(active, self._decoder_params(zs[0]))
        for level in reversed(range(1, n_layers)):
            mu, logvar = self._q_up(level, zs[level - 1])
            self._push(active, zs[level], mu, logvar, level)
        mu, logvar = self._posterior_params(x)
        self._push(active, zs[0], mu, logvar)
        return x

    @torch.no_grad()
    def decode(self, lanes: list[LaneStream], n_images: int, order: str = "bitswap") -> np.ndarray:
        """Inverse of :meth:`encode`: int32 ``[n_images, D]`` pixel levels.

        Raises:
            FormatError: the lanes do not describe ``n_images`` images, a stack is malformed,
                or a lane does not end exactly at its seed (corrupt stream or another model).
        """
        self._check_order(order)
        s = len(lanes)
        if s < 1 or n_images < s:
            raise FormatError(f"corrupt stream: {s} lanes for {n_images} images")
        for lane, ls in enumerate(lanes):
            if ls.n_images != len(range(lane, n_images, s)):
                raise FormatError("corrupt stream: lane sizes do not match the image count")
            if not 0 <= ls.seed_prefix <= self.seed_len:
                raise FormatError("corrupt stream: bad seed prefix")
        seeds = [seed_words(lane, self.seed_len) for lane in range(s)]
        coders = []
        for ls, seed in zip(lanes, seeds):
            words = np.concatenate([seed[: ls.seed_prefix], np.asarray(ls.words, dtype=np.uint32)])
            try:
                coders.append(constriction.stream.stack.AnsCoder(words))
            except ValueError as e:
                raise FormatError(f"corrupt stream: {e}") from None
        out = np.zeros((n_images, self.data_dims), dtype=np.int32)
        d_top = self.layer_dims[-1]
        with single_thread():
            for t in reversed(range(math.ceil(n_images / s))):
                lo, hi = t * s, min((t + 1) * s, n_images)
                active = coders[: hi - lo]
                z = np.stack([c.decode(self._uniform, d_top) for c in active])
                if order == "bbans":
                    out[lo:hi] = self._decode_bbans(active, z)
                    continue
                for level in reversed(range(1, len(self.layer_dims))):
                    mu, logvar = self._p_down(level - 1, z)
                    z_below = self._pop(active, mu, logvar, level - 1)
                    mu, logvar = self._q_up(level, z_below)
                    self._push(active, z, mu, logvar, level)
                    z = z_below
                params = self._decoder_params(z)
                x = self.pixels.pop(active, params)
                out[lo:hi] = x
                mu, logvar = self._posterior_params(x)
                self._push(active, z, mu, logvar)
        for coder, seed in zip(coders, seeds):
            if not np.array_equal(coder.get_compressed(), seed):
                raise FormatError(
                    "the stream did not decode back to its initial state: it is corrupt, or was "
                    "made by another model or by an incompatible machine"
                )
        return out
