import numpy as np
import pytest
import torch

from vaecodec.cli import main
from vaecodec.errors import ModelError
from vaecodec.evaluate.fid import (
    classifier_for,
    fid_from_features,
    fid_kid,
    kid_from_features,
    load_classifier,
)
from vaecodec.models.classifier import ClassifierConfig, ImageClassifier, train_classifier


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 8))
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-8)
    # two Gaussians N(0, I) and N(m, 4I) in 8-d: FID = |m|^2 + 8 * (1 + 4 - 2 * 2) = |m|^2 + 8
    b = rng.normal(size=(200_000, 8)) * 2 + 1.0
    c = rng.normal(size=(200_000, 8))
    assert fid_from_features(c, b) == pytest.approx(8 + 8, rel=0.02)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_otherwise():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3000, 16)), rng.normal(size=(3000, 16))
    same, same_std = kid_from_features(a, b, subsets=20, subset_size=500)
    assert abs(same) < 3 * same_std + 1e-3
    shifted, _ = kid_from_features(a, b + 0.5, subsets=20, subset_size=500)
    assert shifted > 0.05 and shifted > 20 * abs(same)


def test_fid_and_kid_need_two_images():
    with pytest.raises(ValueError):
        fid_from_features(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError):
        kid_from_features(np.zeros((1, 4)), np.zeros((5, 4)))


@pytest.fixture(scope="module")
def bundled():
    try:
        return load_classifier("mnist-classifier")
    except ModelError:
        pytest.skip("mnist-classifier not bundled")


def test_bundled_classifier_separates_digits_from_noise_and_is_small(bundled):
    from vaecodec.data import load_dataset
    from vaecodec.models.classifier import accuracy
    from vaecodec.zoo import ZOO_DIR

    test = load_dataset("mnist", "test")
    x, y = test.x[:2000], test.labels[:2000]
    assert accuracy(bundled, x, y) > 0.97
    real_vs_real = fid_kid(bundled, x[:1000], x[1000:2000], kid_subsets=10, kid_subset_size=500)
    noise = torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    real_vs_noise = fid_kid(bundled, x[:1000], noise, kid_subsets=10, kid_subset_size=500)
    assert real_vs_noise["fid"] > 20 * real_vs_real["fid"]
    assert real_vs_noise["kid"] > 20 * abs(real_vs_real["kid"])
    size = (ZOO_DIR / "mnist-classifier" / "model.safetensors").stat().st_size
    assert size < 600_000
    assert (ZOO_DIR / "mnist-classifier" / "RECIPE.md").is_file()


def test_classifier_for_names_a_bundled_one_or_says_what_to_do():
    assert classifier_for("mnist") == "mnist-classifier"
    assert classifier_for("fashion-mnist") == "fashion-mnist-classifier"
    for name in ("digits",):  # none bundled for it
        with pytest.raises(ModelError, match="train-classifier"):
            classifier_for(name)


def test_train_classifier_command_learns_digits(tmp_path, capsys):
    out = tmp_path / "clf"
    rc = main(["train-classifier", "--dataset", "digits", "--epochs", "3", "--lr", "3e-3",
               "--out", str(out), "--no-progress"])  # fmt: skip
    assert rc == 0
    clf = load_classifier(str(out))
    assert isinstance(clf, ImageClassifier) and tuple(clf.config.input_shape) == (1, 8, 8)
    assert "test accuracy" in capsys.readouterr().out
    model, res = train_classifier("digits", tmp_path / "clf2", epochs=1, progress=False,
                                  max_examples=64)  # fmt: skip
    assert 0.0 <= res["test_accuracy"] <= 1.0


def test_features_refuse_other_image_shapes():
    from vaecodec.evaluate.fid import features

    clf = ImageClassifier(ClassifierConfig())
    with pytest.raises(ModelError, match="shape"):
        features(clf, torch.zeros(2, 1, 8, 8))


def test_a_classifier_is_bundled_for_both_digit_datasets():
    """`eval --fid` finds a feature network for MNIST and Fashion-MNIST models alike."""
    from vaecodec.evaluate.fid import classifier_for, load_classifier

    for dataset in ("mnist", "fashion-mnist"):
        model = load_classifier(classifier_for(dataset))
        assert tuple(model.config.input_shape) == (1, 28, 28)
