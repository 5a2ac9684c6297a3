"""Issue 18: nothing lost, nothing clobbered, nothing that explodes.

What a careless user or a crafted file does to `compress` / `decompress` (lossy `.vcz` and
lossless `VCZL`): an output that is an input, colliding or non-portable names in a stream,
output folders and failed writes, bad thread counts and output paths, hostile model folders,
a zoo name shadowed by the working directory, and every kind of odd image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaecodec.checkpoint import save_model
from vaecodec.cli import main
from vaecodec.coding import lossless_format as fmt
from vaecodec.coding.container import unpack
from vaecodec.compression import lossless as bc
from vaecodec.errors import FormatError, ModelError
from vaecodec.models.registry import build_model
from vaecodec.zoo import load_model
from vaecodec.zoo.codecs import load_codec

sys.path.insert(0, str(Path(__file__).parent))
from test_bitsback import cross_images, train_tiny  # noqa: E402
from test_codec_cli import _make_family, _write, save_tiny_codec  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return save_tiny_codec(tmp_path_factory.mktemp("codec") / "run")


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    """A tiny binary VAE (8x8) as a run directory, for lossless streams."""
    d = tmp_path_factory.mktemp("vae") / "bin"
    m = train_tiny("bernoulli", cross_images(200, 0, True), steps=20)
    save_model(d, m, {"model": "vae-mlp", "kind": "vae", "config": m.config_dict()})
    return str(d)


def _digits(d: Path, n: int, prefix: str = "d", seed: int = 1) -> list[str]:
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i, a in enumerate(cross_images(n, seed, binary=True)):
        p = d / f"{prefix}{i}.png"
        Image.fromarray(a).save(p)
        out.append(str(p))
    return out


def _stream(vae_dir, names: list[str]) -> bytes:
    """A valid stream of len(names) images whose image table is then rewritten to ``names``
    (any strings) with the file's CRC recomputed: what a crafted or damaged file can hold."""
    model, _meta, whash, stored = bc.load_lossless_model(vae_dir)
    imgs = cross_images(len(names), 4, binary=True)
    data = bc.encode_stream(model, imgs, [f"n{i}.png" for i in range(len(names))], stored, whash)
    header, lanes = fmt.unpack(data)
    header.names = list(names)
    return fmt.pack(header, lanes)


def _files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


# -- point 0: -o equal to an input -----------------------------------------------------------


def _spell(kind: str, target: Path) -> Path:
    """Another name for ``target``: itself, a ``..`` spelling (through an existing folder, or
    through one that does not exist yet and that writing would create), a symlink or a hard
    link."""
    if kind == "same":
        return target
    if kind == "dotdot":
        (target.parent / "sub").mkdir(exist_ok=True)
        return target.parent / "sub" / ".." / target.name
    if kind == "missing-dotdot":  # issue 27 point 1: `-o nosuchdir/../in.png`
        return target.parent / "nosuchdir" / "deeper" / ".." / ".." / target.name
    link = target.parent / f"link-{kind}{target.suffix}"
    (os.symlink if kind == "symlink" else os.link)(target, link)
    return link


@pytest.mark.parametrize("kind", ["same", "dotdot", "missing-dotdot", "symlink", "hardlink"])
def test_output_equal_to_an_input_is_refused_in_all_three_modes(
    tmp_path, run_dir, vae_dir, capsys, kind
):
    png = _write(tmp_path / "in.png", 16, 16)
    before = png.read_bytes()
    rc = main(["compress", "--model", str(run_dir), str(png), "-o", str(_spell(kind, png))])
    assert rc == 2 and "destroy the input" in capsys.readouterr().err
    assert png.read_bytes() == before

    vcz = tmp_path / "in.vcz"
    assert main(["compress", "--model", str(run_dir), str(png), "-o", str(vcz)]) == 0
    before = vcz.read_bytes()
    capsys.readouterr()
    rc = main(["decompress", "--model", str(run_dir), str(vcz), "-o", str(_spell(kind, vcz))])
    assert rc == 2 and "destroy the input" in capsys.readouterr().err
    assert vcz.read_bytes() == before

    d0, d1 = _digits(tmp_path / "dig", 2)
    before = Path(d1).read_bytes()
    out = _spell(kind, Path(d1))
    rc = main(["compress", "--lossless", "--model", vae_dir, d0, d1, "-o", str(out)])
    assert rc == 2 and "destroy the input" in capsys.readouterr().err
    assert Path(d1).read_bytes() == before
    assert not any(p.name == "nosuchdir" for p in tmp_path.rglob("*"))  # nothing created


# -- points 1 and 2: names in a lossless stream ----------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        ["d0.png", "d1.png", "d0.png", "d2.png"],  # the same name twice
        ["d0.png", "d1.png", "d2.png", "d0.bmp"],  # the same output stem
        ["d0.png", "D0.png"],  # differ only by case
        ["caf\u00e9.png", "cafe\u0301.png"],  # the same name in NFC and NFD
    ],
)
def test_a_stream_with_colliding_output_names_is_refused(tmp_path, vae_dir, capsys, names):
    f = tmp_path / "s.vczl"
    f.write_bytes(_stream(vae_dir, names))
    with pytest.raises(FormatError, match="both be written"):
        bc.decode_stream(f.read_bytes(), *bc.load_lossless_model(vae_dir)[::2])
    out = tmp_path / "out"
    assert main(["decompress", "--model", vae_dir, str(f), "-o", str(out)]) == 2
    assert "one would be lost" in capsys.readouterr().err and _files(out) == []


@pytest.mark.parametrize(
    "name",
    ["a\nb.png", "a\rb.png", "tab\t.png", "a:b.png", 'q"uote.png', "a|b.png", "star*.png",
     "q?.png", "lt<.png", "CON.png", "nul.tar.png", "COM1.png", "lpt9", ".hidden.png",
     "trailing.", "trailing ", " leading.png", "rtl\u202egnp.exe", "zw\u200b.png",
     "nbsp\u00a0.png", "line\u2028.png", "a" * 252 + ".p", "x" * 256, "", "../up.png",
     "a/b.png", "a\\b.png"],
)  # fmt: skip
def test_a_stream_with_a_non_portable_name_is_refused(vae_dir, name):
    assert fmt.name_problem(name) is not None
    data = _stream(vae_dir, [name, "ok.png"])
    with pytest.raises(FormatError, match="corrupt stream"):
        bc.decode_stream(data, *bc.load_lossless_model(vae_dir)[::2])


def test_portable_names_pass_and_every_name_has_a_portable_form():
    for name in ["d0.png", "Ziffer_\u00e4\u00df.png", "\u6570\u5b57 7.png", "a b.c.png",
                 "x" * 251 + ".png", "no-extension", "con-trol.png", "COM10.png"]:  # fmt: skip
        assert fmt.name_problem(name) is None, name
    for name in ["a\nb.png", "CON.png", ".x.png", "...", "x" * 300 + ".png", "a:b.tif",
                 "\u200b", "  ", "y" * 254 + ".p", "nul"]:  # fmt: skip
        assert fmt.name_problem(fmt.portable_name(name)) is None, name


def test_compress_says_when_a_name_cannot_be_kept(tmp_path, vae_dir, capsys):
    d = tmp_path / "in"
    d.mkdir()
    imgs = cross_images(3, 5, binary=True)
    srcs = [d / "a:b.png", d / "new\nline.png", d / "CON.png"]
    for p, a in zip(srcs, imgs):
        Image.fromarray(a).save(p, format="PNG")
    out = tmp_path / "s.vczl"
    assert (
        main(["compress", "--lossless", "--model", vae_dir, *map(str, srcs), "-o", str(out)]) == 0
    )
    err = capsys.readouterr().err
    assert err.count("cannot be kept") == 3 and "decompresses as 'a_b.png'" in err
    assert main(["decompress", "--model", vae_dir, str(out), "-o", str(tmp_path / "o")]) == 0
    assert _files(tmp_path / "o") == ["_CON.png", "a_b.png", "new_line.png"]
    back = np.asarray(Image.open(tmp_path / "o" / "new_line.png"))
    assert np.array_equal(back, imgs[1])


@pytest.mark.parametrize("second", ["a_b.png", "A:B.png", "x/A_B.bmp"])
def test_compress_refuses_inputs_that_would_decompress_to_one_file(tmp_path, vae_dir, capsys,
                                                                    second):  # fmt: skip
    first = tmp_path / "a:b.png"
    other = tmp_path / second
    other.parent.mkdir(exist_ok=True)
    for p in (first, other):
        Image.fromarray(cross_images(1, 3, binary=True)[0]).save(p, format="PNG")
    out = tmp_path / "s.vczl"
    rc = main(["compress", "--lossless", "--model", vae_dir, str(first), str(other), "-o",
               str(out)])  # fmt: skip
    assert rc == 2 and "rename one" in capsys.readouterr().err and not out.exists()


# -- point 3: output folders, nothing partial, nothing destroyed -----------------------------


def test_decompress_a_lossless_stream_into_an_existing_empty_folder(tmp_path, vae_dir, capsys):
    files = _digits(tmp_path / "in", 3)
    s = tmp_path / "s.vczl"
    assert main(["compress", "--lossless", "--model", vae_dir, *files, "-o", str(s)]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["decompress", "--model", vae_dir, str(s), "-o", str(empty)]) == 0
    assert _files(empty) == ["d0.png", "d1.png", "d2.png"]
    capsys.readouterr()
    # a .png -o for a stream of 3 images: the message says to give a folder
    assert main(["decompress", "--model", vae_dir, str(s), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "give a folder as -o" in err and "created if needed" in err
    assert not (tmp_path / "x.png").exists()


def _failing_save(monkeypatch, after: int):
    """Make PIL's PNG writer fail (a full disk) after ``after`` successful saves, having written
    a few bytes first."""
    real = Image.Image.save
    calls = {"n": 0}

    def save(self, fp, *a, **k):
        calls["n"] += 1
        if calls["n"] > after:
            Path(fp).write_bytes(b"\x89PNG partial")
            raise OSError(28, "No space left on device")
        return real(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", save)


def test_a_failed_lossless_decode_leaves_no_partial_file_and_keeps_old_ones(
    tmp_path, vae_dir, capsys, monkeypatch
):
    streams = []
    for prefix in "de":  # two streams: -o is then the output folder in every version
        files = _digits(tmp_path / "in", 3, prefix=prefix)
        streams.append(str(tmp_path / f"{prefix}.vczl"))
        assert main(["compress", "--lossless", "--model", vae_dir, *files, "-o", streams[-1]]) == 0
    out = tmp_path / "out"
    out.mkdir()
    (out / "d1.png").write_bytes(b"an older d1")
    _failing_save(monkeypatch, after=1)  # d0 is saved, then d1 and everything after fail
    assert main(["decompress", "--model", vae_dir, *streams, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left" in err and "Traceback" not in err
    assert _files(out) == ["d1.png"] and (out / "d1.png").read_bytes() == b"an older d1"


def test_a_failed_write_keeps_the_old_output_for_both_codecs(
    tmp_path, run_dir, vae_dir, capsys, monkeypatch
):
    import vaecodec.fileio as fileio

    png = _write(tmp_path / "a.png", 16, 16)
    vcz = tmp_path / "a.vcz"
    assert main(["compress", "--model", str(run_dir), str(png), "-o", str(vcz)]) == 0
    files = _digits(tmp_path / "in", 2)
    s = tmp_path / "s.vczl"
    assert main(["compress", "--lossless", "--model", vae_dir, *files, "-o", str(s)]) == 0
    old = {p: p.read_bytes() for p in (vcz, s)}
    (tmp_path / "a2.png").write_bytes(b"old png")

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "chmod", disk_full)  # after the data, before the rename
    capsys.readouterr()
    for argv in (["compress", "--model", str(run_dir), str(png), "-o", str(vcz)],
                 ["compress", "--lossless", "--model", vae_dir, *files, "-o", str(s)],
                 ["decompress", "--model", str(run_dir), str(vcz), "-o",
                  str(tmp_path / "a2.png")]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "cannot write" in err and "No space left" in err and "Traceback" not in err
    assert all(p.read_bytes() == b for p, b in old.items())
    assert (tmp_path / "a2.png").read_bytes() == b"old png"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# -- point 7: arguments, output paths, model folders, FIFOs ----------------------------------


@pytest.mark.parametrize("threads", ["-1", "0", "100000"])
def test_threads_out_of_range_is_a_one_line_error(tmp_path, run_dir, capsys, threads):
    png = _write(tmp_path / "a.png", 16, 16)
    for cmd in ("compress", "decompress"):
        rc = main([cmd, "--threads", threads, "--model", str(run_dir), str(png), "-o",
                   str(tmp_path / "x")])  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 2 and "--threads" in err and "from 1 to" in err


def test_bad_output_paths_are_one_line_errors(tmp_path, vae_dir, capsys):
    files = _digits(tmp_path / "in", 2)
    s = tmp_path / "s.vczl"
    assert main(["compress", "--lossless", "--model", vae_dir, *files, "-o", str(s)]) == 0
    under_file = Path(files[0]) / "x.vczl"
    too_long = tmp_path / ("n" * 300 + ".vczl")
    for out in (under_file, Path("/proc/vaecodec-test.vczl"), too_long):
        capsys.readouterr()
        rc = main(["compress", "--lossless", "--model", vae_dir, *files, "-o", str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and "cannot" in err and "Traceback" not in err, (out, err)
        assert len(err.strip().splitlines()) == 1
    for out in (Path(files[0]) / "dir", Path("/proc/vaecodec-test"), tmp_path / ("n" * 300)):
        rc = main(["decompress", "--model", vae_dir, str(s), "-o", str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def _config(d: Path, **change) -> Path:
    meta = json.loads((d / "config.json").read_text())
    meta["config"].update(change)
    (d / "config.json").write_text(json.dumps(meta))
    return d


@pytest.mark.parametrize(
    "change, match",
    [({"N": 1000000}, "N must be an integer"), ({"levels": 10**9}, "levels must be"),
     ({"N": 8.0}, "N must be an integer"), ({"M": "12"}, "M must be an integer"),
     ({"levels": 2}, "do not match the model")],
)  # fmt: skip
def test_a_model_folder_asking_for_absurd_sizes_is_refused(tmp_path, change, match):
    d = _config(save_tiny_codec(tmp_path / "run"), **change)
    with pytest.raises(ModelError, match=match):
        load_codec(d)


def test_nan_weights_and_bad_family_files_are_refused(tmp_path, vae_dir, capsys):
    torch.manual_seed(0)
    m = build_model("mean-scale", {"N": 8, "M": 12})
    with torch.no_grad():
        m.g_s[0].weight[0, 0, 0, 0] = float("nan")
    save_model(tmp_path / "nan", m, {"model": "mean-scale", "kind": "codec",
                                     "config": m.config_dict()})  # fmt: skip
    with pytest.raises(ModelError, match="NaN or infinite"):
        load_codec(tmp_path / "nan")
    png = _write(tmp_path / "a.png", 16, 16)
    rc = main(["compress", "--model", str(tmp_path / "nan"), str(png), "-o", str(tmp_path / "x")])
    assert rc == 2 and "NaN" in capsys.readouterr().err
    vae, _ = load_model(vae_dir)
    with torch.no_grad():
        next(vae.parameters()).view(-1)[0] = float("inf")
    save_model(tmp_path / "vinf", vae, {"model": "vae-mlp", "kind": "vae",
                                        "config": vae.config_dict()})  # fmt: skip
    with pytest.raises(ModelError, match="NaN or infinite"):
        bc.load_lossless_model(str(tmp_path / "vinf"))
    for bad in ("three", 2.5, True, None, 0, 300):
        fam = _make_family(tmp_path / f"f{bad}")
        meta = json.loads((fam / "family.json").read_text())
        meta["qualities"][1]["quality"] = bad
        (fam / "family.json").write_text(json.dumps(meta))
        with pytest.raises(ModelError, match="quality must be"):
            load_codec(fam, 1)
    fam = _make_family(tmp_path / "fdir")
    meta = json.loads((fam / "family.json").read_text())
    meta["qualities"][0]["dir"] = "../../elsewhere"
    (fam / "family.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="inside the family"):
        load_codec(fam, 1)


def test_a_fifo_as_input_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "in.vcz"
    os.mkfifo(fifo)
    code = ("import sys; from vaecodec.cli import main; "
            "sys.exit(main(['decompress', sys.argv[1], '-o', sys.argv[2]]))")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code, str(fifo), str(tmp_path / "o.png")],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "not a regular file" in r.stderr


# -- point 8: a stream's model name resolves to the bundled zoo only --------------------------


def test_a_folder_in_the_working_directory_does_not_shadow_a_zoo_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("cb-vr10", "mnist-vae"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "family.json").write_text("junk")
        (tmp_path / name / "config.json").write_text("junk")
    img = np.kron(np.random.default_rng(0).integers(0, 256, (4, 4, 3)), np.ones((4, 4, 1)))
    Image.fromarray(img.astype(np.uint8)).save("a.png")
    assert main(["compress", "--model", "cb-vr10", "--quality", "1", "a.png", "-o", "a.vcz"]) == 0
    assert unpack(Path("a.vcz").read_bytes())[0].codec.name == "cb-vr10"
    assert main(["decompress", "a.vcz", "-o", "b.png"]) == 0
    digit = np.zeros((28, 28), np.uint8)
    digit[5:20, 13:15] = 255
    Image.fromarray(digit).save("7.png")
    assert main(["compress", "--lossless", "--model", "mnist-vae", "7.png", "-o", "s.vczl"]) == 0
    assert main(["decompress", "s.vczl", "-o", "out"]) == 0
    assert np.array_equal(np.asarray(Image.open("out/7.png")), digit)


@pytest.mark.parametrize("model", ["abs", "../mnist-vae", "/etc", "m" * 1000])
def test_a_stream_cannot_choose_a_folder_to_load(tmp_path, vae_dir, capsys, model):
    data = _stream(vae_dir, ["a.png"])
    header, lanes = fmt.unpack(data)
    header.model = vae_dir if model == "abs" else model
    f = tmp_path / "s.vczl"
    f.write_bytes(fmt.pack(header, lanes))
    assert main(["decompress", str(f), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "not a bundled model" in err and "--model" in err and len(err) < 400
    assert not (tmp_path / "o").exists()


# -- point 9: odd images given to compress ---------------------------------------------------


def _gif(path):
    frames = [Image.new("L", (16, 16), v) for v in (0, 128, 255)]
    frames[0].save(path, save_all=True, append_images=frames[1:])


_IMAGES = {
    # name: (writer, lossy outcome, lossless outcome): "ok", "note:<text>" or "refused:<text>"
    "16-bit.png": (lambda p: Image.fromarray((np.arange(256).reshape(16, 16) * 257)
                                             .astype(np.uint16)).save(p),
                   "note:16-bit grey reduced", "refused:more than 8 bits"),
    "float.tif": (lambda p: Image.fromarray(np.random.rand(16, 16).astype(np.float32)).save(p),
                  "refused:floating-point", "refused:floating-point"),
    "int32.tif": (lambda p: Image.fromarray(np.full((16, 16), 70000, np.int32)).save(p),
                  "refused:outside 0..65535", "refused:outside 0..65535"),
    "palette.png": (lambda p: Image.new("L", (16, 16), 255).convert("P").save(p), "ok", "ok"),
    "cmyk.jpg": (lambda p: Image.new("CMYK", (16, 16), (0, 0, 0, 0)).save(p),
                 "note:CMYK converted", "refused:a CMYK image"),
    "la-opaque.png": (lambda p: Image.new("LA", (16, 16), (0, 255)).save(p), "ok", "ok"),
    "la-clear.png": (lambda p: Image.new("LA", (16, 16), (0, 0)).save(p),
                     "refused:transparent", "refused:transparent"),
    "rgba-opaque.png": (lambda p: Image.new("RGBA", (16, 16), (0, 0, 0, 255)).save(p), "ok",
                        "ok"),
    "rgba-clear.png": (lambda p: Image.new("RGBA", (16, 16), (9, 9, 9, 3)).save(p),
                       "refused:transparent", "refused:transparent"),
    "animated.gif": (_gif, "note:only the first is coded", "refused:animation of 3 frames"),
    "truncated.png": (lambda p: p.write_bytes(_png_bytes()[:-40]),
                      "refused:cannot read image", "refused:cannot read image"),
    "bomb.png": (lambda p: Image.new("L", (50, 50)).save(p),  # MAX_IMAGE_PIXELS = 2000 below
                 "refused:decompression bomb", "refused:decompression bomb"),
}  # fmt: skip


def _png_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("name", sorted(_IMAGES))
def test_every_kind_of_image_gets_its_documented_behaviour(tmp_path, run_dir, capsys,
                                                           monkeypatch, name):  # fmt: skip
    from vaecodec.compression.lossless import read_gray_image
    from vaecodec.errors import ImageError

    write, lossy, lossless = _IMAGES[name]
    src = tmp_path / name
    write(src)
    if name.startswith("bomb"):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 2500 pixels: Pillow only warns
    out = tmp_path / "o.vcz"
    rc = main(["compress", "--model", str(run_dir), str(src), "-o", str(out)])
    err = capsys.readouterr().err
    kind, _, text = lossy.partition(":")
    if kind == "refused":
        assert rc == 2 and text in err and "Traceback" not in err and not out.exists(), err
    else:
        assert rc == 0 and out.exists(), err
        assert (kind == "note") == ("note:" in err) and text in err, err
        assert main(["decompress", "--model", str(run_dir), str(out), "-o",
                     str(tmp_path / "back.png")]) == 0  # fmt: skip
    kind, _, text = lossless.partition(":")
    if kind == "refused":
        with pytest.raises(ImageError, match=text or "."):
            read_gray_image(src)
    else:
        assert read_gray_image(src).shape == (16, 16)


# -- point 5: damage behind a valid CRC --------------------------------------------------------


@pytest.mark.parametrize("extra", [bytes(8), bytes(range(16))])
def test_data_left_after_the_last_symbol_is_refused(tmp_path, run_dir, capsys, extra):
    """A payload with words the decoder never reads (appended behind a recomputed CRC) was
    decoded as if nothing were wrong; the range decoder must end exactly at its end. (One extra
    32-bit word cannot be told from the decoder's look-ahead: two or more are refused.)"""
    png = _write(tmp_path / "a.png", 40, 40)
    vcz = tmp_path / "a.vcz"
    assert main(["compress", "--model", str(run_dir), str(png), "-o", str(vcz)]) == 0
    body = vcz.read_bytes()[:-4] + extra
    bad = tmp_path / "bad.vcz"
    bad.write_bytes(body + zlib.crc32(body).to_bytes(4, "big"))
    capsys.readouterr()
    assert (
        main(["decompress", "--model", str(run_dir), str(bad), "-o", str(tmp_path / "b.png")]) == 2
    )
    assert "data left after the last symbol" in capsys.readouterr().err
    assert not (tmp_path / "b.png").exists()


def test_outputs_are_named_for_what_they_hold_and_decompress_writes_next_to_its_input(
    tmp_path, run_dir, capsys
):
    """Issue 27 point 6: `-o k.png` got .vcz bytes and `-o x.jpg` PNG bytes, a missing folder
    was created without a word, `-o single.png` with several inputs became a folder, and
    `decompress x.vcz` without -o was refused while `compress` writes next to its input."""
    a, b = _write(tmp_path / "a.png", 16, 16), _write(tmp_path / "b.png", 16, 16, seed=1)
    m = ["--model", str(run_dir)]

    def run(*argv):
        rc = main(list(argv))
        return rc, capsys.readouterr().err

    rc, err = run("compress", *m, str(a), "-o", str(tmp_path / "k.png"))
    assert rc == 2 and "name the output k.vcz" in err and not (tmp_path / "k.png").exists()
    rc, err = run("compress", *m, str(a), "-o", str(tmp_path / "nodir" / "a.vcz"))
    assert rc == 2 and "does not exist" in err and not (tmp_path / "nodir").exists()
    rc, err = run("compress", *m, str(a), str(b), "-o", str(tmp_path / "single.vcz"))
    assert rc == 2 and "looks like a file name" in err and not (tmp_path / "single.vcz").exists()
    rc, err = run("compress", *m, str(a), str(b), "-o", str(tmp_path / "out"))
    assert rc == 0 and "creating the folder" in err
    vcz = [str(tmp_path / "out" / n) for n in ("a.vcz", "b.vcz")]

    rc, err = run("decompress", *m, vcz[0], "-o", str(tmp_path / "x.jpg"))
    assert rc == 2 and "name the output x.png" in err and not (tmp_path / "x.jpg").exists()
    rc, err = run("decompress", *m, *vcz, "-o", str(tmp_path / "single.png"))
    assert rc == 2 and not (tmp_path / "single.png").exists()
    rc, err = run("decompress", *m, vcz[0])
    assert rc == 0 and (tmp_path / "out" / "a.png").is_file()
    rc, err = run("decompress", *m, vcz[0])  # never over an existing file nobody named
    assert rc == 2 and "exists" in err
