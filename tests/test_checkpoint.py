import json

import pytest
import torch

from vaecodec.checkpoint import (
    load_train_state,
    save_model,
    save_train_state,
)
from vaecodec.errors import ModelError
from vaecodec.models import build_model
from vaecodec.zoo import load_model


def _model(d=3):
    return build_model("vae-mlp", dict(input_shape=[1, 8, 8], latent_dim=d, hidden=[16]))


def _save(tmp_path, m):
    save_model(tmp_path, m, {"model": "vae-mlp", "kind": "vae", "config": m.config_dict()})


def test_save_load_round_trip(tmp_path):
    m = _model()
    _save(tmp_path, m)
    m2, meta = load_model(tmp_path, kind="vae")
    for (k, v), (k2, v2) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert meta["kind"] == "vae"
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporaries


def test_corrupt_weights_error_names_file(tmp_path):
    _save(tmp_path, _model())
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match="model.safetensors"):
        load_model(tmp_path)


def test_corrupt_config_error_names_file(tmp_path):
    _save(tmp_path, _model())
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="config.json"):
        load_model(tmp_path)


def test_mismatched_weights_error(tmp_path):
    _save(tmp_path, _model(d=3))
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["config"]["latent_dim"] = 5
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="do not match"):
        load_model(tmp_path)


def test_wrong_kind_and_unknown_name(tmp_path):
    _save(tmp_path, _model())
    with pytest.raises(ModelError, match="needs a codec model"):
        load_model(tmp_path, kind="codec")
    with pytest.raises(ModelError, match="not a run directory"):
        load_model("no-such-model")


def test_train_state_round_trip(tmp_path):
    m = _model()
    opt = torch.optim.Adam(m.parameters())
    m(torch.rand(2, 1, 8, 8))["loss"].backward()
    opt.step()
    save_train_state(tmp_path, {"optimizer": opt.state_dict(), "epoch": 4})
    st = load_train_state(tmp_path)
    opt2 = torch.optim.Adam(m.parameters())
    opt2.load_state_dict(st["optimizer"])
    assert st["epoch"] == 4
    a, b = opt.state_dict()["state"][0], opt2.state_dict()["state"][0]
    assert torch.equal(a["exp_avg"], b["exp_avg"])
