"""Nodes of ``evaluation``: figures and a markdown report that gathers every
pipeline's results (the figures are the PNGs beside it in data/08_reporting)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from lqknn import evaluation


def plot_classification(
    results: pd.DataFrame, classes: list[str]
) -> tuple[Figure, Figure]:
    """Box plots of the per-fold metric per variant and loss (MCC for LOSO,
    accuracy for hold-out; paper Figs. 8-13) and per-class accuracy."""
    metric = "mcc" if (results["protocol"] == "loso").any() else "accuracy"
    by = ("variant", "loss_name")
    return (
        evaluation.plot_metric_boxes(results, metric=metric, by=by),
        evaluation.plot_per_class_accuracy(results, classes, by=by),
    )


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    cols = [c for c in columns if c in frame]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame[cols].iterrows():
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    dataset_summary: dict[str, Any],
    feature_summary: dict[str, Any],
    projection_quality: dict[str, Any],
    propagation_summary: str,
    annotation_setting: dict[str, Any],
    classification_summary: pd.DataFrame,
    classification_results: pd.DataFrame,
    classes: list[str],
) -> str:
    """The evaluation report (markdown) of one data set."""
    protocol = ", ".join(sorted(classification_results["protocol"].unique()))
    skipped = classification_results[classification_results["status"] != "ok"]
    metric_cols = ["variant", "loss_name", "n_ok", "n_repetitions"]
    metric_cols += ["accuracy_mean", "accuracy_std", "mcc_mean", "mcc_std"]
    metric_cols += [f"acc_{c}_mean" for c in classes]
    parts = [
        "# lqknn evaluation report",
        "",
        "## Data set",
        f"{dataset_summary['n_samples']} samples ({dataset_summary['n_pool']} pool, "
        f"{dataset_summary['n_test']} test), {dataset_summary['n_subjects']} subject(s), "
        f"{dataset_summary['n_labelled']} labelled; classes: {', '.join(classes)}. "
        f"Rows skipped at ingestion: {dataset_summary['n_skipped_rows']}.",
        "",
        "![examples](example_images.png)",
        "",
        "## Features",
        ", ".join(f"{k}: {v}" for k, v in feature_summary.items()),
        "",
        "![reconstructions](reconstructions.png) ![loss](feature_loss_curves.png)",
        "",
        "## Projection",
        ", ".join(
            f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}"
            for k, v in projection_quality.items()
        ),
        "",
        "![best projection](best_projection.png) ![local quality](local_quality.png)",
        "",
        propagation_summary.replace("# Propagation", "## Propagation"),
        "![accuracy vs K](accuracy_vs_k.png) ![sorted vs unsorted](sorted_vs_unsorted.png)",
        "![best vs worst](best_vs_worst.png) ![calibration](error_calibration.png)",
        "![map](propagation_map.png)",
        "",
        "## Annotated data set",
        ", ".join(f"{k}: {v}" for k, v in annotation_setting.items()),
        "",
        f"## Classification ({protocol})",
        "Mean +- std over repetitions (folds averaged within a repetition); "
        "last-epoch test metrics.",
        "",
        _table(classification_summary, metric_cols),
        "",
        "![metric boxes](classification_boxplot.png)",
        "![per-class accuracy](per_class_accuracy.png)",
    ]
    if len(skipped):
        parts += [
            "",
            "### Skipped or excluded folds",
            _table(
                skipped, ["variant", "loss_name", "repetition", "subject_id", "status"]
            ),
        ]
    return "\n".join(parts) + "\n"
