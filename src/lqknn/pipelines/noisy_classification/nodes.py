"""Nodes of ``noisy_classification``: thin calls into :mod:`lqknn.experiments`.

Every finished fold is logged at once as a nested MLflow run under the
``kedro run`` (from this process only), so an interrupted run leaves its finished
folds readable in ``mlflow ui``."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from lqknn import evaluation, experiments
from lqknn.data.schema import unknown_mask
from lqknn.tracking import as_metric_history, as_metrics, log_nested_runs

logger = logging.getLogger(__name__)

_FOLD_PARAMS = ("variant", "loss_name", "repetition", "protocol", "subject_id", "fold")


def resolve_protocol(samples: pd.DataFrame, protocol: str) -> str:
    """``loso`` for data sets with several subjects and no test split,
    ``holdout`` for data sets with a test split."""
    if protocol not in ("auto", "loso", "holdout"):
        raise ValueError(
            f"params:classification.protocol is {protocol!r}; use auto, loso or holdout."
        )
    if protocol != "auto":
        return protocol
    return "holdout" if (samples["split"] == "test").any() else "loso"


def train_noisy_classifiers(
    images: np.ndarray,
    samples: pd.DataFrame,
    classes: list[str],
    label_sets: dict[str, Any],
    params: dict[str, Any],
) -> pd.DataFrame:
    """One row per (variant, loss, repetition, fold) with its test metrics."""
    protocol = resolve_protocol(samples, params.get("protocol", "auto"))
    ground_truth = samples["label"].to_numpy(dtype=np.int64)
    metric_keys = ["accuracy", "mcc", "mean_class_accuracy", "n_train", "n_test"]
    metric_keys += [f"acc_{c}" for c in classes]

    def log_fold(row: dict) -> None:
        log_nested_runs(
            [row],
            param_keys=_FOLD_PARAMS + ("loss_params", "status"),
            metric_keys=metric_keys,
            run_name_keys=("variant", "loss_name", "repetition", "subject_id"),
            tags={"lqknn.level": "fold"},
        )

    reference = params.get("balance_reference_class")
    if reference is not None and reference not in classes:
        raise ValueError(
            f"params:classification.balance_reference_class is {reference!r}, which "
            f"is not a class of this data set {classes}; name one of them or null "
            "(balance to the smallest propagated class)."
        )
    results = experiments.run_experiments(
        images,
        samples,
        ground_truth,
        label_sets,
        variants=params["variants"],
        losses=params["losses"],
        protocol=protocol,
        n_repetitions=params.get("n_repetitions", 1),
        class_names=classes,
        training_params=params["training"],
        network=params.get("network"),
        exclude=unknown_mask(samples),
        balance=params.get("balance", False),
        reference_class=None if reference is None else classes.index(reference),
        seed=params.get("seed", 0),
        n_jobs=params.get("n_jobs", 1),
        on_fold_done=log_fold,
    )
    skipped = results[results["status"] != "ok"]
    for status, count in skipped["status"].value_counts().items():
        logger.warning("classification: %d fold(s) %s", count, status)
    return results


def summarise_classification(
    results: pd.DataFrame, classes: list[str]
) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Mean +- std per (variant, loss) over repetitions (folds averaged within a
    repetition), and the same figures as parent-run metrics."""
    by = ["variant", "loss_name"]
    summary = evaluation.aggregate(results, by=by, level="repetition")
    metrics = {}
    for _, row in summary.iterrows():
        prefix = f"{row['variant']}.{row['loss_name']}"
        for col in ("accuracy_mean", "mcc_mean", "mean_class_accuracy_mean"):
            if col in row:
                metrics[f"{prefix}.{col.removesuffix('_mean')}"] = row[col]
        for c in classes:
            if f"acc_{c}_mean" in row:
                metrics[f"{prefix}.acc_{c}"] = row[f"acc_{c}_mean"]
    out = as_metrics(metrics)
    # Per repetition (folds averaged within it), as histories: step = repetition.
    per_rep = evaluation.aggregate(
        results, by=[*by, "repetition"], level="fold"
    ).sort_values("repetition")
    for (variant, loss), group in per_rep.groupby(by, sort=False):
        for metric in ("accuracy", "mcc", "mean_class_accuracy"):
            if f"{metric}_mean" in group:
                out.update(
                    as_metric_history(
                        f"{variant}.{loss}.{metric}_per_repetition",
                        group[f"{metric}_mean"],
                        steps=group["repetition"],
                    )
                )
    return summary, out
