"""What a new user sees (issue 17): one line per file and a total, bars only on a terminal,
errors that say what to do, labels that name what is measured, help with defaults."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vaecodec.cli import build_parser, main
from vaecodec.train.vae_trainer import TrainConfig, train_vae

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    from test_codec_cli import save_tiny_codec

    return save_tiny_codec(tmp_path_factory.mktemp("codec") / "tiny")


def _photo(path, h=24, w=40, seed=0):
    rng = np.random.default_rng(seed)
    a = np.kron(rng.integers(0, 256, (h // 4, w // 4, 3)), np.ones((4, 4, 1))).astype(np.uint8)
    Image.fromarray(a).save(path)
    return str(path)


# -- point 3: one line per file, a total, PSNR when asked, no bar into a log ------------------
def test_compress_several_prints_each_file_and_a_total(tmp_path, codec_dir, capsys):
    srcs = [_photo(tmp_path / f"{n}.png", seed=i) for i, n in enumerate("abc")]
    out = tmp_path / "vcz"
    assert main(["compress", "--model", str(codec_dir), *srcs, "-o", str(out), "--psnr"]) == 0
    cap = capsys.readouterr()
    lines = cap.out.splitlines()
    assert len(lines) == 4
    sizes = [(out / f"{n}.vcz").stat().st_size for n in "abc"]
    for n, size, line in zip("abc", sizes, lines):
        assert line.startswith(f"{tmp_path / n}.png -> {out / n}.vcz: 40x24, {size} bytes, ")
        assert "bpp, PSNR " in line and " dB (tiny quality 1)" in line
    total = sum(sizes)
    assert lines[3].startswith(f"total: 3 files, {total} bytes, {8 * total / (3 * 40 * 24):.4f} "
                               "bpp, mean PSNR ")  # fmt: skip
    assert lines[3].endswith("(tiny quality 1)")
    # stderr is not a terminal here: no progress bar, no carriage returns in the log
    assert "\r" not in cap.err and "file/s" not in cap.err and "it/s" not in cap.err


def test_compress_psnr_is_the_decoded_files_psnr(tmp_path, codec_dir, capsys):
    from vaecodec.compression.lossy import decode_image
    from vaecodec.evaluate.metrics import psnr
    from vaecodec.zoo.codecs import load_codec

    src = _photo(tmp_path / "p.png")
    assert main(["compress", "--model", str(codec_dir), src, "-o", str(tmp_path / "p.vcz"),
                 "--psnr"]) == 0  # fmt: skip
    line = capsys.readouterr().out
    decoded = decode_image((tmp_path / "p.vcz").read_bytes(), load_codec(codec_dir)).image
    assert f"PSNR {psnr(np.asarray(Image.open(src)), decoded):.2f} dB" in line


# -- point 6: no -o: <stem>.vcz next to the input, never over a file ------------------------
def test_compress_without_output_writes_next_to_the_input(tmp_path, codec_dir, capsys):
    src = _photo(tmp_path / "photo.png")
    assert main(["compress", "--model", str(codec_dir), src]) == 0
    assert (tmp_path / "photo.vcz").is_file()
    assert "quality 1" in capsys.readouterr().out
    before = (tmp_path / "photo.vcz").read_bytes()
    assert main(["compress", "--model", str(codec_dir), src]) == 2
    err = capsys.readouterr().err
    assert "photo.vcz exists" in err and "-o" in err
    assert (tmp_path / "photo.vcz").read_bytes() == before


# -- point 4: errors that say what to do --------------------------------------------------
def test_a_directory_as_input_says_which_files_to_give(tmp_path, capsys):
    d = tmp_path / "pics"
    d.mkdir()
    assert main(["compress", str(d)]) == 2
    assert f"{d} is a directory: give image files, e.g. {d}/*.png" in capsys.readouterr().err
    assert main(["decompress", str(d), "-o", str(tmp_path / "out")]) == 2
    assert f"{d} is a directory: give .vcz files, e.g. {d}/*.vcz" in capsys.readouterr().err


def test_the_wrong_kind_of_model_suggests_the_right_mode(tmp_path, capsys):
    src = _photo(tmp_path / "p.png")
    assert main(["compress", "--model", "mnist-vae", src, "-o", str(tmp_path / "x.vcz")]) == 2
    err = capsys.readouterr().err
    assert "mnist-vae is a VAE, not an image codec: add --lossless" in err
    assert main(["compress", "--lossless", "--model", "cb-vr10", src,
                 "-o", str(tmp_path / "x.vcz")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "cb-vr10 is a lossy image codec" in err and "drop --lossless" in err
    assert not (tmp_path / "x.vcz").exists()


def test_a_name_from_vaecodec_zoo_is_named_by_its_kind_everywhere(tmp_path, capsys):
    """Issue 27 point 7: a zoo name given to a loader of another kind says what it is and
    where it is used (it said "not a zoo model" although `vaecodec zoo` lists it)."""
    import vaecodec
    from vaecodec.errors import ModelError

    assert main(["sample", "cb-vr10", "-o", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert "cb-vr10 is a lossy image codec" in err and "vaecodec compress" in err
    with pytest.raises(ModelError, match="mnist-vae is a VAE, not an image codec"):
        vaecodec.load_codec("mnist-vae")
    with pytest.raises(ModelError, match="cb-vr10-realism is a realism decoder"):
        vaecodec.load_codec("cb-vr10-realism")
    with pytest.raises(ModelError, match="cb-vr10 is a lossy image codec"):
        vaecodec.compress_lossless(np.zeros((1, 28, 28), np.uint8), "cb-vr10")


def test_zoo_lists_every_bundled_entry_in_aligned_columns(capsys):
    """Issue 27 point 7: `vaecodec zoo` lists the realism decoder, and the long
    fashion-mnist-classifier name no longer pushes its row's columns out of line."""
    assert main(["zoo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [ln for ln in lines if not ln.startswith(" ")]
    names = [r.split()[0] for r in rows[1:]]
    assert "cb-vr10-realism" in names and "fashion-mnist-classifier" in names
    kind_at = rows[0].index("kind")
    model_at = rows[0].index("model")
    for r in rows[1:]:
        assert r[kind_at - 1] == " " and r[kind_at] != " ", r
        assert r[model_at - 1] == " " and r[model_at] != " ", r


def test_ctrl_c_during_training_says_resume_continues(tmp_path, monkeypatch, capsys):
    import vaecodec.train.vae_trainer as trainer

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train_vae", interrupted)
    out = tmp_path / "run"
    argv = ["train", "--dataset", "digits", "--epochs", "5", "--out", str(out)]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted; nothing was saved" in err and "--resume" not in err
    out.mkdir()
    (out / "train_state.json").write_text("{}")  # what an epoch that finished leaves
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert f"continue with `vaecodec train --dataset digits --epochs 5 --out {out} --resume`" in err


# -- point 5: name what is measured -------------------------------------------------------
@pytest.fixture(scope="module")
def ae_and_vae(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    runs = {}
    for model in ("ae-mlp", "vae-mlp"):
        runs[model] = root / model
        train_vae(TrainConfig(dataset="digits", model=model, out=str(runs[model]), epochs=1,
                              latent_dim=4, hidden=[16], eval_iw_samples=0, artifacts=False,
                              progress=False))  # fmt: skip
    return runs


def test_eval_of_an_autoencoder_is_not_called_an_elbo(ae_and_vae, capsys):
    assert main(["eval", str(ae_and_vae["ae-mlp"]), "--iw-samples", "5", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["autoencoder"] and r["neg_elbo_nats"] is None and r["nll_nats"] is None
    assert r["bits_per_dim"] is None and r["recon_nats"] > 0
    assert main(["eval", str(ae_and_vae["ae-mlp"])]) == 0
    text = capsys.readouterr().out
    assert "reconstruction loss" in text and "an autoencoder has no ELBO" in text
    assert not [line for line in text.splitlines() if line.startswith(("-ELBO", "bits/dim", "KL"))]


def test_eval_json_bits_per_dim_is_only_the_nll(ae_and_vae, capsys):
    assert main(["eval", str(ae_and_vae["vae-mlp"]), "--json"]) == 0  # no IWAE: no NLL
    r = json.loads(capsys.readouterr().out)
    assert r["nll_nats"] is None and r["bits_per_dim"] is None
    assert r["neg_elbo_bits_per_dim"] == pytest.approx(r["neg_elbo_nats"] / (64 * np.log(2)))
    assert main(["eval", str(ae_and_vae["vae-mlp"])]) == 0
    assert "bits/dim (of -ELBO)" not in capsys.readouterr().out


# -- point 6: help shows defaults, every training flag explains itself ----------------------
def _subparsers():
    p = build_parser()
    return next(a for a in p._actions if isinstance(getattr(a, "choices", None), dict)).choices


@pytest.mark.parametrize(
    "command", ["train", "experiment", "train-classifier", "compress", "train-codec"]
)
def test_every_flag_has_help(command):
    missing = [a.dest for a in _subparsers()[command]._actions if not a.help]
    assert not missing


def test_no_help_gives_its_default_twice_and_quality_says_which_end_is_more_bits(capsys):
    """Issue 27 point 8: `serve --help` said "(default 127.0.0.1 ...) (default: 127.0.0.1)";
    `compress --help` did not say what --quality ranges over."""
    import argparse
    import re

    twice = [(name, a.option_strings) for name, sp in _subparsers().items()
             for a in sp._actions
             if a.help and a.default not in (None, False, argparse.SUPPRESS)
             and re.search(r"\bdefault\b", a.help)]  # fmt: skip
    assert not twice
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    from vaecodec.zoo.codecs import codec_summary

    summary = codec_summary()
    q = summary["codecs"][summary["default_codec"]]["qualities"]
    assert "1 = fewest bytes and lowest PSNR" in text
    assert f"{summary['default_codec']} has {q[0]}-{q[-1]}" in text


def test_eval_names_the_negative_elbo_as_such(ae_and_vae, capsys):
    """Issue 27 point 8: `vae(x)["elbo"]` is the ELBO (negative); eval's number is -ELBO and
    is called neg_elbo_nats (it was elbo_nats)."""
    from vaecodec.zoo import load_model

    assert main(["eval", str(ae_and_vae["vae-mlp"]), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert "elbo_nats" not in r and r["neg_elbo_nats"] > 0
    model = load_model(str(ae_and_vae["vae-mlp"])).model
    assert float(model(torch.rand(4, 1, 8, 8))["elbo"].mean()) < 0


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "passes over the training set (default: 30)" in text
    assert "(default: None)" not in text and "(default: False)" not in text
