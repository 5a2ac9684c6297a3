"""`vaecodec compress` / `decompress` end to end, and the codec zoo, with a random tiny model."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vaecodec.checkpoint import save_model
from vaecodec.cli import main
from vaecodec.coding.container import unpack
from vaecodec.compression.lossy import decode_image, encode_image
from vaecodec.errors import ModelError
from vaecodec.models.registry import build_model
from vaecodec.zoo.codecs import codec_summary, load_codec, resolve_codec

torch.set_num_threads(1)


def save_tiny_codec(run_dir, name="mean-scale", seed=0, **meta):
    """Save a randomly initialised tiny codec (N=8, M=12) as a train-codec run directory."""
    torch.manual_seed(seed)
    m = build_model(name, {"N": 8, "M": 12})
    with torch.no_grad():
        m.g_a[-1].weight.mul_(20)
    save_model(run_dir, m, {"model": name, "kind": "codec", "config": m.config_dict(), **meta})
    return run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return save_tiny_codec(tmp_path_factory.mktemp("codec") / "run")


def _write(path, h, w, mode="RGB", seed=0, **save_kw):
    rng = np.random.default_rng(seed)
    c = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    a = np.kron(rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, c)), np.ones((4, 4, 1)))[:h, :w]
    a = a.astype(np.uint8)
    if mode == "RGBA":
        a[..., 3] = 255
    Image.fromarray(a[..., 0] if mode == "L" else a, mode).save(path, **save_kw)
    return path


def test_cli_round_trip_several_files(tmp_path, run_dir, capsys):
    srcs = [
        _write(tmp_path / "a.png", 37, 101),
        _write(tmp_path / "g.png", 64, 48, mode="L"),
        _write(tmp_path / "c.webp", 70, 64, lossless=True),
    ]
    args = [str(s) for s in srcs]
    assert main(["compress", "--model", str(run_dir), *args, "-o", str(tmp_path / "vcz")]) == 0
    files = sorted((tmp_path / "vcz").iterdir())
    assert [f.name for f in files] == ["a.vcz", "c.vcz", "g.vcz"]
    header = unpack(files[0].read_bytes())[0]
    assert (header.height, header.width, header.codec.model) == (37, 101, "mean-scale")
    assert header.codec.name == "run"
    rc = main(
        ["decompress", "--model", str(run_dir), *map(str, files), "-o", str(tmp_path / "png")]
    )
    assert rc == 0
    a, g, c = (Image.open(tmp_path / "png" / f"{n}.png") for n in "agc")
    assert (a.mode, a.size) == ("RGB", (101, 37))
    assert (g.mode, g.size) == ("L", (48, 64))
    assert (c.mode, c.size) == ("RGB", (64, 70))


def test_cli_single_file_and_exif_orientation(tmp_path, run_dir, capsys):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    src = _write(tmp_path / "rot.png", 24, 40, exif=exif)  # stored 40 wide, 24 high
    out = tmp_path / "rot.vcz"
    assert main(["compress", "--model", str(run_dir), str(src), "-o", str(out)]) == 0
    assert "bpp" in capsys.readouterr().out
    assert (
        main(["decompress", "--model", str(run_dir), str(out), "-o", str(tmp_path / "r.png")]) == 0
    )
    assert Image.open(tmp_path / "r.png").size == (24, 40)  # displayed orientation


def test_cli_errors_are_one_line_and_nonzero(tmp_path, run_dir, capsys):
    src = _write(tmp_path / "a.png", 32, 32)
    vcz = tmp_path / "a.vcz"
    assert main(["compress", "--model", str(run_dir), str(src), "-o", str(vcz)]) == 0
    capsys.readouterr()
    # no --model: the bundled default family, or a message that says how to train one
    default = codec_summary()["default_codec"]
    rc = main(["compress", str(src), "-o", str(tmp_path / "x.vcz")])
    if default is None:
        assert rc == 2 and "train-codec" in capsys.readouterr().err
    else:
        # the file names the family that owns the default quality's weights
        owner = load_codec().codec_id.name
        assert rc == 0 and unpack((tmp_path / "x.vcz").read_bytes())[0].codec.name == owner
        capsys.readouterr()
    # the header names a run directory: decompress needs --model
    assert main(["decompress", str(vcz), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "codec 'run'" in err and "--model" in err and "Traceback" not in err
    # another model's weights
    other = save_tiny_codec(tmp_path / "other", seed=5)
    assert main(["decompress", "--model", str(other), str(vcz), "-o", str(tmp_path / "x.png")]) == 2
    assert "made by codec 'run'" in capsys.readouterr().err
    # corrupt and garbage files; several inputs: the good one is still decoded
    bad = tmp_path / "bad.vcz"
    bad.write_bytes(vcz.read_bytes()[:-7])
    junk = tmp_path / "junk.vcz"
    junk.write_bytes(b"hello world" * 10)
    rc = main(["decompress", "--model", str(run_dir), str(bad), str(junk), str(vcz),
               "-o", str(tmp_path / "outdir")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "CRC32" in err and "not a .vcz" in err and "2 of 3 files failed" in err
    assert (tmp_path / "outdir" / "a.png").is_file()
    assert not (tmp_path / "outdir" / "bad.png").exists()
    # a transparent image is refused with advice
    rgba = np.zeros((8, 8, 4), np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    assert main(["compress", "--model", str(run_dir), str(tmp_path / "t.png"), "-o",
                 str(tmp_path / "t.vcz")]) == 2  # fmt: skip
    assert "transparent" in capsys.readouterr().err
    # an output that cannot be written
    assert main(["compress", "--model", str(run_dir), str(src), "-o", str(src / "x.vcz")]) == 2
    assert "cannot write" in capsys.readouterr().err
    # two inputs with the same stem
    (tmp_path / "d").mkdir()
    _write(tmp_path / "d" / "a.png", 16, 16)
    assert main(["compress", "--model", str(run_dir), str(src), str(tmp_path / "d" / "a.png"),
                 "-o", str(tmp_path / "o2")]) == 2  # fmt: skip
    assert "rename" in capsys.readouterr().err


def _make_family(root, name="tiny-ms", lmbdas=(0.001, 0.01)):
    fam = root / name
    entries = []
    for q, lm in enumerate(lmbdas, start=1):
        save_tiny_codec(fam / f"q{q}", seed=q)
        entries.append({"quality": q, "lmbda": lm, "dir": f"q{q}"})
    meta = {"name": name, "model": "mean-scale", "description": "test family", "default": True,
            "qualities": entries}  # fmt: skip
    (fam / "family.json").write_text(json.dumps(meta))
    return fam


def test_zoo_with_no_family_bundled(tmp_path):
    assert codec_summary(root=tmp_path) == {"default_codec": None, "codecs": {}}


def test_the_bundled_default_codec_codes_every_quality(tmp_path):
    s = codec_summary()
    if s["default_codec"] is None:
        with pytest.raises(ModelError, match="train-codec"):
            load_codec()
        return
    info = s["codecs"][s["default_codec"]]
    assert len(info["qualities"]) >= 6
    rng = np.random.default_rng(0)
    img = np.kron(rng.integers(0, 256, (12, 16, 3)), np.ones((6, 6, 1))).astype(np.uint8)
    sizes = []
    for q in info["qualities"]:
        m = load_codec(quality=q)
        data = encode_image(m, img)
        assert unpack(data)[0].codec == m.codec_id  # the family owning the weights (cb-mix11)
        again = decode_image(data, load_codec(m.codec_id.name, 1))[0]
        assert np.array_equal(decode_image(data, m)[0], again)  # the header picks the level
        sizes.append(len(data))
        assert "kodak_bpp" in info["metrics"][str(q)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_codec_family_summary_and_loading(tmp_path):
    fam = _make_family(tmp_path)
    s = codec_summary(root=tmp_path)
    assert s["default_codec"] == "tiny-ms"
    info = s["codecs"]["tiny-ms"]
    assert info["qualities"] == [1, 2] and info["lmbdas"] == [0.001, 0.01]
    assert info["model"] == "mean-scale"
    m = load_codec(fam, 2)
    assert m.codec_id.name == "tiny-ms" and m.codec_id.quality == 2 and not m.training
    assert resolve_codec(fam)[2] == 2  # default quality: the middle one (upper middle)
    with pytest.raises(ModelError, match="valid qualities: 1, 2"):
        load_codec(fam, 7)
    with pytest.raises(ModelError, match="no codec"):
        load_codec(tmp_path / "nothing-here")


def test_family_folder_round_trip_uses_quality_from_header(tmp_path, capsys):
    fam = _make_family(tmp_path)
    src = _write(tmp_path / "a.png", 32, 48)
    out = tmp_path / "a.vcz"
    assert main(["compress", "--model", str(fam), "--quality", "1", str(src), "-o", str(out)]) == 0
    assert unpack(out.read_bytes())[0].codec.quality == 1
    assert main(["decompress", "--model", str(fam), str(out), "-o", str(tmp_path / "a2.png")]) == 0
    assert Image.open(tmp_path / "a2.png").size == (48, 32)


def test_lossless_streams_are_routed_to_the_lossless_decoder(tmp_path, capsys):
    f = tmp_path / "x.vczl"
    f.write_bytes(b"VCZL" + bytes(40))
    assert main(["decompress", str(f), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not a .vcz" not in err and "Traceback" not in err
