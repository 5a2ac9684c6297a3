"""Learned image codecs: transforms, training face, exact coding, determinism across threads."""

import json
import runpy
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from vaecodec.models.codecs import FactorizedPrior, MeanScaleHyperprior, ScaleHyperprior, pad_image
from vaecodec.models.exact import ACT_FRAC_BITS, exact_forward
from vaecodec.models.registry import build_model, model_names
from vaecodec.nn import GDN, IGDN
from vaecodec.nn.gdn import _GDNRows
from vaecodec.priors import dequantize_means, scale_indexes

torch.set_num_threads(1)
NAMES = ["factorized", "hyperprior", "mean-scale", "checkerboard"]


def tiny(name, seed=0, spread=20.0):
    """A random tiny codec whose latents are spread enough to code many non-zero symbols
    (and, for the checkerboard model, whose context really acts)."""
    torch.manual_seed(seed)
    m = build_model(name, {"N": 8, "M": 12})
    with torch.no_grad():
        m.g_a[-1].weight.mul_(spread)
        if hasattr(m, "entropy_parameters"):  # starts at zero: the mean-scale model
            last = m.entropy_parameters[-1]
            nn.init.normal_(last.weight, std=0.3)
            nn.init.normal_(last.bias, std=0.3)
    return m.eval()


def smooth_image(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h // 8 + 1, w // 8 + 1, generator=g)
    return torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def test_registry_and_config_round_trip():
    assert set(NAMES) <= set(model_names(kind="codec"))
    for name in NAMES:
        m = build_model(name, {"N": 8, "M": 12, "ste": True})
        assert m.kind == "codec" and m.config_dict() == {"N": 8, "M": 12, "ste": True}
        again = type(m).from_config(m.config_dict())
        assert again.state_dict().keys() == m.state_dict().keys()
    with pytest.raises(ValueError):
        FactorizedPrior.from_config({"N": 8, "K": 3})


def test_gdn_formula_and_constraints():
    x = torch.randn(2, 4, 5, 5)
    assert torch.allclose(GDN(4)(x), x / torch.sqrt(1 + 0.1 * x * x), atol=1e-6)
    assert torch.allclose(IGDN(4)(x), x * torch.sqrt(1 + 0.1 * x * x), atol=1e-6)
    g = GDN(4)
    with torch.no_grad():
        g.beta.fill_(-3.0)
        g.gamma.fill_(-1.0)
    assert g.beta_reparam(g.beta).min() > 0 and g.gamma_reparam(g.gamma).min() >= 0
    y = g(x)
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(g.beta.grad).all() and torch.isfinite(g.gamma.grad).all()


@pytest.mark.parametrize("cls", [GDN, IGDN])
def test_gdn_channels_last_matrix_path_matches_the_convolution(cls):
    """The channels-last path (one matrix product) computes the same values and gradients as
    the 1x1-convolution path, and keeps the channels-last layout."""
    torch.manual_seed(0)
    g = cls(6)
    with torch.no_grad():
        g.gamma.add_(0.1 * torch.rand(6, 6))
    x = torch.randn(2, 6, 5, 7)
    xc = x.clone().contiguous(memory_format=torch.channels_last).requires_grad_()
    x.requires_grad_()
    y, yc = g(x), g(xc)
    assert yc.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(y, yc, atol=1e-6)
    w = torch.randn_like(y)
    gx, gg = torch.autograd.grad((y * w).sum(), (x, g.gamma))
    gxc, ggc = torch.autograd.grad((yc * w).sum(), (xc, g.gamma))
    assert torch.allclose(gx, gxc, atol=1e-5) and torch.allclose(gg, ggc, atol=1e-4)
    with torch.no_grad():  # the in-place inference variant
        assert torch.allclose(g(xc.detach()), y, atol=1e-6)
    # the hand-written backward, checked numerically in float64
    rows = torch.randn(20, 3, dtype=torch.float64, requires_grad=True)
    gamma = (0.1 * torch.eye(3) + 0.05 * torch.rand(3, 3)).double().requires_grad_()
    beta = (0.5 + torch.rand(3)).double().requires_grad_()
    inverse = cls is IGDN
    assert torch.autograd.gradcheck(
        lambda a, b, c: _GDNRows.apply(a, b, c, inverse), (rows, gamma, beta)
    )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("ste", [False, True])
def test_forward_shapes_and_gradients(name, ste):
    torch.manual_seed(0)
    m = build_model(name, {"N": 8, "M": 12, "ste": ste}).train()
    x = torch.rand(2, 3, 128, 64)
    out = m(x)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, 12, 8, 4)
    if name != "factorized":
        assert out["likelihoods"]["z"].shape == (2, 8, 2, 1)
    for lk in out["likelihoods"].values():
        assert lk.min() >= 1e-9 and lk.max() <= 1
    bits = m.estimate_bits(out)
    loss = 0.01 * 255**2 * torch.mean((out["x_hat"] - x) ** 2) + bits.sum() / x[0, 0].numel()
    loss.backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_pad_image_replicates_edges():
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    p, size = pad_image(x, 4)
    assert p.shape == (1, 1, 4, 4) and size == (2, 3)
    assert torch.equal(p[0, 0, :2, 3], x[0, 0, :, 2]) and torch.equal(p[0, 0, 3, :3], x[0, 0, 1])


@pytest.mark.parametrize("name", NAMES)
def test_compress_decompress_exact_latents_odd_size(name):
    m = tiny(name)
    x = smooth_image(37, 101)
    c = m.compress(x)
    assert c["image_size"] == (37, 101)
    y_hat = m.decompress_latents(c["strings"], c["shape"])
    assert torch.equal(y_hat, c["y_hat"])  # the decoder rebuilds the encoder's symbols exactly
    assert (c["y_hat"] != 0).float().mean() > 0.2  # and there were plenty of non-zero symbols
    x_hat = m.decompress(c["strings"], c["shape"], c["image_size"])
    assert x_hat.shape == x.shape and 0 <= x_hat.min() and x_hat.max() <= 1
    # the file route (header + these strings) gives the same pixels
    from vaecodec.compression.lossy import decode_image, encode_image
    from vaecodec.data.images import to_tensor
    from vaecodec.evaluate.metrics import to_uint8

    image = to_uint8(x[0])
    c8 = m.compress(to_tensor(image)[None])
    x8 = m.decompress(c8["strings"], c8["shape"], c8["image_size"])
    data = encode_image(m, image)
    assert data.endswith(b"".join(s[0] for s in c8["strings"]) + data[-4:])
    assert np.array_equal(decode_image(data, m).image, to_uint8(x8[0]))


def test_batch_compress_codes_each_image_separately():
    m = tiny("mean-scale")
    x = torch.cat([smooth_image(64, 64, 1), smooth_image(64, 64, 2)])
    c = m.compress(x)
    assert len(c["strings"][0]) == 2 and c["strings"][0][0] != c["strings"][0][1]
    one = m.compress(x[1:])
    assert one["strings"][0][0] == c["strings"][0][1]
    assert torch.equal(m.decompress_latents(c["strings"], c["shape"]), c["y_hat"])


def test_exact_hyper_synthesis_is_order_independent_and_close_to_float():
    torch.manual_seed(0)
    m = MeanScaleHyperprior(N=8, M=12).eval()
    z = torch.randint(-6, 7, (1, 8, 3, 2)).double()
    out = exact_forward(m.h_s, z)
    assert torch.equal(out, torch.round(out))  # integers
    with torch.no_grad():
        ref = m.h_s(z.float()).double() * 2**ACT_FRAC_BITS
    assert torch.allclose(out, ref, rtol=1e-3, atol=2**ACT_FRAC_BITS * 1e-3)
    # summing the first layer's input channels in another order gives the same integers
    layer = m.h_s[0]
    w = torch.round(layer.weight.detach().double() * 2**16)
    full = nn.functional.conv_transpose2d(z, w, None, 2, 2, 1)
    parts = [nn.functional.conv_transpose2d(z[:, i : i + 1], w[i : i + 1], None, 2, 2, 1)
             for i in reversed(range(8))]  # fmt: skip
    assert torch.equal(full, sum(parts))


def _discrete_bits(m, x):
    """Information content of the symbols under the integer tables (what the coder should
    spend), computed independently of the coder."""
    tables = m.coding_tables()
    c = m.compress(x)
    if isinstance(m, FactorizedPrior):
        sym = c["y_hat"][0].round().long().numpy()
        return sum(tables["y"].bits(sym[ch].ravel(), ch) for ch in range(m.M)), c
    z_sym = m._decode_z(c["strings"][1], *c["shape"])
    bits = sum(tables["z"].bits(z_sym[0, ch].ravel(), ch) for ch in range(m.N))
    idx, mean64 = m.latent_params(z_sym, c["y_hat"])
    k = (c["y_hat"].double().numpy() - dequantize_means(mean64)).round().astype(np.int64)
    for j in np.unique(idx):
        bits += tables["y"].bits(k[idx == j], int(j))
    return bits, c


@pytest.mark.parametrize("name", NAMES)
def test_file_size_matches_the_discrete_rate(name):
    m = tiny(name, spread=40.0)
    x = smooth_image(128, 128, 3)
    bits, c = _discrete_bits(m, x)
    actual = 8 * sum(len(s[0]) for s in c["strings"])
    assert bits > 2000
    # range coder overhead: at most ~2 words per stream beyond a tiny fraction
    assert bits <= actual <= 1.005 * bits + 64 * len(c["strings"])


def test_hyperprior_indexes_follow_the_float_scales():
    torch.manual_seed(1)
    m = ScaleHyperprior(N=8, M=12).eval()
    z = torch.randint(-3, 4, (1, 8, 2, 2))
    idx, _ = m._coding_params(z.numpy().astype(np.int64))
    with torch.no_grad():
        scales = m.h_s(z.float()).double()
    ref = scale_indexes(torch.round(scales * 2**ACT_FRAC_BITS).numpy(), ACT_FRAC_BITS)
    assert np.mean(idx == ref) > 0.99 and np.all(np.abs(idx - ref) <= 1)


_DECODE_SCRIPT = textwrap.dedent(
    """
    import sys, torch, numpy as np
    argv = globals().get("ARGV") or sys.argv[1:]
    torch.set_num_threads(int(argv[0]))
    from vaecodec.zoo.codecs import load_codec
    model = load_codec(argv[1])
    from vaecodec.compression.lossy import decode_image
    from vaecodec.coding.container import unpack
    data = open(argv[2], "rb").read()
    img, mode = decode_image(data, model)
    header, streams = unpack(data)
    y_hat = model.decompress_latents([[s] for s in streams],
                                     model.latent_shape(header.height, header.width))
    np.save(argv[3], img)
    np.save(argv[3] + ".y.npy", y_hat.numpy())
    """
)


@pytest.mark.parametrize("name", ["mean-scale", "checkerboard"])
def test_decoding_is_bit_exact_across_thread_counts(tmp_path, name):
    from vaecodec.checkpoint import save_model
    from vaecodec.compression.lossy import encode_image
    from vaecodec.zoo.codecs import load_codec

    torch.manual_seed(0)
    m = build_model(name, {"N": 16, "M": 24})
    with torch.no_grad():
        m.g_a[-1].weight.mul_(30)
        if name == "checkerboard":
            nn.init.normal_(m.entropy_parameters[-1].weight, std=0.2)
    save_model(tmp_path / "run", m, {"model": name, "config": m.config_dict()})
    model = load_codec(tmp_path / "run")
    img = (smooth_image(96, 160, 5)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    (tmp_path / "a.vcz").write_bytes(encode_image(model, img))
    script = tmp_path / "dec.py"
    script.write_text(_DECODE_SCRIPT)
    outs = []
    for threads in (1, 2):  # 1: this process (the suite runs one thread), 2: a fresh one
        out = tmp_path / f"t{threads}.npy"
        argv = [str(threads), str(tmp_path / "run"), str(tmp_path / "a.vcz"), str(out)]
        if threads == torch.get_num_threads():
            runpy.run_path(str(script), run_name="__main__", init_globals={"ARGV": argv})
        else:
            subprocess.run([sys.executable, str(script), *argv], check=True, capture_output=True,
                           timeout=120)  # fmt: skip
        outs.append((np.load(out), np.load(str(out) + ".y.npy")))
    assert np.array_equal(outs[0][0], outs[1][0])
    assert np.array_equal(outs[0][1], outs[1][1])
    # and both equal the encoder's latents (in this process, one thread)
    c = model.compress(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)
    assert np.array_equal(outs[0][1], c["y_hat"].numpy())
    assert json.dumps(outs[0][0].shape) == json.dumps([96, 160, 3])


def test_checkerboard_context_reads_only_anchors():
    """The masked context convolution maps an impulse at an anchor to non-anchors only, and
    a non-anchor impulse does not reach any position that the coder computes first."""
    from vaecodec.nn.checkerboard import CheckerboardConv2d, anchor_mask

    torch.manual_seed(0)
    conv = CheckerboardConv2d(2, 3, 5)
    with torch.no_grad():
        conv.weight.normal_()
    mask = anchor_mask(9, 9)
    assert mask[0, 0, 0, 0] == 1 and mask[0, 0, 0, 1] == 0 and mask.sum() == 41
    x = torch.zeros(1, 2, 9, 9)
    x[0, 0, 4, 4] = 1.0  # an anchor
    with torch.no_grad():
        out = conv(x) - conv.bias[None, :, None, None]
    hit = out.abs().sum(1)[0] > 0
    assert hit.any() and not (hit & mask[0, 0].bool()).any()  # anchors never see anchors
    assert torch.equal(conv.masked_copy()(x), conv(x))


@pytest.mark.parametrize("h, w", [(7, 10), (1, 1), (2, 5)])
def test_exact_checkerboard_context_equals_the_full_convolution_at_non_anchors(h, w):
    """The coder's gathered-taps context gives, at every non-anchor, exactly the integers of
    the full fixed-point 5x5 convolution of the anchors (odd sizes and borders included)."""
    from vaecodec.models.exact import ExactCheckerboardContext, exact_layers
    from vaecodec.nn.checkerboard import CheckerboardConv2d, anchor_mask
    from vaecodec.priors.gaussian import MEAN_STEP_BITS

    torch.manual_seed(1)
    conv = CheckerboardConv2d(4, 6, 5)
    with torch.no_grad():
        conv.weight.normal_(0, 0.3)
        conv.bias.normal_()
    y64 = torch.randint(-3000, 3000, (2, 4, h, w)).double()  # y^ in 1/64 units
    is_a = anchor_mask(h, w, dtype=torch.bool)
    full = exact_forward(exact_layers(nn.Sequential(conv.masked_copy()), MEAN_STEP_BITS),
                         torch.where(is_a, y64, 0.0))  # fmt: skip
    got = ExactCheckerboardContext(conv, MEAN_STEP_BITS)(y64)  # non-anchors of y64 not read
    want = full.reshape(2, 6, h * w)[:, :, ~is_a.reshape(-1)]
    assert got.shape == want.shape and torch.equal(got, want)


def test_fresh_checkerboard_codes_exactly_like_its_mean_scale_model():
    """The entropy-parameters network starts at zero, so a checkerboard model built on a
    mean-scale model's weights codes the same symbols with the same probabilities (the y
    string only reorders them: anchors first) and reconstructs the same image; once the
    context acts, the y rate changes."""
    ms = tiny("mean-scale", seed=3)
    cb = build_model("checkerboard", ms.config_dict())
    res = cb.load_state_dict(ms.state_dict(), strict=False)
    assert not res.unexpected_keys and all(
        k.startswith(("context.", "entropy_parameters.")) for k in res.missing_keys
    )
    cb.eval()
    x = smooth_image(64, 128, 4)
    a, b = ms.compress(x), cb.compress(x)
    assert a["strings"][1] == b["strings"][1] and torch.equal(a["y_hat"], b["y_hat"])
    assert abs(len(a["strings"][0][0]) - len(b["strings"][0][0])) <= 8
    with torch.no_grad():
        assert torch.equal(ms(x)["x_hat"], cb(x)["x_hat"])
        nn.init.normal_(cb.entropy_parameters[-1].weight, std=0.3)
    cb.reset_coding()
    c = cb.compress(x)
    assert c["strings"][0] != a["strings"][0] and c["strings"][1] == a["strings"][1]
    assert torch.equal(cb.decompress_latents(c["strings"], c["shape"]), c["y_hat"])


def test_checkerboard_float_passes_follow_the_coded_parameters():
    """Eval-mode ``two_pass`` (what training and rate estimation use) picks, for anchors and
    non-anchors alike, the scale levels and means that the exact coder computes."""
    m = tiny("checkerboard", seed=5, spread=5.0)
    x = smooth_image(128, 192, 6)
    c = m.compress(x)
    z_sym = m._decode_z(c["strings"][1], *c["shape"])
    idx, mean64 = m.latent_params(z_sym, c["y_hat"])
    with torch.no_grad():
        y = m.g_a(x)
        _, scales, means = m.two_pass(y, m.h_s(torch.from_numpy(z_sym).float()))
    ref = scale_indexes(torch.round(scales.double() * 2**ACT_FRAC_BITS).numpy(), ACT_FRAC_BITS)
    assert np.mean(idx == ref) > 0.99 and np.all(np.abs(idx - ref) <= 1)
    assert np.abs(dequantize_means(mean64) - means.double().numpy()).max() < 0.05
    assert len(np.unique(idx)) > 5  # parameters really vary


@pytest.mark.parametrize("slope", [2.0**-6, 0.01])
def test_exact_leaky_relu_takes_its_slope_on_the_2_16_grid(slope):
    seq = nn.Sequential(nn.Conv2d(2, 3, 1), nn.LeakyReLU(slope))
    torch.manual_seed(0)
    z = torch.randint(-9, 10, (1, 2, 4, 4)).double()
    out = exact_forward(seq, z)
    with torch.no_grad():
        ref = seq(z.float()).double() * 2**ACT_FRAC_BITS
    assert torch.equal(out, torch.round(out)) and (out < 0).any()
    assert torch.allclose(out, ref, atol=32.0)  # weights rounded to 2**-16: ~1e-4 apart
    with pytest.raises(TypeError, match="below 2"):
        exact_forward(nn.Sequential(nn.Conv2d(2, 3, 1), nn.LeakyReLU(1e-6)), z)
