"""Small helpers shared by the Kedro adapters (no algorithm lives here)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def pool_mask(samples: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the samples that are annotated and projected (``split == pool``).

    Features, embeddings, local quality and propagated labels are aligned with
    ``samples[pool_mask(samples)]``, in that order.
    """
    return (samples["split"] == "pool").to_numpy()


def pool_labels(samples: pd.DataFrame) -> np.ndarray:
    """Manual labels of the pool samples (-1 = not labelled)."""
    return samples.loc[pool_mask(samples), "label"].to_numpy(dtype=np.int64)


def true_pool_labels(samples: pd.DataFrame, ground_truth: pd.DataFrame) -> np.ndarray:
    """Pool labels with the hidden ground truth filled in where it exists."""
    pool = samples.loc[pool_mask(samples), ["sample_id", "label"]]
    labels = pool["label"].to_numpy(dtype=np.int64).copy()
    if ground_truth is not None and len(ground_truth):
        truth = ground_truth.set_index("sample_id")["label"]
        hidden = pool["sample_id"].map(truth)
        fill = hidden.notna().to_numpy() & (labels < 0)
        labels[fill] = hidden.to_numpy()[fill].astype(np.int64)
    return labels


def pool_rows(array, samples: pd.DataFrame, name: str) -> np.ndarray:
    """``array[pool_mask(samples)]`` after checking that ``array`` has one row per
    sample (a stale catalog entry otherwise gives a clear error)."""
    arr = np.asarray(array)
    if arr.shape[0] != len(samples):
        raise ValueError(
            f"{name} has {arr.shape[0]} rows but samples has {len(samples)}: they "
            "come from different runs; re-run the pipelines that produce them."
        )
    return arr[pool_mask(samples)]


def check_pool_aligned(array, samples: pd.DataFrame, name: str, axis: int = 0) -> None:
    """Check that ``array`` has one entry per pool sample along ``axis``."""
    n_pool = int(pool_mask(samples).sum())
    if np.shape(array)[axis] != n_pool:
        raise ValueError(
            f"{name} has {np.shape(array)[axis]} pool samples along axis {axis} but "
            f"samples has {n_pool}: they come from different runs; re-run "
            "projection_selection (and what follows) on the current data set."
        )
