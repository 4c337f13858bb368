"""Labelled / unlabelled splits for evaluating propagation (METHOD.md section 1)."""

from __future__ import annotations

import numpy as np

from lqknn._validation import check_float, check_labels, check_random_state

__all__ = ["hide_labels", "labelled_subset"]


def labelled_subset(labels, fraction: float, seed=None) -> np.ndarray:
    """Stratified random choice of the samples that keep their label.

    For every class ``c`` with ``n_c`` samples, ``floor(fraction * n_c)`` of them
    are drawn uniformly at random without replacement; samples labelled ``-1``
    (unlabelled) are never selected.

    Parameters
    ----------
    labels : array-like of shape (n_samples,), int
        Class ids ``0 .. C - 1``; ``-1`` marks samples without a label.
    fraction : float
        Share kept per class, in [0, 1] (the paper uses 0.1).
    seed : int, numpy Generator or None
        Same seed, same subset. Each repetition should use a new seed.

    Returns
    -------
    mask : ndarray of shape (n_samples,), bool
        True for the samples kept as labelled. Time O(N log N), memory O(N).
    """
    y = check_labels(labels, "labels")
    fraction = check_float(fraction, "fraction", low=0.0, high=1.0)
    rng = check_random_state(seed)
    mask = np.zeros(y.shape[0], dtype=bool)
    for c in np.unique(y[y >= 0]):
        members = np.flatnonzero(y == c)
        # floor with a guard against products like 0.1 * 30 = 3.0000000000000004
        n_keep = int(np.floor(fraction * members.size + 1e-9))
        mask[rng.choice(members, size=n_keep, replace=False)] = True
    return mask


def hide_labels(labels, mask) -> np.ndarray:
    """Copy of ``labels`` with ``-1`` wherever ``mask`` is False.

    Parameters
    ----------
    labels : array-like of shape (n_samples,), int
    mask : array-like of shape (n_samples,), bool
        True for the samples whose label is kept (e.g. :func:`labelled_subset`).

    Returns
    -------
    ndarray of shape (n_samples,), int64
    """
    y = check_labels(labels, "labels")
    mask = np.asarray(mask)
    if mask.shape != y.shape or mask.dtype != bool:
        raise ValueError(
            f"mask must be a boolean array of shape {y.shape}, got dtype "
            f"{mask.dtype} and shape {mask.shape}."
        )
    return np.where(mask, y, -1)
