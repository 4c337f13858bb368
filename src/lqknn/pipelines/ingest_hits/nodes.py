"""Nodes of ``ingest_hits``: take parameters, call ``lqknn.data``, return catalog
objects. Nothing here reads or writes files except through the library calls
that a source needs (reading the raw folder, generating the synthetic one)."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lqknn.data import digits, hits, medmnist, mnist, synthetic_hits
from lqknn.data.schema import check_label_coverage
from lqknn.tracking import as_metrics

logger = logging.getLogger(__name__)

SOURCES = ("hits", "synthetic_hits", "mnist", "medmnist", "digits")


def prepare_raw_source(params: dict[str, Any]) -> dict[str, Any]:
    """Describe the raw source; generate the synthetic HITS folder when it is the
    configured one (never into a folder holding other data)."""
    source = params["source"]
    if source not in SOURCES:
        raise ValueError(
            f"params:ingest.source is {source!r}; choose one of {', '.join(SOURCES)}."
        )
    folder = params.get("folder")
    info: dict[str, Any] = {"source": source, "folder": folder}
    if source == "synthetic_hits":
        opts = dict(params.get("synthetic") or {})
        signature = inspect.signature(synthetic_hits.generate_hits_folder)
        allowed = set(signature.parameters) - {"folder", "image_size", "progress"}
        unknown = sorted(set(opts) - allowed)
        if unknown:
            raise ValueError(
                f"params:ingest.synthetic has unknown key(s) {unknown}; allowed: "
                f"{sorted(allowed)}."
            )
        path = synthetic_hits.generate_hits_folder(
            Path(folder), image_size=tuple(params["image_size"]), progress=True, **opts
        )
        info.update(folder=str(path), synthetic=opts)
    return info


def ingest_source(
    raw_source: dict[str, Any], params: dict[str, Any]
) -> tuple[np.ndarray, pd.DataFrame, list[str], pd.DataFrame, pd.DataFrame]:
    """Load the configured source into the common schema."""
    source, folder = raw_source["source"], raw_source.get("folder")
    size = tuple(params["image_size"])
    if source in ("hits", "synthetic_hits"):
        ds = hits.load_hits_folder(
            Path(folder),
            image_size=size,
            resize=params.get("resize", "resize"),
            strict=bool(params.get("strict", False)),
            classes=tuple(params.get("classes") or hits.HITS_CLASSES),
            progress=True,
        )
    elif source == "mnist":
        ds = mnist.load_mnist_idx(Path(folder), **(params.get("mnist") or {}))
    elif source == "medmnist":
        ds = medmnist.load_medmnist_npz(Path(folder), **(params.get("medmnist") or {}))
    else:
        ds = digits.load_digits_dataset(**(params.get("digits") or {}))
    if ds.images.shape[-2:] != size:
        raise ValueError(
            f"{source} images are {ds.images.shape[-2:]} but params:ingest.image_size "
            f"is {list(size)}; set image_size to match the data set."
        )
    return ds.images, ds.samples, list(ds.classes), ds.ground_truth, ds.report


def describe_dataset(
    samples: pd.DataFrame,
    classes: list[str],
    ground_truth: pd.DataFrame,
    ingestion_report: pd.DataFrame,
) -> tuple[dict[str, Any], dict[str, dict]]:
    """Data-set statistics (JSON summary + MLflow metrics); warns, before any
    training, when a class has no labelled sample."""
    problems = check_label_coverage(samples, classes, on_missing="return")
    if problems:
        logger.warning(
            "ingest: no labelled pool sample of class(es) %s: propagation and "
            "training cannot learn them; label some or remove them from "
            "params:ingest.classes.",
            ", ".join(problems),
        )
    labelled = samples["label"] >= 0
    pool = samples["split"] == "pool"
    per_class = {
        name: int(((samples["label"] == c) & labelled).sum())
        for c, name in enumerate(classes)
    }
    summary = {
        "n_samples": len(samples),
        "n_pool": int(pool.sum()),
        "n_test": int((~pool).sum()),
        "n_labelled": int(labelled.sum()),
        "n_unlabelled": int((~labelled).sum()),
        "n_hidden_ground_truth": len(ground_truth),
        "n_subjects": int(samples["subject_id"].nunique()),
        "n_skipped_rows": len(ingestion_report),
        "labelled_per_class": per_class,
        "classes": list(classes),
        "label_coverage_problem": problems or None,
    }
    metrics = {k: v for k, v in summary.items() if isinstance(v, int)}
    metrics.update({f"labelled_{k}": v for k, v in per_class.items()})
    return summary, as_metrics(metrics)


def plot_example_images(
    images: np.ndarray,
    samples: pd.DataFrame,
    classes: list[str],
    params: dict[str, Any],
) -> Figure:
    """A few images per class (spectrograms for HITS)."""
    from lqknn.data.plots import plot_examples

    return plot_examples(
        images,
        samples,
        classes,
        n_per_class=4,
        spectrogram=params["source"] in ("hits", "synthetic_hits"),
    )
