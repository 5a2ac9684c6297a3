"""The lossless VCZL stream: files in and out, refusals before writing, corrupt streams, thread
determinism in a subprocess, and the real `vaecodec compress --lossless` / `bench-lossless`."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaecodec.checkpoint import save_model
from vaecodec.coding.lossless_format import MAGIC, read_header
from vaecodec.compression.lossless import (
    compress_files,
    decode_stream,
    decompress_file,
    encode_stream,
    load_lossless_model,
)
from vaecodec.errors import FormatError, ImageError, VaecodecError

sys.path.insert(0, str(Path(__file__).parent))
from test_bitsback import cross_images, train_tiny  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _save(model, d: Path) -> Path:
    save_model(d, model, {"model": "vae-mlp", "kind": "vae", "config": model.config_dict(),
                          "dataset": "synthetic"})  # fmt: skip
    return d


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    binary = _save(train_tiny("bernoulli", cross_images(400, 0, True), steps=150), root / "bin")
    gray = _save(train_tiny("beta-binomial", cross_images(400, 0, False), steps=150), root / "gray")
    return {"binary": str(binary), "gray": str(gray)}


def _write_pngs(d: Path, images: np.ndarray, prefix: str = "img") -> list[str]:
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i, a in enumerate(images):
        p = d / f"{prefix}{i}.png"
        Image.fromarray(a).save(p)
        out.append(str(p))
    return out


def _read(p) -> np.ndarray:
    with Image.open(p) as im:
        assert im.mode == "L"
        return np.asarray(im)


# -- files ---------------------------------------------------------------------------------------


def test_binary_files_round_trip_with_names_and_pixel_values(models, tmp_path):
    imgs = cross_images(5, 1, binary=True)
    imgs[1] = (imgs[1] != 0).astype(np.uint8)  # a 0/1 image: must come back as 0/1
    files = _write_pngs(tmp_path / "in", imgs)
    out = tmp_path / "digits.vczl"
    compress_files(models["binary"], files, str(out), verbose=False)
    assert out.read_bytes()[:4] == MAGIC
    written = decompress_file(str(out), str(tmp_path / "out"), models["binary"])
    assert [Path(p).name for p in written] == [Path(f).name for f in files]
    for f, w in zip(files, written):
        assert np.array_equal(_read(f), _read(w))
    assert _read(written[1]).max() == 1


def test_8bit_files_round_trip_with_rgb_grey_input(models, tmp_path):
    imgs = cross_images(4, 2, binary=False)
    files = _write_pngs(tmp_path / "in", imgs)
    rgb = tmp_path / "in" / "rgbgrey.png"  # an RGB file whose channels are equal is grey
    Image.fromarray(np.repeat(imgs[0][:, :, None], 3, axis=2)).save(rgb)
    out = tmp_path / "g.vczl"
    compress_files(models["gray"], [*files, str(rgb)], str(out), verbose=False)
    written = decompress_file(str(out), str(tmp_path / "out"), models["gray"])
    for f, w in zip(files, written):
        assert np.array_equal(_read(f), _read(w))
    assert np.array_equal(_read(written[-1]), imgs[0])
    header = read_header(out.read_bytes())
    assert header.n_images == 5 and header.levels == 256 and header.shape == (1, 8, 8)


@pytest.mark.parametrize(
    "case", ["grey-values-for-binary", "wrong-size", "colour", "not-an-image", "duplicate-stem"]
)
def test_bad_inputs_are_refused_before_writing(models, tmp_path, case):
    good = _write_pngs(tmp_path / "in", cross_images(2, 3, binary=True))
    bad = tmp_path / "bad.png"
    model = models["binary"]
    if case == "grey-values-for-binary":
        Image.fromarray(cross_images(1, 3, binary=False)[0]).save(bad)
    elif case == "wrong-size":
        Image.fromarray(np.zeros((9, 8), np.uint8)).save(bad)
        model = models["gray"]
    elif case == "colour":
        a = np.zeros((8, 8, 3), np.uint8)
        a[..., 0] = 255
        Image.fromarray(a).save(bad)
        model = models["gray"]
    elif case == "not-an-image":
        bad.write_bytes(b"this is not a png")
    else:
        (tmp_path / "other").mkdir()
        bad = tmp_path / "other" / "img0.bmp"
        Image.fromarray(cross_images(1, 3, binary=True)[0]).save(bad)
    out = tmp_path / "o.vczl"
    with pytest.raises(ImageError):
        compress_files(model, [*good, str(bad)], str(out), verbose=False)
    assert not out.exists() and not list(tmp_path.glob(".o.vczl*"))


def test_output_directory_and_unknown_model_are_refused(models, tmp_path):
    files = _write_pngs(tmp_path / "in", cross_images(1, 3, binary=True))
    with pytest.raises(VaecodecError):
        compress_files(models["binary"], files, str(tmp_path), verbose=False)
    with pytest.raises(VaecodecError):
        compress_files("no-such-model", files, str(tmp_path / "x.vczl"), verbose=False)


# -- corrupt streams -----------------------------------------------------------------------------


@pytest.fixture()
def stream(models):
    model, _meta, whash, stored = load_lossless_model(models["binary"])
    imgs = cross_images(6, 4, binary=True)
    data = encode_stream(model, imgs, [f"a{i}.png" for i in range(6)], stored, whash, lanes=2)
    return data, imgs, model, whash


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def test_stream_decodes(stream):
    data, imgs, model, whash = stream
    header, back = decode_stream(data, model, whash)
    assert np.array_equal(back, imgs) and header.names == [f"a{i}.png" for i in range(6)]


@pytest.mark.parametrize("cut", [1, 5, 40, -9, -4, -1])
def test_truncated_stream_is_a_format_error(stream, cut):
    data = stream[0]
    with pytest.raises(FormatError):
        decode_stream(data[:cut] if cut > 0 else data[:cut])


def test_flipped_bits_are_a_format_error(stream):
    data = bytearray(stream[0])
    for pos in (4, 10, len(data) // 2, len(data) - 10):
        bad = bytearray(data)
        bad[pos] ^= 0x40
        with pytest.raises(FormatError):
            decode_stream(bytes(bad))


def test_valid_crc_but_garbage_words_is_a_format_error(stream):
    """A stream whose ANS words were altered (and CRC recomputed) decodes to garbage: the pixel
    CRC / seed check must refuse it rather than return wrong images."""
    data, _imgs, model, whash = stream
    body = bytearray(data[:-4])
    body[-8] ^= 0x5A
    with pytest.raises(FormatError):
        decode_stream(_with_crc(bytes(body)), model, whash)


def test_wrong_magic_version_and_model(stream, models, tmp_path):
    data, _imgs, _model, _whash = stream
    with pytest.raises(FormatError):
        decode_stream(b"VCZ1" + data[4:])
    with pytest.raises(FormatError, match="version"):
        decode_stream(data[:4] + bytes([99]) + data[5:])
    # another model's weights: hash mismatch
    other, _m, other_hash, _s = load_lossless_model(models["gray"])
    with pytest.raises(FormatError, match="different weights"):
        decode_stream(data, other, other_hash)
    # the recorded model is a run directory: the stream does not choose it, --model must
    p = tmp_path / "s.vczl"
    p.write_bytes(data)
    with pytest.raises(FormatError, match="needs the model.*--model"):
        decompress_file(str(p), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# -- determinism across thread counts (a fresh process) ------------------------------------------


def test_decode_in_a_subprocess_with_two_threads(models, tmp_path):
    torch.set_num_threads(1)
    imgs = cross_images(40, 9, binary=False)
    files = _write_pngs(tmp_path / "in", imgs)
    out = tmp_path / "t.vczl"
    compress_files(models["gray"], files, str(out), verbose=False)
    code = (
        "import sys, torch; torch.set_num_threads(2); assert torch.get_num_threads() == 2; "
        "from vaecodec.compression.lossless import decompress_file; "
        "print(len(decompress_file(sys.argv[1], sys.argv[2], sys.argv[3])))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    r = subprocess.run([sys.executable, "-c", code, str(out), str(tmp_path / "out"), models["gray"]],
                       capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "40"
    for f in files:
        assert np.array_equal(_read(f), _read(tmp_path / "out" / Path(f).name))


# -- the real CLI --------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    """Run the real command line in a fresh process: ``python -m vaecodec.cli`` when the package
    has a ``__main__``, else the same ``main`` through ``python -c``."""
    import importlib.util

    if importlib.util.find_spec("vaecodec.cli.__main__") is not None:
        cmd = [sys.executable, "-m", "vaecodec.cli"]
    else:
        cmd = [sys.executable, "-c", "import sys; from vaecodec.cli import main; sys.exit(main())"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)


def test_cli_compress_lossless_and_decompress(models, tmp_path):
    imgs = cross_images(3, 10, binary=True)
    files = _write_pngs(tmp_path / "in", imgs)
    out = tmp_path / "c.vczl"
    r = _cli("compress", "--lossless", "--model", models["binary"], *files, "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:4] == MAGIC
    r = _cli("decompress", "--model", models["binary"], str(out), "-o", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    for f in files:
        assert np.array_equal(_read(f), _read(tmp_path / "out" / Path(f).name))


def test_cli_refuses_non_binary_input_for_a_binary_model(models, tmp_path, capsys):
    from vaecodec.cli import main

    bad = tmp_path / "grey.png"
    Image.fromarray(cross_images(1, 3, binary=False)[0]).save(bad)
    out = tmp_path / "b.vczl"
    rc = main(["compress", "--lossless", "--model", models["binary"], str(bad), "-o", str(out)])
    assert rc == 2 and "0 or 255" in capsys.readouterr().err and not out.exists()


def test_bench_lossless_json(models, tmp_path, capsys):
    from vaecodec.cli import main

    data = tmp_path / "data"
    for split, seed in (("train", 1), ("test", 2)):
        _write_pngs(data / split / "0", cross_images(12, seed, binary=False), prefix=split)
    rc = main(["bench-lossless", "--model", models["gray"], "--dataset", str(data),
               "--max-images", "10", "--json"])  # fmt: skip
    assert rc == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out)
    # a run of minutes is not silent: each stage says when it starts and ends (on stderr)
    for stage in ("bits-back encoding 10 images", "encoded: ", "classical codecs done in"):
        assert f"vaecodec bench-lossless: {stage}" in cap.err
    assert "decoded in" in cap.err and "computing the model's -ELBO" in cap.err
    b = res["bbans"]
    assert res["n_images"] == 10 and b["round_trip_exact"] and b["bits_per_dim"] > 0
    assert b["encode_images_per_s"] > 0 and b["decode_images_per_s"] > 0
    assert res["neg_elbo"]["bits_per_dim"] > 0 and "gap_percent" in res
    for name in ("gzip", "bz2", "lzma", "png", "webp", "jpegxl"):
        assert name in res["classical"]
