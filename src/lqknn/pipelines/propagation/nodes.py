"""Nodes of ``propagation``: thin calls into :mod:`lqknn.annotation`,
:mod:`lqknn.propagation` and :mod:`lqknn.reporting`."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lqknn import annotation, reporting
from lqknn.data.schema import unknown_mask
from lqknn.pipelines.common import (
    check_pool_aligned,
    pool_labels,
    pool_mask,
    true_pool_labels,
)
from lqknn.projection import select_projection, silhouette_scores
from lqknn.tracking import as_metric_history, as_metrics

logger = logging.getLogger(__name__)


def resolve_mode(samples: pd.DataFrame, mode: str) -> str:
    """``evaluation`` when every usable pool sample carries a label (labels are
    then hidden and scored), ``production`` when some are unlabelled."""
    if mode not in ("auto", "evaluation", "production"):
        raise ValueError(
            f"params:propagation.mode is {mode!r}; use auto, evaluation or production."
        )
    if mode != "auto":
        return mode
    pool = samples[pool_mask(samples)]
    unlabelled = (pool["label"] < 0).to_numpy() & ~unknown_mask(pool)
    return "production" if unlabelled.any() else "evaluation"


def _study_config(params: dict[str, Any], mode: str) -> annotation.StudyConfig:
    ec = params.get("error_control") or {}
    return annotation.StudyConfig(
        labelled_fraction=params["labelled_fraction"],
        # Manual labels are fixed in production mode: repetitions would be identical.
        n_repetitions=params["n_repetitions"] if mode == "evaluation" else 1,
        seed=params.get("seed", 0),
        Ks=params["Ks"],
        taus=params["taus"],
        methods=params["methods"],
        ks_kt=params["ks_kt"],
        silhouette_metric=params.get("silhouette_metric", "sqeuclidean"),
        projections=params.get("projections", ["best", "worst"]),
        error_control=ec.get("enabled", True),
        hide_fraction=ec.get("hide_fraction", 0.2),
        n_splits=ec.get("n_splits", 10),
        variants=params.get("variants", []),
        n_jobs=params.get("n_jobs", 1),
        opf_repetitions=params.get("opf_semi_repetitions", 1),
    )


def run_propagation_study(
    embeddings: np.ndarray,
    grid_local_quality: dict[str, np.ndarray],
    samples: pd.DataFrame,
    ground_truth: pd.DataFrame,
    classes: list[str],
    params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Every method over the K / tau grids for every repetition, the error-control
    estimates and the training label sets of every variant."""
    mode = resolve_mode(samples, params.get("mode", "auto"))
    cfg = _study_config(params, mode)
    check_pool_aligned(embeddings, samples, "embeddings", axis=1)
    manual = pool_labels(samples)
    if manual.max(initial=-1) >= len(classes):
        raise ValueError(
            f"samples hold label id {manual.max()} but there are only {len(classes)} "
            f"classes {classes}."
        )
    if mode == "evaluation":
        truth, given = manual, None
    else:
        truth, given = true_pool_labels(samples, ground_truth), manual
        if not ((truth >= 0) & (manual < 0)).any():
            # No hidden ground truth (real data): "every ground-truth label" is
            # just the manual labels, i.e. no_propagation again.
            skipped = [v.name for v in cfg.variants if v.method == "manual_all"]
            if skipped:
                logger.warning(
                    "propagation: variant(s) %s (method manual_all) skipped: the pool "
                    "has no ground truth beyond its manual labels.",
                    skipped,
                )
            cfg.variants = [v for v in cfg.variants if v.method != "manual_all"]
    names = [v.name for v in cfg.variants]
    shown = params.get("map_variant")
    if shown is not None and shown not in names:
        raise ValueError(
            f"params:propagation.map_variant {shown!r} is not one of the variants "
            f"{names}; name one of them (or null for the first)."
        )
    logger.info("propagation: %s mode, %d repetition(s)", mode, cfg.n_repetitions)
    study = annotation.run_evaluation_study(
        embeddings,
        grid_local_quality,
        truth,
        cfg,
        classes,
        manual_labels=given,
        exclude=unknown_mask(samples[pool_mask(samples)]),
    )
    label_sets = {
        "mode": mode,
        "pool_sample_id": samples.loc[pool_mask(samples), "sample_id"].to_numpy(),
        "variants": [vars(v) for v in cfg.variants],
        "repetitions": study["label_sets"],
    }
    study["results"].insert(0, "mode", mode)
    return study["results"], study["selection"], study["estimates"], label_sets


def summarise_propagation(
    results: pd.DataFrame, estimates: pd.DataFrame, params: dict[str, Any]
) -> tuple[str, pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    """Table 4 layout (mean +- std, markdown and CSV), the calibration table of the
    error control, and headline metrics for MLflow."""
    summary = annotation.summarise_results(results)
    calibration = annotation.calibration_table(results, estimates)
    default = annotation.quality_key(*params["ks_kt"][0])
    metrics = {}
    best = summary[summary["projection"] == "best"]
    for _, row in best.iterrows():
        if row["quality"] not in ("-", default):
            continue
        name = _metric_name(row["method"], row["K"], row["tau"])
        metrics[f"{name}_accuracy"] = row["accuracy_mean"]
        metrics[f"{name}_labelled"] = row["labelled_mean"]
    if not calibration.empty:
        err = calibration["estimated_accuracy"] - calibration["true_accuracy"]
        metrics["error_control_mean_abs_error"] = 100 * err.abs().mean()
    out = as_metrics(metrics)
    # The same figures per repetition, as MLflow histories (step = repetition).
    rows = annotation.rows_of_quality(results[results["projection"] == "best"], default)
    keys = [c for c in ("method", "K", "tau") if c in rows]
    for key, group in rows.groupby(keys, dropna=False, sort=False):
        name = _metric_name(**dict(zip(keys, key, strict=True)))
        group = group.sort_values("repetition")
        for column, suffix in (
            ("annotation_accuracy", "accuracy"),
            ("labelled_fraction", "labelled"),
        ):
            out.update(
                as_metric_history(
                    f"{name}_{suffix}_per_repetition",
                    100 * group[column],
                    steps=group["repetition"],
                )
            )
    return _markdown(summary), summary, calibration, out


def _metric_name(method: str, K=None, tau=None) -> str:
    """``lq_knn_K10_tau0.1``, ``std_knn_K5``, ``opf_semi``: K and tau may be
    missing (NaN, None or the summary's "-")."""

    def given(v):
        return v is not None and v != "-" and not pd.isna(v)

    name = str(method) + (f"_K{int(K)}" if given(K) else "")
    return name + (f"_tau{float(tau):g}" if given(tau) else "")


def _markdown(summary: pd.DataFrame) -> str:
    lines = [
        "| projection | method | lq (ks, kt) | tau | K | annotation acc. % "
        "| labelled % | ms / sample |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def mean_std(r, name):
        # one repetition has no spread: print the value alone, not "+- 0.00"
        if r["repetitions"] < 2:
            return f"{r[f'{name}_mean']:.2f}"
        return f"{r[f'{name}_mean']:.2f} +- {r[f'{name}_std']:.2f}"

    for _, r in summary.iterrows():
        tau = r["tau"] if r["tau"] == "-" else f"{r['tau']:g}"
        lines.append(
            f"| {r['projection']} | {r['method']} | {r['quality']} | {tau} | {r['K']} | "
            f"{mean_std(r, 'accuracy')} | {mean_std(r, 'labelled')} | "
            f"{r['ms_per_sample']:.4f} |"
        )
    return (
        "# Propagation summary (mean +- std over repetitions)\n\n"
        + "\n".join(lines)
        + "\n"
    )


def build_annotated_dataset(
    embeddings: np.ndarray,
    grid_local_quality: dict[str, np.ndarray],
    samples: pd.DataFrame,
    classes: list[str],
    label_sets: dict[str, Any],
    params: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The annotated data set: LQ-KNN from the labels at hand (production: the
    manual labels; evaluation: repetition 0's labelled subset) with the (K, tau)
    that meets ``target_accuracy`` at the largest estimated coverage."""
    pool = samples[pool_mask(samples)].reset_index(drop=True)
    unknown = unknown_mask(pool)
    first = label_sets["repetitions"][0]
    manual = np.where(first["labelled_mask"], pool["label"].to_numpy(), -1)
    if label_sets["mode"] == "production":
        manual = pool["label"].to_numpy()
    ec = params.get("error_control") or {}
    metric = params.get("silhouette_metric", "sqeuclidean")
    best, _ = select_projection(silhouette_scores(embeddings, manual, metric))
    lq = grid_local_quality[annotation.quality_key(*params["ks_kt"][0])][best]
    result, setting, _ = annotation.annotate(
        embeddings[best],
        lq,
        manual,
        Ks=params["Ks"],
        taus=params["taus"],
        target_accuracy=ec.get("target_accuracy", 0.9),
        hide_fraction=ec.get("hide_fraction", 0.2),
        n_splits=ec.get("n_splits", 10),
        seed=params.get("seed", 0),
        exclude=unknown,
    )
    table = annotation.annotated_table(pool, result, manual, lq, classes, setting)
    setting = {
        k: (v.item() if isinstance(v, np.generic) else v)
        for k, v in setting.items()
        if not isinstance(v, (pd.Series, pd.DataFrame))
    }
    setting.update(
        mode=label_sets["mode"],
        projection=int(best),
        n_manual=int((manual >= 0).sum()),
        n_propagated=int((table["source"] == "propagated").sum()),
        n_unlabelled=int(((table["source"] == "unlabelled") & ~unknown).sum()),
        n_unknown=int(unknown.sum()),
    )
    logger.info(
        "annotated data set: %d manual, %d propagated (K=%s, tau=%s, estimated "
        "accuracy %.1f %%), %d left unlabelled, %d marked unknown (kept out)",
        setting["n_manual"],
        setting["n_propagated"],
        setting["K"],
        setting["tau"],
        100 * float(setting.get("accuracy", np.nan)),
        setting["n_unlabelled"],
        setting["n_unknown"],
    )
    return table, setting


def plot_propagation(
    results: pd.DataFrame,
    calibration: pd.DataFrame,
    embeddings: np.ndarray,
    choices: pd.DataFrame,
    label_sets: dict[str, Any],
    samples: pd.DataFrame,
    ground_truth: pd.DataFrame,
    classes: list[str],
    params: dict[str, Any],
) -> tuple[Figure, Figure, Figure, Figure, Figure]:
    """Fig. 4 (accuracy / labelled % vs K), Fig. 5 (sorted vs unsorted), Table 5
    (best vs worst projection), the calibration plot and the map of repetition 0."""
    plot_k = int(params.get("best_vs_worst_K", 5))
    first = label_sets["repetitions"][0]
    truth = true_pool_labels(samples, ground_truth)
    y0 = np.where(first["labelled_mask"], truth, -1)
    if label_sets["mode"] == "production":
        y0 = pool_labels(samples)
    variants = first["labels"]
    shown = params.get("map_variant") or next(iter(variants), None)  # checked upstream
    propagated = variants[shown] if shown else y0
    best = int(choices.iloc[0]["best_config"])
    return (
        reporting.plot_accuracy_vs_k(results),
        reporting.plot_sorted_vs_unsorted(results),
        reporting.plot_best_vs_worst(results, K=plot_k),
        reporting.plot_calibration(calibration),
        reporting.plot_propagation_map(
            embeddings[best],
            y0,
            propagated,
            truth,
            classes,
            title=f"repetition 0, {shown}: propagated labels and errors",
        ),
    )
