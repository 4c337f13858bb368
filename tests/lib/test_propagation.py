"""Tests for lqknn.propagation against literal, loop-based transcriptions of METHOD.md.

The oracles below (``oracle_lq_knn``, ``oracle_std_knn``, ``brute_knn``) are slow
Python written straight from METHOD.md sections 4 and 5; they share no code with
the library.
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest

from lqknn.propagation import (
    METHODS,
    PropagationResult,
    choose_setting,
    estimate_setting_accuracy,
    label_spreading,
    lq_knn,
    opf_semi,
    propagate,
    std_knn,
)

HAS_NEIGHBORS = importlib.util.find_spec("lqknn.neighbors") is not None


# --------------------------------------------------------------------------- #
# Oracles
# --------------------------------------------------------------------------- #
_KNN_CACHE: dict = {}


def brute_knn(E, K):
    """V_K(j): the K+1 nearest including self (stable order), minus self."""
    E = np.asarray(E, float)
    key = (E.tobytes(), E.shape, K)
    if key in _KNN_CACHE:
        return _KNN_CACHE[key].copy()
    n = E.shape[0]
    D = np.sqrt(((E[:, None, :] - E[None, :, :]) ** 2).sum(-1))  # small N only
    out = []
    for j in range(n):
        ranked = sorted(range(n), key=lambda i: (D[j, i], i))  # lower index first
        first = ranked[: K + 1]
        if j in first:
            first.remove(j)
        else:
            first = first[:K]
        out.append(first)
    _KNN_CACHE[key] = np.array(out, dtype=np.int64)
    return _KNN_CACHE[key].copy()


def oracle_lq_knn(V, y, lq, tau, sort=True):
    """METHOD section 4, literally."""
    n = len(y)
    labels = list(int(v) for v in y)
    parent = [-1] * n
    it_of = [0 if v != -1 else -1 for v in labels]
    if not sort:
        order = [j for j in range(n) if y[j] != -1] + [
            j for j in range(n) if y[j] == -1
        ]
        p = 0
        while True:
            p += 1
            changed = False
            for v in order:
                if labels[v] == -1 or not lq[v] > tau:
                    continue
                for i in V[v]:
                    if labels[i] == -1 and lq[i] > tau:
                        labels[i] = labels[v]
                        parent[i] = v
                        it_of[i] = p
                        changed = True
            if not changed:
                break
        return labels, parent, it_of
    visit = list(np.argsort(lq, kind="stable")[::-1])
    it = 0
    while True:
        it += 1
        S = [j for j in visit if labels[j] != -1 and lq[j] > tau]
        candidates = {}
        for j in S:
            for i in V[j]:
                if labels[i] == -1 and lq[i] > tau:
                    candidates.setdefault(int(i), []).append(int(j))
        if not candidates:
            break
        chosen = {}
        for i, js in candidates.items():
            best = js[0]
            for j in js[1:]:
                if lq[j] > lq[best]:  # strictly higher: earlier visitor kept on ties
                    best = j
            chosen[i] = best
        for i, j in chosen.items():
            labels[i] = labels[j]
            parent[i] = j
            it_of[i] = it
    return labels, parent, it_of


def oracle_std_knn(V, y):
    """METHOD section 5, literally."""
    n = len(y)
    labels = list(int(v) for v in y)
    parent = [-1] * n
    it_of = [0 if v != -1 else -1 for v in labels]
    order = [j for j in range(n) if y[j] != -1] + [j for j in range(n) if y[j] == -1]
    p = 0
    while True:
        p += 1
        changed = False
        for v in order:
            if labels[v] == -1:
                continue
            for i in V[v]:
                if labels[i] == -1:
                    labels[i] = labels[v]
                    parent[i] = v
                    it_of[i] = p
                    changed = True
        if not changed:
            break
    return labels, parent, it_of


def random_problem(
    seed, n=120, n_classes=3, frac=0.15, levels=(0.05, 0.1, 0.3, 0.5, 1.0)
):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(n_classes, 2))
    truth = rng.integers(0, n_classes, n)
    E = centres[truth] + rng.normal(size=(n, 2))
    y = np.full(n, -1)
    lab = rng.choice(n, int(frac * n), replace=False)
    y[lab] = truth[lab]
    y[lab[:n_classes]] = np.arange(n_classes)  # every class labelled
    lq = rng.choice(np.array(levels), n)  # few distinct values: many ties
    return E, y, lq, truth


def assert_same(res, oracle):
    labels, parent, it_of = oracle
    np.testing.assert_array_equal(res.labels, labels)
    np.testing.assert_array_equal(res.parent, parent)
    np.testing.assert_array_equal(res.iteration, it_of)


# --------------------------------------------------------------------------- #
# Against the oracles
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("K", [1, 3, 7])
@pytest.mark.parametrize("tau", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("sort", [True, False])
def test_lq_knn_matches_oracle(seed, K, tau, sort):
    E, y, lq, _ = random_problem(seed, n=60 + 20 * seed)
    V = brute_knn(E, K)
    res = lq_knn(E, y, lq, K=K, tau=tau, sort=sort, neighbors=V)
    assert_same(res, oracle_lq_knn(V, y, lq, tau, sort=sort))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("K", [1, 2, 5, 10])
def test_std_knn_matches_oracle(seed, K):
    E, y, _, _ = random_problem(seed, n=60 + 25 * seed, frac=0.05)
    V = brute_knn(E, K)
    assert_same(std_knn(E, y, K=K, neighbors=V), oracle_std_knn(V, y))


def test_many_distinct_lq_and_all_equal_lq():
    E, y, _, _ = random_problem(11, n=150)
    V = brute_knn(E, 4)
    for lq in (np.linspace(0, 1, 150)[::-1].copy(), np.ones(150)):
        res = lq_knn(E, y, lq, K=4, tau=0.05, neighbors=V)
        assert_same(res, oracle_lq_knn(V, y, lq, 0.05))


def test_wider_neighbor_array_is_sliced():
    E, y, lq, _ = random_problem(3)
    V10 = brute_knn(E, 10)
    V4 = brute_knn(E, 4)
    np.testing.assert_array_equal(V10[:, :4], V4)  # prefix property of the oracle
    a = lq_knn(E, y, lq, K=4, tau=0.1, neighbors=V10)
    assert_same(a, oracle_lq_knn(V4, y, lq, 0.1))
    assert_same(std_knn(E, y, K=4, neighbors=V10), oracle_std_knn(V4, y))


@pytest.mark.skipif(not HAS_NEIGHBORS, reason="lqknn.neighbors not written yet")
def test_default_neighbors_match_brute_force():
    E, y, lq, _ = random_problem(5, n=90)
    V = brute_knn(E, 5)
    assert_same(lq_knn(E, y, lq, K=5, tau=0.1), oracle_lq_knn(V, y, lq, 0.1))
    assert_same(std_knn(E, y, K=5), oracle_std_knn(V, y))
    res = lq_knn(E, y, lq, K=5, tau=0.1, sort=False)
    assert_same(res, oracle_lq_knn(V, y, lq, 0.1, sort=False))


# --------------------------------------------------------------------------- #
# Hand-computed cases (points on a line; equal distances: lower index first)
# --------------------------------------------------------------------------- #
def line(n):
    return np.c_[np.arange(n, dtype=float), np.zeros(n)]


def test_hand_lq_tie_goes_to_higher_index():
    # 0 (class 0) -- 1 (unlabelled) -- 2 (class 1), K = 1:
    # V(0) = {1}, V(2) = {1}; both candidates for 1 with equal lq; visiting order
    # argsort([1,1,1], stable)[::-1] = [2, 1, 0] -> 2 wins.
    E, y = line(3), np.array([0, -1, 1])
    res = lq_knn(E, y, np.ones(3), K=1, tau=0.1)
    assert res.labels.tolist() == [0, 1, 1]
    assert res.parent.tolist() == [-1, 2, -1]
    assert res.iteration.tolist() == [0, 1, 0]


def test_hand_lq_highest_lq_wins():
    E, y = line(3), np.array([0, -1, 1])
    res = lq_knn(E, y, np.array([1.0, 0.5, 0.9]), K=1, tau=0.1)
    assert res.labels.tolist() == [0, 0, 1]
    assert res.parent.tolist() == [-1, 0, -1]


def test_hand_unsorted_and_std_first_visitor_in_index_order():
    # Same line: Std-KNN visits labelled samples in index order: 0 labels 1 first.
    E, y = line(3), np.array([0, -1, 1])
    for res in (
        std_knn(E, y, K=1),
        lq_knn(E, y, np.ones(3), K=1, tau=0.1, sort=False),
    ):
        assert res.labels.tolist() == [0, 0, 1]
        assert res.parent.tolist() == [-1, 0, -1]
        assert res.iteration.tolist() == [0, 1, 0]


def test_hand_std_knn_labels_spread_within_a_pass():
    # 0..5 on a line, 0 is class 0, 5 is class 1, K = 1.
    # V: 0->1, 1->0, 2->1, 3->2, 4->3, 5->4.
    # Pass 1: 0 labels 1; 5 labels 4; then 1,2,3 (nothing), 4 (labelled in this
    # pass) labels 3. Pass 2: 3 labels 2. Pass 3: nothing.
    E, y = line(6), np.array([0, -1, -1, -1, -1, 1])
    res = std_knn(E, y, K=1)
    assert res.labels.tolist() == [0, 0, 1, 1, 1, 1]
    assert res.parent.tolist() == [-1, 0, 3, 4, 5, -1]
    assert res.iteration.tolist() == [0, 1, 2, 1, 1, 0]
    assert res.n_iterations == 2


def test_hand_lq_knn_iterations_are_synchronous():
    # Same line, sorted LQ-KNN, lq = 1: it.1 -> 4 (from 5), 1 (from 0);
    # it.2 -> 3 (from 4); it.3 -> 2 (from 3); it.4 labels nothing.
    E, y = line(6), np.array([0, -1, -1, -1, -1, 1])
    res = lq_knn(E, y, np.ones(6), K=1, tau=0.0)
    assert res.labels.tolist() == [0, 0, 1, 1, 1, 1]
    assert res.parent.tolist() == [-1, 0, 3, 4, 5, -1]
    assert res.iteration.tolist() == [0, 1, 3, 2, 1, 0]


def test_hand_low_quality_blocks_propagation():
    # lq(2) <= tau: 2 is never labelled and the chain stops there.
    E, y = line(5), np.array([0, -1, -1, -1, -1])
    y[4] = 1
    lq = np.array([1.0, 1.0, 0.1, 1.0, 1.0])
    for sort in (True, False):
        res = lq_knn(E, y, lq, K=1, tau=0.1, sort=sort)
        assert res.labels.tolist() == [0, 0, -1, 1, 1]
        assert res.iteration[2] == -1


# --------------------------------------------------------------------------- #
# Properties
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("sort", [True, False])
@pytest.mark.parametrize("tau", [0.0, 0.1, 0.5])
def test_properties(sort, tau):
    E, y, lq, _ = random_problem(21, n=200)
    K = 6
    V = brute_knn(E, K)
    res = lq_knn(E, y, lq, K=K, tau=tau, sort=sort, neighbors=V)
    manual = y != -1
    np.testing.assert_array_equal(res.labels[manual], y[manual])
    assert (res.parent[manual] == -1).all() and (res.iteration[manual] == 0).all()
    assert (res.labels[~manual & (lq <= tau)] == -1).all()
    prop = res.propagated_mask(y)
    np.testing.assert_array_equal(prop, res.propagated_mask())
    assert prop.sum() == res.n_propagated > 0
    for i in np.flatnonzero(prop):
        j = res.parent[i]
        assert res.labels[j] == res.labels[i]
        assert i in V[j]
        assert lq[j] > tau and lq[i] > tau
        if sort:  # synchronous iterations: the parent was labelled before
            assert res.iteration[j] < res.iteration[i]
        else:  # a pass may use labels given earlier in the same pass
            assert res.iteration[j] <= res.iteration[i]
    never = res.labels == -1
    assert (res.iteration[never] == -1).all() and (res.parent[never] == -1).all()


def test_tau_one_labels_nothing():
    E, y, lq, _ = random_problem(2)
    for sort in (True, False):
        res = lq_knn(E, y, lq, K=5, tau=1.0, sort=sort, neighbors=brute_knn(E, 5))
        np.testing.assert_array_equal(res.labels, y)
        assert res.n_propagated == 0 and np.isnan(res.ms_per_sample)


def test_std_knn_properties_and_score():
    E, y, _, truth = random_problem(4, n=150)
    res = std_knn(E, y, K=4, neighbors=brute_knn(E, 4))
    np.testing.assert_array_equal(res.labels[y != -1], y[y != -1])
    s = res.score(y, truth)
    unl = y == -1
    prop = unl & (res.labels != -1)
    assert s["n_unlabelled"] == unl.sum()
    assert s["n_propagated"] == prop.sum()
    assert s["annotation_accuracy"] == pytest.approx(
        np.sum(res.labels[prop] == truth[prop]) / prop.sum()
    )
    assert s["labelled_fraction"] == pytest.approx(prop.sum() / unl.sum())
    assert s["ms_per_sample"] == pytest.approx(1000 * res.seconds / prop.sum())
    pc = res.per_class_accuracy(y, truth)
    for c in range(3):
        m = prop & (truth == c)
        assert pc[c] == pytest.approx(np.mean(res.labels[m] == c))


def test_result_type_and_dispatcher():
    E, y, lq, _ = random_problem(8, n=80)
    V = brute_knn(E, 5)
    a = propagate("lq_knn", E, y, lq, K=5, tau=0.1, neighbors=V)
    b = propagate("lq_knn_unsorted", E, y, lq, K=5, tau=0.1, neighbors=V)
    c = propagate("std_knn", E, y, K=5, neighbors=V)
    assert_same(a, oracle_lq_knn(V, y, lq, 0.1))
    assert_same(b, oracle_lq_knn(V, y, lq, 0.1, sort=False))
    assert_same(c, oracle_std_knn(V, y))
    for r in (a, b, c):
        assert isinstance(r, PropagationResult)
        assert r.labels.dtype == r.parent.dtype == r.iteration.dtype == np.int64
        assert r.seconds >= 0
    assert (a.method, b.method, c.method) == ("lq_knn", "lq_knn_unsorted", "std_knn")
    assert set(METHODS) == {
        "lq_knn",
        "lq_knn_unsorted",
        "std_knn",
        "opf_semi",
        "label_spreading",
    }
    with pytest.raises(ValueError, match="method must be one of"):
        propagate("lq-knn", E, y, lq)
    with pytest.raises(ValueError, match="fixes sort=False"):
        propagate("lq_knn_unsorted", E, y, lq, sort=True, neighbors=V)


# --------------------------------------------------------------------------- #
# OPF-semi and LabelSpreading
# --------------------------------------------------------------------------- #
def test_opf_semi_labels_everything():
    E, y, _, truth = random_problem(1, n=90)
    res = propagate("opf_semi", E, y)
    names = [n for n in logging.root.manager.loggerDict if n.startswith("opfython")]
    assert names and not any(logging.getLogger(n).disabled for n in names)
    assert (res.labels != -1).all()
    np.testing.assert_array_equal(res.labels[y != -1], y[y != -1])
    assert set(np.unique(res.labels)) <= {0, 1, 2}
    assert (res.iteration[y == -1] == 1).all() and (res.parent == -1).all()
    assert res.score(y, truth)["labelled_fraction"] == 1.0
    assert res.score(y, truth)["annotation_accuracy"] > 0.6


def test_opf_semi_is_silent_in_a_fresh_process(tmp_path):
    # opfython logs at DEBUG to stdout and to ./opfython.log when first imported.
    code = (
        "import numpy as np\n"
        "from lqknn.propagation import opf_semi\n"
        "E = np.arange(20.0).reshape(10, 2)\n"
        "y = np.array([0, -1, -1, -1, -1, -1, -1, -1, -1, 1])\n"
        "print(opf_semi(E, y).labels.tolist())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == str([0] * 5 + [1] * 5)
    assert "opfython" not in out.stderr
    assert not (tmp_path / "opfython.log").exists()


def test_opf_semi_separable_line():
    # Two far groups on a line: OPF assigns each group its labelled sample's class.
    E = np.r_[line(5), line(5) + [100.0, 0.0]]
    y = np.array([0, -1, -1, -1, -1, -1, -1, -1, -1, 1])
    res = opf_semi(E, y)
    assert res.labels.tolist() == [0] * 5 + [1] * 5


def test_label_spreading():
    E, y, _, truth = random_problem(6, n=150)
    res = label_spreading(E, y, n_neighbors=7)
    np.testing.assert_array_equal(res.labels[y != -1], y[y != -1])
    assert res.score(y, truth)["annotation_accuracy"] > 0.6
    assert res.method == "label_spreading"
    with pytest.raises(ValueError, match="kernel must be"):
        label_spreading(E, y, kernel="poly")
    with pytest.raises(ValueError, match="alpha must be in"):
        label_spreading(E, y, alpha=1.0)
    with pytest.raises(ValueError, match="n_neighbors must be in"):
        label_spreading(E, y, n_neighbors=150)


# --------------------------------------------------------------------------- #
# Annotation-error control
# --------------------------------------------------------------------------- #
def blobs(seed, n_per=60, n_classes=3, sep=30.0, frac=0.3):
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(n_classes), n_per)
    E = np.c_[truth * sep, np.zeros_like(truth)] + rng.normal(size=(truth.size, 2))
    y = np.full(truth.size, -1)
    for c in range(n_classes):
        idx = np.flatnonzero(truth == c)
        keep = rng.choice(idx, int(frac * n_per), replace=False)
        y[keep] = c
    return E, y, truth


def test_error_control_on_separable_blobs():
    E, y, _ = blobs(0)
    lq = np.ones(y.size)
    V = brute_knn(E, 8)
    est = estimate_setting_accuracy(
        E, y, lq, Ks=[3, 8], taus=[0.1, 0.5], n_splits=4, neighbors=V
    )
    assert len(est) == 2 * 2 + 2  # lq_knn (K x tau) + std_knn (K)
    assert list(est.columns[:4]) == ["method", "K", "tau", "accuracy"]
    assert est["tau"][est["method"] == "std_knn"].isna().all()
    np.testing.assert_allclose(est["accuracy"], 1.0)
    assert (est["coverage"] > 0.8).all()  # small K may leave tiny islands
    assert (est["n_hidden"] == 3 * round(0.2 * 18)).all()
    with joblib.parallel_config(backend="threading"):  # no process start-up cost
        again = estimate_setting_accuracy(
            E, y, lq, Ks=[3, 8], taus=[0.1, 0.5], n_splits=4, neighbors=V, n_jobs=2
        )
    pd.testing.assert_frame_equal(est, again)


def test_error_control_random_labels_are_poorly_estimated():
    # Labels independent of position: propagation is guessing (~1/3 accuracy).
    rng = np.random.default_rng(3)
    E = rng.normal(size=(300, 2))
    y = np.full(300, -1)
    lab = rng.choice(300, 120, replace=False)
    y[lab] = rng.integers(0, 3, 120)
    est = estimate_setting_accuracy(
        E,
        y,
        None,
        Ks=[5],
        taus=[],
        methods=("std_knn",),
        n_splits=5,
        neighbors=brute_knn(E, 5),
    )
    assert 0.1 < est["accuracy"].iloc[0] < 0.6


def test_error_control_hides_only_labelled_and_tau_restricts_coverage():
    E, y, _ = blobs(1)
    lq = np.where(np.arange(y.size) % 2 == 0, 1.0, 0.2)
    est = estimate_setting_accuracy(
        E,
        y,
        lq,
        Ks=[5],
        taus=[0.1, 0.3],
        methods=("lq_knn", "lq_knn_unsorted"),
        n_splits=3,
        neighbors=brute_knn(E, 5),
    )
    cov = est.set_index(["method", "tau"])["coverage"]
    for m in ("lq_knn", "lq_knn_unsorted"):
        assert cov[(m, 0.1)] > cov[(m, 0.3)]  # tau 0.3 never labels lq = 0.2


def test_error_control_matches_a_hand_made_hide_and_score_loop():
    """Oracle: draw the stratified hidden sets by hand with the same seeded
    generator (per class, in class order: round(0.2 n_c) of the labelled samples,
    at least one kept), propagate with the public functions, score on the hidden
    samples only."""
    E, y, _ = blobs(4, sep=6.0)  # overlapping blobs: errors happen
    rng_lq = np.random.default_rng(9)
    lq = np.round(rng_lq.uniform(size=y.size), 1)
    lq /= lq.max()
    V = brute_knn(E, 7)
    Ks, taus, n_splits = [3, 7], [0.2, 0.5], 4
    est = estimate_setting_accuracy(
        E, y, lq, Ks=Ks, taus=taus, n_splits=n_splits, seed=5, neighbors=V
    )
    rng = np.random.default_rng(5)
    hidden_sets = []
    for _ in range(n_splits):
        hidden = []
        for c in np.unique(y[y >= 0]):
            members = np.flatnonzero(y == c)
            n_hide = min(int(round(0.2 * members.size)), members.size - 1)
            hidden.append(rng.choice(members, size=n_hide, replace=False))
        hidden_sets.append(np.sort(np.concatenate(hidden)))
    for h in hidden_sets:
        assert (y[h] >= 0).all()  # only labelled samples are ever hidden
    for (method, K, tau), row in est.set_index(["method", "K", "tau"]).iterrows():
        accs, covs = [], []
        for h in hidden_sets:
            y_s = y.copy()
            y_s[h] = -1
            if method == "std_knn":
                res = std_knn(E, y_s, K, neighbors=V[:, :K])
            else:
                res = lq_knn(E, y_s, lq, K, tau, neighbors=V[:, :K])
            got = res.labels[h]
            prop = got >= 0
            covs.append(prop.mean())
            if prop.any():
                accs.append(np.mean(got[prop] == y[h][prop]))
        assert row["coverage"] == pytest.approx(np.mean(covs), abs=1e-12)
        assert row["accuracy"] == pytest.approx(np.mean(accs), abs=1e-12)
        assert row["n_hidden"] == hidden_sets[0].size
    assert est["accuracy"].min() < 1.0  # the blobs overlap: the test has teeth


def test_choose_setting_hand_table():
    est = pd.DataFrame(
        {
            "method": ["lq_knn", "lq_knn", "lq_knn", "std_knn"],
            "K": [5, 10, 20, 10],
            "tau": [0.5, 0.1, 0.1, np.nan],
            "accuracy": [0.99, 0.93, 0.90, 0.91],
            "coverage": [0.15, 0.98, 0.995, 0.999],
        }
    )
    got = choose_setting(est, 0.92)
    assert (got["method"], got["K"], got["tau"]) == ("lq_knn", 10, 0.1)
    assert "reason" in got
    assert choose_setting(est, 0.95)["K"] == 5
    assert choose_setting(est, 0.5)["method"] == "std_knn"
    with pytest.warns(UserWarning, match="No setting reaches"):
        assert choose_setting(est, 0.995) is None
    with pytest.raises(ValueError, match="target_accuracy must be in"):
        choose_setting(est, 1.5)
    with pytest.raises(ValueError, match="lacks column"):
        choose_setting(est.drop(columns="coverage"), 0.9)


def test_choose_setting_respects_target_on_estimates():
    E, y, _ = blobs(2, sep=4.0)
    lq = np.random.default_rng(0).choice([0.2, 0.6, 1.0], y.size)
    est = estimate_setting_accuracy(
        E, y, lq, Ks=[2, 6], taus=[0.1, 0.5], n_splits=3, neighbors=brute_knn(E, 6)
    )
    for target in (0.5, 0.8, 0.95):
        got = choose_setting(est, target)
        if got is None:
            assert (est["accuracy"] < target).all()
            continue
        assert got["accuracy"] >= target
        assert got["coverage"] == est["coverage"][est["accuracy"] >= target].max()


# --------------------------------------------------------------------------- #
# Bad input
# --------------------------------------------------------------------------- #
def test_bad_inputs():
    E, y, lq, _ = random_problem(0, n=40)
    V = brute_knn(E, 3)
    with pytest.raises(ValueError, match="K must be in"):
        lq_knn(E, y, lq, K=0, neighbors=V)
    with pytest.raises(ValueError, match="K must be in"):
        std_knn(E, y, K=40)
    with pytest.raises(ValueError, match="tau must be in"):
        lq_knn(E, y, lq, K=3, tau=1.5, neighbors=V)
    with pytest.raises(ValueError, match="tau must be in"):
        lq_knn(E, y, lq, K=3, tau=-0.1, neighbors=V)
    with pytest.raises(ValueError, match="no labelled sample"):
        std_knn(E, np.full(40, -1), K=3, neighbors=V)
    one = np.full(40, -1)
    one[:5] = 2
    with pytest.raises(ValueError, match="single class"):
        lq_knn(E, one, lq, K=3, neighbors=V)
    with pytest.raises(ValueError, match="labels has 39 entries"):
        std_knn(E, y[:-1], K=3, neighbors=V)
    with pytest.raises(ValueError, match="local_quality has 39 entries"):
        lq_knn(E, y, lq[:-1], K=3, neighbors=V)
    with pytest.raises(ValueError, match="local_quality is required"):
        propagate("lq_knn", E, y, K=3, neighbors=V)
    bad = E.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="embedding contains NaN"):
        std_knn(bad, y, K=3, neighbors=V)
    with pytest.raises(ValueError, match="local_quality contains NaN"):
        lq_knn(E, y, np.where(np.arange(40) == 1, np.nan, lq), K=3, neighbors=V)
    with pytest.raises(ValueError, match="labels contains ids"):
        std_knn(E, np.where(np.arange(40) == 0, -3, y), K=3, neighbors=V)
    with pytest.raises(ValueError, match="embedding must be a 2-D"):
        std_knn(E[:, 0], y, K=3, neighbors=V)
    with pytest.raises(ValueError, match="opf_semi|single class"):
        opf_semi(E, one)


def test_bad_neighbors():
    E, y, lq, _ = random_problem(0, n=40)
    V = brute_knn(E, 3)
    with pytest.raises(ValueError, match="neighbors must have shape"):
        std_knn(E, y, K=3, neighbors=V[:-1])
    with pytest.raises(ValueError, match="neighbors has 3 columns"):
        std_knn(E, y, K=4, neighbors=V)
    with pytest.raises(ValueError, match="outside"):
        std_knn(E, y, K=3, neighbors=np.where(V == 0, 40, V))
    selfish = V.copy()
    selfish[5, 0] = 5
    with pytest.raises(ValueError, match="exclude each sample itself"):
        std_knn(E, y, K=3, neighbors=selfish)
    with pytest.raises(ValueError, match="integer indices"):
        std_knn(E, y, K=3, neighbors=V.astype(float))


def test_bad_error_control_inputs():
    E, y, _ = blobs(0, n_per=20)
    lq = np.ones(y.size)
    V = brute_knn(E, 5)
    with pytest.raises(ValueError, match="methods must be among"):
        estimate_setting_accuracy(E, y, lq, [3], [0.1], methods=("opf_semi",))
    with pytest.raises(ValueError, match="hide_fraction must be in"):
        estimate_setting_accuracy(E, y, lq, [3], [0.1], hide_fraction=1.0, neighbors=V)
    with pytest.raises(ValueError, match="hides no labelled sample"):
        estimate_setting_accuracy(E, y, lq, [3], [0.1], hide_fraction=0.01, neighbors=V)
    with pytest.raises(ValueError, match="K must be in"):
        estimate_setting_accuracy(E, y, lq, [0], [0.1], neighbors=V)
    with pytest.raises(ValueError, match="tau must be in"):
        estimate_setting_accuracy(E, y, lq, [3], [2.0], neighbors=V)
    with pytest.raises(ValueError, match="taus must hold"):
        estimate_setting_accuracy(E, y, lq, [3], [], neighbors=V)
    with pytest.raises(ValueError, match="n_splits must be in"):
        estimate_setting_accuracy(E, y, lq, [3], [0.1], n_splits=0, neighbors=V)
