"""Tar shards: `vaecodec make-shards`, streaming them (`ShardCrops`), and `train-codec --data
'DIR/shard-{...}.tar'` in one process, resumed, and under torchrun with 2 ranks (gloo)."""

import hashlib
import io
import itertools
import json
import multiprocessing
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from vaecodec.checkpoint import load_tensors
from vaecodec.cli import main
from vaecodec.data.shard_stream import SKIPS, ShardCrops, read_shard
from vaecodec.data.shards import make_shards
from vaecodec.errors import DatasetError

torch.set_num_threads(1)


def _photo(rng, h=72, w=84):
    return np.kron(rng.integers(0, 256, (h // 6, w // 6, 3)), np.ones((6, 6, 1))).astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """36 small photos in two folders, one too small (20 px), one corrupt, one not an image."""
    d = tmp_path_factory.mktemp("src")
    rng = np.random.default_rng(0)
    for i in range(36):
        sub = d / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        Image.fromarray(_photo(rng)).save(sub / f"p{i:02d}.png")
    Image.fromarray(_photo(rng)[:20, :20]).save(d / "small.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 50)
    (d / "notes.txt").write_text("not a photo")
    return d


@pytest.fixture(scope="module")
def shards(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "s"
    make_shards([folder], out, shard_size="40kB", min_side=32, progress=False)
    return out


def _spec(d, n):
    return f"{d}/shard-{{000000..{n - 1:06d}}}.tar"


def test_make_shards_cli_counts_skips_and_checksums(folder, tmp_path, capsys):
    out = tmp_path / "sh"
    assert main(["make-shards", str(folder), "-o", str(out), "--shard-size", "40kB",
                 "--min-side", "32", "--no-progress"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] and m["images"] == 36
    assert m["skipped_small"] == 1 and m["skipped_unreadable"] == 1
    assert sorted(m["skipped_files"]) == ["broken.png (unreadable)", "small.png (small)"]
    assert len(m["shards"]) >= 4 and sum(s["samples"] for s in m["shards"]) == 36
    assert "36 photos" in text and f"shard-{{000000..{len(m['shards']) - 1:06d}}}.tar" in text
    keys = []
    for s in m["shards"]:
        path = out / s["name"]
        assert path.stat().st_size == s["bytes"] <= 40_000
        assert hashlib.sha256(path.read_bytes()).hexdigest() == s["sha256"]
        with tarfile.open(path) as t:
            names = t.getnames()
            meta = json.loads(t.extractfile(names[0]).read())
            png = t.extractfile(names[1]).read()
        assert names[0].endswith(".json") and names[1].endswith(".png")
        assert meta["class"] in ("a", "b") and (meta["height"], meta["width"]) == (72, 84)
        # the photo's own bytes, not re-encoded
        assert png == (folder / meta["src"]).read_bytes()
        keys += [n.split(".")[0] for n in names[::2]]
    assert len(set(keys)) == 36
    # the same command again: finished, nothing rewritten
    before = (out / "manifest.json").read_text()
    assert main(["make-shards", str(folder), "-o", str(out), "--shard-size", "40kB",
                 "--min-side", "32", "--no-progress"]) == 0  # fmt: skip
    assert (out / "manifest.json").read_text() == before


@pytest.mark.parametrize("stop", [KeyboardInterrupt, OSError(28, "No space left on device")])
def test_make_shards_resumes_after_an_interruption(folder, shards, tmp_path, monkeypatch, stop,
                                                   capsys):  # fmt: skip
    """Stopped in the middle of a shard (Ctrl-C, a full disk), then run again: the same
    shards, byte for byte, as the uninterrupted run (same sources and settings, same bytes)."""
    import vaecodec.data.shards as mod

    out = tmp_path / "sh"
    real, calls = mod._sample, [0]

    def dies(*a):
        calls[0] += 1
        if calls[0] == 20:
            raise stop
        return real(*a)

    monkeypatch.setattr(mod, "_sample", dies)
    argv = ["make-shards", str(folder), "-o", str(out), "--shard-size", "40kB", "--min-side",
            "32", "--no-progress"]  # fmt: skip
    if stop is KeyboardInterrupt:
        assert main(argv) == 130
    else:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "No space left on device" in err and "finished shards are kept" in err
    m = json.loads((out / "manifest.json").read_text())
    assert not m["complete"] and 0 < len(m["shards"]) and list(out.glob("*.partial"))
    monkeypatch.setattr(mod, "_sample", real)
    m = make_shards([folder], out, shard_size="40kB", min_side=32, progress=False)
    want = json.loads((shards / "manifest.json").read_text())
    assert [s["sha256"] for s in m["shards"]] == [s["sha256"] for s in want["shards"]]
    assert m["skipped_small"] == 1 and m["skipped_unreadable"] == 1
    assert not list(out.glob("*.partial"))
    # other settings into the same folder: refused, nothing touched
    assert main(["make-shards", str(folder), "-o", str(out), "--min-side", "8"]) == 2


def test_make_shards_refusals(folder, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    for argv, msg in [
        ([str(folder), "-o", str(tmp_path / "full")], "not an empty folder"),
        ([str(folder), "-o", str(tmp_path / "n"), "--shard-size", "lots"], "not a size"),
        ([str(tmp_path / "nothing"), "-o", str(tmp_path / "n")], "source not found"),
    ]:
        assert main(["make-shards", *argv, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1
    assert (tmp_path / "full" / "x").read_text() == "mine"


def test_shard_crops_cover_every_shard_once_per_pass(shards):
    m = json.loads((shards / "manifest.json").read_text())
    n = len(m["shards"])
    ds = ShardCrops(_spec(shards, n), crop=32, shuffle_buffer=5, seed=1)
    assert ds.samples == 36
    got = list(itertools.islice(iter(ds), 37))  # pass 0, and the first of pass 1
    info = torch.tensor([i for _, i in got])
    assert info[-1, 1] == 1 and info[-1, 4:].eq(0).all()  # whole shards: nothing skipped
    got, info = got[:36], info[:36]
    assert got[0][0].shape == (3, 32, 32) and got[0][0].dtype == torch.float32
    assert got[0][0].is_contiguous()  # a batch's stack is then a plain copy
    assert info[:, 1].eq(0).all() and info[:, 2].tolist() == list(range(36))  # pass 0, in order
    assert sorted(set(info[:, 3].tolist())) == list(range(n))
    # the same seed gives the same crops; the shuffle buffer changes the order
    again = next(iter(ShardCrops(_spec(shards, n), crop=32, shuffle_buffer=5, seed=1)))[0]
    assert torch.equal(again, got[0][0])


def _tar(path, members):
    with tarfile.open(path, "w") as t:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))


def test_bad_shards_are_skipped_and_counted(shards, tmp_path):
    first = shards / "shard-000000.tar"
    good = first.read_bytes()
    (tmp_path / "a.tar").write_bytes(good[: len(good) // 2 + 100])  # truncated
    (tmp_path / "b.tar").write_bytes(b"")  # empty
    png = io.BytesIO()
    Image.fromarray(_photo(np.random.default_rng(1))).save(png, format="PNG")
    _tar(tmp_path / "c.tar", [("k1.txt", b"hello"), ("k2.png", b"not a png"),
                              ("k3.png", png.getvalue())])  # fmt: skip
    # cut exactly after a member: no end-of-archive blocks (tarfile alone ends quietly)
    cut = good.rstrip(b"\0")
    (tmp_path / "d.tar").write_bytes(cut + b"\0" * (-len(cut) % 512))
    ds = ShardCrops([str(tmp_path / f) for f in ("a.tar", "b.tar", "c.tar", "d.tar")],
                    crop=32, shuffle_buffer=1)  # fmt: skip
    with pytest.warns(UserWarning):
        got = list(itertools.islice(iter(ds), 30))
    info = torch.tensor([i for _, i in got])
    skipped = dict(zip(SKIPS, info[-1, 4:].tolist()))
    assert skipped["truncated_shards"] >= 2 and skipped["empty_shards"] >= 1
    assert skipped["non_image_samples"] >= 1 and skipped["undecodable_images"] >= 1
    assert set(info[:, 3].tolist()) == {0, 2, 3}  # samples of the damaged and the good shards
    # a whole tar whose end blocks tarfile reads from its buffer, never reaching the end of
    # the file: not damaged
    _tar(tmp_path / "e.tar", [(f"k{i}.png", bytes(range(256)) * 117) for i in range(3)])
    for how in ("", "pipe:cat "):  # a file (read with seeks) and a stream (tarfile's records)
        counts = dict.fromkeys(SKIPS, 0)
        assert len(list(read_shard(f"{how}{tmp_path / 'e.tar'}", counts))) == 3
        assert not any(counts.values())
        with pytest.warns(UserWarning, match="end-of-archive"):
            assert len(list(read_shard(f"{how}{tmp_path / 'd.tar'}", counts))) == len(
                tarfile.open(first).getnames()) // 2  # fmt: skip
        with pytest.warns(UserWarning, match="damaged"):
            list(read_shard(f"{how}{tmp_path / 'a.tar'}", counts))
        assert counts["truncated_shards"] == 2 and sum(counts.values()) == 2
    n = len(list(tarfile.open(first)))  # the shard cut after its last member: all read, counted
    with pytest.warns(UserWarning, match="end-of-archive"):
        ds = ShardCrops([str(tmp_path / "d.tar")], crop=32, shuffle_buffer=1)
        got = list(itertools.islice(iter(ds), n // 2 + 1))
    assert got[-1][1][1] == 1 and dict(zip(SKIPS, got[-1][1][4:]))["truncated_shards"] == 1
    with pytest.raises(DatasetError, match="shard not found"):
        ShardCrops(str(tmp_path / "shard-{000000..000001}.tar"))
    with pytest.raises(DatasetError, match="no readable sample"):
        next(iter(ShardCrops([str(tmp_path / "b.tar")], crop=32)))


def test_unreadable_url_is_one_clear_error(tmp_path, capsys):
    rc = main(["train-codec", "--model", "factorized", "--data", "pipe:exit 3", "--crop", "32",
               "--steps", "1", "--workers", "0", "--out", str(tmp_path / "r"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1] == ("vaecodec train-codec: error: cannot read shard pipe:exit 3: "
                                   "its command exited with status 3")  # fmt: skip
    assert not (tmp_path / "r").exists()


def _train_args(shards, n, out, steps, *extra):
    return ["train-codec", "--model", "factorized", "--data", _spec(shards, n), "--crop", "32",
            "--batch-size", "2", "--steps", str(steps), "--N", "8", "--M", "8", "--lr-drop-at",
            "2", "--val-every", "3", "--log-every", "3", "--shuffle-buffer", "4", "--out",
            str(out), "--no-progress", "--threads", "1", *extra]  # fmt: skip


def test_train_codec_on_shards_resumes_the_exact_data_order(shards, tmp_path, capsys):
    """6 steps, then --resume to 9, with 2 data workers: the same weights as 9 steps at once
    (each worker's stream restarts after its last consumed photo, the round-robin at the
    worker that was next)."""
    n = len(json.loads((shards / "manifest.json").read_text())["shards"])
    assert main(_train_args(shards, n, tmp_path / "once", 9, "--workers", "2")) == 0
    assert main(_train_args(shards, n, tmp_path / "twice", 6, "--workers", "2")) == 0
    assert main(_train_args(shards, n, tmp_path / "twice", 9, "--workers", "2", "--resume")) == 0
    assert multiprocessing.active_children() == []  # the data workers stopped with the run
    a = load_tensors(tmp_path / "once" / "last" / "model.safetensors")
    b = load_tensors(tmp_path / "twice" / "last" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    recs = [json.loads(s) for s in (tmp_path / "twice" / "metrics.jsonl").read_text().split("\n")
            if s]  # fmt: skip
    data = [r for r in recs if r["split"] == "data"]
    assert [r["step"] for r in data] == [3, 6, 9] and data[-1]["batches"] == [9]
    assert data[-1]["samples"] == [18]
    # another number of workers: the slots change, the resume is approximate and says so
    capsys.readouterr()
    assert main(_train_args(shards, n, tmp_path / "twice", 12, "--workers", "0", "--resume")) == 0
    assert "approximate resume of the shard streams" in capsys.readouterr().out
    recs = [json.loads(s) for s in (tmp_path / "twice" / "metrics.jsonl").read_text().split("\n")
            if s]  # fmt: skip
    assert [r["batches"] for r in recs if r["split"] == "data"][-1] == [12]


def test_torchrun_two_ranks_on_shards(shards, tmp_path):
    """2 processes (gloo): both ranks take the same number of batches, every shard is read,
    only rank 0 writes, and the run exits cleanly."""
    n = len(json.loads((shards / "manifest.json").read_text())["shards"])
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29531", "-m", "vaecodec.cli",
           *_train_args(shards, n, out, 9, "--workers", "0")]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    data = [x for x in recs if x["split"] == "data"]
    assert data[-1]["batches"] == [9, 9] and data[-1]["samples"] == [18, 18]
    assert data[-1]["shards_read"] == data[-1]["shards"] == n
    assert len([x for x in recs if x["split"] == "train"]) == 3  # rank 0 alone logs
    assert r.stdout.count("training factorized codec") == 1
    assert (out / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def digit_shards(tmp_path_factory):
    """80 grey 16x16 images in two class folders, and the shards made from them."""
    d = tmp_path_factory.mktemp("digits")
    src = d / "digits"
    rng = np.random.default_rng(0)
    for c in ("even", "odd"):
        (src / c).mkdir(parents=True)
        for i in range(40):
            a = rng.integers(0, 256, (16, 16), dtype=np.uint8)
            Image.fromarray(a).save(src / c / f"{i:03d}.png")
    assert main(["make-shards", str(src), "-o", str(d / "s"), "--min-side", "0",
                 "--shard-size", "20kB", "--no-progress"]) == 0  # fmt: skip
    n = len(json.loads((d / "s" / "manifest.json").read_text())["shards"])
    return src, _spec(d / "s", n), n


def _vae_args(spec, out, epochs, *extra):
    return ["train", "--dataset", spec, "--latent-dim", "2", "--hidden", "16", "--epochs",
            str(epochs), "--batch-size", "8", "--shuffle-buffer", "5", "--eval-iw-samples", "0",
            "--no-progress", "--threads", "1", "--out", str(out), *extra]  # fmt: skip


def _epochs(out):
    return [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]


def test_vae_streams_shards_split_like_the_folder(digit_shards, tmp_path, capsys):
    """`vaecodec train --dataset 'DIR/shard-{...}.tar'`: the test split in memory (the same
    images as the folder's), the training split streamed by 2 data workers, as many batches
    an epoch as the split holds; 1 epoch then --resume to 3 gives the weights of 3 at once."""
    from vaecodec.data import load_arrays

    src, spec, n = digit_shards
    xf, yf = load_arrays(str(src), "test", cache=False)
    x, y = load_arrays(spec, "test", cache=False)
    assert x.shape == xf.shape == (len(xf), 16, 16)
    assert np.bincount(y).tolist() == np.bincount(yf).tolist()
    assert sorted(map(bytes, x)) == sorted(map(bytes, xf))  # the same images in each split
    n_train = len(load_arrays(str(src), "train", cache=False)[0])
    once = tmp_path / "once"
    assert main(_vae_args(spec, once, 3, "--workers", "2")) == 0
    assert multiprocessing.active_children() == []  # the data workers stopped with the run
    out = capsys.readouterr().out
    assert f"({n_train} train streamed / {len(xf)} val" in out
    meta = json.loads((once / "config.json").read_text())
    assert meta["dataset"] == spec and meta["config"]["input_shape"] == [1, 16, 16]
    steps = n_train // 8
    recs = _epochs(once)
    assert [r["data"]["batches"] for r in recs] == [[steps], [2 * steps], [3 * steps]]
    assert recs[-1]["data"]["samples"] == [3 * steps * 8]
    assert recs[0]["data"]["shards_read"] == recs[0]["data"]["shards"] == n
    assert not any(recs[-1]["data"]["skipped"].values())
    # stopped by its time budget after the first epoch, then resumed: the same weights
    twice = tmp_path / "twice"
    assert main(_vae_args(spec, twice, 3, "--workers", "2", "--hours", "1e-9")) == 0
    assert len(_epochs(twice)) == 1
    capsys.readouterr()
    assert main(["train", "--resume", "--epochs", "3", "--out", str(twice), "--no-progress",
                 "--eval-iw-samples", "0"]) == 0  # fmt: skip
    assert f"data: exact resume of the shard streams ({steps} batches per rank before)" in (
        capsys.readouterr().out)  # fmt: skip
    a = load_tensors(once / "model.safetensors")
    b = load_tensors(twice / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    def same(r):
        return r["train_neg_elbo"], r["val_neg_elbo"], r["lr"], r["data"]["samples"]

    assert list(map(same, _epochs(twice))) == list(map(same, recs))
    assert main(["eval", str(once), "--json"]) == 0  # finds its test split in the shards again
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n_examples"] == len(xf)
    # refusals: a static binarisation of a stream, fewer images than a batch per rank, a URL
    # that cannot be read: one line each, nothing written
    for extra, msg in [(["--binarize", "static"], "--binarize static"),
                       (["--batch-size", "512"], "fewer than one batch of 512"),
                       (["--dataset", "pipe:exit 3"], "cannot read shard pipe:exit 3: its "
                        "command exited with status 3")]:  # fmt: skip
        assert main([*_vae_args(spec, tmp_path / "no", 1), *extra]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1
    assert not (tmp_path / "no").exists()


def test_torchrun_two_ranks_train_vae_on_shards(digit_shards, tmp_path, capsys):
    """`vaecodec train` on shards under torchrun, 2 processes (gloo): both ranks take the same
    number of batches, every shard is read, only rank 0 writes; resumed by 1 process, the
    streams restart approximately and say so."""
    from vaecodec.data import load_arrays

    src, spec, n = digit_shards
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29532", "-m", "vaecodec.cli", *_vae_args(spec, out, 1)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    (rec,) = _epochs(out)  # rank 0 alone logs
    steps = rec["data"]["batches"][0]
    assert rec["data"]["batches"] == [steps, steps] and steps >= 1
    assert rec["data"]["shards_read"] == rec["data"]["shards"] == n
    assert r.stdout.count("training vae-mlp") == 1
    assert main(["train", "--resume", "--epochs", "2", "--out", str(out), "--no-progress",
                 "--eval-iw-samples", "0"]) == 0  # fmt: skip
    assert "data: approximate resume of the shard streams" in capsys.readouterr().out
    n_train = len(load_arrays(str(src), "train", cache=False)[0])
    assert [r["data"]["batches"] for r in _epochs(out)][-1] == [steps + n_train // 8]


def test_vaegan_streams_shards_and_resumes_exactly(digit_shards, tmp_path, capsys, monkeypatch):
    """`vaecodec train --model vaegan-mlp --dataset 'DIR/shard-{...}.tar'`: the training split
    streamed by 2 data workers as for the VAE (equal epochs, the "data" record), and a run
    interrupted after its first epoch and resumed gives the weights of 2 epochs at once."""
    import vaecodec.train.vaegan_trainer as vt
    from vaecodec.data import load_arrays

    src, spec, n = digit_shards
    n_train = len(load_arrays(str(src), "train", cache=False)[0])
    gan = ["--model", "vaegan-mlp", "--disc-channels", "16", "--workers", "2"]
    once = tmp_path / "once"
    assert main([*_vae_args(spec, once, 2), *gan]) == 0
    assert multiprocessing.active_children() == []  # the data workers stopped with the run
    assert f"({n_train} train streamed / " in capsys.readouterr().out
    steps = n_train // 8
    recs = _epochs(once)
    assert [r["data"]["batches"] for r in recs] == [[steps], [2 * steps]]
    assert recs[-1]["data"]["samples"] == [2 * steps * 8]
    assert recs[0]["data"]["shards_read"] == recs[0]["data"]["shards"] == n
    # Ctrl-C after the first epoch's checkpoint, then --resume
    twice, save = tmp_path / "twice", vt.save_train_state

    def interrupted(out, state):
        save(out, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(vt, "save_train_state", interrupted)
    assert main([*_vae_args(spec, twice, 2), *gan]) == 130
    assert multiprocessing.active_children() == []
    monkeypatch.setattr(vt, "save_train_state", save)
    capsys.readouterr()
    assert main(["train", "--resume", "--epochs", "2", "--out", str(twice), "--no-progress",
                 "--eval-iw-samples", "0"]) == 0  # fmt: skip
    assert f"data: exact resume of the shard streams ({steps} batches per rank before)" in (
        capsys.readouterr().out)  # fmt: skip
    a = load_tensors(once / "model.safetensors")
    b = load_tensors(twice / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    def same(r):
        return r["train_neg_elbo"], r["d_loss"], r["lr"], r["data"]["samples"]

    assert list(map(same, _epochs(twice))) == list(map(same, recs))
