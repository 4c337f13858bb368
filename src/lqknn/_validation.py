"""Argument checks shared by the library, in scikit-learn's style.

Every check raises ``ValueError`` (or ``TypeError``) with a message that names the
argument, the offending value and what is allowed, so users never see a stack
trace from deep inside numpy.
"""

from __future__ import annotations

import numbers

import numpy as np


def check_array(
    x,
    name: str,
    *,
    ndim: int | None = None,
    dtype=np.float64,
    allow_nan: bool = False,
    min_rows: int = 1,
) -> np.ndarray:
    """Return ``x`` as an ndarray of ``dtype``, checking its dimensions and values.

    Raises ``ValueError`` naming ``name`` when the array has the wrong number of
    dimensions, fewer than ``min_rows`` rows, or NaN / infinite values.
    """
    try:
        arr = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be array-like convertible to {np.dtype(dtype).name}: {exc}"
        ) from None
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(
            f"{name} must be a {ndim}-D array, got shape {arr.shape} ({arr.ndim}-D)."
        )
    if arr.ndim >= 1 and arr.shape[0] < min_rows:
        raise ValueError(
            f"{name} must have at least {min_rows} row(s), got shape {arr.shape}."
        )
    if not allow_nan and np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            rows = np.unique(np.nonzero(bad)[0]) if arr.ndim else np.array([0])
            shown = ", ".join(str(r) for r in rows[:10])
            more = f" (and {rows.size - 10} more)" if rows.size > 10 else ""
            raise ValueError(
                f"{name} contains NaN or infinite values in row(s) {shown}{more}; "
                "clean or drop these samples first."
            )
    return arr


def check_labels(y, name: str = "labels", n_samples: int | None = None) -> np.ndarray:
    """Return integer labels of shape (N,), with -1 meaning "unlabelled"."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        as_int = arr.astype(np.int64, copy=False) if arr.dtype.kind == "f" else None
        if as_int is None or not np.array_equal(as_int, arr):
            raise ValueError(
                f"{name} must hold integer class ids (-1 = unlabelled), "
                f"got dtype {arr.dtype}."
            )
        arr = as_int
    arr = arr.astype(np.int64, copy=False)
    if n_samples is not None and arr.shape[0] != n_samples:
        raise ValueError(
            f"{name} has {arr.shape[0]} entries but there are {n_samples} samples; "
            "arrays must be aligned."
        )
    if (arr < -1).any():
        bad = np.unique(arr[arr < -1])[:5].tolist()
        raise ValueError(
            f"{name} contains ids {bad}: use -1 for unlabelled and 0..C-1 for classes."
        )
    return arr


def check_int(
    value, name: str, *, low: int | None = None, high: int | None = None
) -> int:
    """Check that ``value`` is an integer with ``low <= value <= high``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}.")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(
            f"{name} must be in [{'-inf' if low is None else low}, "
            f"{'inf' if high is None else high}], got {value}."
        )
    return value


def check_float(
    value,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Check that ``value`` is a real number in the given interval."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}.")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}.")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high:
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        lb = "[" if low_inclusive else "("
        rb = "]" if high_inclusive else ")"
        raise ValueError(f"{name} must be in {lb}{lo}, {hi}{rb}, got {value}.")
    return value


def check_random_state(seed) -> np.random.Generator:
    """Return a numpy Generator from an int seed, a Generator, or None."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, numbers.Integral):
        return np.random.default_rng(seed)
    raise TypeError(f"seed must be an int, None or numpy Generator, got {seed!r}.")
