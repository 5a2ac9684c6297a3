"""CompressAI checkpoints through ``vaecodec import-compressai``: do our files decode to what
CompressAI decodes, at the same size?

Usage (from the repository root; needs ``pip install --no-deps compressai==1.2.8``)::

    python benchmarks/compressai_interop.py [--steps 300] [--N 64 --M 96] [--max-images 24]
        [--photos ../shared/data/photos] [--data ../shared/data/kodak] [--threads 1]
        [--work /tmp/compressai-interop]

For each of ``bmshj2018-factorized``, ``bmshj2018-hyperprior`` and ``mbt2018-mean``:
trains a CompressAI model of that architecture for ``--steps`` Adam steps (lr 1e-3, gradient
norm clipped to 1 as in CompressAI's ``examples/train.py``, batch 4, 128x128 crops of the
training photos, loss rate + lmbda 255^2 MSE with lmbda 0.0067, and CompressAI's auxiliary
loss for the medians, lr 1e-3), saves its checkpoint as CompressAI's
training script does (``{"state_dict": ...}``), imports it with ``vaecodec import-compressai``
and codes every test image both ways: CompressAI's ``compress`` / ``decompress`` and our
``.vcz`` (``encode_image`` / ``decode_image``, what ``vaecodec compress`` / ``decompress``
run). Reports per architecture: PSNR between the two decodes (8-bit, min and mean over the
images), our payload and whole files against CompressAI's strings (bytes, ratio), both
decodes' PSNR against the originals, whether our decode of a file is the same with 1 and 2
threads (and whether encoding with 2 threads writes the same file: ``g_a`` runs in float, so
it may round a latent differently), the coding times, and, to show where the size difference
comes from, our payload when our coder picks CompressAI's scale level (the next larger one)
instead of the nearest (measurement only: such files are not vaecodec's). Writes ``benchmarks/results/compressai_interop.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from _common import RESULTS, ROOT, kodak_dir, lower_priority

ARCHS = ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean"]


def _psnr(a, b) -> float:
    import numpy as np

    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def train(cai, arch, n, m, photos, steps, seed=0):
    import numpy as np
    import torch

    from vaecodec.data import list_images, read_image

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cls = {"bmshj2018-factorized": cai.models.FactorizedPrior,
           "bmshj2018-hyperprior": cai.models.ScaleHyperprior,
           "mbt2018-mean": cai.models.MeanScaleHyperprior}[arch]  # fmt: skip
    net = cls(n, m)
    files = list_images(photos)
    images = [read_image(f)[0] for f in files[:: max(1, len(files) // 200)]]
    images = [a for a in images if min(a.shape[:2]) >= 128]
    main_p = [p for k, p in net.named_parameters() if not k.endswith("quantiles")]
    opt = torch.optim.Adam(main_p, 1e-3)
    aux = torch.optim.Adam([net.entropy_bottleneck.quantiles], 1e-3)
    t0 = time.time()
    for _ in range(steps):
        crops = []
        for _ in range(4):
            a = images[rng.integers(len(images))]
            i, j = rng.integers(0, a.shape[0] - 127), rng.integers(0, a.shape[1] - 127)
            crops.append(torch.from_numpy(a[i : i + 128, j : j + 128].copy()))
        x = torch.stack(crops).permute(0, 3, 1, 2).float() / 255
        out = net(x)
        bpp = sum((-torch.log2(lk)).sum() for lk in out["likelihoods"].values()) / x.numel() * 3
        loss = bpp + 0.0067 * 255**2 * torch.mean((out["x_hat"] - x) ** 2)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_p, 1.0)  # as CompressAI's examples/train.py
        opt.step()
        aux.zero_grad()
        net.aux_loss().backward()
        aux.step()
    net.update(force=True)
    med = net.entropy_bottleneck.quantiles[:, 0, 1].detach().abs()
    return net.eval(), {"train_s": round(time.time() - t0, 1), "final_loss": float(loss.detach()),
                        "median_abs_mean": float(med.mean()), "median_abs_max": float(med.max())}


@contextlib.contextmanager
def compressai_scale_levels():
    """Measurement only: while inside, our coder picks CompressAI's scale level (the smallest
    table level >= the scale) instead of the nearest in log scale; files made so are not
    vaecodec's (its decoder picks the nearest)."""
    import numpy as np

    import vaecodec.models.codecs as codecs
    from vaecodec.priors.gaussian import scale_table

    def round_up(scale_fixed, frac_bits):
        th = np.floor(np.ldexp(scale_table()[:-1], frac_bits))
        v = np.asarray(scale_fixed, dtype=np.float64)
        return np.searchsorted(th, v, side="left").astype(np.int64)

    saved = codecs.scale_indexes
    codecs.scale_indexes = round_up
    try:
        yield
    finally:
        codecs.scale_indexes = saved


def evaluate(cai_net, run_dir, images, threads):
    import numpy as np
    import torch

    from vaecodec.compression.lossy import decode_image, encode_image
    from vaecodec.zoo.codecs import load_codec

    model = load_codec(run_dir)
    rows = []
    for name, img in images:
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
        t = time.time()
        with torch.no_grad():
            c = cai_net.compress(x)
            t_cai_enc = time.time() - t
            xh = cai_net.decompress(c["strings"], c["shape"])["x_hat"]
        t_cai = time.time() - t
        theirs = (xh[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        t = time.time()
        data = encode_image(model, img)
        t_enc = time.time() - t
        ours, _ = decode_image(data, model)
        t_ours = time.time() - t
        payload = sum(len(s[0]) for s in model.compress(x)["strings"])
        with compressai_scale_levels():
            payload_up = sum(len(s[0]) for s in model.compress(x)["strings"])
        torch.set_num_threads(2)
        ours2, _ = decode_image(data, model)
        decode_2 = bool(np.array_equal(ours, ours2))
        encode_2 = encode_image(model, img) == data
        torch.set_num_threads(threads)
        rows.append({
            "image": name, "psnr_between_db": _psnr(ours, theirs),
            "cai_bytes": sum(len(s[0]) for s in c["strings"]), "our_payload_bytes": payload,
            "our_payload_bytes_compressai_levels": payload_up,
            "our_file_bytes": len(data), "cai_psnr_db": _psnr(theirs, img),
            "our_psnr_db": _psnr(ours, img), "decode_same_with_2_threads": decode_2,
            "encode_same_with_2_threads": encode_2,
            "cai_encode_s": t_cai_enc, "cai_total_s": t_cai, "our_encode_s": t_enc,
            "our_total_s": t_ours,
        })  # fmt: skip
        r = rows[-1]
        print(f"  {name}: {r['psnr_between_db']:.2f} dB between, bytes {r['our_payload_bytes']} "
              f"vs {r['cai_bytes']}, PSNR {r['our_psnr_db']:.2f} / {r['cai_psnr_db']:.2f}",
              flush=True)  # fmt: skip
    return rows


def summary(rows, pixels) -> dict:
    import numpy as np

    between = [r["psnr_between_db"] for r in rows]
    cai, pay, fil = (sum(r[k] for r in rows) for k in ("cai_bytes", "our_payload_bytes",
                                                        "our_file_bytes"))  # fmt: skip
    return {
        "images": len(rows),
        "psnr_between_min_db": min(between), "psnr_between_mean_db": float(np.mean(between)),
        "cai_bytes": cai, "our_payload_bytes": pay, "our_file_bytes": fil,
        "payload_ratio": pay / cai, "file_ratio": fil / cai,
        "payload_ratio_compressai_levels":
            sum(r["our_payload_bytes_compressai_levels"] for r in rows) / cai,
        "worst_image_payload_ratio": max(r["our_payload_bytes"] / r["cai_bytes"] for r in rows),
        "cai_bpp": 8 * cai / pixels, "our_file_bpp": 8 * fil / pixels,
        "cai_psnr_db": float(np.mean([r["cai_psnr_db"] for r in rows])),
        "our_psnr_db": float(np.mean([r["our_psnr_db"] for r in rows])),
        "decode_same_with_2_threads": all(r["decode_same_with_2_threads"] for r in rows),
        "encode_same_with_2_threads": sum(r["encode_same_with_2_threads"] for r in rows),
        "cai_s_per_image": float(np.mean([r["cai_total_s"] for r in rows])),
        "our_s_per_image": float(np.mean([r["our_total_s"] for r in rows])),
    }  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--M", type=int, default=96)
    p.add_argument("--photos", default=str(ROOT.parent / "shared" / "data" / "photos"))
    p.add_argument("--data", default=kodak_dir())
    p.add_argument("--max-images", type=int, default=24)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--archs", nargs="+", default=ARCHS)
    p.add_argument("--work", default="/tmp/compressai-interop")
    p.add_argument("--out", default=str(RESULTS / "compressai_interop.json"))
    args = p.parse_args(argv)

    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from compressai_standin import load_compressai
    from vaecodec.cli import main as vaecodec
    from vaecodec.data import list_images, read_image

    cai = load_compressai()
    if cai is None:
        print("CompressAI is not installed: pip install --no-deps compressai==1.2.8")
        return 2
    torch.set_num_threads(args.threads)
    lower_priority()
    files = list_images(args.data)[: args.max_images]
    images = [(Path(f).name, read_image(f)[0]) for f in files]
    pixels = sum(a.shape[0] * a.shape[1] for _, a in images)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = {"command": "python benchmarks/compressai_interop.py " + " ".join(argv or sys.argv[1:]),
               "N": args.N, "M": args.M, "steps": args.steps, "data": args.data,
               "threads": args.threads, "archs": {}}  # fmt: skip
    for arch in args.archs:
        print(f"{arch}: training {args.steps} steps", flush=True)
        net, info = train(cai, arch, args.N, args.M, args.photos, args.steps)
        ckpt = work / f"{arch}.pth.tar"
        torch.save({"epoch": 0, "state_dict": net.state_dict()}, ckpt)
        run = work / arch
        t = time.time()
        assert vaecodec(["import-compressai", str(ckpt), "--arch", arch, "-o", str(run),
                         "--force"]) == 0  # fmt: skip
        info["import_s"] = round(time.time() - t, 2)
        rows = evaluate(net, run, images, args.threads)
        results["archs"][arch] = {**info, **summary(rows, pixels), "per_image": rows}
        s = results["archs"][arch]
        print(f"{arch}: PSNR between decodes min {s['psnr_between_min_db']:.2f} dB, mean "
              f"{s['psnr_between_mean_db']:.2f} dB; payload {s['payload_ratio']:.4f}x, files "
              f"{s['file_ratio']:.4f}x CompressAI's ({s['cai_bpp']:.3f} bpp; payload with its scale "
              f"levels {s['payload_ratio_compressai_levels']:.4f}x); PSNR ours "
              f"{s['our_psnr_db']:.2f} dB, CompressAI {s['cai_psnr_db']:.2f} dB; with 2 threads: "
              f"same decodes {s['decode_same_with_2_threads']}, same files "
              f"{s['encode_same_with_2_threads']} of {s['images']}", flush=True)  # fmt: skip
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
