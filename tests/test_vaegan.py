import json

import pytest
import torch
from PIL import Image

from vaecodec.cli import main
from vaecodec.errors import TrainingError
from vaecodec.models.gan import GANMonitor, PatchDiscriminator, d_loss, g_loss
from vaecodec.models.vaegan import VAEGAN
from vaecodec.train.vae_trainer import TrainConfig, train_vae
from vaecodec.zoo import load_model

TINY = dict(dataset="digits", model="vaegan-mlp", latent_dim=3, hidden=[32], disc_channels=[32, 16],
            batch_size=64, eval_iw_samples=0, artifacts=False, progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vaegan") / "run"
    rc = main(["train", "--dataset", "digits", "--model", "vaegan-mlp", "--latent-dim", "4",
               "--hidden", "32", "--disc-channels", "32", "16", "--epochs", "2",
               "--gan-weight", "2", "--feature-weight", "0.5", "--disc-lr", "5e-4",
               "--eval-iw-samples", "5", "--out", str(out), "--no-progress"])  # fmt: skip
    assert rc == 0
    return out


def test_train_writes_a_vae_that_every_picture_command_reads(gan_run, tmp_path):
    meta = json.loads((gan_run / "config.json").read_text())
    assert meta["model"] == "vaegan-mlp" and meta["kind"] == "vae"
    assert meta["train"]["gan_weight"] == 2 and meta["train"]["disc_lr"] == 5e-4
    lines = [json.loads(x) for x in (gan_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert 0 <= lines[-1]["d_accuracy"] <= 1 and lines[-1]["train_feat"] > 0
    model, _ = load_model(gan_run)
    assert isinstance(model, VAEGAN)
    for cmd in (["sample", "-n", "16"], ["reconstruct", "-n", "16"],
                ["interpolate", "--rows", "2", "--steps", "4"], ["traverse"]):  # fmt: skip
        out = tmp_path / f"{cmd[0]}.png"
        assert main([cmd[0], str(gan_run), *cmd[1:], "-o", str(out)]) == 0
        assert Image.open(out).size[0] > 40


def test_eval_reports_elbo_and_fid_with_a_given_classifier(gan_run, tmp_path, capsys):
    clf = tmp_path / "clf"
    assert main(["train-classifier", "--dataset", "digits", "--epochs", "1", "--out", str(clf),
                 "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["eval", str(gan_run), "--json", "--fid", "--fid-classifier", str(clf),
                 "--iw-samples", "3"]) == 0  # fmt: skip
    r = json.loads(capsys.readouterr().out)
    assert r["kl_nats"] > 0 and r["nll_nats"] is not None
    assert r["fid_samples"] >= 0 and r["fid_recon"] >= 0 and r["fid_n_real"] == 297
    assert main(["eval", str(gan_run), "--fid"]) == 2  # no bundled classifier for 8x8 digits
    assert "train-classifier" in capsys.readouterr().err


def test_conv_vaegan_trains_on_small_images(tmp_path):
    cfg = dict(TINY, model="vaegan-conv", channels=[8, 16], disc_channels=[8, 16])
    model, res = train_vae(TrainConfig(out=str(tmp_path / "c"), epochs=1, **cfg))
    assert isinstance(model, VAEGAN) and res["kl_nats"] >= 0
    assert model.sample(5).shape == (5, 1, 8, 8)


def test_nan_stops_training_and_keeps_the_last_good_epoch(tmp_path, monkeypatch):
    out = tmp_path / "nan"
    orig = VAEGAN.discriminator_loss
    calls = {"n": 0}
    steps_per_epoch = 24  # 1500 digits / 64

    def poisoned(self, real, fakes, kind="hinge"):
        calls["n"] += 1
        loss, r, f = orig(self, real, fakes, kind)
        if calls["n"] > steps_per_epoch + 3:  # epoch 2, step 4
            f = f * float("nan")
        return loss, r, f

    monkeypatch.setattr(VAEGAN, "discriminator_loss", poisoned)
    with pytest.raises(TrainingError, match=r"diverged at epoch 2, step 4.*epoch 1\)"):
        train_vae(TrainConfig(out=str(out), epochs=3, **TINY))
    monkeypatch.setattr(VAEGAN, "discriminator_loss", orig)
    model, meta = load_model(out)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert json.loads((out / "train_state.json").read_text())  # still readable
    _, res = train_vae(TrainConfig(out=str(out), epochs=3, resume=True, **TINY))
    assert [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_dead_discriminator_is_detected_and_not_saved(tmp_path, monkeypatch):
    from vaecodec.models.gan import MLPDiscriminator

    out = tmp_path / "dead"
    train_vae(TrainConfig(out=str(out), epochs=1, **TINY))
    saved = (out / "model.safetensors").read_bytes()

    def dead(self, x):  # the same logit for every input, still differentiable
        zero = sum(p.sum() for p in self.parameters()) * 0
        return zero + torch.full((x.shape[0],), 0.3), self.features(x)

    monkeypatch.setattr(MLPDiscriminator, "forward", dead)
    with pytest.raises(TrainingError, match="dead.*epoch 1"):
        train_vae(TrainConfig(out=str(out), epochs=3, resume=True, **TINY))
    assert (out / "model.safetensors").read_bytes() == saved


def test_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    import vaecodec.train.vaegan_trainer as vt

    a, b = tmp_path / "a", tmp_path / "b"
    train_vae(TrainConfig(out=str(a), epochs=2, **TINY))
    orig = vt.save_train_state

    def interrupt(run_dir, state):
        orig(run_dir, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(vt, "save_train_state", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_vae(TrainConfig(out=str(b), epochs=2, **TINY))
    monkeypatch.setattr(vt, "save_train_state", orig)
    train_vae(TrainConfig(out=str(b), epochs=2, resume=True, **TINY))
    ma, _ = load_model(a)
    mb, _ = load_model(b)
    for (k, va), vb in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.equal(va, vb), k


def test_hours_budget_stops_after_an_epoch_and_resume_continues(tmp_path, capsys):
    out = tmp_path / "h"
    train_vae(TrainConfig(out=str(out), epochs=3, hours=1e-7, **TINY))
    assert "time budget" in capsys.readouterr().out
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    train_vae(TrainConfig(out=str(out), epochs=3, resume=True, **TINY))
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_unsupported_settings_are_one_line_errors(tmp_path, capsys):
    rc = main(["train", "--dataset", "digits", "--model", "vaegan-mlp", "--binarize", "static",
               "--epochs", "1", "--out", str(tmp_path / "x"), "--no-progress"])  # fmt: skip
    assert rc == 2 and "binarize" in capsys.readouterr().err


def test_losses_and_monitor():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    assert d_loss(real, fake, "hinge").item() == pytest.approx(0.25 + 0.75)
    assert g_loss(fake, "hinge").item() == pytest.approx(0.75)
    sp = torch.nn.functional.softplus
    assert g_loss(fake, "ns").item() == pytest.approx(sp(-fake).mean().item())
    with pytest.raises(ValueError):
        d_loss(real, fake, "wgan")
    m = GANMonitor()
    assert m.update(torch.full((8,), 30.0), torch.full((8,), -30.0))
    assert "wins outright" in m.summary()["collapsed"]
    assert m.update(torch.randn(8), torch.randn(8))
    s = m.summary()
    assert s["collapsed"] is None and 0 <= s["d_accuracy"] <= 1
    assert not m.update(torch.tensor([float("nan")]), torch.zeros(1))


def test_patch_discriminator_shapes_and_conditioning():
    d = PatchDiscriminator(3, cond_channels=2, channels=(8, 16))
    x, c = torch.rand(2, 3, 32, 32), torch.rand(2, 2, 32, 32)
    assert d(x, c).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError):
        d(x)


def test_gan_experiment_compares_ae_vae_vaegan(tmp_path, capsys):
    clf, out = tmp_path / "clf", tmp_path / "exp"
    assert main(["train-classifier", "--dataset", "digits", "--epochs", "1", "--out", str(clf),
                 "--no-progress"]) == 0  # fmt: skip
    rc = main(["experiment", "--only", "gan", "--dataset", "digits", "--epochs", "1",
               "--latent-dim", "2", "--gan-weight", "2", "--fid-classifier", str(clf),
               "--out", str(out), "--iw-samples", "0"])  # fmt: skip
    assert rc == 0
    r = json.loads((out / "results.json").read_text())["gan"]
    assert list(r["models"]) == ["ae", "vae", "vae-gan", "vae-same-time"]
    assert r["models"]["ae"]["kl_nats"] == 0.0 and r["models"]["vae-gan"]["kl_nats"] > 0
    assert r["models"]["vae-same-time"]["epochs"] >= 1
    for m in r["models"].values():
        assert m["fid_samples"] >= 0 and m["fid_recon"] >= 0 and "kid_samples" in m
    for f in ("gan_samples.png", "gan_reconstructions.png", "gan_rate_fid.png"):
        assert Image.open(out / f).size[0] > 200
