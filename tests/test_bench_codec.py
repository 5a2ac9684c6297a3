"""``bench-codec`` CLI, RD sweeps and plots on tiny images (vaecodec.cli.bench_codec, evaluate.rd)."""

import argparse
import csv
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from vaecodec.cli.bench_codec import main, register_bench_codec
from vaecodec.errors import FormatError, VaecodecError
from vaecodec.evaluate import classical
from vaecodec.evaluate.rd import (
    CodecAdaptor,
    LearnedCodecAdaptor,
    bd_rate_table,
    curves,
    evaluate_classical,
    evaluate_learned,
    load_images,
    summarize,
)
from vaecodec.viz.rd_plot import plot_rd

JPEG_Q = (10, 30, 60, 90)


def _write_images(folder, sizes=((40, 56), (48, 48))):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        yy, xx = np.mgrid[0:h, 0:w]
        a = np.stack([xx * 4, yy * 5, 100 + 50 * np.cos(xx / 4.0)], axis=-1)
        a = np.clip(a + rng.integers(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _run(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register_bench_codec(sub)
    args = parser.parse_args(["bench-codec", *argv])
    return args.func(args)


class FakeLearned:
    """A 'learned' codec that is JPEG in disguise: a one-byte quality header + JPEG bytes."""

    name = "ours"
    qualities = JPEG_Q
    learned = True

    def encode(self, rgb, quality):
        return bytes([quality]) + classical.encode("jpeg", rgb, quality)

    def decode(self, data):
        return classical.decode("jpeg", data[1:])


def test_cli_classical_only_writes_all_outputs(tmp_path, capsys):
    data = _write_images(tmp_path / "imgs")
    out = tmp_path / "out"
    rc = _run(["--data", str(data), "--out", str(out), "--codecs", "jpeg,webp"])
    assert rc == 0
    for f in ("bench.csv", "bench.json", "bench_bdrate.md", "bench_rd.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert (out / "bench_rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(io.StringIO((out / "bench.csv").read_text())))
    n_settings = len(classical.DEFAULT_SETTINGS["jpeg"]) + len(classical.DEFAULT_SETTINGS["webp"])
    assert len(rows) == 2 * n_settings
    assert {r["image"] for r in rows} == {"img0.png", "img1.png"}
    for r in rows:  # bpp is computed from the bytes actually written
        h, w = int(r["height"]), int(r["width"])
        assert float(r["bpp"]) == pytest.approx(8 * int(r["bytes"]) / (h * w), rel=1e-5)
    summary = json.loads((out / "bench.json").read_text(), parse_constant=pytest.fail)
    assert summary["n_images"] == 2 and set(summary["codecs"]) == {"jpeg", "webp"}
    pts = summary["codecs"]["jpeg"]["points"]
    assert len(pts) == len(classical.DEFAULT_SETTINGS["jpeg"])
    assert all(p["ms_ssim"] is None for p in pts)  # images below 161 px: no MS-SSIM
    assert summary["bd_rate_ms_ssim"] is None
    assert summary["codecs"]["jpeg"]["options"]["subsampling"] == "4:2:0"
    assert isinstance(summary["bd_rate_psnr"]["webp"]["jpeg"], float)
    assert summary["bd_rate_psnr"]["jpeg"]["jpeg"] == pytest.approx(0.0, abs=1e-9)
    md = (out / "bench_bdrate.md").read_text()
    assert "| webp |" in md and "vs jpeg" in md
    printed = capsys.readouterr().out
    assert "BD-rate" in printed and "total" in printed


def test_cli_says_when_no_learned_codec_is_available(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(  # a zoo without codec families
        "vaecodec.zoo.codecs.codec_summary", lambda: {"default_codec": None, "codecs": {}}
    )
    data = _write_images(tmp_path / "imgs", sizes=((32, 32),))
    rc = _run(
        ["--data", str(data), "--out", str(tmp_path / "o"), "--codecs", "jpeg,ours"]
        + ["--setting", "jpeg=20,50,80", "--name", "x"]
    )
    assert rc == 0
    assert "classical codecs only" in capsys.readouterr().out
    summary = json.loads((tmp_path / "o" / "x.json").read_text())
    assert list(summary["codecs"]) == ["jpeg"] and summary["learned_codec"] is None
    assert [p["setting"] for p in summary["codecs"]["jpeg"]["points"]] == [20, 50, 80]


def test_learned_adaptor_needs_qualities(monkeypatch):
    monkeypatch.setattr(
        "vaecodec.zoo.codecs.codec_summary", lambda: {"default_codec": None, "codecs": {}}
    )
    from vaecodec.errors import ModelError

    with pytest.raises(ModelError, match="qualities"):
        LearnedCodecAdaptor("somewhere/run")
    assert LearnedCodecAdaptor("somewhere/run", qualities=[3]).qualities == (3,)


def test_evaluate_learned_with_fake_adaptor_and_plot(tmp_path):
    images = load_images(_write_images(tmp_path / "imgs", sizes=((168, 176), (40, 40))))
    assert [n for n, _ in images] == ["img0.png", "img1.png"]
    assert isinstance(FakeLearned(), CodecAdaptor)
    recs = evaluate_learned(images, FakeLearned())
    recs += evaluate_classical(images, ["jpeg"], settings={"jpeg": JPEG_Q})
    assert len(recs) == 2 * 2 * len(JPEG_Q)
    big = [r for r in recs if r["image"] == "img0.png"]
    assert all(0.0 < r["ms_ssim"] <= 1.0 for r in big)  # 168x176: MS-SSIM defined
    rows = summarize(recs)
    assert [r["codec"] for r in rows][:1] == ["ours"] and all(r["n_images"] == 2 for r in rows)
    cv = curves(rows)
    assert cv["jpeg"]["bpp"] == sorted(cv["jpeg"]["bpp"])
    table = bd_rate_table(cv, anchors=["jpeg"])
    assert 0.0 < table["ours"]["jpeg"] < 2.0
    png = plot_rd(cv, tmp_path / "plots" / "rd.png", references={"paper": cv["jpeg"]})
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_errors_exit_with_status_2(tmp_path, capsys):
    data = _write_images(tmp_path / "imgs", sizes=((16, 16),))
    assert main(["--data", str(data), "--out", str(tmp_path), "--codecs", "jpeg,bpg"]) == 2
    assert "unknown codec" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "no image folder" in capsys.readouterr().err
    assert main(["--data", str(data), "--out", str(tmp_path), "--setting", "jpeg=a,b"]) == 2


def test_learned_adaptor_with_a_real_untrained_codec_model(tmp_path):
    """Integration with vaecodec.zoo.codecs / models.codecs: real .vcz bytes from a tiny model,
    the same bytes ``vaecodec compress`` writes."""
    from vaecodec.checkpoint import save_model
    from vaecodec.compression.lossy import encode_image
    from vaecodec.models.registry import build_model
    from vaecodec.zoo.codecs import load_codec

    model = build_model("hyperprior", {"N": 8, "M": 12})
    save_model(
        tmp_path / "run",
        model,
        {"model": "hyperprior", "kind": "codec", "config": {"N": 8, "M": 12}},
    )
    adaptor = LearnedCodecAdaptor(str(tmp_path / "run"))
    assert adaptor.qualities == (1,)
    img = (np.random.default_rng(0).random((40, 70, 3)) * 255).astype(np.uint8)
    (rec,) = evaluate_learned([("r.png", img)], adaptor)
    data = adaptor.encode(img, 1)
    assert data[:4] == b"VCZ1" and rec["bytes"] == len(data)
    assert data == encode_image(load_codec(str(tmp_path / "run")), img)
    assert adaptor.decode(data).shape == img.shape


def test_anchors_reuse_an_earlier_runs_classical_results(tmp_path, capsys):
    data = _write_images(tmp_path / "imgs")
    first = tmp_path / "first"
    assert _run(["--data", str(data), "--out", str(first), "--codecs", "jpeg"]) == 0
    out = tmp_path / "second"
    argv = ["--data", str(data), "--out", str(out), "--codecs", "jpeg,webp"]
    assert _run([*argv, "--anchors", str(first / "bench.csv")]) == 0
    old = json.loads((first / "bench.json").read_text())
    new = json.loads((out / "bench.json").read_text())
    assert new["codecs"]["jpeg"]["reused_from"] == str(first / "bench.csv")
    assert "reused_from" not in new["codecs"]["webp"]
    for a, b in zip(new["codecs"]["jpeg"]["points"], old["codecs"]["jpeg"]["points"], strict=True):
        for k in ("bytes", "bpp", "psnr", "enc_s", "dec_s"):  # the CSV keeps 6 digits;
            assert a[k] == pytest.approx(b[k], rel=1e-5), k  # same times: not re-coded
    assert isinstance(new["bd_rate_psnr"]["webp"]["jpeg"], float)
    # other images than the anchors cover: refused
    other = _write_images(tmp_path / "other", sizes=((40, 56),))
    argv = ["--data", str(other), "--out", str(out), "--codecs", "jpeg"]
    with pytest.raises(VaecodecError, match="other images"):
        _run([*argv, "--anchors", str(first / "bench.csv")])
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(FormatError, match="not a bench-codec CSV"):
        _run([*argv, "--anchors", str(bad)])


def test_baseline_is_a_second_learned_codec_and_an_anchor(tmp_path, capsys):
    from vaecodec.checkpoint import save_model
    from vaecodec.models.registry import build_model

    torch.manual_seed(0)
    for name in ("new", "old"):
        model = build_model("factorized", {"N": 8, "M": 12})
        save_model(tmp_path / name, model,
                   {"model": "factorized", "kind": "codec", "config": {"N": 8, "M": 12}})  # fmt: skip
    data = _write_images(tmp_path / "imgs")
    argv = ["--data", str(data), "--out", str(tmp_path / "o"), "--codecs", "jpeg",
            "--setting", "jpeg=10,30,60,90", "--model", str(tmp_path / "new"),
            "--baseline", str(tmp_path / "old"), "--no-ms-ssim", "--json"]  # fmt: skip
    assert _run(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["codecs"]["old"]["learned"] is True
    assert "old" in summary["bd_rate_psnr"]["ours"]  # ours against the baseline
    assert "jpeg" in summary["bd_rate_psnr"]["old"]
    with pytest.raises(VaecodecError, match="taken by another codec"):
        _run([*argv[:-4], "--baseline", str(tmp_path / "jpeg")])


def test_effort_codes_ours_with_refined_latents_against_the_same_model(tmp_path, capsys):
    """bench-codec --effort E: ours at effort E, --baseline the same model at effort 0."""
    from vaecodec.checkpoint import save_model
    from vaecodec.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("mean-scale", {"N": 8, "M": 12, "levels": 2})
    with torch.no_grad():
        model.g_a[-1].weight.mul_(20)
    save_model(tmp_path / "run", model, {"model": "mean-scale", "kind": "codec",
                                         "config": model.config_dict(), "lmbdas": [0.001, 0.01]})
    data = _write_images(tmp_path / "imgs")
    argv = ["--data", str(data), "--out", str(tmp_path / "o"), "--codecs", "ours",
            "--model", str(tmp_path / "run"), "--baseline", str(tmp_path / "run"),
            "--effort", "1", "--no-ms-ssim", "--json"]  # fmt: skip
    assert _run(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["codecs"]["ours"]["effort"] == 1 and summary["codecs"]["run"]["effort"] == 0
    with open(tmp_path / "o" / "bench.csv") as f:
        rows = list(csv.DictReader(f))
    size = {(r["codec"], r["image"], r["setting"]): int(r["bytes"]) for r in rows}
    ours = {k[1:]: v for k, v in size.items() if k[0] == "ours"}
    assert ours and ours != {k[1:]: v for k, v in size.items() if k[0] == "run"}
