"""The codec training-curves plot: reads metrics.jsonl (fixed and variable rate), clear errors."""

import json

import numpy as np
import pytest
from PIL import Image

from vaecodec.errors import DatasetError
from vaecodec.viz.training_plot import plot_codec_training, read_metrics


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _train(step, lr=1e-3):
    return {"split": "train", "step": step, "loss": 10 / step, "bpp": 0.5, "mse": 0.01,
            "psnr": 20.0, "lr": lr}  # fmt: skip


def test_variable_rate_log_is_drawn(tmp_path):
    levels = lambda s: [  # noqa: E731
        {"level": k, "lmbda": lm, "bpp": 0.2 * (k + 1), "psnr": 20 + k + s / 100}
        for k, lm in enumerate([0.001, 0.01, 0.1])
    ]
    recs = [_train(s, 1e-3 if s < 300 else 1e-4) for s in (100, 200, 300, 400)]
    recs += [{"split": "val", "step": s, "loss": 5 - s / 200, "bpp": 0.4, "psnr": 21.0,
              "levels": levels(s)} for s in (200, 400)]  # fmt: skip
    metrics = _write(tmp_path / "metrics.jsonl", recs[::-1])  # out of order on purpose
    train, val = read_metrics(metrics)
    assert [r["step"] for r in train] == [100, 200, 300, 400] and [r["step"] for r in val] == [
        200,
        400,
    ]
    out = plot_codec_training(metrics, tmp_path / "sub" / "training.png")
    img = np.asarray(Image.open(out).convert("L"))
    assert img.shape[1] > 2 * img.shape[0] and img.std() > 10  # three panels, not blank


def test_fixed_rate_log_and_errors(tmp_path):
    recs = [_train(10), {"split": "val", "step": 10, "loss": 1.0, "bpp": 0.3, "psnr": 25.0}]
    assert plot_codec_training(_write(tmp_path / "m.jsonl", recs), tmp_path / "t.png").is_file()
    with pytest.raises(DatasetError, match="no such metrics file"):
        plot_codec_training(tmp_path / "missing.jsonl", tmp_path / "x.png")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_train(1)) + "\n{oops\n")
    with pytest.raises(DatasetError, match="line 2: not JSON"):
        read_metrics(bad)
    with pytest.raises(DatasetError, match="no training records"):
        plot_codec_training(_write(tmp_path / "v.jsonl", recs[1:]), tmp_path / "y.png")
