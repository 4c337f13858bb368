"""Tests for lqknn.features: architecture, training, encoders, diagnostic, figures.

Oracles are independent of the code under test: hand-computed sizes, numpy SVD for
PCA, a brute-force numpy k-NN for the diagnostic, constant predictors for the loss,
and re-training for determinism and early stopping. Trainings use tiny images
(8 x 8 digits) for one or two epochs on one thread.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold

from lqknn import features as F
from lqknn.features import (
    AutoEncoderConfig,
    ConvAutoEncoder,
    FeatureEncoder,
    encode,
    extract_features,
    knn_feature_accuracy,
    load_model,
    plot_loss_curves,
    plot_reconstructions,
    reconstruct,
    reconstruction_mse,
    save_model,
    train_autoencoder,
)

FAST = {"epochs": 1, "progress": False, "num_threads": 1}


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8) in [0, 1]
    return x[:300], d.target[:300].astype(np.int64)


def _rand_images(shape, n=4, seed=0):
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


# ------------------------------------------------------------------ architecture


def test_default_for_matches_paper_and_input_sizes():
    cfg28 = AutoEncoderConfig.default_for((1, 28, 28))
    assert cfg28.channels == (16, 32, 64) and cfg28.latent_dim == 32
    # 28 -> 14 -> 7 -> 4 by ceil(s / 2), computed by hand.
    assert cfg28.spatial_sizes == ((28, 28), (14, 14), (7, 7), (4, 4))
    cfg64 = AutoEncoderConfig.default_for((1, 64, 64))
    assert cfg64.channels == (16, 32, 64, 128)
    assert cfg64.spatial_sizes[-1] == (4, 4)
    cfg8 = AutoEncoderConfig.default_for((1, 8, 8))
    assert cfg8.channels == (16, 32) and cfg8.spatial_sizes[-1] == (2, 2)
    odd = AutoEncoderConfig(input_shape=(2, 20, 37), channels=(4, 8, 8))
    assert odd.spatial_sizes == ((20, 37), (10, 19), (5, 10), (3, 5))
    assert odd.flat_dim == 8 * 3 * 5


@pytest.mark.parametrize(
    "shape", [(1, 28, 28), (1, 64, 64), (1, 8, 8), (1, 20, 37), (3, 16, 12)]
)
def test_encode_and_reconstruct_shapes(shape):
    torch.manual_seed(0)
    model = ConvAutoEncoder(AutoEncoderConfig.default_for(shape, latent_dim=7))
    x = _rand_images(shape, n=5)
    z = encode(model, x, batch_size=2)
    r = reconstruct(model, x, batch_size=3)
    assert z.shape == (5, 7) and z.dtype == np.float32
    assert r.shape == x.shape and r.dtype == np.float32
    assert np.all((r >= 0) & (r <= 1))
    # Batching does not change the result (eval mode: no batch statistics).
    np.testing.assert_allclose(encode(model, x, batch_size=256), z, atol=1e-5)
    assert encode(model, x[:0]).shape == (0, 7)


def test_config_dict_round_trip_and_unknown_keys():
    cfg = AutoEncoderConfig((3, 30, 20), channels=(8, 16), latent_dim=5, dropout=0.2)
    d = cfg.to_dict()
    assert d["input_shape"] == [3, 30, 20] and d["channels"] == [8, 16]
    assert AutoEncoderConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown AutoEncoderConfig keys"):
        AutoEncoderConfig.from_dict({**d, "width": 3})
    with pytest.raises(ValueError, match="must contain 'input_shape'"):
        AutoEncoderConfig.from_dict({"latent_dim": 3})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_shape": (1, 6, 6)}, r"at least 2\*\*3 = 8.*\(C, >=8, >=8\)"),
        ({"input_shape": (1, 28, 7)}, r"at least 2\*\*3 = 8"),
        ({"input_shape": (1, 28)}, "tuple of 3 integers"),
        ({"input_shape": (1, 28, 28), "channels": ()}, "at least one block"),
        ({"input_shape": (1, 28, 28), "latent_dim": 0}, "latent_dim"),
        ({"input_shape": (1, 28, 28), "kernel_size": 4}, "kernel_size must be odd"),
        ({"input_shape": (1, 28, 28), "dropout": 1.0}, "dropout"),
        ({"input_shape": (0, 28, 28)}, r"input_shape\[0\]"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AutoEncoderConfig(**kwargs)


def test_default_for_too_small_input():
    with pytest.raises(ValueError, match="at least 2"):
        AutoEncoderConfig.default_for((1, 1, 5))


def test_wrong_shape_or_channels_errors():
    model = ConvAutoEncoder(AutoEncoderConfig.default_for((1, 28, 28)))
    with pytest.raises(ValueError, match=r"shape \(N, 1, 28, 28\)"):
        encode(model, _rand_images((3, 28, 28)))
    with pytest.raises(ValueError, match=r"shape \(N, 1, 28, 28\)"):
        reconstruct(model, _rand_images((1, 27, 28)))
    with pytest.raises(ValueError, match="4-D"):
        encode(model, np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        encode(model, _rand_images((1, 28, 28)) * 3)
    with pytest.raises(TypeError, match="ConvAutoEncoder"):
        encode("model", _rand_images((1, 28, 28)))
    cfg = AutoEncoderConfig.default_for((1, 8, 8))
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 8, 8\)"):
        train_autoencoder(_rand_images((3, 8, 8), n=10), cfg, **FAST)


# ---------------------------------------------------------------------- training


def test_training_lowers_the_loss(digits):
    x = digits[0][:200]
    model, hist = train_autoencoder(x, learning_rate=2e-2, **(FAST | {"epochs": 2}))
    assert list(hist.columns) == ["epoch", "train_loss", "val_loss", "seconds"]
    assert hist["epoch"].tolist() == [1, 2]
    assert hist["train_loss"].iloc[1] < hist["train_loss"].iloc[0]
    assert hist["val_loss"].isna().all() and (hist["seconds"] > 0).all()
    # Independent oracles: a constant 0.5 image (what an untrained sigmoid decoder
    # outputs), and the same data measured by numpy from the reconstructions.
    mse = reconstruction_mse(model, x)
    assert mse < np.mean((x - 0.5) ** 2) * 0.6
    rec = reconstruct(model, x)
    assert mse == pytest.approx(float(np.mean((rec.astype(np.float64) - x) ** 2)))
    assert not model.training


def test_same_seed_same_features_different_seed_differs(digits):
    x, _ = digits
    x = x[:120]
    state = torch.random.get_rng_state()
    m1, h1 = train_autoencoder(x, seed=3, **FAST)
    m2, h2 = train_autoencoder(x, seed=3, **FAST)
    m3, _ = train_autoencoder(x, seed=4, **FAST)
    np.testing.assert_allclose(encode(m1, x), encode(m2, x), atol=1e-6, rtol=0)
    assert h1["train_loss"].tolist() == h2["train_loss"].tolist()
    assert np.abs(encode(m1, x) - encode(m3, x)).max() > 1e-3
    # Training leaves torch's global random state and thread settings alone.
    assert torch.equal(state, torch.random.get_rng_state())


def test_early_stopping_restores_best_epoch(digits):
    x = digits[0][:160]
    kw = {"validation_fraction": 0.25, "learning_rate": 5e-2, "seed": 1}
    kw |= {"progress": False, "num_threads": 1, "batch_size": 64}
    m, hist = train_autoencoder(x, epochs=8, early_stopping_patience=1, **kw)
    assert hist["val_loss"].notna().all()
    best = int(hist["val_loss"].idxmin())  # 0-based epoch index of the best
    # Stopped exactly `patience` epochs after the best one, or ran out of epochs.
    assert len(hist) == min(8, best + 2)
    # Oracle: a fresh training stopped at the best epoch gives the same weights.
    m_ref, _ = train_autoencoder(x, epochs=best + 1, **kw)
    np.testing.assert_allclose(encode(m, x), encode(m_ref, x), atol=1e-6, rtol=0)


def test_nan_loss_stops_with_epoch_and_advice(digits, monkeypatch):
    x, _ = digits
    with pytest.raises(ValueError, match=r"epoch 1 .*smaller learning_rate"):
        train_autoencoder(x[:64], learning_rate=1e20, **FAST)

    calls = {"n": 0}

    def fake_loss():
        def loss(pred, target):
            calls["n"] += 1
            value = torch.mean((pred - target) ** 2)
            return value * float("nan") if calls["n"] > 3 else value

        return loss

    monkeypatch.setattr(F.nn, "MSELoss", fake_loss)
    # 64 images / batch 32 = 2 batches per epoch: the 4th call is epoch 2.
    with pytest.raises(ValueError, match=r"NaN or infinite at epoch 2 \(batch 2\)"):
        train_autoencoder(x[:64], **(FAST | {"epochs": 3}))


def test_empty_pool_is_an_error_before_training(monkeypatch):
    def boom(*args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("training started")

    monkeypatch.setattr(F, "ConvAutoEncoder", boom)
    with pytest.raises(ValueError, match="empty"):
        train_autoencoder(np.zeros((0, 1, 8, 8), np.float32), **FAST)
    with pytest.raises(ValueError, match="at least 2 samples"):
        train_autoencoder(np.zeros((1, 1, 8, 8), np.float32), **FAST)
    with pytest.raises(ValueError, match="pool is empty"):
        extract_features(
            np.zeros((4, 1, 8, 8), np.float32), fit_mask=np.zeros(4, bool), **FAST
        )


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"epochs": 0}, ValueError, "epochs"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay"),
        ({"optimizer": "rmsprop"}, ValueError, "optimizer must be one of"),
        ({"validation_fraction": 1.0}, ValueError, "validation_fraction"),
        ({"early_stopping_patience": 2}, ValueError, "validation_fraction > 0"),
        ({"validation_fraction": 0.01}, ValueError, "leaves 0 validation"),
        ({"num_threads": 0}, ValueError, "num_threads"),
        ({"config": "big"}, TypeError, "AutoEncoderConfig"),
    ],
)
def test_training_argument_errors(kwargs, err, match):
    x = _rand_images((1, 8, 8), n=20)
    with pytest.raises(err, match=match):
        train_autoencoder(x, **{**FAST, **kwargs})


def test_bad_images_errors():
    x = _rand_images((1, 8, 8), n=6)
    x[2, 0, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values in row\(s\) 2"):
        train_autoencoder(x, **FAST)
    with pytest.raises(ValueError, match=r"values in \[0, 1\].*rescale"):
        train_autoencoder(_rand_images((1, 8, 8), n=6) - 0.5, **FAST)


# --------------------------------------------------------------------- persistence


def test_save_load_round_trip(digits, tmp_path):
    x, _ = digits
    model, _ = train_autoencoder(x[:64], **FAST)
    state = save_model(model, model.config)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(state))
    loaded = load_model(pickle.loads(path.read_bytes()))
    assert loaded.config == model.config and not loaded.training
    assert all(isinstance(v, np.ndarray) for v in state["state_dict"].values())
    np.testing.assert_array_equal(encode(loaded, x), encode(model, x))
    np.testing.assert_array_equal(reconstruct(loaded, x), reconstruct(model, x))


def test_save_load_errors():
    model = ConvAutoEncoder(AutoEncoderConfig.default_for((1, 8, 8)))
    other = AutoEncoderConfig.default_for((1, 8, 8), latent_dim=3)
    with pytest.raises(ValueError, match="does not match"):
        save_model(model, other)
    with pytest.raises(ValueError, match="produced by lqknn.features.save_model"):
        load_model({"weights": 1})
    state = save_model(model)
    with pytest.raises(ValueError, match="unsupported saved-model version"):
        load_model({**state, "version": 99})


# --------------------------------------------------------------- other encoders


def test_pca_matches_numpy_svd_and_uses_the_pool_only():
    rng = np.random.default_rng(0)
    x = rng.random((60, 1, 6, 5), dtype=np.float32)
    pool = np.arange(60) < 45
    feats, pca, hist = extract_features(
        x,
        "pca",
        n_components=4,
        fit_mask=pool,
        epochs=3,  # training args ignored
    )
    assert feats.shape == (60, 4) and feats.dtype == np.float32 and hist is None
    # Oracle: centre on the POOL mean, project on the pool's top right-singular
    # vectors (numpy SVD); components are defined up to sign.
    flat = x.reshape(60, -1).astype(np.float64)
    mean = flat[pool].mean(axis=0)
    _, _, vt = np.linalg.svd(flat[pool] - mean, full_matrices=False)
    expected = (flat - mean) @ vt[:4].T
    signs = np.sign(np.sum(expected * feats, axis=0))
    np.testing.assert_allclose(feats, expected * signs, atol=1e-4)
    np.testing.assert_allclose(pca.mean_, mean, atol=1e-6)


def test_raw_is_flattened_pixels_and_encoder_transforms_new_samples():
    x = _rand_images((2, 3, 4), n=7)
    feats, model, hist = extract_features(x, "raw", n_components=32)  # ignored
    assert model is None and hist is None
    np.testing.assert_array_equal(feats, x.reshape(7, 24))
    enc = FeatureEncoder("raw").fit(x[:3])
    np.testing.assert_array_equal(enc.transform(x[3:]), x[3:].reshape(4, 24))
    assert enc.n_features_out_ == 24


def test_autoencoder_encoder_trains_on_pool_and_encodes_all(digits):
    x, _ = digits
    pool = np.arange(x.shape[0]) < 200
    feats, model, hist = extract_features(
        x, "autoencoder", n_components=6, fit_mask=pool, **FAST
    )
    assert feats.shape == (300, 6) and isinstance(model, ConvAutoEncoder)
    assert isinstance(hist, pd.DataFrame) and len(hist) == 1
    np.testing.assert_array_equal(feats, encode(model, x))
    # Trained on the 200 pool images only: the same training on them alone
    # (same seed) gives the same features.
    ref, _ = train_autoencoder(
        x[pool], AutoEncoderConfig.default_for((1, 8, 8), latent_dim=6), **FAST
    )
    np.testing.assert_allclose(feats, encode(ref, x), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("umap",), {}, "method must be one of"),
        (("pca",), {"n_components": 100}, r"n_components=100 must be <="),
        (
            ("autoencoder",),
            {"n_components": 3, "config": AutoEncoderConfig((1, 8, 8), (4,), 5)},
            "disagrees with config.latent_dim",
        ),
    ],
)
def test_encoder_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        extract_features(_rand_images((1, 8, 8), n=10), *args, **kwargs)


def test_encoder_transform_errors():
    with pytest.raises(ValueError, match="not fitted"):
        FeatureEncoder("pca").transform(_rand_images((1, 8, 8)))
    enc = FeatureEncoder("pca", n_components=2).fit(_rand_images((1, 8, 8), n=10))
    with pytest.raises(ValueError, match=r"shape \(N, 1, 8, 8\)"):
        enc.transform(_rand_images((1, 8, 9)))
    with pytest.raises(ValueError, match="fit_mask must be a boolean array"):
        extract_features(_rand_images((1, 8, 8)), "raw", fit_mask=np.ones(4, int))


# ------------------------------------------------------------------- diagnostic


def _brute_knn_accuracy(x, y, k, n_splits, seed):
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    accs = []
    for tr, te in cv.split(x, y):
        d = ((x[te, None, :] - x[None, tr, :]) ** 2).sum(-1)
        nn = np.argsort(d, axis=1, kind="stable")[:, :k]
        votes = np.array([np.bincount(y[tr][row], minlength=y.max() + 1) for row in nn])
        accs.append(np.mean(votes.argmax(axis=1) == y[te]))  # ties -> smallest id
    return float(np.mean(accs))


def test_knn_accuracy_matches_brute_force_and_ignores_unlabelled():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 3))
    y = rng.integers(0, 3, size=90)
    x[:, 0] += y  # some, not perfect, separation
    expected = _brute_knn_accuracy(x, y, k=5, n_splits=5, seed=2)
    assert knn_feature_accuracy(x, y, k=5, seed=2) == pytest.approx(expected)
    x_all = np.vstack([x, rng.normal(size=(30, 3))])
    y_all = np.concatenate([y, np.full(30, -1)])
    assert knn_feature_accuracy(x_all, y_all, k=5, seed=2) == pytest.approx(expected)
    # Perfectly separated clusters -> accuracy 1.
    sep = np.repeat(np.eye(3) * 100, 10, axis=0) + rng.normal(size=(30, 3))
    assert knn_feature_accuracy(sep, np.repeat(np.arange(3), 10)) == 1.0


@pytest.mark.parametrize(
    ("labels", "kwargs", "match"),
    [
        (np.zeros(20, int), {}, "at least 2 classes"),
        (np.r_[np.zeros(10, int), np.ones(10, int)], {"n_splits": 11}, "n_splits=11"),
        (np.r_[np.zeros(10, int), np.ones(10, int)], {"k": 17}, "k=17 is larger"),
        (np.zeros(19, int), {}, "aligned"),
    ],
)
def test_knn_accuracy_errors(labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        knn_feature_accuracy(np.random.default_rng(0).random((20, 2)), labels, **kwargs)


# ---------------------------------------------------------------------- figures


def test_figures(digits):
    x, y = digits[0][:40], digits[1][:40] % 3
    y = y.copy()
    y[::2] = -1
    rec = np.clip(x + 0.1, 0, 1)
    fig = plot_reconstructions(x, rec, y, ["d0", "d1", "d2"], n_per_class=2)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * 4  # 3 classes x (2 inputs + 2 reconstructions)
    assert fig.axes[0].get_ylabel() == "d0"
    fig_u = plot_reconstructions(x[:5], rec[:5], None, n_per_class=3)
    assert len(fig_u.axes) == 6 and fig_u.axes[0].get_ylabel() == "unlabelled"
    hist = pd.DataFrame(
        {"epoch": [1, 2], "train_loss": [0.2, 0.1], "val_loss": [0.3, 0.2]}
    )
    fig_l = plot_loss_curves(hist)
    assert isinstance(fig_l, Figure) and len(fig_l.axes[0].lines) == 2
    with pytest.raises(ValueError, match="shape of images"):
        plot_reconstructions(x, rec[:5], y)
    with pytest.raises(ValueError, match="class_names has 2 entries"):
        plot_reconstructions(x, rec, y, ["a", "b"])
    with pytest.raises(ValueError, match="lacks column"):
        plot_loss_curves(hist.drop(columns="train_loss"))


@pytest.mark.parametrize("method", ["autoencoder", "pca", "raw"])
def test_encoder_state_round_trip_gives_identical_features(method):
    """encoder_to_state / encoder_from_state (what the Kedro catalog persists)
    rebuild an encoder whose features equal the original's."""
    import pickle

    from lqknn.features import FeatureEncoder, encoder_from_state, encoder_to_state

    rng = np.random.default_rng(3)
    images = rng.random((40, 1, 16, 16)).astype(np.float32)
    kwargs = {"epochs": 1, "batch_size": 16, "progress": False}
    enc = FeatureEncoder(
        method, n_components=4, seed=0, **(kwargs if method == "autoencoder" else {})
    ).fit(images)
    state = pickle.loads(pickle.dumps(encoder_to_state(enc)))
    again = encoder_from_state(state)
    np.testing.assert_array_equal(again.transform(images), enc.transform(images))
    with pytest.raises(ValueError, match="encoder_to_state"):
        encoder_from_state({"method": "nope"})


def test_default_for_takes_architecture_overrides():
    cfg = AutoEncoderConfig.default_for(
        (1, 28, 28), latent_dim=8, channels=[8, 16], kernel_size=5
    )
    assert cfg.channels == (8, 16) and cfg.kernel_size == 5 and cfg.latent_dim == 8
    assert cfg.negative_slope == 0.01  # not overridden: the default
    with pytest.raises(ValueError, match=r"unknown architecture parameter.*'chanels'"):
        AutoEncoderConfig.default_for((1, 28, 28), chanels=[8])
    with pytest.raises(ValueError, match="too small for 4 down-sampling"):
        AutoEncoderConfig.default_for((1, 8, 8), channels=[4, 4, 4, 4])
