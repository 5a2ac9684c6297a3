"""A small image classifier whose penultimate features define the digit FID / KID.

The MNIST-GAN literature measures realism with a classifier trained on MNIST itself instead of
Inception (whose weights cannot be downloaded here, and which sees 28×28 digits badly anyway).
This is that classifier::

    x [B, 1, 28, 28] -> conv3x3(32) ReLU maxpool -> conv3x3(64) ReLU maxpool
                     -> conv3x3(64) ReLU maxpool -> flatten (64·3·3) -> fc(128) ReLU = features
                     -> fc(10) = logits

about 132k parameters (≈ 265 kB as float16). ``features(x)`` returns the 128-d penultimate
activations used by :mod:`vaecodec.evaluate.fid`.

Training (:func:`train_classifier`, ``vaecodec train-classifier``): the train split of the
dataset in grey levels [0, 1], Adam with cosine decay, random shifts of up to 2 pixels; the
test split is used for reporting accuracy only. Writes ``model.safetensors``, ``config.json``
(with command, commit and test accuracy) and ``metrics.jsonl`` into the run directory, which
``python -m vaecodec.zoo.export`` copies into the zoo.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from vaecodec.models.registry import register_model


@dataclass
class ClassifierConfig:
    """Hyper-parameters of :class:`ImageClassifier` (``config`` in config.json).

    Attributes:
        input_shape: (C, H, W); H and W at least 8.
        n_classes: number of labels.
        channels: widths of the three conv stages.
        features: width of the penultimate layer (the FID / KID feature dimension).
    """

    input_shape: tuple[int, int, int] = (1, 28, 28)
    n_classes: int = 10
    channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    features: int = 128

    def __post_init__(self):
        self.input_shape = tuple(int(v) for v in self.input_shape)
        self.channels = [int(c) for c in self.channels]
        if len(self.input_shape) != 3 or min(self.input_shape[1:]) < 8:
            raise ValueError(f"input_shape must be (C, H, W) with H, W >= 8, got {self.input_shape}")
        if len(self.channels) != 3:
            raise ValueError("channels must list three widths")


@register_model("image-classifier")
class ImageClassifier(nn.Module):
    """A three-stage CNN classifier; ``features`` are its penultimate activations.

    Shapes: x ``[B, C, H, W]`` in [0, 1] -> logits ``[B, n_classes]``; features ``[B, F]``.
    """

    kind = "classifier"

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        c, h, w = config.input_shape
        layers: list[nn.Module] = []
        for width in config.channels:
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = width, h // 2, w // 2
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.fc = nn.Linear(c * h * w, config.features)
        self.out = nn.Linear(config.features, config.n_classes)

    @classmethod
    def from_config(cls, config: dict) -> ImageClassifier:
        return cls(ClassifierConfig(**config))

    def config_dict(self) -> dict:
        return asdict(self.config)

    @property
    def model_name(self) -> str:
        return "image-classifier"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations ``[B, F]`` (after the ReLU) for images ``[B, C, H, W]``."""
        return F.relu(self.fc(self.body(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``[B, n_classes]``."""
        return self.out(self.features(x))


def _shift(x: torch.Tensor, g: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero fill): ``[B, C, H, W]``."""
    if max_shift <= 0:
        return x
    p = max_shift
    padded = F.pad(x, (p, p, p, p))
    b, _, h, w = x.shape
    dy = torch.randint(0, 2 * p + 1, (b,), generator=g)
    dx = torch.randint(0, 2 * p + 1, (b,), generator=g)
    rows = (dy[:, None] + torch.arange(h)[None]).view(b, 1, h, 1).expand(b, x.shape[1], h, w + 2 * p)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None]).view(b, 1, 1, w).expand(b, x.shape[1], h, w)
    return out.gather(3, cols)


@torch.no_grad()
def accuracy(model: ImageClassifier, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    """Fraction of ``x`` classified as ``y``."""
    model.eval()
    hits = sum(int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
               for i in range(0, x.shape[0], batch))  # fmt: skip
    return hits / max(x.shape[0], 1)


def train_classifier(dataset: str = "mnist", out: str | Path = "runs/classifier", epochs: int = 4,
                     batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
                     data_root: str | None = None, max_examples: int | None = None,
                     progress: bool = True):  # fmt: skip
    """Train an :class:`ImageClassifier` on ``dataset``'s train split (grey levels in [0, 1]).

    Returns ``(model, {"test_accuracy", "train_seconds"})`` and writes ``model.safetensors``,
    ``config.json`` and ``metrics.jsonl`` into ``out``.

    Raises:
        DatasetError: unknown or missing dataset.
    """
    from tqdm.auto import tqdm

    from vaecodec.checkpoint import provenance, save_model
    from vaecodec.data import BatchIterator, load_dataset

    out = Path(out)
    train = load_dataset(dataset, "train", root=data_root)
    test = load_dataset(dataset, "test", root=data_root)
    if max_examples:
        train = train.subset(max_examples)
    n_classes = int(max(int(train.labels.max()), int(test.labels.max())) + 1)
    torch.manual_seed(seed)
    model = ImageClassifier(ClassifierConfig(input_shape=tuple(train.shape), n_classes=n_classes))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    batches = BatchIterator(train, batch_size, shuffle=True, seed=seed)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * len(batches)),
                                                       eta_min=lr * 0.05)  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").write_text("")
    train_cfg = {"dataset": dataset, "data_root": data_root, "binarize": "none", "epochs": epochs,
                 "batch_size": batch_size, "lr": lr, "lr_min_factor": 0.05, "seed": seed,
                 "augment": "random shifts of up to 2 pixels", "max_examples": max_examples}  # fmt: skip
    meta = {"model": "image-classifier", "kind": "classifier", "config": model.config_dict(),
            "dataset": dataset, "train": train_cfg, **provenance()}  # fmt: skip
    total = 0.0
    for epoch in range(epochs):
        t0 = time.time()
        model.train()
        loss_sum = seen = 0
        for xb, yb in tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                           disable=None if progress else True):  # fmt: skip
            loss = F.cross_entropy(model(_shift(xb, g)), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * xb.shape[0]
            seen += xb.shape[0]
        dt = time.time() - t0
        total += dt
        acc = accuracy(model, test.x, test.labels)
        rec = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "test_accuracy": acc,
               "seconds": dt}  # fmt: skip
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"epoch {epoch + 1:>3}/{epochs}  train loss {rec['train_loss']:.4f}  "
              f"test accuracy {100 * acc:.2f} %  {dt:5.1f}s", flush=True)  # fmt: skip
    model.eval()
    res = {"test_accuracy": accuracy(model, test.x, test.labels), "train_seconds": total}
    save_model(out, model, {**meta, "metrics": res})
    print(f"wrote {out}/model.safetensors, config.json, metrics.jsonl")
    return model, res
