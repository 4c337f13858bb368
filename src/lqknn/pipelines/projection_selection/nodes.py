"""Nodes of ``projection_selection``: thin calls into ``lqknn.projection`` and
``lqknn.quality``. Everything is computed on the pool samples only."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lqknn import projection, quality
from lqknn.annotation import quality_key
from lqknn.neighbors import ranked_neighbors
from lqknn.pipelines.common import (
    check_pool_aligned,
    pool_labels,
    pool_mask,
    pool_rows,
)
from lqknn.tracking import as_metrics

logger = logging.getLogger(__name__)


def compute_tsne_grid(
    features: np.ndarray,
    samples: pd.DataFrame,
    params: dict[str, Any],
    quality_params: dict[str, Any],
) -> tuple[pd.DataFrame, np.ndarray]:
    """Every t-SNE configuration of the grid on the pool features:
    (table of configurations with KL and seconds, embeddings (C, N_pool, 2)).

    Checks what later nodes need (ks, kt, two labelled classes) before any t-SNE."""
    pool = pool_rows(features, samples, "features")
    n = pool.shape[0]
    for ks, kt in quality_params["ks_kt"]:
        if not (1 <= int(ks) < n and 1 <= int(kt) < n):
            raise ValueError(
                f"params:quality.ks_kt has ({ks}, {kt}); ks and kt must be in "
                f"[1, {n - 1}] for {n} pool samples."
            )
    labelled = pool_labels(samples)
    if np.unique(labelled[labelled >= 0]).size < 2:
        raise ValueError(
            "the pool has fewer than two labelled classes: the silhouette that "
            "selects the projection is undefined; label samples of two classes."
        )
    grid = projection.tsne_grid(
        pool,
        params["perplexities"],
        params["early_exaggerations"],
        params["learning_rates"],
        n_iter=params.get("n_iter", 750),
        exaggeration_iter=params.get("exaggeration_iter", 250),
        seed=params.get("seed", 0),
        n_jobs=params.get("n_jobs", 1),
    )
    return grid.table, grid.embeddings


def compute_grid_local_quality(
    features: np.ndarray,
    samples: pd.DataFrame,
    embeddings: np.ndarray,
    params: dict[str, Any],
) -> dict[str, np.ndarray]:
    """lq of every embedding for every (ks, kt): ``{"ks10_kt10": (C, N_pool)}``.

    The high-dimensional neighbour lists are searched once and reused for every
    embedding and every (ks, kt)."""
    high = pool_rows(features, samples, "features").astype(np.float64)
    check_pool_aligned(embeddings, samples, "embeddings", axis=1)
    pairs = [tuple(int(v) for v in p) for p in params["ks_kt"]]
    n = high.shape[0]
    m = min(n, max(ks + kt for ks, kt in pairs) + 1)
    high_nb = ranked_neighbors(high, m)
    out = {quality_key(ks, kt): np.empty((len(embeddings), n)) for ks, kt in pairs}
    for c, emb in enumerate(embeddings):
        low_nb = ranked_neighbors(np.asarray(emb, dtype=np.float64), m)
        for ks, kt in pairs:
            out[quality_key(ks, kt)][c] = quality.local_quality_from_neighbors(
                high_nb, low_nb, ks, kt
            )
    return out


def select_projections(
    embeddings: np.ndarray,
    tsne_grid: pd.DataFrame,
    samples: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Silhouette of the labelled pool samples for every configuration; best and
    worst configurations for the labels at hand.

    On a fully labelled pool these use every label (a reference for the reports);
    propagation's evaluation mode selects again in every repetition with that
    repetition's labelled subset only (METHOD.md section 2), so no hidden label
    reaches a decision."""
    metric = params.get("silhouette_metric", "sqeuclidean")
    check_pool_aligned(embeddings, samples, "embeddings", axis=1)
    labels = pool_labels(samples)
    scores = projection.silhouette_scores(embeddings, labels, metric)
    table = tsne_grid.copy()
    table["silhouette"] = scores
    best, worst = projection.select_projection(scores)
    selected = {
        "best": int(best),
        "worst": int(worst),
        "best_silhouette": float(scores[best]),
        "worst_silhouette": float(scores[worst]),
        "best_config": _config(table, best),
        "worst_config": _config(table, worst),
        "silhouette_metric": metric,
        "n_labelled": int((labels >= 0).sum()),
    }
    logger.info(
        "projection: best configuration %s (silhouette %.3f), worst %s (%.3f), "
        "on the %d labelled pool samples",
        selected["best_config"],
        scores[best],
        selected["worst_config"],
        scores[worst],
        selected["n_labelled"],
    )
    return table, selected


def _config(table: pd.DataFrame, index: int) -> dict[str, float]:
    row = table.iloc[index]
    return {
        k: float(row[k])
        for k in ("perplexity", "early_exaggeration", "learning_rate")
        if k in row and np.isscalar(row[k]) and not isinstance(row[k], str)
    }


def assess_projection_quality(
    features: np.ndarray,
    samples: pd.DataFrame,
    embeddings: np.ndarray,
    selected: dict[str, Any],
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, dict]]:
    """Global quality Q(ks, kt), trustworthiness and continuity of the best and
    worst projections (for reports; decisions never use them)."""
    high = pool_rows(features, samples, "features").astype(np.float64)
    ks, kt = (int(v) for v in params["ks_kt"][0])
    k = int(params.get("trustworthiness_k", 10))
    out: dict[str, Any] = {"ks": ks, "kt": kt, "trustworthiness_k": k}
    for which in ("best", "worst"):
        low = np.asarray(embeddings[selected[which]], dtype=np.float64)
        out[f"{which}_global_quality"] = float(
            quality.global_quality(high, low, ks, kt)
        )
        if params.get("trustworthiness", True):
            t, c = quality.trustworthiness_continuity(high, low, k)
            out[f"{which}_trustworthiness"] = float(t)
            out[f"{which}_continuity"] = float(c)
        out[f"{which}_silhouette"] = selected[f"{which}_silhouette"]
    metrics = {k_: v for k_, v in out.items() if k_.startswith(("best_", "worst_"))}
    return out, as_metrics(metrics)


def plot_selected_projections(
    embeddings: np.ndarray,
    grid_local_quality: dict[str, np.ndarray],
    samples: pd.DataFrame,
    classes: list[str],
    selected: dict[str, Any],
    params: dict[str, Any],
) -> tuple[Figure, Figure, Figure]:
    """Best and worst projections coloured by class (unlabelled in grey, one
    marker per subject), and the best projection coloured by local quality."""
    pool = samples[pool_mask(samples)]
    labels = pool["label"].to_numpy()
    # One marker per subject where markers stay distinguishable (<= 12 subjects).
    n_subjects = pool["subject_id"].nunique()
    subjects = pool["subject_id"].to_numpy() if 1 < n_subjects <= 12 else None
    figs = []
    for which in ("best", "worst"):
        idx = selected[which]
        figs.append(
            projection.plot_projection(
                embeddings[idx],
                labels,
                classes,
                title=f"{which} projection: config {idx}, "
                f"silhouette {selected[f'{which}_silhouette']:.3f}",
                subjects=subjects,
            )
        )
    ks, kt = (int(v) for v in params["ks_kt"][0])
    lq = grid_local_quality[quality_key(ks, kt)][selected["best"]]
    figs.append(
        projection.plot_local_quality(
            embeddings[selected["best"]],
            lq,
            title=f"local quality (ks={ks}, kt={kt}) of the best projection",
        )
    )
    return tuple(figs)


def plot_grid_scores(projection_scores: pd.DataFrame) -> Figure:
    """Silhouette of every configuration of the grid."""
    return projection.plot_grid_scores(projection_scores)
