"""Nodes of ``feature_extraction``: thin calls into :mod:`lqknn.features`.

The encoder is fitted on the pool samples only (never the test split) and then
encodes every sample, so test samples get features from an encoder that never
saw them."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lqknn import features as feat
from lqknn.pipelines.common import pool_mask, pool_rows
from lqknn.tracking import as_metric_history, as_metrics

logger = logging.getLogger(__name__)


def _train_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Auto-encoder training options from ``params:features`` (architecture
    overrides go to ``AutoEncoderConfig.default_for``)."""
    keys = (
        "epochs",
        "batch_size",
        "learning_rate",
        "weight_decay",
        "optimizer",
        "validation_fraction",
        "early_stopping_patience",
    )
    return {k: params[k] for k in keys if params.get(k) is not None}


def train_feature_encoder(
    images: np.ndarray, samples: pd.DataFrame, params: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Fit the configured encoder on the pool: (persistable encoder state, history)."""
    method = params.get("method", "autoencoder")
    pool = pool_rows(images, samples, "images")
    if pool.shape[0] == 0:
        raise ValueError(
            "the pool is empty (no sample with split == 'pool'): nothing to train "
            "the feature encoder on; check the ingestion report."
        )
    kwargs = _train_kwargs(params) if method == "autoencoder" else {}
    architecture = dict(params.get("architecture") or {})
    if "latent_dim" in architecture:
        raise ValueError(
            "params:features.architecture.latent_dim is not used: the latent size is "
            "params:features.n_components."
        )
    if method == "autoencoder" and architecture:
        kwargs["config"] = feat.AutoEncoderConfig.default_for(
            tuple(pool.shape[1:]),
            latent_dim=params.get("n_components") or 32,
            **architecture,
        )
        encoder = feat.FeatureEncoder(method, seed=params.get("seed", 0), **kwargs)
    else:
        encoder = feat.FeatureEncoder(
            method,
            n_components=params.get("n_components"),
            seed=params.get("seed", 0),
            **kwargs,
        )
    encoder.fit(pool)
    history = encoder.history_
    if history is None:
        # pca / raw are not trained by epochs: an empty table that still has its
        # columns, so the CSV catalog entry can be written and read back.
        history = pd.DataFrame(
            {"epoch": pd.Series(dtype=int), "train_loss": pd.Series(dtype=float)}
        )
    return feat.encoder_to_state(encoder), history


def encode_features(
    feature_model: dict[str, Any], images: np.ndarray, params: dict[str, Any]
) -> np.ndarray:
    """Features of every sample (pool and test), shape (N, d), float32."""
    encoder = feat.encoder_from_state(feature_model)
    return encoder.transform(images, batch_size=params.get("encode_batch_size", 256))


def assess_features(
    features: np.ndarray,
    samples: pd.DataFrame,
    feature_model: dict[str, Any],
    history: pd.DataFrame,
    images: np.ndarray,
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Feature-quality diagnostics: 5-fold 5-NN accuracy on the labelled pool
    samples, final reconstruction error; loss per epoch as an MLflow history."""
    pool = pool_mask(samples)
    pool_rows(features, samples, "features")
    labels = samples["label"].to_numpy()[pool]
    summary: dict[str, Any] = {
        "method": feature_model["method"],
        "n_features": int(features.shape[1]),
        "n_fit_samples": int(pool.sum()),
    }
    if np.unique(labels[labels >= 0]).size >= 2:
        summary["knn5_accuracy"] = feat.knn_feature_accuracy(
            features[pool], labels, k=5, n_splits=5, seed=params.get("seed", 0)
        )
    encoder = feat.encoder_from_state(feature_model)
    if feature_model["method"] == "autoencoder":
        summary["reconstruction_mse"] = feat.reconstruction_mse(
            encoder.model_, np.asarray(images)[pool]
        )
        summary["epochs_run"] = len(history)
    metrics = as_metrics({k: v for k, v in summary.items() if k != "method"})
    if len(history):
        metrics.update(as_metric_history("train_loss", history["train_loss"]))
        if "val_loss" in history and history["val_loss"].notna().any():
            metrics.update(as_metric_history("val_loss", history["val_loss"]))
    logger.info("features: %s", summary)
    return summary, metrics


def plot_feature_training(
    feature_model: dict[str, Any],
    history: pd.DataFrame,
    images: np.ndarray,
    samples: pd.DataFrame,
    classes: list[str],
) -> tuple[Figure, Figure]:
    """Inputs next to reconstructions (a few per class) and the loss curves."""
    import matplotlib.pyplot as plt

    pool = pool_mask(samples)
    labels = samples["label"].to_numpy()[pool]
    if feature_model["method"] == "autoencoder":
        # Reconstruct only what is drawn: the first few samples of every class.
        shown = np.concatenate(
            [np.flatnonzero(labels == c)[:3] for c in range(len(classes))]
        )
        x = np.asarray(images)[pool][shown]
        model = feat.encoder_from_state(feature_model).model_
        recon_fig = feat.plot_reconstructions(
            x, feat.reconstruct(model, x), labels[shown], classes
        )
        loss_fig = feat.plot_loss_curves(history)
    else:
        recon_fig, ax = plt.subplots(figsize=(5, 1.5))
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            f"encoder '{feature_model['method']}': no reconstructions",
            ha="center",
            va="center",
        )
        loss_fig, ax = plt.subplots(figsize=(5, 1.5))
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            f"encoder '{feature_model['method']}' is not trained by gradient descent",
            ha="center",
            va="center",
        )
    return recon_fig, loss_fig
