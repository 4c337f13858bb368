"""Co-ranking quality of a projection: local quality, global quality, T and C.

Definitions are those of METHOD.md section 3 (Lueks et al. 2011). Ranks: ``rho_ij``
is the position of sample ``j`` in the list of ALL samples (``i`` included) sorted
by increasing Euclidean distance from ``i`` in the high-dimensional space, equal
distances ordered by lower index first; ``r_ij`` the same in the projection. Equal
distances are equal float64 values of the formula of
:func:`lqknn.neighbors.pair_distances`.

Weight of an ordered pair: ``w(rho, r) = 1`` if (``rho <= ks`` or ``r <= ks``) and
``|rho - r| <= kt``, else 0. Only pairs with both ranks ``<= ks + kt`` can have
weight 1, so everything here is computed exactly from the first ``ks + kt + 1``
entries of the ranked lists (:func:`lqknn.neighbors.ranked_neighbors`): memory
O(N (ks + kt)), no N x N array (except in :func:`coranking_matrix`, meant for small
N).

References
----------
Lueks, W., Mokbel, B., Biehl, M., Hammer, B. (2011). How to evaluate dimensionality
reduction? Improving the co-ranking matrix. arXiv:1110.3917.
Vindas, Y. et al. (2022). Semi-automatic data annotation based on feature-space
projection and local quality metrics. (Local quality, eq. of section 2.)
Venna, J., Kaski, S. (2006). Local multidimensional scaling. Neural Networks 19.
(Trustworthiness and continuity.)
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from lqknn._validation import check_array, check_int
from lqknn.neighbors import (
    _n_threads,
    knn_excluding_self,
    pair_distances,
    ranked_neighbors,
)

__all__ = [
    "coranking_matrix",
    "global_quality",
    "local_quality",
    "local_quality_from_neighbors",
    "raw_local_quality",
    "trustworthiness_continuity",
]

#: Largest N accepted by the small-N helpers that build N x N arrays.
MAX_DENSE_SAMPLES = 10_000

_ROW_CHUNK = 4096


# ----------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------
def _check_spaces(high, low):
    high = check_array(high, "high", ndim=2, min_rows=2)
    low = check_array(low, "low", ndim=2, min_rows=2)
    if high.shape[0] != low.shape[0]:
        raise ValueError(
            f"high and low must describe the same samples: high has {high.shape[0]} "
            f"rows, low has {low.shape[0]}."
        )
    return high, low


def _check_ks_kt(ks, kt, n):
    ks = check_int(ks, "ks", low=1, high=n - 1)
    kt = check_int(kt, "kt", low=1, high=n - 1)
    return ks, kt


def _check_neighbors(nb, name, n, m):
    nb = np.asarray(nb)
    if nb.ndim != 2 or nb.shape[0] != n or nb.shape[1] < m:
        raise ValueError(
            f"{name} must have shape ({n}, >= {m}) (ranked_neighbors with at least "
            f"min(N, ks + kt + 1) = {m} entries), got {nb.shape}."
        )
    if not np.issubdtype(nb.dtype, np.integer):
        raise ValueError(f"{name} must hold integer sample indices, got {nb.dtype}.")
    nb = nb[:, :m].astype(np.int64)
    if nb.size and (nb.min() < 0 or nb.max() >= n):
        raise ValueError(f"{name} holds indices outside [0, {n - 1}].")
    return nb


def _check_dense_size(n):
    if n > MAX_DENSE_SAMPLES:
        raise ValueError(
            f"coranking_matrix builds N x N arrays and accepts at most "
            f"{MAX_DENSE_SAMPLES} samples, got {n}; use global_quality or "
            "local_quality, which need O(N (ks + kt)) memory."
        )


# ----------------------------------------------------------------------------------
# local quality
# ----------------------------------------------------------------------------------
def _weighted_pairs(high_nb, low_nb, ks, kt, rank_offset):
    """Yield (i, j) arrays of the ordered pairs of weight 1, by chunks of rows.

    ``high_nb[i, c]`` / ``low_nb[i, c]`` is the sample of rank ``c + rank_offset``.
    Rows of each array hold distinct samples, so a sample matches at most once.
    """
    n, m = high_nb.shape
    for start in range(0, n, _ROW_CHUNK):
        h = high_nb[start : start + _ROW_CHUNK]
        lo = low_nb[start : start + _ROW_CHUNK]
        row, c_high, c_low = np.nonzero(h[:, :, None] == lo[:, None, :])
        rho = c_high + rank_offset
        r = c_low + rank_offset
        keep = ((rho <= ks) | (r <= ks)) & (np.abs(rho - r) <= kt)
        yield start + row[keep], h[row[keep], c_high[keep]]


def local_quality_from_neighbors(
    high_neighbors, low_neighbors, ks: int = 10, kt: int = 10, *, normalise=True
) -> np.ndarray:
    """Local quality from precomputed ranked neighbour lists (reuse across spaces).

    Parameters
    ----------
    high_neighbors, low_neighbors : ndarray of shape (n_samples, >= m), int
        :func:`lqknn.neighbors.ranked_neighbors` of the high-dimensional points and
        of the projection, with at least ``m = min(N, ks + kt + 1)`` columns (extra
        columns are ignored). Computing ``high_neighbors`` once and reusing it for
        every projection of a grid saves the expensive high-dimensional search.
    ks, kt : int, default=10
        Neighbourhood size and rank tolerance, ``1 <= ks, kt <= N - 1``.
    normalise : bool, default=True
        Divide by the maximum (``lq``); if False, return the raw ``q``.

    Returns
    -------
    ndarray of shape (n_samples,), float64
        Time and memory O(N (ks + kt)^2) / O(N (ks + kt)) (chunks of rows).
    """
    high_neighbors = np.asarray(high_neighbors)
    if high_neighbors.ndim != 2 or high_neighbors.shape[0] < 2:
        raise ValueError(
            "high_neighbors must be a 2-D array with at least 2 rows, got shape "
            f"{high_neighbors.shape}."
        )
    n = high_neighbors.shape[0]
    ks, kt = _check_ks_kt(ks, kt, n)
    m = min(n, ks + kt + 1)
    high_nb = _check_neighbors(high_neighbors, "high_neighbors", n, m)
    low_nb = _check_neighbors(low_neighbors, "low_neighbors", n, m)
    q = np.zeros(n, dtype=np.float64)
    for i, j in _weighted_pairs(high_nb, low_nb, ks, kt, rank_offset=0):
        # pair (i, j) counts once in q(i) (w(rho_ij, r_ij)) and once in q(j)
        # (the term w(rho_ji, r_ji) of q(j) with the roles swapped)
        q += np.bincount(i, minlength=n)
        q += np.bincount(j, minlength=n)
    q /= 2.0 * ks * n
    return q / q.max() if normalise else q


def raw_local_quality(
    high, low, ks: int = 10, kt: int = 10, *, n_jobs: int | None = None
) -> np.ndarray:
    """Raw local quality ``q(i)`` of METHOD.md section 3 (before normalisation).

    ``q(i) = sum_j [w(rho_ij, r_ij) + w(rho_ji, r_ji)] / (2 ks N)``, the sum over
    all ``j`` including ``j = i``. Arguments and complexity as
    :func:`local_quality`.

    Returns
    -------
    ndarray of shape (n_samples,), float64, values in (0, 1]
    """
    high_nb, low_nb = _both_lists(high, low, ks, kt, n_jobs, exclude_self=False)
    return local_quality_from_neighbors(high_nb, low_nb, ks, kt, normalise=False)


def local_quality(
    high, low, ks: int = 10, kt: int = 10, *, n_jobs: int | None = None
) -> np.ndarray:
    """Normalised local quality ``lq(i) = q(i) / max_k q(k)`` (METHOD.md section 3).

    For every sample ``i``, the fraction of its rank relations that the projection
    keeps, counted in both directions::

        q(i) = sum_j [ w(rho_ij, r_ij) + w(rho_ji, r_ji) ] / (2 ks N)
        w(rho, r) = 1 if (rho <= ks or r <= ks) and |rho - r| <= kt else 0

    with ``j = i`` included (rank 0 in both spaces, weight 1, as the published code
    does), then divided by its maximum, so ``max lq = 1`` and the values lie in
    [0, 1]. Ties in distance are ordered by lower index first, exactly (duplicates
    included), as in :func:`lqknn.neighbors.ranked_neighbors`.

    Parameters
    ----------
    high : array-like of shape (n_samples, n_features)
        High-dimensional points (e.g. the auto-encoder's latent space).
    low : array-like of shape (n_samples, n_components)
        Their projection (e.g. a t-SNE embedding).
    ks : int, default=10
        Neighbourhood size, ``1 <= ks <= N - 1``.
    kt : int, default=10
        Rank tolerance, ``1 <= kt <= N - 1``.
    n_jobs : int or None, default=None
        Threads for the neighbour searches (``None`` / -1: all cores).

    Returns
    -------
    lq : ndarray of shape (n_samples,), float64

    Notes
    -----
    Computed from the first ``min(N, ks + kt + 1)`` entries of the ranked lists in
    both spaces: memory O(N (ks + kt)), never an N x N array. Time is dominated by
    the high-dimensional neighbour search, O(N^2 d) (about 10 s for N = 68,492,
    d = 32 on 2 idle cores); the projection's search (KD-tree) and the counting are
    O(N (ks + kt)^2). To evaluate many projections of the same features, compute
    ``ranked_neighbors(high, ks + kt + 1)`` once and call
    :func:`local_quality_from_neighbors`.

    References
    ----------
    Lueks et al. (2011), arXiv:1110.3917; Vindas et al. (2022), local quality.
    """
    return local_quality_from_neighbors(
        *_both_lists(high, low, ks, kt, n_jobs, exclude_self=False), ks, kt
    )


def _both_lists(high, low, ks, kt, n_jobs, *, exclude_self):
    high, low = _check_spaces(high, low)
    n = high.shape[0]
    ks, kt = _check_ks_kt(ks, kt, n)
    if exclude_self:
        k = min(n - 1, ks + kt)
        return (
            knn_excluding_self(high, k, n_jobs=n_jobs),
            knn_excluding_self(low, k, n_jobs=n_jobs),
        )
    m = min(n, ks + kt + 1)
    return ranked_neighbors(high, m, n_jobs=n_jobs), ranked_neighbors(
        low, m, n_jobs=n_jobs
    )


def _brute_force_local_quality(high, low, ks=10, kt=10):
    """Normalised lq from full N x N rank matrices (small N only; benchmarks)."""
    high, low = _check_spaces(high, low)
    n = high.shape[0]
    _check_dense_size(n)
    ks, kt = _check_ks_kt(ks, kt, n)
    rho = _full_ranks(high)
    r = _full_ranks(low)
    w = ((rho <= ks) | (r <= ks)) & (np.abs(rho - r) <= kt)
    q = (w.sum(axis=1) + w.sum(axis=0)) / (2.0 * ks * n)
    return q / q.max()


def _full_ranks(X):
    """N x N matrix of ``rho_ij`` (self included, rank 0 = first). Small N only."""
    n = X.shape[0]
    ii, jj = np.indices((n, n))
    dist = pair_distances(X, ii, jj)
    order = np.argsort(dist, axis=1, kind="stable")
    ranks = np.empty((n, n), dtype=np.int64)
    np.put_along_axis(ranks, order, np.arange(n)[None, :], axis=1)
    return ranks


# ----------------------------------------------------------------------------------
# co-ranking matrix and global quality
# ----------------------------------------------------------------------------------
def coranking_matrix(high, low) -> np.ndarray:
    """Co-ranking matrix ``Q`` (Lueks et al. 2011), self excluded. Small N only.

    ``Q[k - 1, l - 1]`` is the number of ordered pairs ``(i, j)``, ``j != i``, whose
    high-dimensional rank is ``k`` and low-dimensional rank is ``l``. Ranks here
    exclude ``i`` itself: the other ``N - 1`` samples of ``i``'s ranked list (ties
    by lower index first) get ranks ``1 .. N - 1`` in list order, so an exact
    duplicate of lower index that precedes ``i`` gets rank 1, not 0.

    Parameters
    ----------
    high : array-like of shape (n_samples, n_features)
    low : array-like of shape (n_samples, n_components)

    Returns
    -------
    Q : ndarray of shape (n_samples - 1, n_samples - 1), int64
        Every row and column sums to N. Memory O(N^2): at most
        ``MAX_DENSE_SAMPLES`` samples.
    """
    high, low = _check_spaces(high, low)
    n = high.shape[0]
    _check_dense_size(n)
    rank_high = _full_ranks_excluding_self(high)
    rank_low = _full_ranks_excluding_self(low)
    off = ~np.eye(n, dtype=bool)
    flat = (rank_high[off] - 1) * (n - 1) + (rank_low[off] - 1)
    return np.bincount(flat, minlength=(n - 1) ** 2).reshape(n - 1, n - 1)


def _full_ranks_excluding_self(X):
    """Self-excluded ranks 1 .. N - 1 (diagonal set to 0). Small N only."""
    rho = _full_ranks(X)
    own = np.diagonal(rho)[:, None]
    ranks = rho + (rho < own)
    np.fill_diagonal(ranks, 0)
    return ranks


def global_quality(
    high, low, ks: int = 10, kt: int = 10, *, n_jobs: int | None = None
) -> float:
    """Lueks' global quality ``Q(ks, kt)`` without the co-ranking matrix.

    ``Q(ks, kt) = 1 / (ks N) * sum_{k, l >= 1} w(k, l) Q[k - 1, l - 1]`` with the
    self-excluded ranks of :func:`coranking_matrix` and ``w`` as in
    :func:`local_quality`. Only pairs with both ranks ``<= ks + kt`` have weight 1,
    so the sum is counted from the first ``ks + kt`` other samples of every ranked
    list (:func:`lqknn.neighbors.knn_excluding_self`). Unlike the published code,
    ranks up to ``ks`` and errors up to ``kt`` are included (METHOD.md section 3).

    Parameters
    ----------
    high, low, ks, kt, n_jobs :
        As in :func:`local_quality`.

    Returns
    -------
    float
        In [0, 1] (1 when every ks-neighbourhood is kept within kt ranks). Memory
        O(N (ks + kt)); time dominated by the neighbour searches.

    References
    ----------
    Lueks et al. (2011), arXiv:1110.3917.
    """
    high_nb, low_nb = _both_lists(high, low, ks, kt, n_jobs, exclude_self=True)
    n = high_nb.shape[0]
    total = sum(
        i.size for i, _ in _weighted_pairs(high_nb, low_nb, ks, kt, rank_offset=1)
    )
    return float(total / (ks * n))


# ----------------------------------------------------------------------------------
# trustworthiness and continuity
# ----------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _ranks_of_targets(X, targets, start, stop, out):  # pragma: no cover
    """Self-excluded rank of ``targets[i, t]`` in ``i``'s ranked list (exact ties).

    Rows ``start .. stop - 1`` are written to ``out``. Per row, the exact distances to all samples (same formula as
    ``pair_distances``) are compared with the targets' keys (distance, index),
    sorted, by binary search: O(N (d + log k)) per row, O(N k) memory.
    """
    n, d = X.shape
    k = targets.shape[1]
    for i in range(start, stop):
        dist = np.empty(n, dtype=np.float64)
        for j in range(n):
            acc = 0.0
            for f in range(d):
                t = X[i, f] - X[j, f]
                acc = acc + t * t
            dist[j] = acc
        tj = targets[i].copy()
        tv = np.empty(k, dtype=np.float64)
        for t in range(k):
            tv[t] = dist[tj[t]]
        # insertion sort of the (few) targets by (distance, index)
        for t in range(1, k):
            v, j = tv[t], tj[t]
            pos = t
            while pos > 0 and (
                tv[pos - 1] > v or (tv[pos - 1] == v and tj[pos - 1] > j)
            ):
                tv[pos] = tv[pos - 1]
                tj[pos] = tj[pos - 1]
                pos -= 1
            tv[pos] = v
            tj[pos] = j
        before = np.zeros(k + 1, dtype=np.int64)
        for j in range(n):
            if j == i:
                continue
            v = dist[j]
            # first target whose key is greater than (v, j): j precedes it and all
            # later targets
            lo, hi = 0, k
            while lo < hi:
                mid = (lo + hi) // 2
                if tv[mid] < v or (tv[mid] == v and tj[mid] <= j):
                    lo = mid + 1
                else:
                    hi = mid
            before[lo] += 1
        acc_before = 0
        for t in range(k):
            acc_before += before[t]
            # rank = 1 + number of other samples strictly before the target
            for s in range(k):
                if targets[i, s] == tj[t]:
                    out[i, s] = acc_before + 1


def _trustworthiness(space_rank, nb_rank, nb_other, k, n, threads):
    """Venna-Kaski sum over the intruders of ``nb_other`` (not in ``nb_rank``)."""
    intruder = ~(nb_other[:, :, None] == nb_rank[:, None, :]).any(axis=2)
    targets = np.where(intruder, nb_other, np.arange(n)[:, None])
    ranks = np.zeros(targets.shape, dtype=np.int64)
    step = 256
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(
            pool.map(
                lambda s: _ranks_of_targets(
                    space_rank, targets, s, min(s + step, n), ranks
                ),
                range(0, n, step),
            )
        )
    penalty = np.where(intruder, ranks - k, 0).sum()
    return 1.0 - 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)) * penalty


def trustworthiness_continuity(
    high, low, k: int = 10, *, n_jobs: int | None = None
) -> tuple[float, float]:
    """Trustworthiness T(k) and continuity C(k) of a projection, exact ties.

    ``T(k) = 1 - 2 / (N k (2N - 3k - 1)) * sum_i sum_{j in U_k(i)} (rho_ij - k)``,
    ``U_k(i)`` the k nearest neighbours of ``i`` in ``low`` that are not among its
    k nearest in ``high``, ``rho_ij`` the self-excluded rank of ``j`` in ``high``;
    C(k) swaps the two spaces. Ranks break distance ties by lower index first
    (scikit-learn's ``trustworthiness`` uses an unstable sort, so its value may
    differ on data with ties; on data without ties the two agree).

    Parameters
    ----------
    high : array-like of shape (n_samples, n_features)
    low : array-like of shape (n_samples, n_components)
    k : int, default=10
        Neighbourhood size, ``1 <= k < N / 2`` (the normalisation requires it).
    n_jobs : int or None, default=None
        Threads (neighbour searches and rank counting).

    Returns
    -------
    (T, C) : tuple of float, each in [0, 1]

    Notes
    -----
    Memory O(N k) (scikit-learn's version builds N x N matrices: about 37 GB at
    N = 68,492). Time O(N^2 (d + log k)) for the exact ranks of the intruders, one
    row at a time in parallel (n_jobs threads): measured 4.5 s of CPU at
    N = 10,000, d = 32; it grows as N^2, so about 3.5 CPU-minutes (under 2 minutes
    on 2 cores) at N = 68,492.

    References
    ----------
    Venna, J., Kaski, S. (2006). Local multidimensional scaling. Neural Networks 19.
    """
    high, low = _check_spaces(high, low)
    n = high.shape[0]
    k = check_int(k, "k", low=1, high=n - 1)
    if not 2 * k < n:
        raise ValueError(f"k must be < N / 2 = {n / 2}, got {k}.")
    nb_high = knn_excluding_self(high, k, n_jobs=n_jobs)
    nb_low = knn_excluding_self(low, k, n_jobs=n_jobs)
    threads = _n_threads(n_jobs)
    t = _trustworthiness(high, nb_high, nb_low, k, n, threads)
    c = _trustworthiness(low, nb_low, nb_high, k, n, threads)
    return float(t), float(c)
