"""Variable-rate codecs (gain units, Cui et al. 2021): model, coding, training, zoo family."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from vaecodec.checkpoint import save_model
from vaecodec.cli import main
from vaecodec.coding.container import Header, pack, unpack
from vaecodec.compression.lossy import decode_image, encode_image
from vaecodec.errors import FormatError, ModelError, TrainingError
from vaecodec.evaluate.rd import LearnedCodecAdaptor
from vaecodec.models.registry import build_model
from vaecodec.train.codec_trainer import CodecTrainConfig, level_weights, rd_loss, train_codec
from vaecodec.zoo.codecs import codec_summary, load_codec, resolve_codec
from vaecodec.zoo.export import export_codec_family

torch.set_num_threads(1)
LMBDAS = [0.001, 0.01, 0.1]


def tiny_vr(seed=0, name="mean-scale"):
    torch.manual_seed(seed)
    m = build_model(name, {"N": 8, "M": 12, "levels": 3})
    m.init_gains(LMBDAS)
    with torch.no_grad():
        m.g_a[-1].weight.mul_(20)
    return m.eval()


def _image(h=64, w=80, seed=0):
    rng = np.random.default_rng(seed)
    a = np.kron(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)), np.ones((8, 8, 1)))
    return a[:h, :w].astype(np.uint8)


def test_init_gains_follow_sqrt_lambda_and_config_round_trips():
    m = tiny_vr()
    g = m.log_gain.exp()[:, 0]
    assert torch.allclose(g[1:] / g[:-1], torch.full((2,), 10**0.5), rtol=1e-5)
    assert torch.allclose(m.log_inv_gain, -m.log_gain)
    assert m.config_dict()["levels"] == 3 and m.level == 2
    assert build_model("mean-scale", m.config_dict()).levels == 3
    assert "levels" not in build_model("mean-scale", {"N": 8, "M": 12}).config_dict()
    with pytest.raises(ValueError, match="levels"):
        m.set_level(3)
    with pytest.raises(ValueError, match="2 lmbdas"):
        m.init_gains([0.1, 0.2])


@pytest.mark.parametrize("name", ["mean-scale", "hyperprior", "factorized"])
def test_per_image_levels_match_single_level_forward(name):
    m = tiny_vr(name=name)
    x = torch.rand(3, 3, 64, 64)
    out = m(x, torch.tensor([2, 0, 1]))
    for i, lv in enumerate([2, 0, 1]):
        one = m(x[i : i + 1], lv)
        assert torch.allclose(out["x_hat"][i], one["x_hat"][0], atol=1e-5)
        assert torch.allclose(out["likelihoods"]["y"][i], one["likelihoods"]["y"][0], atol=1e-6)


def test_levels_change_the_rate_and_the_header_selects_the_decoder_gain():
    m = tiny_vr()
    img = _image()
    files = []
    for lv in range(3):
        m.set_level(lv)
        files.append(encode_image(m, img))
        assert unpack(files[-1])[0].codec.quality == lv + 1
    sizes = [len(f) for f in files]
    assert sizes[0] < sizes[1] < sizes[2], sizes  # larger gain, finer quantisation, more bits
    m.set_level(2)
    decoded = [decode_image(f, m)[0] for f in files]  # each at the level in its header
    for lv, f in enumerate(files):
        m.set_level(lv)
        assert np.array_equal(decode_image(f, m)[0], decoded[lv])  # whatever m.level is
    # the inverse gain matters: decoding level 0's latents with level 2's gain differs
    header, streams = unpack(files[0])
    strings, shape = [[s] for s in streams], m.latent_shape(64, 80)
    wrong = m.decompress(strings, shape, (64, 80), level=2)
    assert not torch.equal(wrong, m.decompress(strings, shape, (64, 80), level=0))


def test_a_header_quality_outside_the_levels_is_refused():
    m = tiny_vr()
    header, streams = unpack(encode_image(m, _image()))
    bad = pack(Header(header.codec.__class__(header.codec.name, header.codec.model,
                                             header.codec.weights_hash, 9),
                      header.height, header.width, "RGB"), streams, version=1)  # fmt: skip
    with pytest.raises(FormatError, match="quality 9"):
        decode_image(bad, m)


@pytest.fixture(scope="module")
def vr_run(photos, tmp_path_factory):
    d = photos
    out = tmp_path_factory.mktemp("vr") / "run"
    cfg = CodecTrainConfig(model="mean-scale", data=str(d), val_pattern="val_*", lmbdas=LMBDAS,
                           crop=64, val_crop=64, batch_size=3, steps=4, lr=1e-3, N=8, M=12,
                           val_every=2, log_every=2, workers=0, out=str(out), progress=False)  # fmt: skip
    train_codec(cfg)
    return d, out


def test_variable_rate_training_logs_every_level_and_resumes(vr_run, capsys):
    d, out = vr_run
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["levels"] == 3 and meta["lmbdas"] == LMBDAS and meta["lmbda"] is None
    levels = meta["metrics"]["val_levels"]
    assert [lv["level"] for lv in levels] == [0, 1, 2]
    bpps = [lv["bpp"] for lv in levels]
    assert meta["metrics"]["val_bpp"] == pytest.approx(sum(bpps) / 3)
    val = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(len(v["levels"]) == 3 for v in val if v["split"] == "val")
    r = resolve_codec(out, 1)
    assert r[2:] == (1, 0)
    assert resolve_codec(out)[2:] == (2, 1)  # default: the middle level
    with pytest.raises(ModelError, match="qualities 1..3"):
        resolve_codec(out, 4)
    assert load_codec(out, 3).level == 2
    assert LearnedCodecAdaptor(str(out)).qualities == (1, 2, 3)
    # resume continues with the same lambdas
    out2 = out.parent / "run2"
    import shutil

    shutil.copytree(out, out2)
    cfg = CodecTrainConfig(out=str(out2), steps=6, resume=True, progress=False)
    _, summary = train_codec(cfg)
    assert summary["steps"] == 6
    meta2 = json.loads((out2 / "config.json").read_text())
    assert meta2["lmbdas"] == LMBDAS
    assert len(meta2["commands"]) == 2  # the first run's command, then the resume's


def test_lambdas_must_increase(vr_run, tmp_path):
    d, _ = vr_run
    cfg = CodecTrainConfig(data=str(d), val_pattern="val_*", lmbdas=[0.1, 0.01], crop=64,
                           N=8, M=12, steps=1, workers=0, out=str(tmp_path), progress=False)  # fmt: skip
    with pytest.raises(TrainingError, match="increasing"):
        train_codec(cfg)


def test_family_export_and_cli_round_trip_at_every_quality(vr_run, tmp_path, capsys):
    _, out = vr_run
    fam = export_codec_family([out], "tiny-vr", "test family", fp16=True, default=True,
                              hardware="test", zoo_dir=tmp_path)  # fmt: skip
    meta = json.loads((fam / "family.json").read_text())
    assert [(e["quality"], e["level"], e["dir"]) for e in meta["qualities"]] == [
        (1, 0, "model"), (2, 1, "model"), (3, 2, "model")]  # fmt: skip
    recipe = (fam / "RECIPE.md").read_text()
    assert re.search(r"weights exported from step [24] \(best validation loss\) of 4", recipe)
    assert "hardware: test" in recipe and "stored as float16" in recipe
    s = codec_summary(root=tmp_path)
    assert s["default_codec"] == "tiny-vr" and s["codecs"]["tiny-vr"]["lmbdas"] == LMBDAS
    src = tmp_path / "a.png"
    Image.fromarray(_image(40, 56)).save(src)
    sizes = []
    for q in (1, 3):
        f = tmp_path / f"a{q}.vcz"
        assert (
            main(["compress", "--model", str(fam), "--quality", str(q), str(src), "-o", str(f)])
            == 0
        )
        assert unpack(f.read_bytes())[0].codec.quality == q
        sizes.append(f.stat().st_size)
        png = tmp_path / f"a{q}.png"
        assert main(["decompress", "--model", str(fam), str(f), "-o", str(png)]) == 0
        m = load_codec(fam, q)
        expect = decode_image(f.read_bytes(), m)[0]
        assert np.array_equal(np.asarray(Image.open(png)), expect)
    assert sizes[0] < sizes[1]
    with pytest.raises(ModelError, match="variable-rate run is exported alone"):
        export_codec_family([out, out], "x", "x", zoo_dir=tmp_path)
    # a second family exported as the default takes the flag from the first
    export_codec_family([out], "tiny-2", "second", default=True, zoo_dir=tmp_path)
    assert codec_summary(root=tmp_path)["default_codec"] == "tiny-2"
    assert json.loads((fam / "family.json").read_text())["default"] is False


def test_int8_family_export_codes_exactly_and_a_bad_scale_is_refused(vr_run, tmp_path, capsys):
    """--int8 storage: convolution kernels int8 + per-channel scales, about half of fp16's
    bytes; the loaded weights are the dequantized ones, the files round-trip through the CLI
    and decode like any other; a damaged scale is one clear error."""
    _, out = vr_run
    fp16 = export_codec_family([out], "tiny-16", "t", fp16=True, zoo_dir=tmp_path)
    fam = export_codec_family([out], "tiny-8", "t", int8=True, zoo_dir=tmp_path)
    w8, w16 = fam / "model" / "model.safetensors", fp16 / "model" / "model.safetensors"
    assert w8.stat().st_size < 0.75 * w16.stat().st_size
    assert "int8 convolution kernels" in (fam / "RECIPE.md").read_text()
    m8, m32 = load_codec(fam, 2), load_codec(out, 2)
    for (k, a), (_, b) in zip(m8.state_dict().items(), m32.state_dict().items()):
        assert a.dtype == b.dtype and a.shape == b.shape, k
        if a.is_floating_point() and a.ndim == 4:  # on the int8 grid: within half a step
            step = b.reshape(b.shape[0], -1).abs().amax(1) / 127
            err = (a - b).reshape(a.shape[0], -1).abs().amax(1)
            assert bool((err <= 0.5001 * step).all()), k
            assert not torch.equal(a, b), k
    src = tmp_path / "a.png"
    Image.fromarray(_image(40, 56)).save(src)
    f, png = tmp_path / "a.vcz", tmp_path / "a.png.out.png"
    assert main(["compress", "--model", str(fam), "--quality", "2", str(src), "-o", str(f)]) == 0
    assert f.read_bytes() == encode_image(load_codec(fam, 2), _image(40, 56))  # deterministic
    assert main(["decompress", "--model", str(fam), str(f), "-o", str(png)]) == 0
    assert np.array_equal(np.asarray(Image.open(png)), decode_image(f.read_bytes(), m8)[0])
    from safetensors.torch import load_file, save_file

    t = load_file(str(w8))
    sk = next(k for k in t if k.endswith(".int8_scale"))
    t[sk] = t[sk][:-1]
    save_file(t, str(w8))
    with pytest.raises(ModelError, match="int8 scale .* does not fit"):
        load_codec(fam, 2)


def test_a_fixed_rate_family_entry_naming_a_level_is_refused(tmp_path):
    m = build_model("mean-scale", {"N": 8, "M": 12})
    save_model(tmp_path / "f" / "q1", m, {"model": "mean-scale", "kind": "codec",
                                          "config": m.config_dict()})  # fmt: skip
    (tmp_path / "f" / "family.json").write_text(json.dumps(
        {"name": "f", "model": "mean-scale", "qualities": [{"quality": 1, "dir": "q1", "level": 0}]}
    ))  # fmt: skip
    with pytest.raises(ModelError, match="fixed-rate"):
        load_codec(tmp_path / "f", 1)


def test_init_from_starts_from_the_given_weights(vr_run, tmp_path):
    d, out = vr_run
    base = dict(model="mean-scale", data=str(d), val_pattern="val_*", crop=64, val_crop=64,
                batch_size=3, steps=1, lr=1e-9, workers=0, progress=False)  # fmt: skip
    cfg = CodecTrainConfig(**base, lmbdas=LMBDAS, init_from=str(out), out=str(tmp_path / "a"))
    model, _ = train_codec(cfg)
    src = load_codec(out)
    assert (model.N, model.M, model.levels) == (8, 12, 3)
    assert torch.allclose(model.log_gain, src.log_gain, atol=1e-6)  # lr 1e-9: barely moved
    meta = json.loads((tmp_path / "a" / "config.json").read_text())
    assert meta["train"]["init_from"] == str(out) and meta["train"]["N"] == 8
    assert not model.ste and not meta["config"]["ste"]
    # --ste turns straight-through rounding on for a fine-tune of a noise-trained model
    cfg = CodecTrainConfig(**base, lmbdas=LMBDAS, init_from=str(out), ste=True,
                           out=str(tmp_path / "s"))  # fmt: skip
    model, _ = train_codec(cfg)
    meta = json.loads((tmp_path / "s" / "config.json").read_text())
    assert model.ste and meta["config"]["ste"] and meta["train"]["ste"]
    cfg = CodecTrainConfig(**base, lmbdas=[0.01, 0.1], init_from=str(out), out=str(tmp_path / "b"))
    with pytest.raises(TrainingError, match=r"to add levels.*missing: 0\.001"):
        train_codec(cfg)
    # more levels: the run's own keep their gains, the new one is extrapolated below them
    cfg = CodecTrainConfig(**base, lmbdas=[0.0005] + LMBDAS, init_from=str(out),
                           out=str(tmp_path / "c"))  # fmt: skip
    model, _ = train_codec(cfg)
    assert model.levels == 4
    assert torch.allclose(model.log_gain[1:], src.log_gain, atol=1e-6)
    assert bool((model.log_gain[0] < model.log_gain[1]).float().mean() > 0.5)


def test_with_levels_keeps_known_levels_and_interpolates_in_log_lambda():
    m = tiny_vr()
    with torch.no_grad():  # per-channel gains that are not simply sqrt(lambda)
        m.log_gain.add_(torch.randn_like(m.log_gain) * 0.1)
    new = [0.0001, 0.001, 0.003, 0.01, 0.1]
    e = m.with_levels(LMBDAS, new).eval()
    assert e.levels == 5 and type(e) is type(m)
    assert torch.equal(e.log_gain[[1, 3, 4]], m.log_gain)
    assert torch.equal(e.log_inv_gain[[1, 3, 4]], m.log_inv_gain)
    t = np.log(3.0) / np.log(10.0)  # 0.003 sits this far from 0.001 towards 0.01 in log
    want = m.log_gain[0] + float(t) * (m.log_gain[1] - m.log_gain[0])
    assert torch.allclose(e.log_gain[2], want, atol=1e-6)
    below = 2 * m.log_gain[0] - m.log_gain[1]  # one decade below 0.001: extrapolated
    assert torch.allclose(e.log_gain[0], below, atol=1e-6)
    assert torch.equal(e.g_s[0].weight, m.g_s[0].weight)
    x = torch.from_numpy(_image(64, 64)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():  # a kept level computes what the source's level computed
        a, b = m(x, 1)["x_hat"], e(x, 3)["x_hat"]
    assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="increasing"):
        m.with_levels(LMBDAS, [0.1, 0.01])


def test_init_from_a_mean_scale_run_builds_a_checkerboard_model_on_it(vr_run, tmp_path):
    """``--model checkerboard --init-from <mean-scale run>`` keeps the run's transforms,
    hyperprior and gains and adds a fresh context; the reverse direction is refused."""
    d, out = vr_run
    base = dict(data=str(d), val_pattern="val_*", crop=64, val_crop=64, batch_size=3,
                steps=1, lr=1e-9, workers=0, progress=False, lmbdas=LMBDAS)  # fmt: skip
    cfg = CodecTrainConfig(**base, model="checkerboard", init_from=str(out),
                           out=str(tmp_path / "cb"))  # fmt: skip
    model, _ = train_codec(cfg)
    src = load_codec(out)
    assert type(model).__name__ == "CheckerboardMeanScale" and model.levels == 3
    assert torch.allclose(model.g_a[0].weight, src.g_a[0].weight, atol=1e-6)
    assert torch.allclose(model.log_inv_gain, src.log_inv_gain, atol=1e-6)
    meta = json.loads((tmp_path / "cb" / "config.json").read_text())
    assert meta["model"] == "checkerboard" and meta["config"]["levels"] == 3
    cb = load_codec(tmp_path / "cb", 2)  # the new run codes and decodes
    img = _image(48, 72)
    back, _ = decode_image(encode_image(cb, img), cb)
    assert back.shape == img.shape
    cfg = CodecTrainConfig(**base, model="mean-scale", init_from=str(tmp_path / "cb"),
                           out=str(tmp_path / "ms"))  # fmt: skip
    with pytest.raises(TrainingError, match="checkerboard model"):
        train_codec(cfg)


def test_inverse_lmbda_level_weighting_scales_each_levels_loss(vr_run, tmp_path, capsys):
    """--level-weighting inverse-lmbda: level k's loss counts w_k ~ 1/lmbda_k (mean 1), in the
    training step and in the validation loss that picks the best checkpoint; recorded and kept
    by --resume."""
    d, out = vr_run
    w = level_weights(LMBDAS, "inverse-lmbda")
    assert w == pytest.approx([x * 3 / 1110 for x in (1000, 100, 10)])
    assert level_weights(LMBDAS) == [1.0, 1.0, 1.0]
    r = [v**-0.5 for v in LMBDAS]
    assert level_weights(LMBDAS, "inverse-sqrt-lmbda") == pytest.approx([3 * v / sum(r) for v in r])
    run = tmp_path / "w"
    assert main(["train-codec", "--model", "mean-scale", "--data", str(d), "--val-pattern", "val_*",
                 "--lmbda", *map(str, LMBDAS), "--level-weighting", "inverse-lmbda",
                 "--init-from", str(out), "--crop", "64", "--val-crop", "64", "--batch-size", "3",
                 "--steps", "2", "--val-every", "2", "--workers", "0", "--out", str(run),
                 "--no-progress"]) == 0  # fmt: skip
    meta = json.loads((run / "config.json").read_text())
    assert meta["train"]["level_weighting"] == "inverse-lmbda"
    m = meta["metrics"]
    per = [lv["lmbda"] * 255**2 * lv["mse"] + lv["bpp"] for lv in m["val_levels"]]
    assert m["val_loss"] == pytest.approx(sum(a * b for a, b in zip(w, per)) / 3)
    assert m["val_loss"] != pytest.approx(sum(per) / 3, rel=1e-3)
    # a level's weight scales its gradient exactly
    model = load_codec(run)
    model.train()
    x = torch.rand(2, 3, 64, 64)
    lv = torch.tensor([0, 0])
    grads = []
    for weight in (None, torch.full((2,), w[0])):
        model.zero_grad()
        torch.manual_seed(0)
        rd_loss(model(x, lv), x, torch.full((2,), LMBDAS[0]), weight)["loss"].backward()
        grads.append(model.g_a[0].weight.grad.clone())
    assert torch.allclose(grads[1], grads[0] * w[0], rtol=1e-4, atol=1e-9)
    with pytest.raises(SystemExit):
        main(["train-codec", "--data", str(d), "--level-weighting", "by-loss"])
    assert "invalid choice" in capsys.readouterr().err
