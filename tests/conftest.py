import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)


def kodak_dir() -> Path:
    """The Kodak images (evaluation only): ``$VAECODEC_KODAK``, else the shared data folder next
    to the checkout (``../shared/data/kodak``), else this project's machines' ``/work/shared``.
    Tests that need them skip, saying where they looked, where none exists."""
    env = os.environ.get("VAECODEC_KODAK")
    if env:
        return Path(env)
    for root in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")):
        if (root / "data" / "kodak").is_dir():
            return root / "data" / "kodak"
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session parses datasets into its own cache dir, never the user's."""
    cache = tmp_path_factory.getbasetemp() / "vaecodec-cache"
    monkeypatch.setenv("VAECODEC_CACHE", str(cache))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Six small blocky RGB photos for codec training: ``val_0``, ``val_1`` (held out with
    ``val_pattern="val_*"``) and ``img_2`` ... ``img_5``."""
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(6):
        a = np.kron(rng.integers(0, 256, (12, 14, 3)), np.ones((6, 6, 1))).astype(np.uint8)
        Image.fromarray(a).save(d / (f"val_{i}.png" if i < 2 else f"img_{i}.png"))
    return d
