"""Exact ranked nearest-neighbour lists with a deterministic tie order.

Every quantity of the co-ranking framework (METHOD.md section 3) and the
neighbourhoods ``V_K`` of the propagation (section 4) are defined by ranks: the
position of sample ``j`` in the list of ALL samples sorted by increasing Euclidean
distance from sample ``i``, equal distances ordered by lower index first (a stable
sort). This module computes the first entries of these lists exactly, ties
included, in O(N * n_neighbors) memory.

What "equal distance" means
---------------------------
Two distances are equal when their floating-point values are equal, with the
distance between samples ``a`` and ``b`` of ``X`` (float64, shape (N, d)) computed
as the squared Euclidean distance accumulated feature by feature, left to right::

    dist = 0.0
    for f in range(d):
        dist = dist + (X[a, f] - X[b, f]) ** 2  # each operation rounded in float64

(:func:`pair_distances` is this formula; a brute-force oracle that builds its full
distance matrix with the same loop agrees bit for bit). The formula is exactly
symmetric, ``dist(a, b) == dist(b, a)``, and exact duplicates are at distance 0.

How the lists are found
-----------------------
A fast search proposes a few more candidates than needed together with a rigorous
lower bound on the distance of every sample it did not propose. The candidates'
distances are recomputed with the formula above and sorted by (distance, index).
When the last kept distance is not strictly below the bound (a tie or near-tie at
the cut-off, or many duplicates), the row is grown: every sample whose lower bound
does not exceed that distance is added, recomputed and sorted again. The result is
therefore exactly the brute-force list, including at the cut-off.

* ``d <= 4`` (2-D projections): a ``scipy.spatial.cKDTree`` query; growth uses a
  ball query.
* ``d > 4`` (latent features): a blocked brute-force search: float32 BLAS products
  of query blocks with column tiles, each tile scanned while in cache by a numba
  kernel that keeps a bounded max-heap per row (the N x N distance matrix is never
  stored). The float32 rounding is covered by a bound of ``(2 d + 32) * 2**-24``
  times the squared norms of the (centred, power-of-two scaled) points.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from scipy.spatial import cKDTree
from threadpoolctl import threadpool_limits

from lqknn._validation import check_array, check_int

__all__ = ["knn_excluding_self", "pair_distances", "ranked_neighbors"]

#: Dimensions up to which the KD-tree search is used; above it, blocked brute force.
KDTREE_MAX_DIM = 4

_U32 = 2.0**-24
_U64 = 2.0**-53
_TINY = 1e-300


# ----------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------
def pair_distances(X, a, b) -> np.ndarray:
    """Squared Euclidean distances between the pairs ``(a[p], b[p])`` of rows of ``X``.

    This is the one formula that defines equal distances in this package: a float64
    sum over the features, in feature order, of ``(X[a, f] - X[b, f]) ** 2``, every
    operation rounded separately (no fused multiply-add, no reordering).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float64
    a, b : ndarray of int, same shape (any)
        Row indices of the pairs.

    Returns
    -------
    ndarray of float64, shape of ``a``
        Time O(P d), memory O(P) for P pairs.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape}, {b.shape}.")
    out = np.empty(a.size, dtype=np.float64)
    _pair_distances(X, a.ravel(), b.ravel(), out)
    return out.reshape(a.shape)


@numba.njit(cache=True, nogil=True)
def _pair_distances(X, a, b, out):  # pragma: no cover
    n_features = X.shape[1]
    for p in range(a.shape[0]):
        ra = a[p]
        rb = b[p]
        acc = 0.0
        for f in range(n_features):
            t = X[ra, f] - X[rb, f]
            acc = acc + t * t
        out[p] = acc


def ranked_neighbors(X, n_neighbors: int, *, n_jobs: int | None = None) -> np.ndarray:
    """The first ``n_neighbors`` entries of every sample's exact ranked list.

    Row ``i`` lists the samples (``i`` included) sorted by increasing Euclidean
    distance from ``X[i]``, equal distances ordered by lower index first, cut after
    ``n_neighbors`` entries. Column 0 is ``i`` itself unless ``i`` has exact
    duplicates of lower index, which come first. The tie order is exact also at the
    cut-off: when several samples tie at the last kept distance, the lowest indices
    are kept. Distances and equality follow :func:`pair_distances`.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Points; converted to float64; NaN or infinite values are an error.
    n_neighbors : int
        Entries per row, ``1 <= n_neighbors <= n_samples``.
    n_jobs : int or None, default=None
        Threads for the search (numba kernel and KD-tree queries); ``None`` or
        ``-1`` uses all cores.

    Returns
    -------
    ndarray of shape (n_samples, n_neighbors), int64
        ``out[i, r]`` is the sample of rank ``r`` from ``i`` (rank 0 = nearest).

    Notes
    -----
    Memory O(N * n_neighbors) plus fixed-size work buffers (about 20 MB); the N x N
    distance matrix is never formed. Time: O(N log N * n_neighbors) for
    ``n_features <= 4`` (KD-tree), O(N^2 d) for larger ``d`` (BLAS products,
    about 10 s for N = 68,492, d = 32 on 2 cores). Rows whose cut-off distance is
    tied or nearly tied with samples outside the candidates cost one extra pass
    over all samples each (many exact duplicates make this common).
    """
    X = check_array(X, "X", ndim=2)
    n = X.shape[0]
    m = check_int(n_neighbors, "n_neighbors", low=1, high=n)
    threads = _n_threads(n_jobs)
    if X.shape[1] == 0:
        # every distance is 0: the stable order is the index order
        return np.broadcast_to(np.arange(m, dtype=np.int64), (n, m)).copy()
    n_cand = min(n, m + max(4, m // 4))
    if n_cand == n:
        rows = np.arange(n, dtype=np.int64)
        return _exact_from_candidates(
            X, rows, np.broadcast_to(np.arange(n), (n, n)), m, None
        )[0]
    if X.shape[1] <= KDTREE_MAX_DIM:
        return _ranked_kdtree(X, m, n_cand, threads)
    return _ranked_blocked(X, m, n_cand, threads)


def knn_excluding_self(X, n_neighbors: int, *, n_jobs: int | None = None) -> np.ndarray:
    """The ``n_neighbors`` nearest OTHER samples of every sample, exact tie order.

    ``ranked_neighbors(X, n_neighbors + 1)`` with ``i`` removed from row ``i``
    wherever it sits. If ``i`` has more than ``n_neighbors`` exact duplicates of
    lower index, ``i`` is not among the first ``n_neighbors + 1`` entries and the
    last entry is dropped instead: the row always keeps the ``n_neighbors`` first
    samples other than ``i`` of ``i``'s ranked list. Column ``c`` thus holds the
    sample of self-excluded rank ``c + 1`` (the co-ranking matrix's ranks).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_neighbors : int
        ``1 <= n_neighbors <= n_samples - 1``.
    n_jobs : int or None, default=None
        Threads, as in :func:`ranked_neighbors`.

    Returns
    -------
    ndarray of shape (n_samples, n_neighbors), int64
        Same complexity as :func:`ranked_neighbors`.
    """
    X = check_array(X, "X", ndim=2)
    n = X.shape[0]
    k = check_int(n_neighbors, "n_neighbors", low=1, high=max(n - 1, 1))
    if n < 2:
        raise ValueError(f"X must have at least 2 samples, got {n}.")
    ranked = ranked_neighbors(X, k + 1, n_jobs=n_jobs)
    return _drop_self(ranked)


# ----------------------------------------------------------------------------------
# helpers shared by both searches
# ----------------------------------------------------------------------------------
def _drop_self(ranked: np.ndarray) -> np.ndarray:
    """Remove ``i`` from row ``i`` (or the last entry when ``i`` is absent)."""
    n, m1 = ranked.shape
    is_self = ranked == np.arange(n)[:, None]
    absent = ~is_self.any(axis=1)
    is_self[absent, m1 - 1] = True
    return ranked[~is_self].reshape(n, m1 - 1)


def _n_threads(n_jobs) -> int:
    """Threads to use: ``None`` or -1 = all cores, else ``n_jobs >= 1``."""
    if n_jobs is None:
        return os.cpu_count() or 1
    n_jobs = check_int(n_jobs, "n_jobs", low=-1)
    if n_jobs == 0:
        raise ValueError("n_jobs must be a positive integer, -1 or None, got 0.")
    return (os.cpu_count() or 1) if n_jobs == -1 else n_jobs


def _exact_from_candidates(X, rows, cand, m, bound):
    """Sort candidate lists exactly; flag the rows whose cut-off is not certain.

    ``cand`` (R, C) holds distinct candidate indices per row; ``bound`` (R,) is a
    lower bound on the distance of every non-candidate (``None``: no
    non-candidates). Returns the (R, m) lists, the m-th exact distance of every row,
    and the boolean "unsafe" flags (non-candidates might tie or be closer).
    """
    cand = np.asarray(cand, dtype=np.int64)
    r, c = cand.shape
    dist = pair_distances(X, np.broadcast_to(rows[:, None], (r, c)), cand)
    order = np.lexsort((cand, dist), axis=-1)[:, :m]
    top = np.take_along_axis(cand, order, axis=1)
    d_m = np.take_along_axis(dist, order[:, m - 1 : m], axis=1)[:, 0]
    unsafe = np.zeros(r, dtype=bool) if bound is None else ~(d_m < bound)
    return top, d_m, unsafe


def _exact_from_pairs(X, rows, pair_row, pair_j, m):
    """Exact first-``m`` lists of ``rows`` from flat (row position, sample) pairs."""
    dist = pair_distances(X, rows[pair_row], pair_j)
    order = np.lexsort((pair_j, dist, pair_row))
    pair_row, pair_j = pair_row[order], pair_j[order]
    starts = np.searchsorted(pair_row, np.arange(rows.size))
    take = starts[:, None] + np.arange(m)[None, :]
    return pair_j[take]


# ----------------------------------------------------------------------------------
# low dimension: KD-tree
# ----------------------------------------------------------------------------------
def _ranked_kdtree(X, m, n_cand, threads):
    n, d = X.shape
    tree = cKDTree(X)
    dist, cand = tree.query(X, k=n_cand, workers=threads)
    rel = (2 * d + 32) * _U64
    # non-candidates are at least as far as the farthest candidate in the tree's
    # own arithmetic; the tree's squared distance is within ``rel`` of ours
    bound = dist[:, -1] ** 2 * (1.0 - rel) - _TINY
    rows = np.arange(n, dtype=np.int64)
    out, d_m, unsafe = _exact_from_candidates(X, rows, cand, m, bound)
    grow = np.flatnonzero(unsafe)
    if grow.size:
        radius = np.sqrt(d_m[grow] * (1.0 + rel)) * (1.0 + rel) + _TINY
        lists = tree.query_ball_point(X[grow], r=radius, workers=threads)
        sizes = np.fromiter((len(v) for v in lists), dtype=np.int64, count=grow.size)
        pair_j = np.concatenate([np.asarray(v, dtype=np.int64) for v in lists])
        pair_row = np.repeat(np.arange(grow.size), sizes)
        out[grow] = _exact_from_pairs(X, grow, pair_row, pair_j, m)
    return out


# ----------------------------------------------------------------------------------
# higher dimension: blocked brute force, float32 BLAS + numba bounded heaps
# ----------------------------------------------------------------------------------
_QUERY_BLOCK = 256
_COLUMN_TILE = 2048
_CHUNK = 32


@numba.njit(cache=True, nogil=True)
def _scan_tile(prod, key_norm, offset, heap_val, heap_idx):  # pragma: no cover
    """Push ``key_norm[j] + prod[r, j]`` into row ``r``'s bounded max-heap.

    ``prod`` holds ``-2 <y_r, y_j>`` for the tile's columns ``offset + j``. Chunks
    of columns whose minimum cannot enter the heap are skipped after one pass.
    """
    n_rows, width = prod.shape
    size = heap_val.shape[1]
    for r in range(n_rows):
        hv = heap_val[r]
        hi = heap_idx[r]
        row = prod[r]
        top = hv[0]
        for j0 in range(0, width, _CHUNK):
            j1 = min(j0 + _CHUNK, width)
            low = np.float32(np.inf)
            for j in range(j0, j1):
                low = min(low, key_norm[j] + row[j])
            if low >= top:
                continue
            for j in range(j0, j1):
                v = key_norm[j] + row[j]
                if v < top:
                    # replace the root (the largest kept key) and sift down
                    pos = 0
                    while True:
                        child = 2 * pos + 1
                        if child >= size:
                            break
                        if child + 1 < size and hv[child + 1] > hv[child]:
                            child += 1
                        if hv[child] <= v:
                            break
                        hv[pos] = hv[child]
                        hi[pos] = hi[child]
                        pos = child
                    hv[pos] = v
                    hi[pos] = offset + j
                    top = hv[0]


def _scaled_float32(X):
    """Centred, power-of-two-scaled float32 copy and its squared norms (float64)."""
    centred = X - X.mean(axis=0)
    peak = np.abs(centred).max()
    exponent = 0 if peak == 0 else -int(np.frexp(peak)[1])
    scale = np.ldexp(1.0, exponent)  # exact: a power of two
    y32 = (centred * scale).astype(np.float32)
    norms = np.einsum("ij,ij->i", y32.astype(np.float64), y32.astype(np.float64))
    return y32, norms, scale


def _ranked_blocked(X, m, n_cand, threads):
    n, d = X.shape
    y32, norms, scale = _scaled_float32(X)
    c = (2 * d + 32) * _U32
    # heap key of column j for row i: norms[j] (1 - c) - 2 <y_i, y_j>; the lower
    # bound on the (scaled) distance is norms[i] (1 - c) + key - abs_tol, and
    # squared distances in X's units are the scaled ones times ``unscale`` (exact
    # powers of two).
    key_norm = (norms * (1.0 - c)).astype(np.float32)
    y_t = np.ascontiguousarray(y32.T)
    minus_2y = -2.0 * y32  # exact in float32
    unscale = 1.0 / (scale * scale)
    abs_tol = d * 1e-36
    out = np.empty((n, m), dtype=np.int64)
    block = min(_QUERY_BLOCK, n)
    tile = min(_COLUMN_TILE, n)

    def one_block(start):
        stop = min(start + block, n)
        prod = np.empty((stop - start, tile), dtype=np.float32)
        heap_val = np.full((stop - start, n_cand), np.inf, dtype=np.float32)
        heap_idx = np.zeros((stop - start, n_cand), dtype=np.int64)
        q = minus_2y[start:stop]
        for col in range(0, n, tile):
            col_stop = min(col + tile, n)
            buf = prod if col_stop - col == tile else prod[:, : col_stop - col]
            np.matmul(q, y_t[:, col:col_stop], out=buf)
            _scan_tile(buf, key_norm[col:col_stop], col, heap_val, heap_idx)
        rows = np.arange(start, stop, dtype=np.int64)
        lower = norms[rows] * (1.0 - c) + heap_val.max(axis=1) - abs_tol
        top, d_m, unsafe = _exact_from_candidates(X, rows, heap_idx, m, lower * unscale)
        out[start:stop] = top
        return rows[unsafe], d_m[unsafe]

    # one BLAS thread per worker: no nested parallelism, no spinning BLAS threads
    with threadpool_limits(limits=1, user_api="blas"):
        if threads == 1:
            parts = [one_block(s) for s in range(0, n, block)]
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                parts = list(pool.map(one_block, range(0, n, block)))
    grow = np.concatenate([p[0] for p in parts])
    if grow.size:
        dm = np.concatenate([p[1] for p in parts])
        for start in range(0, grow.size, block):
            sel = slice(start, start + block)
            out[grow[sel]] = _grow_blocked(
                X, y32, norms, key_norm, grow[sel], dm[sel], m, c, unscale, abs_tol
            )
    return out


def _grow_blocked(X, y32, norms, key_norm, rows, d_m, m, c, unscale, abs_tol):
    """Exact lists of ``rows`` from every sample whose lower bound is <= d_m."""
    keys = key_norm[None, :] - 2.0 * (y32[rows] @ y32.T)
    lower = (norms[rows, None] * (1.0 - c) + keys - abs_tol) * unscale
    pair_row, pair_j = np.nonzero(lower <= d_m[:, None])
    return _exact_from_pairs(X, rows, pair_row, pair_j.astype(np.int64), m)
