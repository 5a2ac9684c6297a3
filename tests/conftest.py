import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session parses datasets into its own cache dir, never the user's."""
    cache = tmp_path_factory.getbasetemp() / "vaecodec-cache"
    monkeypatch.setenv("VAECODEC_CACHE", str(cache))
