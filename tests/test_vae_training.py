import json
import os
import subprocess
import sys

import pytest
import torch

from vaecodec.cli import main
from vaecodec.errors import TrainingError
from vaecodec.train.vae_trainer import TrainConfig, train_vae
from vaecodec.zoo import load_model

TINY = dict(dataset="digits", latent_dim=3, hidden=[32], batch_size=64, eval_iw_samples=10,
            progress=False)  # fmt: skip


def test_training_learns_and_writes_everything(tmp_path, capsys):
    out = tmp_path / "run"
    model, res = train_vae(TrainConfig(out=str(out), epochs=4, **TINY))
    for f in ["model.safetensors", "config.json", "metrics.jsonl", "eval.json", "samples.png",
              "reconstructions.png", "interpolations.png", "train_state.json"]:  # fmt: skip
        assert (out / f).is_file(), f
    assert not list(out.glob("*.tmp"))
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4]
    assert lines[-1]["val_neg_elbo"] < lines[0]["val_neg_elbo"] - 1.0
    assert res["nll_nats"] <= res["neg_elbo_nats"] + 0.5
    assert res["neg_elbo_nats"] == pytest.approx(res["recon_nats"] + res["kl_nats"])
    printed = capsys.readouterr().out
    assert "epoch   4/4" in printed and "NLL (IWAE, K=10" in printed
    m2, meta = load_model(out)
    assert meta["train"]["epochs"] == 4 and meta["metrics"]["n_examples"] == 297
    assert meta["command"] and "vaecodec_version" in meta


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, monkeypatch):
    import vaecodec.train.vae_trainer as vt

    a, b = tmp_path / "a", tmp_path / "b"
    cfg = dict(TINY, eval_iw_samples=0, artifacts=False)
    train_vae(TrainConfig(out=str(a), epochs=3, **cfg))

    orig = vt.save_train_state

    def interrupt_after_epoch_2(run_dir, state):
        orig(run_dir, state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(vt, "save_train_state", interrupt_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_vae(TrainConfig(out=str(b), epochs=3, **cfg))
    monkeypatch.setattr(vt, "save_train_state", orig)
    train_vae(TrainConfig(out=str(b), epochs=3, resume=True, **cfg))
    ma, _ = load_model(a)
    mb, _ = load_model(b)
    for (k, va), vb in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.equal(va, vb), k
    epochs = [json.loads(x)["epoch"] for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_resume_without_run_is_a_clear_error(tmp_path):
    rc = main(["train", "--dataset", "digits", "--out", str(tmp_path / "none"), "--resume"])
    assert rc == 2


def test_nan_loss_stops_with_clear_error(tmp_path, monkeypatch):
    from vaecodec.models.vae import VAE

    orig = VAE.forward

    def poisoned(self, x, **kw):
        out = orig(self, x, **kw)
        out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(VAE, "forward", poisoned)
    with pytest.raises(TrainingError, match="NaN|nan"):
        train_vae(TrainConfig(out=str(tmp_path / "r"), epochs=1, **TINY))


def test_ddp_two_processes_gloo(tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29517", "-m", "vaecodec.cli", "train", "--dataset", "digits",
           "--latent-dim", "3", "--hidden", "32", "--epochs", "2", "--batch-size", "32",
           "--eval-iw-samples", "0", "--no-progress", "--threads", "1", "--out", str(out)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    meta = json.loads((out / "config.json").read_text())
    assert meta["world_size"] == 2
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # only rank 0 writes
    assert r.stdout.count("epoch   2/2") == 1


def test_tensorboard_logging(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "tb-run"
    train_vae(TrainConfig(out=str(out), epochs=1, tensorboard=True,
                          **dict(TINY, eval_iw_samples=0, artifacts=False)))  # fmt: skip
    events = list((out / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
