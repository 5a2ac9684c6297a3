"""Golden files: the bytes every bundled codec writes and the pixels it decodes, pinned.

A refactoring that claims "no change in behaviour" (issue 16) must leave these identical: for
two Kodak images (one landscape, one portrait) at the lowest, a middle and the highest quality of
every bundled lossy codec, the SHA-256 of the ``.vcz`` bytes and of the decoded pixels; and for
the first 100 MNIST test digits, the bits-back streams of both bundled lossless models and their
decoded pixels. The values in ``tests/golden/golden.json`` were written by this file's
``__main__`` on the code before the redesign (commit named in the JSON), on this project's
2-core x86-64 machine with torch 2.13.0+cpu and one torch thread, as the suite runs: the
encoder's floats (and so, rarely, a rounded latent and the bytes) depend on the thread count;
the decoder's output does not.

Regenerate only when a change of format or weights is intended, and say so in the commit::

    python tests/test_golden.py            # rewrites tests/golden/golden.json

The Kodak images come from the shared data folder (``conftest.kodak_dir``: ``$VAECODEC_KODAK``,
``../shared/data/kodak`` or ``/work/shared/data/kodak``); the test is skipped, saying where it
looked, where none exists.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import kodak_dir

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "golden.json"
KODAK = kodak_dir()
IMAGES = ("kodim01.png", "kodim04.png")  # 768x512 and 512x768
CODECS = ("cb-vr10", "cb-vr8", "ms-vr8", "cb128-vr10")
LOSSLESS = ("mnist-vae", "mnist-vae-8bit")
DIGITS = 100


def _sha(data) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()


def _qualities(n_levels: int) -> tuple[int, int, int]:
    return (1, (n_levels + 1) // 2, n_levels)


def _kodak(name: str) -> np.ndarray:
    from PIL import Image

    with Image.open(KODAK / name) as im:
        return np.asarray(im.convert("RGB"))


def _digits() -> np.ndarray:
    from vaecodec.data import load_arrays

    images, _ = load_arrays("mnist", "test")
    return np.ascontiguousarray(images[:DIGITS])


def _lossless_input(model: str, digits: np.ndarray) -> np.ndarray:
    if model == "mnist-vae":  # a binary model codes 0 / 255 images
        return ((digits > 127) * 255).astype(np.uint8)
    return digits


@functools.cache
def _codec(name: str):
    import vaecodec

    return vaecodec.load_codec(name)


def lossy_case(codec: str, image: str, quality: int) -> dict:
    import vaecodec

    model = _codec(codec).set_level(quality - 1)  # as load_codec(codec, quality=quality)
    data = vaecodec.encode_image(model, _kodak(image))
    decoded = vaecodec.decode_image(data, model)
    return {"bytes": len(data), "sha256": _sha(data), "pixels_sha256": _sha(decoded.image)}


def lossless_case(model: str) -> dict:
    import vaecodec

    images = _lossless_input(model, _digits())
    data = vaecodec.compress_lossless(images, model)
    decoded = vaecodec.decompress_lossless(data)
    assert np.array_equal(decoded, images)
    return {"bytes": len(data), "sha256": _sha(data), "pixels_sha256": _sha(decoded)}


def _n_levels(codec: str) -> int:
    family = json.loads((ROOT / "src/vaecodec/zoo/weights" / codec / "family.json").read_text())
    return len(family["qualities"])


def lossy_cases() -> list[tuple[str, str, int]]:
    return [(c, im, q) for c in CODECS for im in IMAGES for q in _qualities(_n_levels(c))]


def _golden() -> dict:
    return json.loads(GOLDEN.read_text())


needs_kodak = pytest.mark.skipif(
    not KODAK.is_dir(), reason=f"the Kodak images are not at {KODAK} (shared data folder)"
)


@needs_kodak
@pytest.mark.parametrize("codec", CODECS)
def test_lossy_bytes_and_pixels_are_unchanged(codec):
    golden = _golden()["lossy"]
    for c, image, q in lossy_cases():
        if c != codec:
            continue
        key = f"{c}/{image}/q{q}"
        assert lossy_case(c, image, q) == golden[key], key


@pytest.mark.parametrize("model", LOSSLESS)
def test_lossless_stream_and_pixels_are_unchanged(model):
    assert lossless_case(model) == _golden()["lossless"][f"{model}/mnist-test-{DIGITS}"]


def main() -> int:
    import torch

    torch.set_num_threads(1)  # as the suite runs (conftest): g_a's floats, and so the bytes
    # written, depend on the thread count; decoding does not (checked when this was written)
    lossy = {}
    for c, image, q in lossy_cases():
        lossy[f"{c}/{image}/q{q}"] = lossy_case(c, image, q)
        print(c, image, q, lossy[f"{c}/{image}/q{q}"]["bytes"], flush=True)
    lossless = {f"{m}/mnist-test-{DIGITS}": lossless_case(m) for m in LOSSLESS}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({
        "written_at_commit": commit, "torch": torch.__version__,
        "lossy": lossy, "lossless": lossless,
    }, indent=1) + "\n")  # fmt: skip
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
