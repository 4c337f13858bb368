"""Local / global quality, co-ranking matrix, T and C against brute-force oracles."""

import numpy as np
import pytest
from sklearn.manifold import trustworthiness

from lqknn.neighbors import ranked_neighbors
from lqknn.quality import (
    MAX_DENSE_SAMPLES,
    coranking_matrix,
    global_quality,
    local_quality,
    local_quality_from_neighbors,
    raw_local_quality,
    trustworthiness_continuity,
)


# ----------------------------------------------------------------------------------
# oracle: full rank matrices from stable argsorts of full distance matrices
# ----------------------------------------------------------------------------------
def oracle_ranks(X):
    """rho[i, j]: position of j in i's list of all samples (stable, self included)."""
    X = np.asarray(X, dtype=np.float64)
    dist = np.zeros((X.shape[0], X.shape[0]))
    for f in range(X.shape[1]):
        dist += (X[:, None, f] - X[None, :, f]) ** 2
    order = np.argsort(dist, axis=1, kind="stable")
    n = X.shape[0]
    ranks = np.empty((n, n), dtype=np.int64)
    for i in range(n):
        ranks[i, order[i]] = np.arange(n)
    return ranks


def oracle_raw_q(high, low, ks, kt):
    rho, r = oracle_ranks(high), oracle_ranks(low)
    n = rho.shape[0]
    q = np.zeros(n)
    for i in range(n):
        for j in range(n):
            for a, b in ((rho[i, j], r[i, j]), (rho[j, i], r[j, i])):
                q[i] += (a <= ks or b <= ks) and abs(a - b) <= kt
    return q / (2 * ks * n)


def oracle_ranks_excluding_self(X):
    rho = oracle_ranks(X)
    n = rho.shape[0]
    out = np.zeros_like(rho)
    for i in range(n):
        others = [j for j in np.argsort(rho[i]) if j != i]
        out[i, others] = np.arange(1, n)
    return out


def oracle_coranking(high, low):
    rh, rl = oracle_ranks_excluding_self(high), oracle_ranks_excluding_self(low)
    n = rh.shape[0]
    Q = np.zeros((n - 1, n - 1), dtype=np.int64)
    for i in range(n):
        for j in range(n):
            if i != j:
                Q[rh[i, j] - 1, rl[i, j] - 1] += 1
    return Q


def oracle_global(Q, ks, kt):
    n = Q.shape[0] + 1
    high_rank, low_rank = np.meshgrid(np.arange(1, n), np.arange(1, n), indexing="ij")
    w = ((high_rank <= ks) | (low_rank <= ks)) & (np.abs(high_rank - low_rank) <= kt)
    return (w * Q).sum() / (ks * n)


def oracle_trustworthiness(high, low, k):
    rh, rl = oracle_ranks_excluding_self(high), oracle_ranks_excluding_self(low)
    n = rh.shape[0]
    total = 0
    for i in range(n):
        for j in range(n):
            if j != i and rl[i, j] <= k and rh[i, j] > k:
                total += rh[i, j] - k
    return 1 - 2.0 / (n * k * (2 * n - 3 * k - 1)) * total


def _pair(kind, n, seed):
    rng = np.random.default_rng(seed)
    if kind == "random":
        high = rng.normal(size=(n, 6))
        low = high[:, :2] + 0.5 * rng.normal(size=(n, 2))
    elif kind == "duplicates":
        base = rng.normal(size=(n // 5, 6))
        pick = rng.integers(0, n // 5, n)
        high = base[pick]
        low = np.round(high[:, :2] + 0.3 * rng.normal(size=(n, 2)), 1)
        low[: n // 4] = low[n // 4 : 2 * (n // 4)]  # duplicates in low space too
    elif kind == "grid":
        high = rng.integers(0, 3, size=(n, 5)).astype(float)
        low = rng.integers(0, 4, size=(n, 2)).astype(float)
    else:
        raise AssertionError(kind)
    return high, low


# ----------------------------------------------------------------------------------
# local quality
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["random", "duplicates", "grid"])
@pytest.mark.parametrize("ks,kt", [(1, 1), (3, 7), (10, 10), (12, 2)])
def test_local_quality_matches_brute_force(kind, ks, kt):
    high, low = _pair(kind, 90, seed=ks * 10 + kt)
    q = oracle_raw_q(high, low, ks, kt)
    np.testing.assert_allclose(raw_local_quality(high, low, ks, kt), q, atol=1e-12)
    np.testing.assert_allclose(
        local_quality(high, low, ks, kt), q / q.max(), atol=1e-12
    )


def test_local_quality_large_ks_kt_and_blocked_search():
    """ks + kt + 1 > N (every list complete) and a 40-d space (blocked search)."""
    rng = np.random.default_rng(7)
    high = rng.normal(size=(30, 40))
    low = rng.normal(size=(30, 2))
    for ks, kt in [(20, 25), (29, 29), (5, 3)]:
        q = oracle_raw_q(high, low, ks, kt)
        np.testing.assert_allclose(
            local_quality(high, low, ks, kt), q / q.max(), atol=1e-12
        )


def test_local_quality_hand_computed_line():
    """N = 4 on a line, projection swaps the two middle points; ks = kt = 1.

    high 0,1,2,3 at x = 0,1,2,3; low: samples at x = 0,2,1,3. Lists (self first):
    high: 0:[0,1,2,3] 1:[1,0,2,3] 2:[2,1,3,0] 3:[3,2,1,0]
    low:  0:[0,2,1,3] 1:[1,2,3,0] 2:[2,0,1,3] 3:[3,1,2,0]
    Weight-1 ordered pairs (i, j): the 4 self pairs, (0,1) rho 1 r 2, (0,2) rho 2
    r 1, (1,2) 2/1, (2,1) 1/2, (3,2) 1/2. (1,0) has rho 1, r 3: no. (2,0): rho 3,
    r 1: no. (2,3): 2/3 no... (3,1): rho 2 r 1: yes. (1,3): rho 3 r 2 no.
    q counts: 0 -> self 2 + (0,1) + (0,2) = 4; 1 -> 2 + (0,1) + (1,2) + (2,1)
    + (3,1) = 6; 2 -> 2 + (0,2) + (1,2) + (2,1) + (3,2) = 6; 3 -> 2 + (3,2)
    + (3,1) = 4. Divided by 2 ks N = 8.
    """
    high = np.array([[0.0], [1.0], [2.0], [3.0]])
    low = np.array([[0.0], [2.0], [1.0], [3.0]])
    expected = np.array([4, 6, 6, 4]) / 8
    np.testing.assert_allclose(raw_local_quality(high, low, 1, 1), expected)
    np.testing.assert_allclose(local_quality(high, low, 1, 1), expected / 0.75)
    np.testing.assert_allclose(oracle_raw_q(high, low, 1, 1), expected)


def test_identical_spaces():
    """Same space twice: w = 1 iff rank <= ks, so q(i) = (ks + 1 + in-degree) / 2ksN."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 2))
    ks, n = 5, 50
    in_degree = (oracle_ranks(X) <= ks).sum(axis=0)  # j's with i in their ks-list
    expected = (ks + 1 + in_degree) / (2 * ks * n)
    q = raw_local_quality(X, X, ks, 5)
    np.testing.assert_allclose(q, expected, atol=1e-12)
    assert q.mean() == pytest.approx((ks + 1) / (ks * n))


def test_from_neighbors_reuses_lists():
    high, low = _pair("duplicates", 80, seed=3)
    ks, kt = 4, 6
    hn = ranked_neighbors(high, 30)  # more columns than needed: ignored
    ln = ranked_neighbors(low, ks + kt + 1)
    q = oracle_raw_q(high, low, ks, kt)
    np.testing.assert_allclose(
        local_quality_from_neighbors(hn, ln, ks, kt), q / q.max(), atol=1e-12
    )
    np.testing.assert_allclose(
        local_quality_from_neighbors(hn, ln, ks, kt, normalise=False), q, atol=1e-12
    )


# ----------------------------------------------------------------------------------
# co-ranking matrix and global quality
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["random", "duplicates", "grid"])
def test_coranking_matrix_matches_brute_force(kind):
    high, low = _pair(kind, 40, seed=11)
    Q = coranking_matrix(high, low)
    np.testing.assert_array_equal(Q, oracle_coranking(high, low))
    np.testing.assert_array_equal(Q.sum(axis=0), np.full(39, 40))
    np.testing.assert_array_equal(Q.sum(axis=1), np.full(39, 40))


@pytest.mark.parametrize("kind", ["random", "duplicates", "grid"])
@pytest.mark.parametrize("ks,kt", [(1, 1), (5, 3), (10, 10), (30, 30)])
def test_global_quality_matches_sum_over_matrix(kind, ks, kt):
    high, low = _pair(kind, 40, seed=ks + kt)
    expected = oracle_global(oracle_coranking(high, low), ks, kt)
    assert abs(global_quality(high, low, ks, kt) - expected) < 1e-12


def test_global_quality_identity_is_one():
    X = np.random.default_rng(0).normal(size=(60, 3))
    assert global_quality(X, X, 7, 2) == pytest.approx(1.0, abs=1e-12)


# ----------------------------------------------------------------------------------
# trustworthiness and continuity
# ----------------------------------------------------------------------------------
def test_trustworthiness_matches_sklearn_without_ties():
    rng = np.random.default_rng(4)
    high = rng.normal(size=(120, 10))
    low = high[:, :2] + 0.3 * rng.normal(size=(120, 2))
    for k in (1, 5, 12):
        t, c = trustworthiness_continuity(high, low, k)
        assert t == pytest.approx(trustworthiness(high, low, n_neighbors=k), abs=1e-12)
        assert c == pytest.approx(trustworthiness(low, high, n_neighbors=k), abs=1e-12)


@pytest.mark.parametrize("kind", ["duplicates", "grid"])
def test_trustworthiness_continuity_exact_ties(kind):
    high, low = _pair(kind, 50, seed=9)
    t, c = trustworthiness_continuity(high, low, 6)
    assert t == pytest.approx(oracle_trustworthiness(high, low, 6), abs=1e-12)
    assert c == pytest.approx(oracle_trustworthiness(low, high, 6), abs=1e-12)


# ----------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------
def test_bad_inputs():
    X = np.zeros((10, 3))
    E = np.zeros((10, 2))
    for fn in (local_quality, raw_local_quality, global_quality):
        with pytest.raises(ValueError, match="ks"):
            fn(X, E, 0, 2)
        with pytest.raises(ValueError, match="ks"):
            fn(X, E, 10, 2)
        with pytest.raises(ValueError, match="kt"):
            fn(X, E, 2, 0)
        with pytest.raises(ValueError, match="kt"):
            fn(X, E, 2, 10)
        with pytest.raises(ValueError, match="same samples"):
            fn(X, E[:9], 2, 2)
        bad = X.copy()
        bad[3, 1] = np.nan
        with pytest.raises(ValueError, match="high contains NaN"):
            fn(bad, E, 2, 2)
        with pytest.raises(ValueError, match="low contains NaN"):
            fn(X, np.where(E == 0, np.inf, E), 2, 2)
        with pytest.raises(ValueError, match="2-D"):
            fn(X[:, 0], E, 2, 2)
    with pytest.raises(ValueError, match="same samples"):
        coranking_matrix(X, E[:9])
    with pytest.raises(ValueError, match="k must be < N / 2"):
        trustworthiness_continuity(X, E, 5)
    with pytest.raises(ValueError, match="k must be in"):
        trustworthiness_continuity(X, E, 0)
    big = np.zeros((MAX_DENSE_SAMPLES + 1, 1))
    with pytest.raises(ValueError, match="at most"):
        coranking_matrix(big, big)
    hn = ranked_neighbors(X, 5)
    with pytest.raises(ValueError, match="low_neighbors must have shape"):
        local_quality_from_neighbors(hn, hn[:, :3], 2, 2)
    with pytest.raises(ValueError, match="outside"):
        local_quality_from_neighbors(hn, hn + 10, 2, 2)
    with pytest.raises(ValueError, match="integer"):
        local_quality_from_neighbors(hn, hn.astype(float), 2, 2)
