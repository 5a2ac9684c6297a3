"""`train-codec`: a few steps on tiny synthetic images; checkpoints, validation, resume, NaN."""

import json
import math

import pytest
import torch

from vaecodec.cli import main
from vaecodec.data import RandomCropImages, precut_crops
from vaecodec.errors import DatasetError, TrainingError
from vaecodec.train.codec_trainer import CodecTrainConfig, rd_loss, train_codec
from vaecodec.zoo.codecs import load_codec

torch.set_num_threads(1)


def _cfg(photos, out, **kw):
    base = dict(model="mean-scale", data=str(photos), val_pattern="val_*", lmbdas=[0.01], crop=64,
                val_crop=64, batch_size=2, steps=4, lr=1e-3, N=8, M=12, val_every=2,
                log_every=2, workers=0, out=str(out), progress=False)  # fmt: skip
    return CodecTrainConfig(**{**base, **kw})


def test_rd_loss_convention():
    x = torch.zeros(1, 3, 4, 4)
    out = {"x_hat": torch.full_like(x, 0.1), "likelihoods": {"y": torch.full((1, 2, 1, 1), 0.5)}}
    r = rd_loss(out, x, 0.01)
    assert math.isclose(r["bpp"].item(), 2 / 16)
    assert math.isclose(r["loss"].item(), 0.01 * 255**2 * 0.01 + 2 / 16, rel_tol=1e-6)


def test_training_writes_checkpoints_and_metrics_and_resumes(photos, tmp_path, capsys):
    out = tmp_path / "run"
    model, summary = train_codec(_cfg(photos, out))
    assert summary["steps"] == 4 and summary["val_bpp"] > 0 and summary["val_psnr"] > 0
    for f in ("model.safetensors", "config.json", "last/model.safetensors", "training.png",
              "last/train_state.json", "last/train_state.safetensors"):  # fmt: skip
        assert (out / f).is_file(), f
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines if ln["split"] == "train"] == [2, 4]
    val = [ln for ln in lines if ln["split"] == "val"]
    assert [v["step"] for v in val] == [2, 4] and all(v["bpp"] > 0 for v in val)
    meta = json.loads((out / "config.json").read_text())
    assert meta["kind"] == "codec" and meta["lmbda"] == 0.01 and meta["config"]["M"] == 12
    # the run directory is a usable codec
    codec = load_codec(out)
    c = codec.compress(torch.rand(1, 3, 40, 50))
    assert torch.equal(codec.decompress_latents(c["strings"], c["shape"]), c["y_hat"])
    # resume from last/ and continue to 7 steps with the saved optimizer state; a log line
    # written after the checkpoint (an interrupted run) is dropped. The new invocation's log and
    # validation intervals apply; its lmbda does not (the run's saved maths does)
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"split": "train", "step": 5}) + "\n")
    _, summary = train_codec(_cfg(photos, out, steps=7, resume=True, lmbdas=[0.5], log_every=3,
                                  val_every=5))  # fmt: skip
    assert summary["steps"] == 7 and "resuming" in capsys.readouterr().out
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines if ln["split"] == "train"] == [2, 4, 6, 7]
    assert [ln["step"] for ln in lines if ln["split"] == "val"] == [2, 4, 5, 7]
    meta = json.loads((out / "last" / "config.json").read_text())
    assert meta["lmbda"] == 0.01 and meta["train"]["val_every"] == 5


def test_fresh_run_starts_a_new_log(photos, tmp_path):
    out = tmp_path / "again"
    train_codec(_cfg(photos, out, steps=2))
    train_codec(_cfg(photos, out, steps=2))
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["split"] for ln in lines] == ["train", "val"]


def test_nan_loss_stops_with_a_training_error(photos, tmp_path):
    with pytest.raises(TrainingError, match="--lr"):
        train_codec(_cfg(photos, tmp_path / "nan", lmbdas=[float("nan")]))


def test_train_codec_cli_without_validation(photos, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["train-codec", "--model", "factorized", "--data", str(photos), "--crop", "32",
               "--batch-size", "2", "--steps", "2", "--N", "8", "--M", "12", "--val-every", "2",
               "--workers", "0", "--no-progress", "--quality-index", "3", "--out", str(out)])  # fmt: skip
    assert rc == 0
    assert json.loads((out / "config.json").read_text())["quality_index"] == 3
    assert load_codec(out).codec_id.quality == 3
    assert "step       2" in capsys.readouterr().out
    # resuming needs no --data: the run directory remembers it
    assert (
        main(["train-codec", "--resume", "--out", str(out), "--steps", "3", "--no-progress"]) == 0
    )
    assert "resuming" in capsys.readouterr().out
    assert main(["train-codec", "--out", str(tmp_path / "x")]) == 2
    assert "--data" in capsys.readouterr().err


def test_cached_crops_decode_each_photo_once(photos, tmp_path):
    src = tmp_path / "one.png"
    src.write_bytes((photos / "img_2.png").read_bytes())
    ds = RandomCropImages([src], crop=16, cache=True)
    a = ds[0]
    src.write_bytes(b"not an image any more")  # a cached photo is not read again
    b = ds[0]
    assert a.shape == b.shape == (3, 16, 16) and len(ds._cache) == 1


def test_training_on_a_npy_of_crops_logs_plain_lines(photos, tmp_path, capsys):
    npy, n = precut_crops(photos, tmp_path / "crops.npy", crop=72)
    assert n > 0
    out = tmp_path / "npy"
    _, summary = train_codec(_cfg(npy, out, val_pattern=None, val_data=str(photos)))
    assert summary["steps"] == 4 and summary["val_bpp"] > 0
    text = capsys.readouterr().out
    assert "crops" in text and "s/step" in text and "\r" not in text  # whole lines for a log
    with pytest.raises(DatasetError, match="--val-data"):
        train_codec(_cfg(npy, tmp_path / "bad"))  # --val-pattern cannot select crops
    with pytest.raises(TrainingError, match="--crop 64"):
        train_codec(_cfg(photos, tmp_path / "odd", crop=72))  # not a multiple of 64


def test_time_budget_drops_the_lr_then_stops_with_a_checkpoint(photos, tmp_path, capsys):
    out = tmp_path / "timed"
    cfg = _cfg(photos, out, steps=1_000_000, hours=3 / 3600, lr_drop_at=0.5, log_every=1,
               val_every=1_000_000)  # fmt: skip
    _, summary = train_codec(cfg)
    n = summary["steps"]
    assert 2 < n < 1_000_000 and "time budget of" in capsys.readouterr().out
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    lrs = [ln["lr"] for ln in lines if ln["split"] == "train"]
    assert lrs[0] == 1e-3 and lrs[-1] == pytest.approx(1e-4) and lrs == sorted(lrs, reverse=True)
    assert [ln["step"] for ln in lines if ln["split"] == "val"] == [n]  # validated at the stop
    assert json.loads((out / "last" / "config.json").read_text())["step"] == n
    # resuming gets a fresh budget of its own and goes on from the checkpoint
    _, again = train_codec(_cfg(photos, out, steps=n + 2, resume=True, hours=1.0))
    assert again["steps"] == n + 2
    with pytest.raises(TrainingError, match="--hours"):
        train_codec(_cfg(photos, tmp_path / "bad", hours=0))


def _is_window(c: torch.Tensor, img: torch.Tensor) -> bool:
    """Whether ``c`` [3, k, k] equals a k x k window of ``img`` [3, H, W]: the windows whose
    top row matches, then the whole window."""
    k = c.shape[-1]
    rows = img[:, : img.shape[1] - k + 1].unfold(2, k, 1)  # [3, H-k+1, W-k+1, k]
    top = (rows - c[:, 0, None, None]).abs().amax(dim=(0, 3)) < 1e-6
    return any(
        bool(((img[:, i : i + k, j : j + k] - c).abs() < 1e-6).all())
        for i, j in top.nonzero().tolist()
    )


def test_device_crops_are_windows_of_the_photos_flipped_at_random(photos):
    from vaecodec.data.device_crops import DeviceCrops
    from vaecodec.data.images import read_image

    torch.manual_seed(0)
    files = sorted(photos.glob("img_*.png"))
    crops = DeviceCrops(RandomCropImages(files, crop=32), torch.device("cpu"))
    assert len(crops) == 4 and crops.nbytes == 4 * 3 * 72 * 84
    originals = [torch.from_numpy(read_image(f)[0]).permute(2, 0, 1).float() / 255 for f in files]
    x = torch.cat([crops.batch(4) for _ in range(8)])
    assert x.shape == (32, 3, 32, 32) and x.dtype == torch.float32 and crops.epoch == 8
    flips = set()
    for c in x:  # each crop is a window of one photo, as it is or flipped
        found = None
        for img in originals:
            for dims in ((), (2,), (1,), (1, 2)):
                f = img.flip(dims) if dims else img
                if _is_window(c, f):
                    found = dims
                    break
            if found is not None:
                break
        assert found is not None
        flips.add(found)
    assert len(flips) >= 3  # the flips are drawn at random
    with pytest.raises(DatasetError, match="cropping on the host"):
        DeviceCrops(RandomCropImages(files, crop=32), torch.device("cpu"), max_bytes=1000)


def test_device_crops_bf16_transforms_and_sparse_reads_of_the_statistics(photos, tmp_path, capsys):
    """The GPU settings, run on the CPU: crops cut on the device, g_a / g_s in bf16 autocast,
    statistics read every --log-every steps (and before each checkpoint)."""
    out = tmp_path / "fast"
    model, summary = train_codec(_cfg(photos, out, steps=7, log_every=3, val_every=4,
                                      device_crops="on", precision="bf16"))  # fmt: skip
    assert "transforms in bf16, crops cut on cpu" in capsys.readouterr().out
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(ln["split"], ln["step"]) for ln in lines] == [
        ("train", 3), ("train", 6), ("val", 4), ("train", 7), ("val", 7)
    ] or [(ln["split"], ln["step"]) for ln in lines] == [
        ("train", 3), ("val", 4), ("train", 6), ("train", 7), ("val", 7)
    ]
    assert all(math.isfinite(ln["loss"]) for ln in lines) and summary["steps"] == 7
    # in training the transforms ran in bf16, their outputs handed on in float32
    model.train()
    model.autocast_dtype = torch.bfloat16
    seen = []
    model.g_s.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    r = model(torch.rand(1, 3, 64, 64))
    assert seen == [torch.bfloat16] and r["x_hat"].dtype == torch.float32
    assert all(lk.dtype == torch.float32 for lk in r["likelihoods"].values())
    model.eval()
    assert model(torch.rand(1, 3, 64, 64))["x_hat"].dtype == torch.float32 and seen[-1] == (
        torch.float32
    )
    with pytest.raises(TrainingError, match="--precision"):
        train_codec(_cfg(photos, tmp_path / "bad", precision="fp8"))


def test_compiled_training_matches_the_eager_loss(photos, tmp_path):
    torch.manual_seed(0)
    eager, _ = train_codec(_cfg(photos, tmp_path / "e", steps=2, val_every=10, log_every=1,
                                model="factorized"))  # fmt: skip
    torch.manual_seed(0)
    compiled, _ = train_codec(_cfg(photos, tmp_path / "c", steps=2, val_every=10, log_every=1,
                                   model="factorized", compile=True))  # fmt: skip
    read = [[json.loads(ln)["loss"] for ln in (tmp_path / d / "metrics.jsonl").read_text()
             .splitlines()] for d in ("e", "c")]  # fmt: skip
    assert read[0] == pytest.approx(read[1], rel=1e-4)


def test_data_workers_stop_when_training_returns(photos, tmp_path):
    """Worker processes end with the run, across epochs (4 photos, batch 2: 2 steps an epoch),
    not at some later garbage collection (which waited 5 s per worker)."""
    import multiprocessing

    _, summary = train_codec(_cfg(photos, tmp_path / "w", workers=2, steps=5, val_every=5))
    assert summary["steps"] == 5
    assert multiprocessing.active_children() == []
