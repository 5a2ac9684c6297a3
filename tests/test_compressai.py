"""CompressAI checkpoints in and out (``vaecodec import-compressai`` / ``export-compressai``),
checked against CompressAI 1.2.8 itself.

CompressAI is a test-only dependency (``pip install --no-deps compressai==1.2.8``, as setup.sh
does); these tests are skipped, with the reason, where it is not installed. Its package
``__init__`` imports torchvision's transforms, torch_geometric's (point clouds), pandas and
einops, which its image models never use: torchvision has no CPU build here (from PyPI it pulls
a CUDA torch that replaces the CPU one), so for whichever of those four is missing, an inert
stand-in module is on the import path while CompressAI is imported (tests/compressai_standin.py,
which benchmarks/compressai_interop.py uses too). Nothing under ``src/`` imports CompressAI.

The CompressAI models are tiny (N=16, M=24) and either fresh (random weights, medians moved at
random) or briefly trained here (30 Adam steps with its auxiliary loss, so that the medians and
the densities are no longer their initial values); BENCHMARKS.md has the same comparison for
models trained a few hundred steps on photos, on Kodak.
"""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from compressai_standin import load_compressai
from vaecodec.cli import main

CAI = load_compressai()
pytestmark = pytest.mark.skipif(
    CAI is None, reason="CompressAI is not installed (pip install --no-deps compressai==1.2.8)"
)
ARCHS = ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean"]


def _cai_class(arch):
    return {"bmshj2018-factorized": CAI.models.FactorizedPrior,
            "bmshj2018-hyperprior": CAI.models.ScaleHyperprior,
            "mbt2018-mean": CAI.models.MeanScaleHyperprior}[arch]  # fmt: skip


def _image(h=128, w=192, seed=0) -> np.ndarray:
    """A smooth RGB test image with some noise, uint8 [h, w, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([128 + 70 * np.sin(xx / 11 + yy / 17), 128 + 60 * np.cos(yy / 7),
                    128 + 50 * np.sin((xx - yy) / 5)], -1)  # fmt: skip
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255


def _cai_model(arch, trained: bool, seed=0):
    """A tiny CompressAI model: fresh with random medians, or trained 30 steps."""
    torch.manual_seed(seed)
    net = _cai_class(arch)(16, 24)
    eb = net.entropy_bottleneck
    if trained:
        x = _to_tensor(_image(64, 128, seed + 1))
        main_p = [p for n, p in net.named_parameters() if not n.endswith("quantiles")]
        opt, aux_opt = torch.optim.Adam(main_p, 3e-3), torch.optim.Adam([eb.quantiles], 3e-2)
        for _ in range(30):
            out = net(x)
            rate = sum((-torch.log2(lk)).sum() for lk in out["likelihoods"].values()) / x[0, 0].numel()
            loss = rate + 0.02 * 255**2 * torch.mean((out["x_hat"] - x) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            aux_opt.zero_grad()
            net.aux_loss().backward()
            aux_opt.step()
    else:
        with torch.no_grad():
            eb.quantiles[:, 0, 1] += torch.rand(eb.channels) - 0.5
            net.g_a[-1].weight.mul_(20)  # latents of a few units, as a trained model has
    net.update(force=True)
    return net.eval()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize("trained", [False, True], ids=["random", "trained"])
@pytest.mark.parametrize("arch", ARCHS)
def test_imported_model_decodes_as_compressai_does(tmp_path, arch, trained):
    net = _cai_model(arch, trained)
    assert bool(net.entropy_bottleneck.quantiles[:, 0, 1].abs().max() > 0.05)  # medians moved
    sd = net.state_dict()
    if trained:  # the entropy bottleneck's older names, as CompressAI's zoo files have them,
        # and no coding tables (a checkpoint saved before net.update())
        sd = {k.replace("entropy_bottleneck.matrices.", "entropy_bottleneck._matrices.")
               .replace("entropy_bottleneck.biases.", "entropy_bottleneck._bias")
               .replace("entropy_bottleneck.factors.", "entropy_bottleneck._factors."): v
              for k, v in sd.items()
              if not k.endswith(("_quantized_cdf", "_offset", "_cdf_length"))}  # fmt: skip
        assert "entropy_bottleneck._bias0" in sd
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}},
               tmp_path / "ck.pth.tar")
    assert main(["import-compressai", str(tmp_path / "ck.pth.tar"), "--arch", arch,
                 "-o", str(tmp_path / "run")]) == 0  # fmt: skip
    img = _image()
    Image.fromarray(img).save(tmp_path / "a.png")
    run = str(tmp_path / "run")
    assert main(["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.vcz"),
                 "--model", run]) == 0  # fmt: skip
    assert main(["decompress", str(tmp_path / "a.vcz"), "-o", str(tmp_path / "b.png"),
                 "--model", run]) == 0  # fmt: skip
    ours = np.asarray(Image.open(tmp_path / "b.png"))
    with torch.no_grad():
        c = net.compress(_to_tensor(img))
        theirs = net.decompress(c["strings"], c["shape"])["x_hat"]
    theirs = (theirs[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    assert _psnr(ours, theirs) >= 50.0
    assert _psnr(ours, img) < 40  # a lossy model (the images are not both trivially the input)

    from vaecodec.zoo.codecs import load_codec

    ours_c = load_codec(run).compress(_to_tensor(img))
    ours_bytes = sum(len(s[0]) for s in ours_c["strings"])
    their_bytes = sum(len(s[0]) for s in c["strings"])
    assert their_bytes > 100
    # the payload (strings without the .vcz header): at most 2 % more than CompressAI's. Our
    # scale level is the nearest in log scale where CompressAI rounds up, so ours is smaller,
    # by 1-3 % here and up to 15 % for the 30-step hyperprior (~100 bytes, y nearly empty)
    assert 0.8 <= ours_bytes / their_bytes <= 1.02, (ours_bytes, their_bytes)


_DECODE = """
import sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from vaecodec.compression.lossy import decode_image
from vaecodec.zoo.codecs import load_codec
model = load_codec(sys.argv[2])
img, _ = decode_image(open(sys.argv[3], "rb").read(), model)
np.save(sys.argv[4], img)
"""


def test_imported_files_decode_the_same_with_one_and_two_threads(tmp_path):
    net = _cai_model("mbt2018-mean", trained=False, seed=3)
    torch.save(net.state_dict(), tmp_path / "ck.pth")
    run = str(tmp_path / "run")
    assert main(["import-compressai", str(tmp_path / "ck.pth"), "--arch", "mbt2018-mean",
                 "-o", run]) == 0  # fmt: skip
    Image.fromarray(_image(64, 128)).save(tmp_path / "a.png")
    assert main(["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.vcz"),
                 "--model", run]) == 0  # fmt: skip
    (tmp_path / "dec.py").write_text(_DECODE)
    outs = []
    for threads in (1, 2):  # 1: this process (the suite runs one thread), 2: a fresh one
        out = tmp_path / f"t{threads}.npy"
        argv = [str(threads), run, str(tmp_path / "a.vcz"), str(out)]
        if threads == torch.get_num_threads():
            from vaecodec.compression.lossy import decode_image
            from vaecodec.zoo.codecs import load_codec

            img, _ = decode_image((tmp_path / "a.vcz").read_bytes(), load_codec(run))
            np.save(out, img)
        else:
            subprocess.run([sys.executable, str(tmp_path / "dec.py"), *argv], check=True,
                           timeout=120)  # fmt: skip
        outs.append(np.load(out))
    assert np.array_equal(outs[0], outs[1])


@pytest.mark.parametrize("name, config, arch", [
    ("factorized", {"N": 16, "M": 24}, "bmshj2018-factorized"),
    ("hyperprior", {"N": 16, "M": 24, "levels": 3}, "bmshj2018-hyperprior"),
    ("mean-scale", {"N": 16, "M": 24, "hyper_slope": 0.01, "density_filters": [3, 3, 3, 3],
                    "fine_mean_rounding": True,
                    "density_offsets": True}, "mbt2018-mean"),
])  # fmt: skip
def test_export_loads_in_compressai_and_imports_back_to_the_same_files(tmp_path, name, config,
                                                                       arch):  # fmt: skip
    from vaecodec.checkpoint import save_model
    from vaecodec.models.registry import build_model

    torch.manual_seed(1)
    model = build_model(name, config)
    with torch.no_grad():
        model.g_a[-1].weight.mul_(20)
        if "density_offsets" in config:
            model.entropy_bottleneck.offsets.uniform_(-0.5, 0.5)
    run = tmp_path / "a" / "model"
    save_model(run, model, {"model": name, "kind": "codec", "config": model.config_dict()})
    out = tmp_path / "cai.pth.tar"
    argv = ["export-compressai", "--model", str(run), "-o", str(out)]
    if config.get("levels"):
        argv += ["--quality", "2"]
    assert main(argv) == 0
    sd = torch.load(out, weights_only=True)
    net = _cai_class(arch).from_state_dict(sd)  # CompressAI's own loader, strict
    net.load_state_dict(sd, strict=True)
    net = CAI.eval_model.load_checkpoint(arch, False, str(out))  # eval_model's, with update()
    img = _image(128, 128)
    Image.fromarray(img).save(tmp_path / "x.png")
    assert main(["compress", str(tmp_path / "x.png"), "-o", str(tmp_path / "ours.vcz"),
                 "--model", str(run), *argv[-2:] * bool(config.get("levels"))]) == 0
    assert main(["decompress", str(tmp_path / "ours.vcz"), "-o", str(tmp_path / "ours.png"),
                 "--model", str(run)]) == 0  # fmt: skip
    with torch.no_grad():
        c = net.compress(_to_tensor(img))
        theirs = net.decompress(c["strings"], c["shape"])["x_hat"]
    theirs = (theirs[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    assert _psnr(np.asarray(Image.open(tmp_path / "ours.png")), theirs) >= 50.0
    if config.get("levels"):
        return  # the gains are folded into the weights: another (fixed-rate) model
    back = tmp_path / "b" / "model"
    assert main(["import-compressai", str(out), "--arch", arch, "-o", str(back)]) == 0
    assert main(["compress", str(tmp_path / "x.png"), "-o", str(tmp_path / "back.vcz"),
                 "--model", str(back)]) == 0  # fmt: skip
    assert (tmp_path / "back.vcz").read_bytes() == (tmp_path / "ours.vcz").read_bytes()
    assert (back / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()


def test_several_checkpoints_make_a_family_with_qualities(tmp_path):
    paths = []
    for q in (1, 2):
        net = _cai_model("bmshj2018-hyperprior", trained=False, seed=q)
        if q == 2:
            with torch.no_grad():
                net.g_a[-1].weight.mul_(3)  # more bits
        paths.append(tmp_path / f"q{q}.pth")
        torch.save(net.state_dict(), paths[-1])
    fam = tmp_path / "fam"
    assert main(["import-compressai", *map(str, paths), "--arch", "bmshj2018-hyperprior",
                 "-o", str(fam), "--lmbda", "0.0018", "0.0035"]) == 0  # fmt: skip
    Image.fromarray(_image()).save(tmp_path / "a.png")
    sizes = []
    for q in (1, 2):
        vcz = tmp_path / f"a{q}.vcz"
        assert main(["compress", str(tmp_path / "a.png"), "-o", str(vcz), "--model", str(fam),
                     "--quality", str(q)]) == 0  # fmt: skip
        assert main(["decompress", str(vcz), "-o", str(tmp_path / f"a{q}.png"),
                     "--model", str(fam)]) == 0  # fmt: skip
        sizes.append(vcz.stat().st_size)
    assert sizes[0] < sizes[1]


def _bad_checkpoints(tmp_path):
    hyper = _cai_model("bmshj2018-hyperprior", trained=False).state_dict()
    cases = {}
    torch.save(hyper, tmp_path / "hyper.pth")
    cases["wrong-arch"] = (tmp_path / "hyper.pth", "bmshj2018-factorized",
                           "not a CompressAI bmshj2018-factorized state dict.*unexpected h_a")
    torch.save({k: v for k, v in hyper.items() if k != "h_s.2.weight"}, tmp_path / "miss.pth")
    cases["missing-key"] = (tmp_path / "miss.pth", "bmshj2018-hyperprior", "missing h_s.2.weight")
    torch.save({"lr": 0.1, "epochs": [1, 2]}, tmp_path / "notsd.pth")
    cases["not-a-state-dict"] = (tmp_path / "notsd.pth", "bmshj2018-hyperprior",
                                 "does not hold a state dict: entry 'lr' is a float")
    torch.save(types.SimpleNamespace(a=1), tmp_path / "object.pth")
    cases["pickled-object"] = (tmp_path / "object.pth", "bmshj2018-hyperprior",
                               r"not a checkpoint of tensors only \(torch.load\(weights_only")
    (tmp_path / "text.pth").write_text("hello\n")
    cases["not-torch"] = (tmp_path / "text.pth", "bmshj2018-hyperprior", "not a PyTorch checkpoint")
    nan = dict(hyper)
    nan["g_s.2.weight"] = nan["g_s.2.weight"].clone()
    nan["g_s.2.weight"][0, 0, 0, 0] = float("nan")
    torch.save(nan, tmp_path / "nan.pth")
    cases["nan"] = (tmp_path / "nan.pth", "bmshj2018-hyperprior", "NaN or infinite values")
    cases["refused-arch"] = (tmp_path / "hyper.pth", "mbt2018",
                             "mbt2018 cannot be represented exactly: its context model is "
                             "autoregressive")  # fmt: skip
    return cases


def test_bad_checkpoints_get_one_line_exit_2_and_nothing_written(tmp_path, capsys):
    for name, (path, arch, message) in _bad_checkpoints(tmp_path).items():
        out = tmp_path / f"out-{name}"
        capsys.readouterr()
        assert main(["import-compressai", str(path), "--arch", arch, "-o", str(out)]) == 2, name
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith("vaecodec import-compressai: error: "), err
        import re

        assert re.search(message, err), (name, err)
        assert not out.exists(), name
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_existing_output_is_kept_unless_forced_and_relu_mean_scale_is_not_exported(tmp_path,
                                                                                 capsys):  # fmt: skip
    from vaecodec.checkpoint import save_model
    from vaecodec.models.registry import build_model

    net = _cai_model("bmshj2018-factorized", trained=False)
    torch.save(net.state_dict(), tmp_path / "f.pth")
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = ["import-compressai", str(tmp_path / "f.pth"), "--arch", "bmshj2018-factorized",
            "-o", str(out)]  # fmt: skip
    assert main(argv) == 2 and "exists; pass --force" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert main([*argv, "--force"]) == 0 and not (out / "keep.txt").exists()
    ms = build_model("mean-scale", {"N": 16, "M": 24})
    save_model(tmp_path / "ms", ms, {"model": "mean-scale", "config": ms.config_dict()})
    capsys.readouterr()
    assert main(["export-compressai", "--model", str(tmp_path / "ms"), "-o",
                 str(tmp_path / "ms.pth")]) == 2  # fmt: skip
    assert "ReLU in h_a / h_s; CompressAI's mbt2018-mean has LeakyReLU" in capsys.readouterr().err
    assert not (tmp_path / "ms.pth").exists()


def test_serve_offers_an_imported_family(tmp_path):
    """``vaecodec serve --codec DIR``: the page's compare codes with the imported model."""
    import io
    import json
    import re
    import urllib.request

    pytest.importorskip("uvicorn")
    paths = []
    for q in (1, 2):
        paths.append(tmp_path / f"q{q}.pth")
        torch.save(_cai_model("bmshj2018-factorized", trained=False, seed=q).state_dict(),
                   paths[-1])  # fmt: skip
    fam = tmp_path / "fam"
    assert main(["import-compressai", *map(str, paths), "--arch", "bmshj2018-factorized",
                 "-o", str(fam)]) == 0  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "vaecodec.cli", "serve", "--port", "0",
                             "--codec", str(fam)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline()
        url = re.search(r"open (http://[\d.]+:\d+)/ ", line).group(1)

        def call(path, data=None):
            req = urllib.request.Request(url + path, data=data,
                                         method="POST" if data is not None else "GET")  # fmt: skip
            with urllib.request.urlopen(req, timeout=120) as r:
                return json.loads(r.read())

        import time

        deadline = time.time() + 60
        while True:  # the address is printed when the port is bound, before the app is ready
            try:
                info = call("/api/info")
                break
            except OSError:
                assert time.time() < deadline and proc.poll() is None, "serve did not start"
                time.sleep(0.2)
        assert info["ours"]["families"][str(fam)]["qualities"] == [1, 2]
        buf = io.BytesIO()
        Image.fromarray(_image(96, 128)).save(buf, format="PNG")
        up = call("/api/upload?name=a.png", buf.getvalue())
        r = call("/api/compare", json.dumps({
            "image": up["image"], "left": {"codec": "ours", "family": str(fam), "quality": 2},
            "right": {"codec": "ours", "family": str(fam), "quality": 1}}).encode())  # fmt: skip
        assert r["left"]["bytes"] > 0 and r["left"]["bytes"] != r["right"]["bytes"]
    finally:
        proc.terminate()
        proc.wait(10)
