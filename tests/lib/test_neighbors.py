"""Exact ranked neighbour lists against a brute-force oracle (full distance matrix)."""

import numpy as np
import pytest

from lqknn.neighbors import knn_excluding_self, pair_distances, ranked_neighbors


def oracle_distances(X):
    """Full squared-distance matrix, summed feature by feature (the documented rule)."""
    X = np.asarray(X, dtype=np.float64)
    dist = np.zeros((X.shape[0], X.shape[0]))
    for f in range(X.shape[1]):
        dist += (X[:, None, f] - X[None, :, f]) ** 2
    return dist


def oracle_lists(X):
    """Every row's complete list, stable sort: equal distances by lower index."""
    return np.argsort(oracle_distances(X), axis=1, kind="stable")


def _data(kind, n, d, seed):
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.normal(size=(n, d))
    if kind == "duplicates":  # few distinct points, many exact copies
        base = rng.normal(size=(max(n // 8, 2), d))
        return base[rng.integers(0, base.shape[0], n)]
    if kind == "grid":  # integer points: very many exactly equal distances
        return rng.integers(0, 3, size=(n, d)).astype(float)
    if kind == "offset":  # large offset, tiny spread: float32 search must cope
        return 1e6 + 1e-3 * rng.normal(size=(n, d))
    if kind == "near":  # near-ties far below float32 resolution
        base = rng.normal(size=(max(n // 8, 2), d))
        X = base[rng.integers(0, base.shape[0], n)]
        return X + 1e-12 * rng.integers(-2, 3, size=X.shape)
    raise AssertionError(kind)


@pytest.mark.parametrize("d", [1, 2, 3, 6, 32])
@pytest.mark.parametrize("kind", ["random", "duplicates", "grid", "offset", "near"])
@pytest.mark.parametrize("m", [1, 4, 21])
def test_ranked_neighbors_matches_oracle(d, kind, m):
    X = _data(kind, 300, d, seed=d * 100 + m)
    expected = oracle_lists(X)[:, :m]
    np.testing.assert_array_equal(ranked_neighbors(X, m), expected)


def test_ranked_neighbors_multi_block_and_threads():
    """More rows than one query block / column tile of the blocked search."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=(700, 8))
    X = np.vstack([base, base[:200]])  # duplicates of LOWER index for rows 700+
    expected = oracle_lists(X)[:, :7]
    for n_jobs in (1, 2):
        np.testing.assert_array_equal(ranked_neighbors(X, 7, n_jobs=n_jobs), expected)
    # rows 700..899 are copies of 0..199, which come first in their lists
    got = ranked_neighbors(X, 2)
    np.testing.assert_array_equal(got[700:, 0], np.arange(200))
    np.testing.assert_array_equal(got[700:, 1], np.arange(700, 900))


def test_boundary_ties_keep_lowest_indices():
    """Hand case: 0 at the origin, 1..6 all at distance 1; cut-off inside the tie."""
    X = np.array(
        [[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1], [1, 0], [0, 1], [5, 5]], float
    )
    got = ranked_neighbors(X, 4)
    np.testing.assert_array_equal(got[0], [0, 1, 2, 3])
    # sample 5 duplicates sample 1 (lower index): 1 first, then itself
    np.testing.assert_array_equal(got[5][:2], [1, 5])


def test_full_length_lists_are_permutations():
    X = _data("grid", 40, 2, seed=0)
    got = ranked_neighbors(X, 40)
    np.testing.assert_array_equal(got, oracle_lists(X))


def test_knn_excluding_self_matches_oracle_with_duplicates():
    X = _data("duplicates", 200, 3, seed=2)
    full = oracle_lists(X)
    k = 6
    expected = np.array(
        [row[row != i][:k] for i, row in enumerate(full)], dtype=np.int64
    )
    np.testing.assert_array_equal(knn_excluding_self(X, k), expected)


def test_knn_excluding_self_many_lower_duplicates():
    """i has more lower-index duplicates than K: the list keeps K others."""
    X = np.zeros((6, 2))
    X[5] = 1.0
    got = knn_excluding_self(X, 2)
    np.testing.assert_array_equal(got[4], [0, 1])
    np.testing.assert_array_equal(got[0], [1, 2])
    np.testing.assert_array_equal(got[5], [0, 1])


def test_pair_distances_formula_and_symmetry():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 7))
    a, b = np.meshgrid(np.arange(30), np.arange(30), indexing="ij")
    dist = pair_distances(X, a, b)
    np.testing.assert_array_equal(dist, oracle_distances(X))
    np.testing.assert_array_equal(dist, dist.T)
    np.testing.assert_allclose(dist, ((X[:, None] - X[None]) ** 2).sum(-1), rtol=1e-12)


def test_bad_inputs():
    X = np.zeros((5, 2))
    with pytest.raises(ValueError, match="n_neighbors"):
        ranked_neighbors(X, 0)
    with pytest.raises(ValueError, match="n_neighbors"):
        ranked_neighbors(X, 6)
    with pytest.raises(ValueError, match="n_neighbors"):
        knn_excluding_self(X, 5)
    with pytest.raises(ValueError, match="NaN"):
        ranked_neighbors(np.array([[0.0, np.nan], [1.0, 1.0]]), 1)
    with pytest.raises(ValueError, match="2-D"):
        ranked_neighbors(np.zeros(5), 1)
    with pytest.raises(ValueError, match="n_jobs"):
        ranked_neighbors(X, 2, n_jobs=0)
    with pytest.raises(ValueError, match="same shape"):
        pair_distances(X, [0, 1], [0])
