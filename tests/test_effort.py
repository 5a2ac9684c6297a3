"""Encoder effort (per-image latent refinement, vaecodec.compression.refine) and the default
family that takes its qualities from two codecs (cb-mix11): what a user runs, the CLI and
encode_image, on tiny models and crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import kodak_dir
from vaecodec.cli import main
from vaecodec.coding.container import unpack
from vaecodec.compression import refine
from vaecodec.compression.lossy import decode_image, encode_image
from vaecodec.models.codec_base import rd_value
from vaecodec.models.registry import build_model
from vaecodec.nn import tiling
from vaecodec.zoo.codecs import codec_summary, load_codec

torch.set_num_threads(1)
KINDS = ("factorized", "hyperprior", "mean-scale", "checkerboard")


def _tiny(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    m = build_model(kind, {"N": 8, "M": 12, "levels": 2}).eval()
    with torch.no_grad():
        m.g_a[-1].weight.mul_(20)
    m.lmbdas = [0.001, 0.01]
    return m.set_level(1)


def _image(h=70, w=90, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.kron(rng.integers(0, 256, (h // 5 + 1, w // 5 + 1, 3)), np.ones((5, 5, 1)))
    return a[:h, :w].astype(np.uint8)


def _symbols(model, data: bytes):
    """The decoded y^ of a file (what the exact decoder reconstructs from the bytes)."""
    header, streams = unpack(data)
    size = (header.height, header.width)
    return model.decompress_latents([[s] for s in streams], model.latent_shape(*size))


@pytest.mark.parametrize("kind", KINDS)
def test_every_codec_kind_refines_and_its_file_decodes_with_the_unchanged_decoder(kind):
    model, img = _tiny(kind), _image()
    plain = encode_image(model, img)
    refined = encode_image(model, img, effort=1)
    assert refined != plain  # the latents moved
    assert encode_image(model, img, effort=1) == refined  # deterministic
    out = decode_image(refined, model)
    assert out.image.shape == img.shape and out.mode == "RGB"
    # the symbols the encoder chose (compress_latents' y_hat) are what the decoder reads back
    model_y = {}
    real = model.compress_latents
    model.compress_latents = lambda *a: model_y.setdefault("out", real(*a))
    try:
        assert encode_image(model, img, effort=1) == refined
    finally:
        del model.compress_latents
    assert torch.equal(_symbols(model, refined), model_y["out"]["y_hat"])


def test_refinement_lowers_the_rate_distortion_cost_of_a_trained_codec():
    """On the bundled cb-vr10 (quality 3) and a Kodak crop, effort 1 must give a lower
    R + lmbda * 255^2 * MSE than effort 0, measured on the real file and its decode."""
    img = np.asarray(Image.open(kodak_dir() / "kodim23.png").convert("RGB"))[128:256, 256:448]
    model = load_codec("cb-vr10", 3)
    lmbda = refine.model_lmbda(model)

    def cost(data):
        dec = decode_image(data, model).image.astype(np.float64)
        mse = np.mean((dec - img) ** 2) / 255.0**2
        return rd_value(8 * len(data) / (img.shape[0] * img.shape[1]), mse, lmbda)

    c0, c1 = cost(encode_image(model, img)), cost(encode_image(model, img, effort=1))
    assert c1 < 0.995 * c0, (c0, c1)  # measured: -0.8 %


def test_big_images_are_refined_in_windows_and_decode(monkeypatch):
    """Above the tiling threshold the latents are refined window by window (here the
    threshold and the window are lowered so that a small image takes that path)."""
    model, img = _tiny("checkerboard"), _image(120, 180, seed=3)
    calls = []
    real = refine._refine_window
    monkeypatch.setattr(refine, "_refine_window", lambda *a, **k: calls.append(1) or real(*a, **k))
    whole = encode_image(model, img, effort=1)
    assert len(calls) == 1
    monkeypatch.setattr(tiling, "TILING_THRESHOLD", 64 * 64)
    monkeypatch.setattr(refine, "WINDOW", 4)
    steps = []
    data = encode_image(model, img, effort=1, progress=lambda done, total: steps.append(
        (done, total)))  # fmt: skip
    assert len(calls) == 1 + 6  # 8 x 12 latents in 4 x 4 windows
    assert steps[-1] == (refine.EFFORT_STEPS[1] * 6,) * 2
    assert data != whole and decode_image(data, model).image.shape == img.shape


def test_effort_is_checked_and_needs_the_models_lambdas():
    model, img = _tiny("mean-scale"), _image()
    with pytest.raises(ValueError, match="effort must be an integer from 0 to 4"):
        encode_image(model, img, effort=refine.MAX_EFFORT + 1)
    model.lmbdas = None
    with pytest.raises(ValueError, match="lambda the model was trained with"):
        encode_image(model, img, effort=1)
    assert decode_image(encode_image(model, img), model).image.shape == img.shape  # effort 0


def _save_tiny_run(run_dir, kind="checkerboard"):
    from vaecodec.checkpoint import save_model

    m = _tiny(kind)
    save_model(run_dir, m, {"model": kind, "kind": "codec", "config": m.config_dict(),
                            "lmbdas": [0.001, 0.01]})  # fmt: skip
    return run_dir


def test_cli_compress_with_effort_and_decompress(tmp_path, capsys):
    run = _save_tiny_run(tmp_path / "run")
    src = tmp_path / "a.png"
    Image.fromarray(_image()).save(src)
    vcz, png = tmp_path / "a.vcz", tmp_path / "b.png"
    assert main(["compress", "--model", str(run), "--effort", "2", str(src), "-o", str(vcz)]) == 0
    assert "effort 2" in capsys.readouterr().out
    assert main(["decompress", "--model", str(run), str(vcz), "-o", str(png)]) == 0
    assert np.asarray(Image.open(png)).shape == (70, 90, 3)
    with pytest.raises(SystemExit) as e:
        main(["compress", "--model", str(run), "--effort", "7", str(src), "-o", str(vcz)])
    assert e.value.code == 2 and "invalid choice: 7" in capsys.readouterr().err


def test_ctrl_c_during_refinement_leaves_no_file(tmp_path, monkeypatch, capsys):
    run = _save_tiny_run(tmp_path / "run")
    src, vcz = tmp_path / "a.png", tmp_path / "a.vcz"
    Image.fromarray(_image()).save(src)

    def interrupted(*a, progress=None, **k):
        progress(1, 400)  # refine_latents reports (done, total)
        raise KeyboardInterrupt

    monkeypatch.setattr(refine, "refine_latents", interrupted)
    assert main(["compress", "--model", str(run), "--effort", "3", str(src), "-o", str(vcz)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "run"]


def test_the_default_family_takes_each_quality_from_the_better_codec(tmp_path, capsys):
    """cb-mix11: qualities 1-5 are cb-vr10's, 6-11 cb128-vr10's 5-10; a file records the
    family that owns the weights, so `decompress` finds it from the header alone."""
    summary = codec_summary()
    assert summary["default_codec"] == "cb-mix11"
    assert summary["codecs"]["cb-mix11"]["qualities"] == list(range(1, 12))
    low, high = load_codec(None, 2), load_codec("cb-mix11", 7)
    assert (low.codec_id.name, low.codec_id.quality, low.N) == ("cb-vr10", 2, 64)
    assert (high.codec_id.name, high.codec_id.quality, high.N) == ("cb128-vr10", 6, 128)
    src = tmp_path / "a.png"
    Image.fromarray(_image(64, 96)).save(src)
    vcz = tmp_path / "a.vcz"
    assert main(["compress", "--quality", "7", str(src), "-o", str(vcz)]) == 0
    assert "(cb128-vr10 quality 6 = cb-mix11 quality 7)" in capsys.readouterr().out
    assert unpack(vcz.read_bytes())[0].codec.name == "cb128-vr10"
    assert main(["decompress", str(vcz), "-o", str(tmp_path / "a2.png")]) == 0
    # the bytes are those of cb128-vr10 quality 6 itself
    assert vcz.read_bytes() == encode_image(load_codec("cb128-vr10", 6), _image(64, 96))
