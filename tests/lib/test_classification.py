"""Tests for lqknn.classification: network shapes, training, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lqknn.classification import (
    CNNConfig,
    build_cnn,
    default_training_params,
    predict,
    predict_proba,
    train_classifier,
)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread: faster and steadier on a small, shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


FAST = {"epochs": 4, "batch_size": 16, "learning_rate": 5e-3, "num_threads": 1}


def _left_right(n: int, size: int = 16, seed: int = 0):
    """Easy two-class images: the left or the right half is brighter."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.random((n, 1, size, size), dtype=np.float32) * 0.5
    x[y == 0, :, :, : size // 2] += 0.5
    x[y == 1, :, :, size // 2 :] += 0.5
    return x, y


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_mnist_network_matches_the_pytorch_example_sizes():
    model = build_cnn((1, 28, 28), 10, CNNConfig(architecture="mnist"))
    # conv1 1*10*25+10, conv2 10*20*25+20, fc1 320*50+50, fc2 50*10+10
    assert _n_params(model) == 260 + 5020 + 16050 + 510
    kinds = [type(m).__name__ for m in model]
    assert kinds.count("Conv2d") == 2 and kinds.count("MaxPool2d") == 2
    assert "Dropout2d" in kinds and "Dropout" in kinds
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_mnist_network_sizes_follow_the_input_shape():
    model = build_cnn((3, 20, 24), 4, CNNConfig(architecture="mnist"))
    # 20 -> 16 -> 8 -> 4 -> 2 ; 24 -> 20 -> 10 -> 6 -> 3
    linear = [m for m in model if isinstance(m, nn.Linear)][0]
    assert linear.in_features == 20 * 2 * 3
    assert model(torch.zeros(2, 3, 20, 24)).shape == (2, 4)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 64, 64), (2, 5, 40), (1, 1, 1)])
def test_spectrogram_network_works_for_any_size(shape):
    model = build_cnn(shape, 3, CNNConfig(architecture="spectrogram"))
    model.eval()
    assert model(torch.zeros(2, *shape)).shape == (2, 3)


def test_auto_architecture_choice():
    def has_5x5(model):
        return any(isinstance(m, nn.Conv2d) and m.kernel_size == (5, 5) for m in model)

    assert has_5x5(build_cnn((1, 28, 28), 10))
    assert not has_5x5(build_cnn((1, 64, 64), 3))
    assert not has_5x5(build_cnn((1, 8, 8), 10))


def test_mnist_network_rejects_small_images():
    with pytest.raises(ValueError, match="at least 16 x 16 pixels, got 8 x 8"):
        build_cnn((1, 8, 8), 10, CNNConfig(architecture="mnist"))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"architecture": "resnet"}, ValueError, "architecture must be one of"),
        ({"hidden_units": 0}, ValueError, r"hidden_units must be in \[1, inf\]"),
        ({"dropout": 1.0}, ValueError, r"dropout must be in \[0.0, 1.0\)"),
        ({"conv_dropout": -0.1}, ValueError, r"conv_dropout must be in"),
        ({"channels": ()}, ValueError, "at least one convolution block"),
        ({"channels": (8, 0)}, ValueError, r"channels\[i\] must be in"),
        ({"batch_norm": 1}, TypeError, "batch_norm must be a bool"),
    ],
)
def test_cnn_config_bad_values(kwargs, error, match):
    with pytest.raises(error, match=match):
        CNNConfig(**kwargs)


def test_build_cnn_bad_arguments():
    with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\)"):
        build_cnn((28, 28), 10)
    with pytest.raises(ValueError, match=r"n_classes must be in \[2, inf\]"):
        build_cnn((1, 28, 28), 1)
    with pytest.raises(TypeError, match="config must be a CNNConfig"):
        build_cnn((1, 28, 28), 10, {"architecture": "mnist"})


@pytest.mark.parametrize("architecture", ["mnist", "spectrogram"])
def test_training_lowers_the_loss_and_beats_chance(architecture):
    x, y = _left_right(96)
    xt, yt = _left_right(64, seed=1)
    result = train_classifier(
        x,
        y,
        n_classes=2,
        config=CNNConfig(architecture=architecture),
        test_images=xt,
        test_labels=yt,
        progress=False,
        **FAST,
    )
    history = result.history
    assert list(history.columns) == [
        "epoch",
        "train_loss",
        "test_accuracy",
        "test_mcc",
        "seconds",
    ]
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert np.mean(result.test_predictions == yt) >= 0.9
    assert history["test_accuracy"].iloc[-1] == pytest.approx(
        np.mean(result.test_predictions == yt)
    )
    assert not result.model.training


def test_same_seed_same_predictions_and_global_rng_untouched():
    x, y = _left_right(48)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    runs = [
        train_classifier(x, y, n_classes=2, seed=7, progress=False, **FAST)
        for _ in range(2)
    ]
    after = torch.rand(1)
    assert torch.equal(before, after)
    np.testing.assert_array_equal(
        predict_proba(runs[0].model, x), predict_proba(runs[1].model, x)
    )
    np.testing.assert_array_equal(
        runs[0].history["train_loss"], runs[1].history["train_loss"]
    )
    other = train_classifier(x, y, n_classes=2, seed=8, progress=False, **FAST)
    assert not np.array_equal(
        other.history["train_loss"], runs[0].history["train_loss"]
    )


def test_unlabelled_samples_are_ignored():
    x, y = _left_right(40)
    labels = y.copy()
    labels[::3] = -1
    keep = labels >= 0
    with_unlabelled = train_classifier(
        x, labels, n_classes=2, seed=3, progress=False, **FAST
    )
    only_labelled = train_classifier(
        x[keep], y[keep], n_classes=2, seed=3, progress=False, **FAST
    )
    assert with_unlabelled.n_train == keep.sum()
    np.testing.assert_array_equal(
        with_unlabelled.history["train_loss"], only_labelled.history["train_loss"]
    )


@pytest.mark.parametrize(
    ("loss", "loss_params", "optimizer"),
    [("gce", {"q": 0.7}, "adam"), ("sce", None, "sgd"), ("ce", None, "adamax")],
)
def test_every_loss_and_optimizer_trains(loss, loss_params, optimizer):
    x, y = _left_right(20, size=8)
    result = train_classifier(
        x,
        y,
        n_classes=2,
        loss=loss,
        loss_params=loss_params,
        optimizer=optimizer,
        epochs=1,
        batch_size=8,
        progress=False,
        num_threads=1,
    )
    assert np.isfinite(result.history["train_loss"]).all()
    assert result.test_predictions is None


def test_trailing_batch_of_one_with_batch_norm_on_tiny_maps():
    # 9 samples, batch 4: the last batch of 1 joins the previous one; 8 x 8 images
    # reach 1 x 1 feature maps, where batch norm cannot train on one sample.
    x, y = _left_right(9, size=8)
    result = train_classifier(
        x, y, n_classes=2, epochs=1, batch_size=4, progress=False, num_threads=1
    )
    assert result.n_train == 9


def test_predict_and_predict_proba():
    x, y = _left_right(24)
    model = train_classifier(x, y, n_classes=2, progress=False, **FAST).model
    proba = predict_proba(model, x, batch_size=5)
    assert proba.shape == (24, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(predict(model, x, batch_size=7), proba.argmax(1))
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
    np.testing.assert_array_equal(predict(model, x), logits.argmax(1).numpy())


def test_test_labels_minus_one_are_left_out_of_the_monitoring():
    x, y = _left_right(32)
    yt = y.copy()
    yt[:16] = -1
    result = train_classifier(
        x, y, n_classes=2, test_images=x, test_labels=yt, progress=False, **FAST
    )
    assert result.test_predictions.shape == (32,)
    expected = np.mean(result.test_predictions[16:] == y[16:])
    assert result.history["test_accuracy"].iloc[-1] == pytest.approx(expected)


def test_default_training_params():
    hits = default_training_params("synthetic_hits")
    assert hits == default_training_params("hits")
    assert set(hits) == {
        "optimizer",
        "epochs",
        "batch_size",
        "learning_rate",
        "weight_decay",
    }
    paper = default_training_params("mnist", paper=True)
    assert paper["epochs"] == 100 and paper["learning_rate"] == 7e-3
    with pytest.raises(ValueError, match="dataset must be one of"):
        default_training_params("cifar")


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"labels": np.array([0, 1, 2, 1] * 5)}, ValueError, r"class id\(s\) \[2\]"),
        ({"labels": np.array([-1] * 19 + [0])}, ValueError, "at least 2 labelled"),
        ({"labels": np.zeros(5, dtype=int)}, ValueError, "aligned"),
        ({"optimizer": "rmsprop"}, ValueError, "optimizer must be one of"),
        ({"loss": "focal"}, ValueError, "loss must be one of"),
        ({"loss": "gce", "loss_params": {"q": 2}}, ValueError, "q must be in"),
        ({"epochs": 0}, ValueError, r"epochs must be in \[1, inf\]"),
        ({"batch_size": 0}, ValueError, r"batch_size must be in \[1, inf\]"),
        ({"learning_rate": 0.0}, ValueError, r"learning_rate must be in \(0.0"),
        ({"weight_decay": -1.0}, ValueError, r"weight_decay must be in \[0.0"),
        ({"n_classes": 1}, ValueError, r"n_classes must be in \[2, inf\]"),
        ({"images": np.zeros((20, 8, 8))}, ValueError, "images must be a 4-D"),
        ({"test_images": np.zeros((3, 1, 8, 8))}, ValueError, "given together"),
        (
            {"test_images": np.zeros((3, 1, 4, 4)), "test_labels": [0, 1, 0]},
            ValueError,
            "test_images have image shape",
        ),
        (
            {"test_images": np.zeros((3, 1, 8, 8)), "test_labels": [0, 1, 5]},
            ValueError,
            "test_labels contain class id 5",
        ),
        ({"num_threads": 0}, ValueError, r"num_threads must be in \[1, inf\]"),
    ],
)
def test_train_classifier_bad_input(change, error, match):
    x, y = _left_right(20, size=8)
    kwargs = {"images": x, "labels": y, "n_classes": 2, "progress": False}
    kwargs.update(change)
    images, labels = kwargs.pop("images"), kwargs.pop("labels")
    with pytest.raises(error, match=match):
        train_classifier(images, labels, **kwargs)


def test_nan_images_are_rejected():
    x, y = _left_right(20, size=8)
    x[3, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"images contains NaN .* row\(s\) 3"):
        train_classifier(x, y, n_classes=2, progress=False)
