"""Benchmark of lossless compression: bits-back ANS with a VAE against classical lossless codecs.

What ``vaecodec bench-lossless`` runs (one run, no repeats)::

    res = bench_lossless("mnist-vae", dataset="mnist", max_images=10000)
    res["bbans"]["bits_per_dim"], res["neg_elbo"]["bits_per_dim"], res["gap_percent"]

Rates are bits per dimension (bits / (N·H·W), one dimension = one grey pixel):

- ``bbans``: the real ``VCZL`` stream of all N images (header, file names, CRCs and ANS words
  included; :func:`vaecodec.compression.lossless.encode_stream`), decoded back and compared
  pixel for pixel. Also its ANS words alone, and encode / decode throughput in images/s.
- ``neg_elbo``: the model's −ELBO on the same images (analytic KL, one posterior sample per
  image, seed 0, float64) in bits/dim: the rate bits-back coding should approach.
- classical codecs, each given the same pixels:

  * ``gzip`` / ``bz2`` / ``lzma``: the raw pixel bytes of all N images as ONE buffer, one byte per
    pixel, images one after another in row-major order (for a binary model the bytes are 0/1);
    gzip level 9, bz2 level 9, xz preset 9 | extreme. For binary data also ``*-packbits``: the
    same after ``numpy.packbits`` (8 pixels per byte).
  * ``png`` / ``webp`` / ``jpegxl``: one file per image, sizes summed. PNG via Pillow
    (``optimize=True``; a binary image is stored as a 1-bit PNG), WebP lossless via Pillow
    (``lossless=True, quality=100, method=4``; method 6 is ~20x slower for <1 % on MNIST), JPEG XL
    lossless via imagecodecs (``effort=7``, libjxl's default, bare codestream, 1 thread).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import math
import os
import platform
import time

import numpy as np
import torch

__all__ = ["bench_lossless", "classical_lossless", "format_report", "neg_elbo_nats"]


def _png(img: np.ndarray, binary: bool) -> int:
    from PIL import Image

    buf = io.BytesIO()
    im = Image.fromarray(img)
    if binary:
        im = im.convert("1")
    im.save(buf, format="PNG", optimize=True)
    return len(buf.getvalue())


def _webp(img: np.ndarray) -> int:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="WEBP", lossless=True, quality=100, method=4)
    return len(buf.getvalue())


def _jpegxl(img: np.ndarray) -> int:
    import imagecodecs

    return len(imagecodecs.jpegxl_encode(img, lossless=True, effort=7, numthreads=1))


def classical_lossless(images: np.ndarray, binary: bool) -> dict[str, dict]:
    """Sizes of classical lossless codecs on uint8 greyscale images ``[N, H, W]``.

    For a binary set, ``images`` hold 0/255 pixels (what the PNG files hold); the raw-byte
    codecs see 0/1 bytes. Returns ``{codec: {"bytes", "bits_per_dim", "how"}}``; a codec the
    installation lacks gets ``{"error": message}`` instead.
    """
    n, h, w = images.shape
    dims = n * h * w
    sym = (images != 0).astype(np.uint8) if binary else np.ascontiguousarray(images, np.uint8)
    raw = sym.tobytes()
    out: dict[str, dict] = {}

    def put(name, nbytes, how):
        out[name] = {"bytes": int(nbytes), "bits_per_dim": 8 * nbytes / dims, "how": how}

    one = "all images as one buffer, one byte per pixel" + (" (0/1)" if binary else "")
    put("gzip", len(gzip.compress(raw, compresslevel=9, mtime=0)), f"gzip -9, {one}")
    put("bz2", len(bz2.compress(raw, 9)), f"bz2 -9, {one}")
    put("lzma", len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)), f"xz -9e, {one}")
    if binary:
        packed = np.packbits(sym.reshape(-1)).tobytes()
        how = "all images as one buffer, numpy.packbits (8 pixels per byte)"
        put(
            "gzip-packbits", len(gzip.compress(packed, compresslevel=9, mtime=0)), f"gzip -9, {how}"
        )
        put("bz2-packbits", len(bz2.compress(packed, 9)), f"bz2 -9, {how}")
        put("lzma-packbits", len(lzma.compress(packed, preset=9 | lzma.PRESET_EXTREME)),
            f"xz -9e, {how}")  # fmt: skip
    per_image = {
        "png": (lambda im: _png(im, binary),
                "Pillow PNG optimize=True" + (", 1-bit" if binary else ", 8-bit grey") + ", per image"),
        "webp": (_webp, "Pillow WebP lossless=True quality=100 method=4, per image"),
        "jpegxl": (_jpegxl, "imagecodecs JPEG XL lossless effort=7, 1 thread, per image"),
    }  # fmt: skip
    for name, (fn, how) in per_image.items():
        try:
            put(name, sum(fn(im) for im in images), how)
        except Exception as e:  # a codec missing from this Pillow / imagecodecs build
            out[name] = {"error": f"{type(e).__name__}: {e}", "how": how}
    return out


@torch.no_grad()
def neg_elbo_nats(model, x: torch.Tensor, seed: int = 0, batch_size: int = 500) -> torch.Tensor:
    """−ELBO per image in nats (``[N]``, float64): analytic KL plus −log p(x|z) at one posterior
    sample z ~ q(z|x) per image (seeded), computed in float64."""
    import copy

    m = copy.deepcopy(model).double().eval()
    g = torch.Generator().manual_seed(seed)
    out = []
    if hasattr(m, "layer_slices"):  # a hierarchy: its own one-sample estimate, seeded
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            for i in range(0, x.shape[0], batch_size):
                out.append(-m(x[i : i + batch_size].double())["elbo"])
        return torch.cat(out)
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size].double()
        mu, logvar = m.encode(xb)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g, dtype=torch.float64)
        recon = -m.likelihood.log_prob(xb, m.decode(z))
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
        out.append(recon + kl)
    return torch.cat(out)


def _machine() -> str:
    """CPU model and count, e.g. ``Intel(R) Xeon(R) Processor @ 2.80GHz, 2 cpus``."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cpus"


def bench_lossless(
    model_name: str,
    dataset: str = "mnist",
    split: str = "test",
    max_images: int | None = None,
    lanes: int | None = None,
    latent_prec: int | None = None,
    classical: bool = True,
    data_root: str | None = None,
    progress=None,
) -> dict:
    """Compress a dataset split losslessly with BB-ANS and with classical codecs; one run.

    Args:
        model_name: zoo name or run directory of a VAE with a discrete likelihood.
        dataset, split, data_root: the images (binarised once with the fixed seed — the static
            evaluation set — when the model is binary).
        max_images: the first N images only.
        lanes, latent_prec: BB-ANS options (default: automatic lanes, P = 8).
        classical: also run gzip / bz2 / lzma / PNG / WebP / JPEG XL.
        progress: called with one line of text as each stage starts and ends (e.g. ``print``
            to stderr), so that a run of minutes is not silent.

    Returns:
        A JSON-serialisable dict (see the module docstring and ``docs/lossless-format.md``).

    Raises:
        VaecodecError: unknown model or dataset, model / dataset size mismatch, a failed round
            trip (FormatError).
    """
    from vaecodec.compression.lossless import decode_stream, encode_stream, load_lossless_model
    from vaecodec.data import load_dataset
    from vaecodec.errors import FormatError, VaecodecError
    from vaecodec.models.bitsback import DEFAULT_LATENT_PREC, BitsBackCodec, default_lanes

    model, meta, whash, stored = load_lossless_model(model_name)
    codec = BitsBackCodec(model, latent_prec or DEFAULT_LATENT_PREC)
    binary = codec.levels == 2
    ds = load_dataset(dataset, split, root=data_root, binarize="static" if binary else None)
    x = ds.x if max_images is None else ds.x[:max_images]
    if tuple(x.shape[1:]) != codec.input_shape:
        raise VaecodecError(
            f"{dataset} images are {tuple(x.shape[1:])}, the model {model_name} codes "
            f"{codec.input_shape}"
        )
    n = x.shape[0]
    c, h, w = codec.input_shape
    dims = n * c * h * w
    images = (x[:, 0] * 255).round().to(torch.uint8).numpy()  # binary sets: 0 / 255
    n_lanes = default_lanes(n) if lanes is None else lanes
    say = progress or (lambda line: None)

    say(f"bits-back encoding {n} images ({n_lanes} lanes) ...")
    t0 = time.perf_counter()
    # anonymous images: the stream holds no file names (compress_files stores them)
    data = encode_stream(model, images, None, stored, whash, codec=codec, lanes=n_lanes)
    t_enc = time.perf_counter() - t0
    say(f"encoded: {len(data)} bytes in {t_enc:.1f} s; decoding and checking every pixel ...")
    t0 = time.perf_counter()
    header, back = decode_stream(data, model, whash, codec=codec)
    t_dec = time.perf_counter() - t0
    say(f"decoded in {t_dec:.1f} s; computing the model's -ELBO ...")
    if not np.array_equal(back, images):
        raise FormatError("bench-lossless: the round trip was not exact")
    ans_words = sum(nw for _, nw in header.lanes)

    nelbo = neg_elbo_nats(model, x)
    elbo_bpd = float(nelbo.mean()) / (c * h * w * math.log(2))
    bb_bpd = 8 * len(data) / dims
    res = {
        "model": model_name,
        "likelihood": model.likelihood.name,
        "latent_dim": codec.latent_dim,
        "latent_layers": codec.layer_dims,
        "dataset": dataset,
        "split": split,
        "binarized": "static" if binary else None,
        "n_images": n,
        "dims_per_image": c * h * w,
        "bbans": {
            "bytes": len(data),
            "bits_per_dim": bb_bpd,
            "ans_bits_per_dim": 32 * ans_words / dims,
            "header_bytes": len(data) - 4 * ans_words,
            "lanes": len(header.lanes),
            "latent_prec": codec.latent_prec,
            "round_trip_exact": True,
            "encode_seconds": t_enc,
            "decode_seconds": t_dec,
            "encode_images_per_s": n / t_enc,
            "decode_images_per_s": n / t_dec,
        },
        "neg_elbo": {
            "nats_per_image": float(nelbo.mean()),
            "bits_per_dim": elbo_bpd,
            "estimate": ("analytic entropies + 1 sample of the hierarchy per image"
                         if codec.hierarchical else "analytic KL + 1 posterior sample per image")
            + ", seed 0, float64",
        },
        "gap_percent": 100.0 * (bb_bpd / elbo_bpd - 1.0),
        "torch_threads": torch.get_num_threads(),
        "machine": _machine(),
    }
    if classical:
        say(f"classical codecs (gzip, bz2, lzma, PNG, WebP, JPEG XL) on {n} images ...")
        t0 = time.perf_counter()
        res["classical"] = classical_lossless(images, binary)
        say(f"classical codecs done in {time.perf_counter() - t0:.1f} s")
    return res


def format_report(r: dict) -> str:
    """A human-readable table of :func:`bench_lossless`'s result."""
    b = r["bbans"]
    lines = [
        f"model {r['model']} ({r['likelihood']}, "
        f"d={'+'.join(map(str, r.get('latent_layers') or [r['latent_dim']]))}) on {r['dataset']} "
        f"{r['split']}: {r['n_images']} images x {r['dims_per_image']} dims"
        + (" (binarised once, fixed seed)" if r["binarized"] else ""),
        f"{'codec':<16} {'bits/dim':>9} {'bytes':>11}  notes",
        f"{'bb-ans (file)':<16} {b['bits_per_dim']:>9.4f} {b['bytes']:>11}  "
        f"{b['lanes']} lanes, P={b['latent_prec']}, header {b['header_bytes']} B; "
        f"gap to -ELBO {r['gap_percent']:+.2f} %",
        f"{'-ELBO (model)':<16} {r['neg_elbo']['bits_per_dim']:>9.4f} {'':>11}  "
        f"{r['neg_elbo']['nats_per_image']:.2f} nats/image",
    ]
    for name, c in r.get("classical", {}).items():
        if "error" in c:
            lines.append(f"{name:<16} {'n/a':>9} {'':>11}  {c['error']}")
        else:
            lines.append(f"{name:<16} {c['bits_per_dim']:>9.4f} {c['bytes']:>11}  {c['how']}")
    lines.append(
        f"throughput: encode {b['encode_images_per_s']:.0f} images/s ({b['encode_seconds']:.1f} s), "
        f"decode {b['decode_images_per_s']:.0f} images/s ({b['decode_seconds']:.1f} s), exact round trip"
    )
    return "\n".join(lines)
