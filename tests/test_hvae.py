"""The hierarchical VAE (hvae-mlp): the model, its training and CLI, Bit-Swap coding."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vaecodec.cli import main
from vaecodec.evaluate.lossless import neg_elbo_nats
from vaecodec.models.bitsback import BitsBackCodec
from vaecodec.models.hvae import HVAE, HVAEConfig
from vaecodec.models.registry import build_model
from vaecodec.train.vae_trainer import TrainConfig, train_vae

sys.path.insert(0, str(Path(__file__).parent))
from test_bitsback import cross_images, rate_and_neg_elbo_bits, symbols  # noqa: E402


def tiny(dims=(6, 4), hidden=(48, 24), shape=(1, 8, 8)) -> HVAE:
    return HVAE(HVAEConfig(input_shape=shape, latent_dims=list(dims), hidden=list(hidden)))


@pytest.fixture(scope="module")
def trained():
    """A 3-layer hierarchy trained for 150 steps on 8x8 binary crosses."""
    torch.manual_seed(0)
    model = tiny(dims=(6, 4, 2), hidden=(48, 24, 16))
    x = torch.from_numpy(cross_images(600, 0, binary=True)).float().div(255).unsqueeze(1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        loss = model(x[torch.randint(0, 600, (64,), generator=g)])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.calibrate_buckets(x)
    return model.eval()


# -- the model ------------------------------------------------------------------------------------


def test_forward_shapes_and_kl_per_layer():
    torch.manual_seed(0)
    m = build_model("hvae-mlp", {"input_shape": [1, 8, 8], "latent_dims": [5, 3],
                                 "hidden": [16, 8]})  # fmt: skip
    x = torch.bernoulli(torch.full((7, 1, 8, 8), 0.3))
    out = m(x)
    assert out["elbo"].shape == out["recon"].shape == out["kl"].shape == (7,)
    assert out["kl_per_dim"].shape == (8,) and out["kl_layers"].shape == (2,)
    assert torch.allclose(out["kl_layers"].sum(), out["kl"].mean(), atol=1e-4)
    assert torch.allclose(out["elbo"], -(out["recon"] + out["kl"]))
    # free bits raise the training loss of an untrained model (its KL is below the floor)
    torch.manual_seed(1)
    a = m(x)["loss"]
    torch.manual_seed(1)
    b = m(x, free_bits=5.0)["loss"]
    assert b > a
    mu, logvar = m.encode(x)
    assert mu.shape == logvar.shape == (7, 8) and m.latent_dim == 8
    assert m.decode_mean(mu).shape == (7, 1, 8, 8)


def test_calibrated_buckets_follow_the_aggregate_posterior(trained):
    cfg = trained.config
    assert len(cfg.bucket_loc) == len(cfg.bucket_scale) == 12
    assert cfg.bucket_scale[10:] == [1.0, 1.0] and cfg.bucket_loc[10:] == [0.0, 0.0]
    assert cfg.bucket_scale[:10] != [1.0] * 10  # the learned priors are not N(0, 1)
    # a config with them round-trips, and a bad one is refused
    again = HVAE.from_config(trained.config_dict())
    assert again.config.bucket_scale == cfg.bucket_scale
    with pytest.raises(ValueError, match="bucket_scale"):
        HVAEConfig(latent_dims=[2], hidden=[4], bucket_scale=[1.0, -1.0])


def test_config_is_checked():
    with pytest.raises(ValueError, match="one width per latent layer"):
        HVAEConfig(latent_dims=[4, 2], hidden=[8])
    with pytest.raises(ValueError, match="at least one layer"):
        HVAEConfig(latent_dims=[], hidden=[])


def test_iwae_bound_tightens_the_elbo(trained):
    x = torch.from_numpy(cross_images(200, 3, binary=True)).float().div(255).unsqueeze(1)
    torch.manual_seed(0)
    elbo = -float(neg_elbo_nats(trained, x).mean())
    iwae = float(trained.iwae_log_likelihood(x, 64).mean())
    assert elbo < iwae < 0
    assert float(trained.iwae_log_likelihood(x, 1, chunk=1).mean()) < iwae


def test_samples_from_a_layer_keep_the_layers_above(trained):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, trained.latent_dim, generator=g)
    # all layers kept: the decoder's mean at z_1
    assert torch.equal(trained.sample(4, keep_from=1, z=z), trained.decode_mean(z))
    # layers 2.. kept, z_1 redrawn: different pictures for different draws, same z above
    a = trained.sample(4, torch.Generator().manual_seed(1), keep_from=2, z=z)
    b = trained.sample(4, torch.Generator().manual_seed(2), keep_from=2, z=z)
    assert a.shape == (4, 1, 8, 8) and not torch.equal(a, b)
    s = trained.sample(5, torch.Generator().manual_seed(3))
    assert s.shape == (5, 1, 8, 8) and 0 <= s.min() and s.max() <= 1


# -- training and the CLI -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("hvae") / "run"
    rc = main(["train", "--dataset", "digits", "--model", "hvae-mlp", "--latent-dims", "4", "2",
               "--hidden", "32", "16", "--epochs", "2", "--warmup-epochs", "1",
               "--eval-iw-samples", "0", "--no-progress", "--out", str(out)])  # fmt: skip
    assert rc == 0
    return out


def test_train_writes_a_hierarchy_with_kl_per_layer(run_dir):
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["model"] == "hvae-mlp" and cfg["config"]["latent_dims"] == [4, 2]
    # the bits-back buckets, calibrated on training images: the top layer keeps N(0, 1)
    assert cfg["config"]["bucket_scale"][4:] == [1.0, 1.0]
    assert cfg["config"]["bucket_loc"][4:] == [0.0, 0.0]
    assert all(s > 0 and s * 64 == int(s * 64) for s in cfg["config"]["bucket_scale"])
    lines = [json.loads(s) for s in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert all(len(r["train_kl_layers"]) == 2 for r in lines)
    assert lines[1]["val_neg_elbo"] < lines[0]["val_neg_elbo"]
    for f in ("samples.png", "reconstructions.png", "interpolations.png", "eval.json"):
        assert (run_dir / f).is_file()


@pytest.mark.parametrize("cmd", [["sample", "-n", "9"], ["reconstruct", "-n", "8"],
                                 ["interpolate", "--rows", "2", "--steps", "4"]])  # fmt: skip
def test_picture_commands(run_dir, tmp_path, cmd):
    out = tmp_path / "x.png"
    assert main([cmd[0], str(run_dir), *cmd[1:], "-o", str(out)]) == 0
    assert out.stat().st_size > 100


def test_eval_gives_an_iwae_bound(run_dir, capsys):
    assert main(["eval", str(run_dir), "--iw-samples", "8", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["iw_samples"] == 8 and r["nll_nats"] < r["neg_elbo_nats"]
    assert len(r["kl_per_dim"]) == 6


def test_hours_budget_stops_and_resume_continues(tmp_path, capsys):
    out = tmp_path / "r"
    cfg = TrainConfig(dataset="digits", model="hvae-mlp", latent_dims=[3, 2], hidden=[16, 8],
                      epochs=3, hours=1e-7, eval_iw_samples=0, artifacts=False, progress=False,
                      out=str(out))  # fmt: skip
    train_vae(cfg)
    assert "time budget" in capsys.readouterr().out
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    cfg.hours, cfg.resume = None, True
    train_vae(cfg)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_outlier_steps_are_skipped(tmp_path):
    out = tmp_path / "s"
    torch.manual_seed(0)
    model, _ = train_vae(TrainConfig(dataset="digits", model="hvae-mlp", latent_dims=[3, 2],
                                     hidden=[16, 8], epochs=1, skip_threshold=1e-6,
                                     eval_iw_samples=0, artifacts=False, progress=False,
                                     out=str(out)))  # fmt: skip
    rec = json.loads((out / "metrics.jsonl").read_text())
    assert rec["skipped_steps"] > 0
    torch.manual_seed(0)
    init = build_model("hvae-mlp", model.config_dict())
    assert all(torch.equal(a, b) for a, b in zip(init.parameters(), model.parameters()))


# -- Bit-Swap --------------------------------------------------------------------------------------


@pytest.mark.parametrize("lanes", [1, 3])
def test_bitswap_round_trip(trained, lanes):
    sym = symbols(cross_images(11, 5, binary=True), binary=True)
    codec = BitsBackCodec(trained)
    assert codec.layer_dims == [6, 4, 2]
    streams = codec.encode(sym, lanes=lanes)
    assert np.array_equal(codec.decode(streams, 11), sym)


def test_bitswap_rate_is_close_to_neg_elbo(trained):
    rate_bits, elbo_bits = rate_and_neg_elbo_bits(trained, binary=True)
    assert abs(rate_bits / elbo_bits - 1) < 0.05, (rate_bits, elbo_bits)


def test_files_round_trip_across_thread_counts(trained, tmp_path):
    """compress --lossless with a hierarchy, decoded in a fresh process with 2 threads."""
    import os
    import subprocess

    from PIL import Image

    from vaecodec.checkpoint import save_model
    from vaecodec.compression.lossless import compress_files

    run = tmp_path / "m"
    save_model(run, trained, {"model": "hvae-mlp", "kind": "vae",
                              "config": trained.config_dict(), "dataset": "synthetic"})  # fmt: skip
    imgs = cross_images(30, 9, binary=True)
    (tmp_path / "in").mkdir()
    files = []
    for i, a in enumerate(imgs):
        Image.fromarray(a).save(tmp_path / "in" / f"d{i}.png")
        files.append(str(tmp_path / "in" / f"d{i}.png"))
    torch.set_num_threads(1)
    out = tmp_path / "t.vczl"
    compress_files(str(run), files, str(out), verbose=False)
    code = (
        "import sys, torch; torch.set_num_threads(2); "
        "from vaecodec.compression.lossless import decompress_file; "
        "print(len(decompress_file(sys.argv[1], sys.argv[2], sys.argv[3])))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    r = subprocess.run([sys.executable, "-c", code, str(out), str(tmp_path / "out"), str(run)],
                       capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    for f in files:
        back = np.asarray(Image.open(tmp_path / "out" / Path(f).name))
        assert np.array_equal(back, np.asarray(Image.open(f)))


def test_kl_experiment_per_layer(tmp_path, capsys):
    from vaecodec.experiments_hvae import hvae_experiment

    r = hvae_experiment(dataset="digits", out=tmp_path, epochs=2, latent_dims=(4, 2),
                        hidden=(16, 8), iw_samples=4)  # fmt: skip
    for name in ("plain", "warmup", "free-bits"):
        layers = r[name]["layers"]
        assert [la["dims"] for la in layers] == [4, 2]
        assert sum(la["active_units"] for la in layers) == r[name]["active_units"]
        assert all(0 <= la["informative_units"] <= la["dims"] for la in layers)
        assert abs(sum(la["kl_nats"] for la in layers) - r[name]["kl_nats"]) < 1e-6
    assert r["free-bits"]["free_bits"] == 0.25 and "warmup_epochs" not in r["plain"]
    assert (tmp_path / "hvae_layers.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "results.json").read_text())["hvae"]
    assert saved["setup"]["latent_dims"] == [4, 2]
    assert "z_2" in capsys.readouterr().out


def test_bitswap_needs_fewer_initial_bits_than_popping_every_layer_first(trained):
    """One image per stream: what is stored is its rate plus the seed bits the pops consumed
    before the stack had grown. Bit-Swap's interleaving consumes less than BB-ANS's order."""
    codec = BitsBackCodec(trained)
    sym = symbols(cross_images(40, 12, binary=True), binary=True)
    sizes = {}
    for order in ("bitswap", "bbans"):
        total = 0
        for row in sym:
            (s,) = codec.encode(row[None], order=order)
            assert np.array_equal(codec.decode([s], 1, order=order), row[None])
            total += len(s.words)
        sizes[order] = total
    assert sizes["bitswap"] < sizes["bbans"], sizes
    streams = codec.encode(sym, lanes=3, order="bbans")  # a chained stream in the other order
    assert np.array_equal(codec.decode(streams, 40, order="bbans"), sym)
    with pytest.raises(ValueError, match="order"):
        codec.encode(sym, order="swap")


# -- the bundled model -----------------------------------------------------------------------------


def test_bundled_mnist_hvae_samples_and_codes_losslessly(tmp_path):
    import vaecodec
    from vaecodec.zoo import ZOO_DIR

    model, meta = vaecodec.load_model("mnist-hvae")
    assert meta["model"] == "hvae-mlp" and model.config.bucket_scale is not None
    assert (ZOO_DIR / "mnist-hvae" / "RECIPE.md").is_file()
    assert main(["sample", "mnist-hvae", "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
    digits = (vaecodec.load_vae("mnist-hvae").sample(5, torch.Generator().manual_seed(0)) > 0.5)
    images = (digits[:, 0].numpy() * 255).astype(np.uint8)
    data = vaecodec.compress_lossless(images, "mnist-hvae")
    assert np.array_equal(vaecodec.decompress_lossless(data), images)
    assert 8 * len(data) < 5 * 784  # fewer bits than the raw pixels, initial bits included
