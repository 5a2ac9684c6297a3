import json

import pytest
from PIL import Image

from vaecodec.cli import main
from vaecodec.train.vae_trainer import TrainConfig, train_vae


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    train_vae(TrainConfig(dataset="digits", out=str(out), epochs=2, latent_dim=4, hidden=[32],
                          eval_iw_samples=0, artifacts=False, progress=False))  # fmt: skip
    return out


@pytest.mark.parametrize("cmd,size", [
    (["sample", "-n", "16"], None),
    (["reconstruct", "-n", "32"], None),
    (["interpolate", "--rows", "3", "--steps", "5"], None),
    (["traverse"], None),
    (["embed"], None),
])  # fmt: skip
def test_picture_commands_write_pngs(run_dir, tmp_path, cmd, size):
    out = tmp_path / "x.png"
    rc = main([cmd[0], str(run_dir), *cmd[1:], "-o", str(out)])
    assert rc == 0
    im = Image.open(out)
    assert im.size[0] > 50 and im.size[1] > 20


def test_traverse_has_one_row_per_dimension(run_dir, tmp_path):
    out = tmp_path / "t.png"
    assert main(["traverse", str(run_dir), "--steps", "5", "-o", str(out)]) == 0
    # 8x8 digits + 2 px padding per cell, the whole grid upscaled 7x; 4 latent dims -> 4 rows
    w, h = Image.open(out).size
    assert (h - 2 * 7) / ((8 + 2) * 7) == 4 and (w - 2 * 7) / ((8 + 2) * 7) == 5


def test_eval_json_keys(run_dir, capsys):
    assert main(["eval", str(run_dir), "--iw-samples", "5", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    for k in ["neg_elbo_nats", "recon_nats", "kl_nats", "nll_nats", "bits_per_dim", "active_units",
              "iw_samples", "n_examples"]:  # fmt: skip
        assert k in r
    assert r["iw_samples"] == 5 and r["n_examples"] == 297
    assert 0 < r["bits_per_dim"] < 1


def test_errors_are_one_line_without_traceback(run_dir, tmp_path, capsys):
    assert main(["sample", "no-such-model", "-o", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "Traceback" not in err
    assert main(["eval", str(run_dir), "--dataset", "svhn"]) == 2
    assert "mnist" in capsys.readouterr().err  # lists the valid datasets
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((run_dir / "config.json").read_text())
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    assert main(["sample", str(bad), "-o", str(tmp_path / "s.png")]) == 2
    assert "model.safetensors" in capsys.readouterr().err


def test_zoo_lists_json(capsys):
    assert main(["zoo", "--json"]) == 0
    z = json.loads(capsys.readouterr().out)
    assert "models" in z and "codecs" in z and "default_codec" in z


def test_a_resumed_run_refuses_a_setting_it_would_ignore_and_takes_its_own(tmp_path, capsys):
    """Issue 27 point 5: `train --resume --lr 0.01` kept the saved lr without a word, and
    `--eval-iw-samples 0` was ignored; now the first is refused (exit 2, one line naming the
    run's value) and the second is the resumed invocation's own."""
    out = str(tmp_path / "run")
    base = ["train", "--dataset", "digits", "--latent-dim", "2", "--hidden", "8",
            "--out", out, "--no-progress"]  # fmt: skip
    assert main([*base, "--epochs", "1", "--lr", "0.002", "--eval-iw-samples", "2"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", out, "--resume", "--epochs", "2", "--lr", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "--lr 0.01 (the run's: 0.002)" in err and len(err.strip().splitlines()) == 1
    # the same values as the run's are no conflict; --eval-iw-samples is this invocation's
    assert main([*base, "--resume", "--epochs", "2", "--lr", "0.002",
                 "--eval-iw-samples", "0"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "1 of 2 epochs done" in text
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["iw_samples"] == 0
    # without --dataset a resumed run trains on its own data (it loaded the command line's
    # default, MNIST, before reading the run's settings)
    assert main(["train", "--out", out, "--resume", "--epochs", "3", "--no-progress"]) == 0
    assert "2 of 3 epochs done" in capsys.readouterr().out
