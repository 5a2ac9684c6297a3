"""Run the codecs' full-resolution transforms ``g_a`` / ``g_s`` in tiles, in bounded memory.

Why. ``g_s`` of a learned codec turns a latent ``y^ [1, M, h, w]`` into pixels
``[1, 3, 16h, 16w]`` through activations of ``N`` channels at 1/8, 1/4 and 1/2 resolution; run
on a whole image it needs about 250 bytes per pixel (N = 64: 4 GB for a 4096x4096 image, and
the ``.vcz`` format's limit of 2**28 pixels admits ~60 GB), ``g_a`` about as much. Run tile by
tile, the transforms need that only for one tile at a time; what grows with the image is the
latent side (``y`` at 1/16 resolution) and the 8-bit output (3 bytes per pixel).

How. Both transforms are stacks of strided (transposed) convolutions and per-pixel
nonlinearities (GDN / IGDN mix channels only), so they commute with translations by whole
latent cells: each output depends only on a window of the input, the transform's *receptive
field margin*, which :func:`geometry` derives from the layer stack (interval arithmetic
through every layer; no guessing). A tile is the transform of an input window that holds the
tile's valid centre plus that margin (clipped at the image border, where the window's border
*is* the image's border, so every layer's zero padding falls where it falls on the whole
image); its valid centre is cropped and written into a preallocated output. For the codecs'
transforms (four 5x5 stride-2 layers, :func:`geometry`; ``tests/test_tiling.py`` checks it
against autograd's dependency map)::

    g_s: the 16x16 output pixels of latent cell i depend on latent cells i-1 .. i+2
         (margin 1 before, 2 after): halo (1, 2) latent cells;
    g_a: latent cell i depends on pixels 16i-30 .. 16i+30 (30 before its 16-pixel cell, 15
         after): halo (2, 1) latent cells = 32 / 16 pixels.

Exactness. Every output value is computed from the same input values by the same layers as on
the whole image; only the floating-point summation order inside a convolution can differ,
because oneDNN picks its convolution kernel by the input's *width* (measured: the last 64->3
deconvolution of cb-vr10 gives other last bits on about half the widths from 8 to 1100). So:

- full-width strips ``(rows, None)`` (the default where they fit the budget): the same width
  as the whole image; bit-identical 8-bit output and ``y`` in every test (Kodak images, random
  weights; ``tests/test_tiling.py``, BENCHMARKS.md "Bounded memory");
- square tiles (images too wide for a strip within the budget): floats within ~1e-6, the
  8-bit image off by one level at about 1 pixel value in 10^5 (Kodak, cb-vr10).

Memory model (constants measured by ``benchmarks/codec_memory.py``; ``P`` pixels of the
padded image)::

    P <= TILING_THRESHOLD (untiled, as before):
        peak ~ BASE_BYTES + (transform_bytes_per_pixel + UNTILED_EXTRA_BYTES_PER_PIXEL) * P
    P > TILING_THRESHOLD (tiled), with L = M * P / 256 latent elements:
        decode peak ~ BASE_BYTES + DECODE_BYTES_PER_LATENT * L + tile_bytes(g_s, tile)
        encode peak ~ BASE_BYTES + ENCODE_BYTES_PER_LATENT * L + tile_bytes(g_a, tile)

with ``tile_bytes <= DEFAULT_TILE_BUDGET`` (256 MiB) by :func:`tile_for_budget`. For cb-vr10
(N = 64, M = 96): 400 MiB + 83 B per pixel + 256 MiB for a decode, 90 B per pixel for an
encode; untiled ~331 B per pixel, at most 1.1 GiB at the threshold. What grows with the
image is now the latent side, which lives in ``models/codecs.py`` (see BENCHMARKS.md).
:func:`check_memory` refuses, before anything is allocated, an image whose estimate exceeds the
memory limit (:func:`max_memory`: ``$VAECODEC_MAX_MEMORY``, default 4 GiB).

Why one module of this size: the geometry (halos from the layer stack), the memory model and the
two tiled transforms are one argument (the halo and the budget decide the tiles, the tiles
decide the memory); most of its length is that argument, written out.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch import nn

from vaecodec.errors import FormatError

__all__ = [
    "DECODE_BYTES_PER_LATENT",
    "DEFAULT_MAX_MEMORY",
    "DEFAULT_TILE_BUDGET",
    "ENCODE_BYTES_PER_LATENT",
    "UNTILED_EXTRA_BYTES_PER_PIXEL",
    "latent_channels",
    "BASE_BYTES",
    "ANALYSIS_BYTES_PER_PIXEL",
    "SYNTHESIS_BYTES_PER_PIXEL",
    "hidden_channels",
    "tile_bytes",
    "TILING_THRESHOLD",
    "uses_tiles",
    "Geometry",
    "analyze_tiled",
    "check_memory",
    "estimate_peak_bytes",
    "geometry",
    "max_memory",
    "parse_bytes",
    "synthesize_tiled",
    "tile_for_budget",
    "transform_bytes_per_pixel",
]

# ---------------------------------------------------------------------------------------------
# Measured constants (benchmarks/codec_memory.py, 2-core x86 CPU, torch CPU, float32; see
# BENCHMARKS.md "Bounded memory"). Bytes per pixel / latent element of the padded image.
# ---------------------------------------------------------------------------------------------
SYNTHESIS_BYTES_PER_PIXEL = (3.45, 70.0)
"""Peak memory of ``g_s`` per output pixel of a tile, ``A * N + B`` (N hidden channels):
the line through the largest per-pixel peaks measured on 512x512 and 1024x1024 windows (two
runs each) of cb-vr10 (N = 64: 264-288 B/px) and cb128-vr10 (N = 128: 478-507 B/px), rounded
up."""
ANALYSIS_BYTES_PER_PIXEL = (2.65, 83.0)
"""The same for ``g_a`` per input pixel, its float32 input window included (measured: N = 64
225-251 B/px, N = 128 405-419 B/px)."""
DECODE_BYTES_PER_LATENT = 220.0
"""What a tiled decode holds for the whole image besides the model and one tile, per element
of ``y`` (M channels at 1/16 resolution: ``M / 256`` per pixel): the entropy decoding of the
latents, the exact hyper-synthesis and context network (float64 / int64 arrays), ``y^`` and
the 8-bit output. Measured with cb-vr10 (M = 96): ``decompress_latents`` of a 4096x4096 file
alone peaks 1278 MiB above the loaded model, 80 B per pixel = 213 B per latent element."""
ENCODE_BYTES_PER_LATENT = 240.0
"""The same for a tiled encode (the 8-bit input image, ``y``, the coder's arrays): the tiled
encode of a 4096x4096 image peaked 1389 MiB above the loaded model, tile included (87 B per
pixel = 231 B per latent element); 2048x2048 gave 90 B per pixel."""
UNTILED_EXTRA_BYTES_PER_PIXEL = 40.0
"""An untiled run (images up to :data:`TILING_THRESHOLD`) needs the transform's bytes per
pixel over the whole image plus this (float output, 8-bit copy, latents): measured 313 / 299 /
302 B per pixel for untiled decodes of 1024^2 / 2048^2 / 4096^2 (transform 291), 244 / 290 /
223 for encodes (transform 253)."""
BASE_BYTES = 400 << 20
"""Python, torch, the model and its coding tables: the RSS after loading cb-vr10 and building
its tables was 327-335 MiB in every run (cb128-vr10: 398-417 MiB)."""
DEFAULT_TILE_BUDGET = 256 << 20
"""Memory a tile's transform may take (picks the tile size, :func:`tile_for_budget`)."""
DEFAULT_MAX_MEMORY = 4 << 30
"""Default memory limit of one encode / decode (``$VAECODEC_MAX_MEMORY`` overrides it)."""
TILING_THRESHOLD = 1 << 21
"""Images up to this many (padded) pixels run untiled, exactly as before tiling existed (the
golden files of Kodak-sized images stay bit-identical whatever tiling does); larger ones run in
tiles. At 2**21 pixels an untiled run peaks at about 1.1 GiB (cb-vr10)."""


# ---------------------------------------------------------------------------------------------
# Geometry: scale and receptive-field margin of a stack of layers
# ---------------------------------------------------------------------------------------------
_POINTWISE = (nn.Identity, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.SiLU)


def _is_pointwise(layer: nn.Module) -> bool:
    from vaecodec.nn.gdn import GDN  # IGDN is a GDN: both mix channels only, per pixel

    return isinstance(layer, (GDN, *_POINTWISE))


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _input_interval(layer: nn.Module, dim: int, lo: int, hi: int) -> tuple[int, int]:
    """Input indices (along spatial ``dim``) that outputs ``lo..hi`` of ``layer`` read."""
    if _is_pointwise(layer):
        return lo, hi
    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
        if isinstance(layer.padding, str):
            raise ValueError(f"{layer}: string padding is not supported")
        k = _pair(layer.kernel_size)[dim]
        s = _pair(layer.stride)[dim]
        p = _pair(layer.padding)[dim]
        d = _pair(layer.dilation)[dim]
        if isinstance(layer, nn.Conv2d):
            # out o reads in o*s - p + d*j, j = 0..k-1
            return lo * s - p, hi * s - p + d * (k - 1)
        # transposed: in i writes out i*s - p + d*j; out o reads i = (o + p - d*j) / s
        return -((-(lo + p - d * (k - 1))) // s), (hi + p) // s
    raise ValueError(
        f"cannot tile a transform containing {type(layer).__name__}: only (transposed) "
        "convolutions and per-pixel layers (GDN, IGDN, activations) have a known receptive field"
    )


@dataclass(frozen=True)
class Geometry:
    """What tiling needs to know about a transform (:func:`geometry`).

    Attributes:
        scale: total stride S (16 for the codecs' g_a / g_s).
        upsampling: True for a synthesis (latent -> pixels), False for an analysis.
        before, after: receptive-field margin, in the transform's *input* units, reaching
            before the first / after the last input index of a latent cell's footprint
            (g_s: latent cells; g_a: pixels).
        halo: ``(before, after)`` rounded up to whole latent cells: a tile's input window is
            its latent cells extended by these many cells on each side.
    """

    scale: int
    upsampling: bool
    before: int
    after: int

    @property
    def halo(self) -> tuple[int, int]:
        if self.upsampling:
            return self.before, self.after
        s = self.scale
        return -(-self.before // s), -(-self.after // s)


def geometry(transform: nn.Module) -> Geometry:
    """Derive the scale and the receptive-field margin of ``transform`` (an ``nn.Sequential``
    of Conv2d / ConvTranspose2d and per-pixel layers, all strided alike) from its layers.

    The margin comes from interval arithmetic: the output indices of one latent cell are
    mapped back through every layer to the input indices they read (for each spatial
    dimension; the larger margin of the two is kept).

    Raises:
        ValueError: a layer whose receptive field is unknown, or a mix of down- and
            up-sampling layers.
    """
    layers = list(transform) if isinstance(transform, nn.Sequential) else [transform]
    ups = {isinstance(m, nn.ConvTranspose2d) for m in layers
           if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}  # fmt: skip
    if len(ups) != 1:
        raise ValueError("a transform to tile is all convolutions or all transposed ones")
    up = ups.pop()
    before = after = 0
    scale = 0
    for dim in (0, 1):
        s = 1
        for m in layers:
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                s *= _pair(m.stride)[dim]
        if scale and s != scale:
            raise ValueError("tiling needs the same stride along both dimensions")
        scale = s
        # one latent cell: latent index 0 <-> pixel indices 0 .. S-1
        lo, hi = (0, s - 1) if up else (0, 0)
        for m in reversed(layers):
            lo, hi = _input_interval(m, dim, lo, hi)
        cell_hi = 0 if up else s - 1
        before, after = max(before, -lo), max(after, hi - cell_hi)
    return Geometry(scale, up, before, after)


# ---------------------------------------------------------------------------------------------
# Tile sizes and memory
# ---------------------------------------------------------------------------------------------
def _convs(transform: nn.Module) -> list[nn.Module]:
    return [m for m in transform.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def hidden_channels(transform: nn.Module) -> int:
    """N: the widest activation between the transform's convolutions."""
    convs = _convs(transform)
    return max([m.out_channels for m in convs[:-1]] or [convs[-1].out_channels])


def transform_bytes_per_pixel(transform: nn.Module) -> float:
    """Peak memory of ``transform`` per full-resolution pixel of a tile: the measured
    ``A * N + B`` (:data:`SYNTHESIS_BYTES_PER_PIXEL` / :data:`ANALYSIS_BYTES_PER_PIXEL`)."""
    a, b = SYNTHESIS_BYTES_PER_PIXEL if geometry(transform).upsampling else ANALYSIS_BYTES_PER_PIXEL
    return a * hidden_channels(transform) + b


def tile_for_budget(transform: nn.Module, budget: int = DEFAULT_TILE_BUDGET,
                    width: int | None = None, minimum: int = 4) -> tuple[int, int | None]:  # fmt: skip
    """The tile shape ``(rows, cols)`` in latent cells whose input window (the tile plus the
    halo) keeps ``transform``'s peak within ``budget`` bytes (:func:`transform_bytes_per_pixel`).

    With ``width`` (the latent width ``w``), full-width strips ``(rows, None)`` are chosen
    when at least ``minimum`` rows of them fit: a strip has the whole image's width, and the
    convolution kernels oneDNN picks depend on the width (square tiles can differ from the
    untiled image in the last float bit, strips did not in any test). Otherwise square tiles
    ``(t, t)``, at least ``minimum`` cells. 256 MiB with N = 64 (g_s): strips are 50 / 24 / 10
    latent rows high for images 1024 / 2048 / 4096 pixels wide, 4 rows up to 7808 pixels;
    square tiles are 57 cells (912 pixels) wide.
    """
    geo = geometry(transform)
    bpp = transform_bytes_per_pixel(transform)
    s, halo = geo.scale, sum(geo.halo)
    if width is not None:
        rows = int(budget / (bpp * s * s * (int(width) + halo))) - halo
        if rows >= minimum:
            return rows, None
    t = int(math.sqrt(max(budget, 0) / bpp) // s) - halo
    t = max(int(minimum), t)
    return t, t


def tile_bytes(transform: nn.Module, tile, width: int | None = None) -> int:
    """Estimated peak of one tile (``tile`` as :func:`synthesize_tiled` takes it; ``width``:
    the latent width, for strips and tiles wider than the image)."""
    geo = geometry(transform)
    th, tw = _tile_shape(transform, tile, width)
    halo = sum(geo.halo)
    if width is not None:
        th, tw = th, min(tw, int(width))
    return int(transform_bytes_per_pixel(transform) * ((th + halo) * geo.scale)
               * ((tw + halo) * geo.scale))  # fmt: skip


def _tile_shape(transform: nn.Module, tile, width: int | None) -> tuple[int, int]:
    """``(rows, cols)`` from a tile argument: None (:func:`tile_for_budget`), an int (square)
    or ``(rows, cols)`` with ``cols`` None for full-width strips."""
    if tile is None:
        tile = tile_for_budget(transform, width=width)
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    if tw is None:
        if width is None:
            raise ValueError("full-width strips need the width")
        tw = max(int(width), 1)
    th, tw = int(th), int(tw)
    if th < 1 or tw < 1:
        raise ValueError(f"a tile is at least 1x1 latent cells, got {tile}")
    return th, tw


def parse_bytes(text: str) -> int:
    """``"4G"``, ``"512M"``, ``"1.5GiB"``, ``"1000000"`` -> bytes (K/M/G/T are powers of 1024).

    Raises:
        ValueError: not a size.
    """
    t = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    mult = 1
    if t and t[-1] in "KMGT":
        mult = 1 << (10 * ("KMGT".index(t[-1]) + 1))
        t = t[:-1]
    try:
        v = float(t)
    except ValueError:
        raise ValueError(f"not a memory size: {text!r} (e.g. 4G, 512M)") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"not a memory size: {text!r} (e.g. 4G, 512M)")
    return int(v * mult)


def max_memory() -> int:
    """The memory limit of one encode / decode: ``$VAECODEC_MAX_MEMORY`` (e.g. ``8G``) or
    :data:`DEFAULT_MAX_MEMORY`."""
    env = os.environ.get("VAECODEC_MAX_MEMORY")
    return DEFAULT_MAX_MEMORY if not env else parse_bytes(env)


def uses_tiles(height: int, width: int, multiple: int) -> bool:
    """Whether encode / decode of a ``height x width`` image run the transforms in tiles: above
    :data:`TILING_THRESHOLD` pixels once padded to ``multiple`` (Kodak-size images are coded
    whole)."""
    return _padded(height, width, multiple) > TILING_THRESHOLD


def _padded(height: int, width: int, multiple: int) -> int:
    return (-(-height // multiple) * multiple) * (-(-width // multiple) * multiple)


def latent_channels(transform: nn.Module) -> int:
    """M: the latent's channels (the synthesis's input, the analysis's output)."""
    convs = _convs(transform)
    return convs[0].in_channels if geometry(transform).upsampling else convs[-1].out_channels


def estimate_peak_bytes(height: int, width: int, transform: nn.Module, *, decode: bool,
                        tile=None, multiple: int = 64) -> int:  # fmt: skip
    """Estimated peak memory of an encode (``transform`` = g_a) or decode (g_s) of an
    ``height x width`` image, arithmetic only: untiled up to :data:`TILING_THRESHOLD` padded
    pixels, tiled above (see the module's memory model)."""
    geo = geometry(transform)
    pixels = _padded(height, width, multiple)
    if not uses_tiles(height, width, multiple):
        per_px = transform_bytes_per_pixel(transform) + UNTILED_EXTRA_BYTES_PER_PIXEL
        return int(BASE_BYTES + per_px * pixels)
    w = -(-int(width) // multiple) * multiple // geo.scale
    per_latent = DECODE_BYTES_PER_LATENT if decode else ENCODE_BYTES_PER_LATENT
    latents = pixels * latent_channels(transform) / geo.scale**2
    return int(BASE_BYTES + per_latent * latents + tile_bytes(transform, tile, w))


def check_memory(height: int, width: int, transform: nn.Module, *, decode: bool,
                 limit: int | None = None, tile=None, multiple: int = 64,
                 error: type[Exception] = FormatError) -> int:  # fmt: skip
    """Refuse an image whose tiled encode / decode would need more than ``limit`` bytes
    (default :func:`max_memory`), before anything is allocated. Returns the estimate.

    Raises:
        error: (FormatError for a decode, ImageError for an encode) with the estimate, the
            limit and how to raise it.
    """
    limit = max_memory() if limit is None else int(limit)
    need = estimate_peak_bytes(height, width, transform, decode=decode, tile=tile,
                               multiple=multiple)  # fmt: skip
    if need > limit:
        what = "decoding" if decode else "encoding"
        raise error(
            f"{what} this {width}x{height} image needs about {_gb(need)} of memory, more than "
            f"the limit of {_gb(limit)}: on a machine with enough memory, raise the limit, "
            f"e.g. VAECODEC_MAX_MEMORY={_suggest(need)}"
        )
    return need


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _suggest(n: int) -> str:
    return f"{math.ceil(n / 2**30)}G"


# ---------------------------------------------------------------------------------------------
# The tiled transforms
# ---------------------------------------------------------------------------------------------
def _check_halo(geo: Geometry, halo) -> tuple[int, int]:
    need = geo.halo
    if halo is None:
        return need
    h = (int(halo), int(halo)) if isinstance(halo, int) else (int(halo[0]), int(halo[1]))
    if h[0] < need[0] or h[1] < need[1]:
        raise ValueError(
            f"halo {h} is smaller than the transform's receptive-field margin {need} "
            "(latent cells): the tiles would not match the untiled result"
        )
    return h


def _spans(n: int, tile: int):
    for a in range(0, n, tile):
        yield a, min(a + tile, n)


def _to_uint8_(t: torch.Tensor) -> torch.Tensor:
    """``decode_image``'s conversion, per tile: clamp to [0, 1], x255, round, clamp, uint8."""
    return t.clamp_(0.0, 1.0).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)


@torch.no_grad()
def synthesize_tiled(g_s: nn.Module, y_hat: torch.Tensor, tile: int | None = None,
                     halo=None, *, image_size: tuple[int, int] | None = None,
                     dtype: torch.dtype = torch.uint8) -> torch.Tensor:  # fmt: skip
    """``g_s(y_hat)`` computed tile by tile.

    Args:
        g_s: the synthesis transform (see :func:`geometry` for what it may contain).
        y_hat: ``[B, M, h, w]`` latents (after the inverse gain).
        tile: valid tile side in latent cells (default :func:`tile_for_budget`).
        halo: latent cells added around each tile, int or ``(before, after)``; default and
            minimum: the transform's receptive-field margin (:attr:`Geometry.halo`).
        image_size: ``(H, W)`` to crop to (default the full ``16h x 16w``); only that much is
            allocated.
        dtype: ``torch.uint8`` (default): each tile is clamped, scaled and rounded to 8 bits
            exactly as ``decode_image`` does with the whole image; ``torch.float32``: the
            decoded image clamped to [0, 1] as ``CodecModel.decompress`` returns it.

    Returns:
        ``[B, 3, H, W]`` of ``dtype``, channels-last in memory (so ``out[0].permute(1, 2, 0)``
        is a contiguous ``[H, W, 3]`` array).
    """
    geo = geometry(g_s)
    if not geo.upsampling:
        raise ValueError("synthesize_tiled takes a synthesis (upsampling) transform")
    before, after = _check_halo(geo, halo)
    b, _, h, w = y_hat.shape
    th, tw = _tile_shape(g_s, tile, w)
    s = geo.scale
    H, W = (h * s, w * s) if image_size is None else (int(image_size[0]), int(image_size[1]))
    if not (0 < H <= h * s and 0 < W <= w * s):
        raise ValueError(f"image_size {H}x{W} does not fit latents of {h}x{w}")
    c_out = _out_channels(g_s)
    out = torch.empty((b, c_out, H, W), dtype=dtype, device=y_hat.device,
                      memory_format=torch.channels_last)  # fmt: skip
    for r0, r1 in _spans(-(-H // s), th):
        i0, i1 = max(0, r0 - before), min(h, r1 + after)
        for c0, c1 in _spans(-(-W // s), tw):
            j0, j1 = max(0, c0 - before), min(w, c1 + after)
            x = y_hat[:, :, i0:i1, j0:j1].contiguous(memory_format=torch.channels_last)
            t = g_s(x)
            y0, y1 = r0 * s, min(r1 * s, H)
            x0, x1 = c0 * s, min(c1 * s, W)
            t = t[:, :, y0 - i0 * s : y1 - i0 * s, x0 - j0 * s : x1 - j0 * s]
            out[:, :, y0:y1, x0:x1] = _to_uint8_(t) if dtype == torch.uint8 else t.clamp_(0, 1)
            del t, x
    return out


def _out_channels(transform: nn.Module) -> int:
    convs = [m for m in transform.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    return convs[-1].out_channels


@torch.no_grad()
def analyze_tiled(g_a: nn.Module, x: torch.Tensor, tile: int | None = None, halo=None, *,
                  multiple: int | None = None) -> torch.Tensor:  # fmt: skip
    """``g_a(x)`` computed tile by tile.

    Args:
        g_a: the analysis transform.
        x: ``[B, 3, H, W]``: float32 in [0, 1], or uint8 (each tile is converted as
            ``vaecodec.data.to_tensor`` does, ``/ 255`` in float32, so an 8-bit image needs
            3 bytes per pixel instead of 12).
        tile: valid tile side in latent cells (default :func:`tile_for_budget`).
        halo: latent cells added around each tile (default and minimum: the margin).
        multiple: pad ``x`` on the right and bottom by edge replication to multiples of this,
            as ``CodecModel._prepare`` does (``pad_image``), tile by tile (nothing is
            allocated for the padded image). Without it, ``H`` and ``W`` must be multiples of
            the transform's scale.

    Returns:
        ``y [B, M, H'/16, W'/16]`` float32 (H', W' padded), channels-last like the untiled
        ``g_a`` of a channels-last input.
    """
    geo = geometry(g_a)
    if geo.upsampling:
        raise ValueError("analyze_tiled takes an analysis (downsampling) transform")
    before, after = _check_halo(geo, halo)
    s = geo.scale
    b, _, H, W = x.shape
    m = multiple or s
    if m % s:
        raise ValueError(f"multiple {m} is not a multiple of the transform's scale {s}")
    Hp, Wp = -(-H // m) * m, -(-W // m) * m
    if multiple is None and (Hp, Wp) != (H, W):
        raise ValueError(f"x is {H}x{W}: not a multiple of {s} (pass multiple= to pad)")
    h, w = Hp // s, Wp // s
    th, tw = _tile_shape(g_a, tile, w)
    out = None
    for r0, r1 in _spans(h, th):
        i0, i1 = max(0, r0 - before), min(h, r1 + after)
        for c0, c1 in _spans(w, tw):
            j0, j1 = max(0, c0 - before), min(w, c1 + after)
            t = _window(x, i0 * s, i1 * s, j0 * s, j1 * s)
            y = g_a(t.contiguous(memory_format=torch.channels_last))
            if out is None:  # the memory format the untiled g_a gives (h_a's input)
                fmt = torch.contiguous_format if y.is_contiguous() else torch.channels_last
                out = torch.empty(
                    (b, y.shape[1], h, w), dtype=y.dtype, device=y.device, memory_format=fmt
                )
            out[:, :, r0:r1, c0:c1] = y[:, :, r0 - i0 : r1 - i0, c0 - j0 : c1 - j0]
            del t, y
    return out


def _window(x: torch.Tensor, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    """``x[..., y0:y1, x0:x1]`` of ``x`` padded by edge replication (indices clamped), in
    float32 (a uint8 ``x`` divided by 255)."""
    H, W = x.shape[-2:]
    if y1 <= H and x1 <= W:
        t = x[:, :, y0:y1, x0:x1]
    else:
        rows = torch.arange(y0, y1, device=x.device).clamp_(max=H - 1)
        cols = torch.arange(x0, x1, device=x.device).clamp_(max=W - 1)
        t = x.index_select(2, rows).index_select(3, cols)
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    return t.to(torch.float32)
