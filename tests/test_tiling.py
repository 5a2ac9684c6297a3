"""Tiled g_a / g_s (issue 18, point 6): the receptive-field margin derived from the layers is
the true one, tiles give the untiled result (strips bit for bit, square tiles within one 8-bit
level at a few pixels), the tile size follows the memory budget, and an image too big for the
memory limit is refused before anything is allocated."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import kodak_dir
from vaecodec.errors import FormatError, ImageError
from vaecodec.models.codecs import CheckerboardMeanScale
from vaecodec.models.transforms import analysis_transform, pad_image, synthesis_transform
from vaecodec.nn import tiling
from vaecodec.nn.tiling import analyze_tiled, geometry, synthesize_tiled

KODAK = kodak_dir()


def _untiled_uint8(g_s, y, size):
    """What CodecModel.decompress + decode_image do with the whole latent."""
    with torch.no_grad():
        x = g_s(y.contiguous(memory_format=torch.channels_last)).clamp_(0.0, 1.0)
    x = x[..., : size[0], : size[1]]
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    g_a, g_s = analysis_transform(8, 12).eval(), synthesis_transform(8, 12).eval()
    for p in [*g_a.parameters(), *g_s.parameters()]:  # non-trivial GDN parameters
        p.data.add_(0.05 * torch.rand_like(p))
    return g_a, g_s


# -- the margin ----------------------------------------------------------------------------------


def test_geometry_of_the_codec_transforms():
    gs, ga = geometry(synthesis_transform(8, 12)), geometry(analysis_transform(8, 12))
    assert (gs.scale, gs.upsampling, gs.before, gs.after, gs.halo) == (16, True, 1, 2, (1, 2))
    assert (ga.scale, ga.upsampling, ga.before, ga.after, ga.halo) == (16, False, 30, 15, (2, 1))


def _support(grad: torch.Tensor, dim: int) -> tuple[int, int]:
    nz = grad.abs().sum(dim=(0, 1, 3) if dim == 2 else (0, 1, 2)).nonzero().flatten()
    return int(nz.min()), int(nz.max())


def test_the_margin_is_the_true_receptive_field(tiny):
    """Autograd: the outputs of one latent cell depend on exactly the derived input window."""
    g_a, g_s = tiny
    y = torch.randn(1, 12, 11, 11, requires_grad=True)
    g_s(y)[..., 5 * 16 : 6 * 16, 5 * 16 : 6 * 16].sum().backward()
    geo = geometry(g_s)
    for dim in (2, 3):
        assert _support(y.grad, dim) == (5 - geo.before, 5 + geo.after)
    x = torch.rand(1, 3, 11 * 16, 11 * 16, requires_grad=True)
    g_a(x)[..., 5, 5].sum().backward()
    geo = geometry(g_a)
    for dim in (2, 3):
        assert _support(x.grad, dim) == (80 - geo.before, 80 + 15 + geo.after)


def test_unknown_layers_and_small_halos_are_refused(tiny):
    g_a, g_s = tiny
    with pytest.raises(ValueError, match="receptive field"):
        geometry(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)))
    with pytest.raises(ValueError, match="all convolutions"):
        geometry(nn.Sequential(nn.Conv2d(3, 3, 3), nn.ConvTranspose2d(3, 3, 3)))
    with pytest.raises(ValueError, match="smaller than"):
        synthesize_tiled(g_s, torch.zeros(1, 12, 4, 4), 2, halo=1)
    with pytest.raises(ValueError, match="smaller than"):
        analyze_tiled(g_a, torch.zeros(1, 3, 64, 64), 2, halo=(1, 1))


# -- equality with the untiled transforms (random weights) --------------------------------------


@pytest.mark.parametrize("tile", [2, 3, (2, 5), (1, None), (4, None), 100])
def test_synthesis_tiles_equal_the_untiled_decode(tiny, tile):
    _, g_s = tiny
    torch.manual_seed(1)
    y = torch.randn(1, 12, 13, 19) * 3
    size = (200, 300)
    ref = _untiled_uint8(g_s, y, size)
    out = synthesize_tiled(g_s, y, tile, image_size=size)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 200, 300)
    assert out[0].permute(1, 2, 0).is_contiguous()  # an [H, W, 3] array without a copy
    d = (out.int() - ref.int()).abs()
    assert int(d.max()) <= 1 and int((d > 0).sum()) <= 1e-4 * d.numel()
    if isinstance(tile, tuple) and tile[1] is None:  # full-width strips: bit for bit
        assert torch.equal(out, ref)
    f = synthesize_tiled(g_s, y, tile, image_size=size, dtype=torch.float32)
    with torch.no_grad():
        full = g_s(y.contiguous(memory_format=torch.channels_last)).clamp_(0, 1)[..., :200, :300]
    assert float((f - full).abs().max()) <= 1e-5


@pytest.mark.parametrize("tile", [2, (3, 1), (2, None), 50])
@pytest.mark.parametrize("as_uint8", [True, False])
def test_analysis_tiles_equal_the_untiled_encode(tiny, tile, as_uint8):
    g_a, _ = tiny
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    u8 = torch.from_numpy(img).permute(2, 0, 1)[None]
    x = u8.float().div_(255.0)  # vaecodec.data.to_tensor
    padded, _ = pad_image(x, 64)  # CodecModel._prepare
    with torch.no_grad():
        ref = g_a(padded.contiguous(memory_format=torch.channels_last))
    y = analyze_tiled(g_a, u8 if as_uint8 else x, tile, multiple=64)
    assert y.shape == ref.shape == (1, 12, 16, 20)
    assert float((y - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
    if isinstance(tile, tuple) and tile[1] is None:
        assert torch.equal(y, ref)


def test_analysis_needs_a_multiple_of_the_scale_or_padding(tiny):
    g_a, _ = tiny
    with pytest.raises(ValueError, match="multiple"):
        analyze_tiled(g_a, torch.zeros(1, 3, 40, 64), 2)
    assert analyze_tiled(g_a, torch.zeros(1, 3, 40, 64), 2, multiple=16).shape == (1, 12, 3, 4)


def test_a_tiny_codec_decodes_and_encodes_the_same_through_tiles():
    """The pieces the wiring will call: decompress_latents, _ungain_y, then tiles; and the
    encoder's y from tiles gives the same bytes."""
    torch.manual_seed(3)
    model = CheckerboardMeanScale(N=8, M=12, levels=2).eval()
    rng = np.random.default_rng(3)
    img = np.kron(rng.integers(0, 256, (10, 15, 3)), np.ones((20, 20, 1))).astype(np.uint8)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div_(255.0)
    out = model.compress(x)
    ref = model.decompress(out["strings"], out["shape"], out["image_size"])
    y_hat = model.synthesis_input(out["strings"], out["shape"])
    got = synthesize_tiled(model.g_s, y_hat, (2, None), image_size=(200, 300))
    want = ref.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    assert torch.equal(got, want)
    # encoder: analyze_tiled on the uint8 image in place of g_a(x_padded)
    y = analyze_tiled(model.g_a, torch.from_numpy(img).permute(2, 0, 1)[None], (3, None),
                      multiple=model.multiple)  # fmt: skip
    tiled = model.compress_analyzed(y, (200, 300))
    assert tiled["strings"] == out["strings"] and tiled["shape"] == out["shape"]


class _Fixed(nn.Module):
    def __init__(self, y):
        super().__init__()
        self.y = y

    def forward(self, _x):
        return self.y


# -- the real codec ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real():
    from vaecodec.zoo.codecs import load_codec

    if not (KODAK / "kodim23.png").exists():
        pytest.skip("no Kodak images")
    from PIL import Image

    with Image.open(KODAK / "kodim23.png") as im:
        img = np.asarray(im.convert("RGB"))[100:300, 200:500].copy()  # 200 x 300
    return load_codec("cb-vr10", 5), img


def test_cb_vr10_tiles_match_the_decoder(real):
    from vaecodec.coding.container import unpack
    from vaecodec.compression.lossy import decode_image, encode_image, header_level

    model, img = real
    data = encode_image(model, img)
    ref = decode_image(data, model).image
    header, streams = unpack(data)
    size = (header.height, header.width)
    y = model._ungain_y(
        model.decompress_latents([[s] for s in streams], model.latent_shape(*size)),
        header_level(header, model),
    )
    for tile in [(1, None), (3, None), 2, (3, 5)]:
        out = synthesize_tiled(model.g_s, y, tile, image_size=size)[0].permute(1, 2, 0).numpy()
        d = np.abs(out.astype(int) - ref.astype(int))
        assert d.max() <= 1 and (d > 0).mean() <= 1e-4, (tile, d.max(), (d > 0).sum())
        if isinstance(tile, tuple) and tile[1] is None:
            assert np.array_equal(out, ref), tile


# -- tile size and the memory bound -------------------------------------------------------------


def test_tile_for_budget_keeps_the_estimate_within_the_budget():
    g_s, g_a = synthesis_transform(64, 96), analysis_transform(64, 96)
    for t in (g_s, g_a):
        for budget in (64 << 20, 256 << 20, 1 << 30):
            for width in (32, 256, 2048):  # latent cells: 512 to 32768 pixels
                tile = tiling.tile_for_budget(t, budget, width=width)
                assert tiling.tile_bytes(t, tile, width) <= budget or tile[0] == 4
        assert tiling.tile_for_budget(t, 256 << 20, width=256)[1] is None  # strips
        rows, cols = tiling.tile_for_budget(t, 256 << 20, width=2048)  # too wide: squares
        assert rows == cols and tiling.tile_bytes(t, (rows, cols), 2048) <= 256 << 20
    # wider transforms get smaller tiles
    assert (tiling.tile_for_budget(synthesis_transform(128, 192))[0]
            < tiling.tile_for_budget(g_s)[0])  # fmt: skip


def test_check_memory_refuses_huge_images_with_an_actionable_message(monkeypatch):
    g_s, g_a = synthesis_transform(64, 96), analysis_transform(64, 96)
    monkeypatch.delenv("VAECODEC_MAX_MEMORY", raising=False)
    assert tiling.check_memory(4096, 4096, g_s, decode=True) < tiling.DEFAULT_MAX_MEMORY
    with pytest.raises(FormatError, match="VAECODEC_MAX_MEMORY=") as e:
        tiling.check_memory(16384, 16384, g_s, decode=True)  # 2**28 pixels, the format's max
    assert "16384x16384" in str(e.value) and "GiB" in str(e.value)
    with pytest.raises(ImageError, match="encoding"):
        tiling.check_memory(16384, 16384, g_a, decode=False, error=ImageError)
    need = tiling.estimate_peak_bytes(16384, 16384, g_s, decode=True)
    monkeypatch.setenv("VAECODEC_MAX_MEMORY", f"{need // 2**20 + 1}M")
    assert tiling.check_memory(16384, 16384, g_s, decode=True) == need
    assert tiling.check_memory(100, 100, g_s, decode=True, limit=1 << 30) > 0


def test_the_estimate_grows_with_pixels_not_with_the_transform():
    g_s = synthesis_transform(64, 96)
    a = tiling.estimate_peak_bytes(4096, 4096, g_s, decode=True)
    b = tiling.estimate_peak_bytes(8192, 8192, g_s, decode=True)
    per_px = (b - a) / (8192**2 - 4096**2)
    assert 60 < per_px < 100  # tiled: the latent side, ~83 B/px for M = 96 (untiled ~330)
    # untiled up to the threshold: the transform's bytes per pixel over the whole image
    side = int(tiling.TILING_THRESHOLD**0.5)  # 1448: padded to 1472^2 > 2**21, tiled
    untiled = tiling.estimate_peak_bytes(1024, 2048, g_s, decode=True)  # exactly 2**21
    assert untiled > tiling.BASE_BYTES + 300 * 2**21
    assert (
        untiled < 1.2 * 2**30 and tiling.estimate_peak_bytes(side, side, g_s, decode=True) < untiled
    )
    assert tiling.estimate_peak_bytes(768, 512, g_s, decode=True) < 1 << 30


@pytest.mark.parametrize("text, value", [("4G", 4 << 30), ("512M", 512 << 20), ("1.5GiB", 3 << 29),
                                         ("1000", 1000), ("2 gb", 2 << 30)])  # fmt: skip
def test_parse_bytes(text, value):
    assert tiling.parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "x", "-1G", "nanG", "0"])
def test_parse_bytes_refuses_junk(text):
    with pytest.raises(ValueError, match="memory size"):
        tiling.parse_bytes(text)


def test_the_file_route_codes_big_images_in_strips_with_the_same_bytes_and_pixels(monkeypatch):
    """encode_image / decode_image (what `compress` / `decompress` run) switch to strips above
    TILING_THRESHOLD; here the threshold is lowered so that a small image takes that path."""
    from vaecodec.compression.lossy import decode_image, encode_image

    torch.manual_seed(5)
    model = CheckerboardMeanScale(N=8, M=12, levels=2).eval()
    rng = np.random.default_rng(5)
    img = np.kron(rng.integers(0, 256, (12, 19, 3)), np.ones((16, 16, 1))).astype(np.uint8)
    img = img[:190, :300]
    whole = encode_image(model, img)
    whole_pixels = decode_image(whole, model).image
    used = []
    for name in ("analyze_tiled", "synthesize_tiled"):
        real = getattr(tiling, name)
        monkeypatch.setattr(tiling, name, lambda *a, _r=real, _n=name, **k: used.append(_n)
                            or _r(*a, **k))  # fmt: skip
    monkeypatch.setattr(tiling, "TILING_THRESHOLD", 64 * 64)
    strips = encode_image(model, img)
    assert strips == whole
    assert np.array_equal(decode_image(strips, model).image, whole_pixels)
    grey = encode_image(model, img[:, :, 0])
    assert decode_image(grey, model).image.shape == (190, 300)
    assert used.count("analyze_tiled") == 2 and used.count("synthesize_tiled") == 2


def test_the_file_route_refuses_what_would_not_fit_the_memory_limit(monkeypatch):
    from vaecodec.compression.lossy import decode_image, encode_image

    model = CheckerboardMeanScale(N=8, M=12).eval()
    img = np.zeros((64, 64, 3), np.uint8)
    data = encode_image(model, img)
    monkeypatch.setenv("VAECODEC_MAX_MEMORY", "1M")
    with pytest.raises(ImageError, match="VAECODEC_MAX_MEMORY"):
        encode_image(model, img)
    with pytest.raises(FormatError, match="VAECODEC_MAX_MEMORY"):
        decode_image(data, model)
