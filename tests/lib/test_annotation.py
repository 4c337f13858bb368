"""Tests for lqknn.annotation against independent oracles.

Oracles: scikit-learn's ``silhouette_score`` on the labelled subset only (METHOD.md
section 2), class counts ``floor(p * n_c)`` (section 1), direct calls of
``lq_knn`` / ``std_knn`` scored by hand (section 4), and pandas group-bys written
here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import silhouette_score

from lqknn import annotation as A
from lqknn.propagation import lq_knn, std_knn

CLASS_NAMES = ["a", "b", "c"]
COUNTS = (60, 70, 50)
P = 0.1
KS = (3, 5)
TAUS = (0.1, 0.3)
KEYS = ("ks10_kt10", "ks5_kt5")
VARIANTS = [
    {"name": "none", "method": "none"},
    {"name": "all", "method": "manual_all"},
    {"name": "std5", "method": "std_knn", "K": 5},
    {"name": "lq5", "method": "lq_knn", "K": 5, "tau": 0.1},
]


def make_problem(seed=0):
    """Three 2-D configurations: 0 mixes the classes, 1 separates them (with some
    overlap, so propagation makes errors), 2 is in between."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), COUNTS)
    rng.shuffle(y)
    n = y.size
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    mixed = rng.normal(size=(n, 2)) * 4
    separated = centres[y] + rng.normal(size=(n, 2)) * 1.6
    between = 0.4 * centres[y] + rng.normal(size=(n, 2)) * 1.6
    emb = np.stack([mixed, separated, between])
    # lq in steps of 0.1: many ties, as the real local quality has.
    lq = {k: np.round(rng.uniform(size=(3, n)), 1) for k in KEYS}
    return emb, lq, y


def make_config(**kw):
    params = dict(
        labelled_fraction=P,
        n_repetitions=3,
        seed=7,
        Ks=KS,
        taus=TAUS,
        methods=("std_knn", "lq_knn", "lq_knn_unsorted"),
        ks_kt=((10, 10), (5, 5)),
        n_splits=3,
        variants=VARIANTS,
        n_jobs=1,
    )
    params.update(kw)
    return A.StudyConfig(**params)


@pytest.fixture(scope="module")
def problem():
    return make_problem()


@pytest.fixture(scope="module")
def study(problem):
    emb, lq, y = problem
    return A.run_evaluation_study(
        emb, lq, y, make_config(), CLASS_NAMES, progress=False
    )


def _row(results, **where):
    m = np.ones(len(results), dtype=bool)
    for k, v in where.items():
        col = results[k]
        m &= col.isna().to_numpy() if v is None else (col == v).to_numpy()
    sub = results[m]
    assert len(sub) == 1, where
    return sub.iloc[0]


# --------------------------------------------------------------------------- #
# Evaluation study
# --------------------------------------------------------------------------- #
def test_labelled_subset_per_repetition(study, problem):
    _, _, y = problem
    masks = [s["labelled_mask"] for s in study["label_sets"]]
    assert len(masks) == 3
    for mask in masks:
        assert mask.dtype == bool and mask.shape == y.shape
        for c, n_c in enumerate(COUNTS):
            assert mask[y == c].sum() == int(np.floor(P * n_c))
    assert not np.array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[1], masks[2])
    # the "none" variant is the labelled subset itself
    for s in study["label_sets"]:
        np.testing.assert_array_equal(
            s["labels"]["none"], np.where(s["labelled_mask"], y, -1)
        )


def test_projection_selection_uses_labelled_subset_only(study, problem):
    emb, _, y = problem
    sel = study["selection"].set_index("repetition")
    for s in study["label_sets"]:
        m = s["labelled_mask"]
        scores = [silhouette_score(e[m], y[m], metric="sqeuclidean") for e in emb]
        r = s["repetition"]
        assert sel.loc[r, "best_config"] == int(np.argmax(scores))
        assert sel.loc[r, "worst_config"] == int(np.argmin(scores))
        assert sel.loc[r, "best_silhouette"] == pytest.approx(max(scores))
        assert sel.loc[r, "worst_silhouette"] == pytest.approx(min(scores))
    # sanity of the fixture: the separated configuration wins, the mixed one loses
    assert (sel["best_config"] == 1).all() and (sel["worst_config"] == 0).all()


def test_projection_selection_can_differ_between_repetitions():
    """Two near-equal configurations: each repetition's own subset decides."""
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 40)
    n = y.size
    base = np.c_[y * 2.0, np.zeros(n)]
    emb = np.stack([base + rng.normal(size=(n, 2)) for _ in range(4)])
    lq = {"ks10_kt10": rng.uniform(size=(4, n))}
    cfg = make_config(
        n_repetitions=6,
        labelled_fraction=0.2,
        ks_kt=((10, 10),),
        Ks=(3,),
        taus=(0.1,),
        methods=("std_knn",),
        error_control=False,
        variants=[],
    )
    out = A.run_evaluation_study(emb, lq, y, cfg, ["x", "y"], progress=False)
    chosen = []
    for s in out["label_sets"]:
        m = s["labelled_mask"]
        scores = [silhouette_score(e[m], y[m], metric="sqeuclidean") for e in emb]
        chosen.append(int(np.argmax(scores)))
    np.testing.assert_array_equal(out["selection"]["best_config"], chosen)
    assert len(set(chosen)) > 1, "fixture should make the choice vary"
    assert out["estimates"].empty


def test_result_rows_match_configuration(study):
    res = study["results"]
    per_projection = len(KS) * (1 + len(KEYS) * len(TAUS) + len(TAUS))
    assert len(res) == 3 * 2 * per_projection
    counts = res.groupby(["repetition", "projection"]).size()
    assert (counts == per_projection).all()
    # the unsorted ablation runs on the default (first) quality only
    unsorted = res[res["method"] == "lq_knn_unsorted"]
    assert set(unsorted["quality"]) == {"ks10_kt10"}
    assert set(res.loc[res["method"] == "lq_knn", "quality"]) == set(KEYS)
    assert res.loc[res["method"] == "std_knn", "tau"].isna().all()
    for col in ("annotation_accuracy", "labelled_fraction", "ms_per_sample"):
        assert col in res
    for name in CLASS_NAMES:
        assert f"acc_{name}" in res


@pytest.mark.parametrize(
    "method, K, tau, quality, projection",
    [
        ("lq_knn", 5, 0.1, "ks10_kt10", "best"),
        ("lq_knn", 3, 0.3, "ks5_kt5", "worst"),
        ("lq_knn_unsorted", 5, 0.1, "ks10_kt10", "best"),
        ("std_knn", 3, None, None, "best"),
        ("std_knn", 5, None, None, "worst"),
    ],
)
def test_row_scores_recomputed_by_hand(
    study, problem, method, K, tau, quality, projection
):
    emb, lq, y = problem
    sel = study["selection"].set_index("repetition")
    for s in study["label_sets"]:
        r = s["repetition"]
        y0 = np.where(s["labelled_mask"], y, -1)
        cfg = sel.loc[r, f"{projection}_config"]
        if method == "std_knn":
            got = std_knn(emb[cfg], y0, K).labels
        else:
            got = lq_knn(
                emb[cfg], y0, lq[quality][cfg], K, tau, sort=method == "lq_knn"
            ).labels
        unl = y0 == -1
        prop = unl & (got != -1)
        row = _row(
            study["results"],
            repetition=r,
            projection=projection,
            method=method,
            K=K,
            tau=tau,
            quality=quality,
        )
        assert row["config"] == cfg
        assert row["labelled_fraction"] == pytest.approx(prop.sum() / unl.sum())
        assert row["annotation_accuracy"] == pytest.approx(
            np.mean(got[prop] == y[prop])
        )
        for c, name in enumerate(CLASS_NAMES):
            m = prop & (y == c)
            expected = np.mean(got[m] == c) if m.any() else np.nan
            np.testing.assert_allclose(row[f"acc_{name}"], expected)


def test_fixture_makes_errors(study):
    """The oracle above is only meaningful if accuracy is not trivially 1."""
    best = study["results"][study["results"]["projection"] == "best"]
    assert (best["annotation_accuracy"] < 1).any()


def test_label_sets_of_variants(study, problem):
    emb, lq, y = problem
    sel = study["selection"].set_index("repetition")
    for s in study["label_sets"]:
        r = s["repetition"]
        y0 = np.where(s["labelled_mask"], y, -1)
        best = sel.loc[r, "best_config"]
        labels = s["labels"]
        assert set(labels) == {"none", "all", "std5", "lq5"}
        np.testing.assert_array_equal(labels["none"], y0)
        np.testing.assert_array_equal(labels["all"], y)
        np.testing.assert_array_equal(labels["std5"], std_knn(emb[best], y0, 5).labels)
        np.testing.assert_array_equal(
            labels["lq5"], lq_knn(emb[best], y0, lq["ks10_kt10"][best], 5, 0.1).labels
        )


def test_same_seed_same_study(problem, study):
    emb, lq, y = problem
    again = A.run_evaluation_study(
        emb, lq, y, make_config(n_jobs=2), CLASS_NAMES, progress=False
    )
    cols = ["repetition", "projection", "method", "K", "annotation_accuracy"]
    pd.testing.assert_frame_equal(again["results"][cols], study["results"][cols])
    pd.testing.assert_frame_equal(again["estimates"], study["estimates"])


def test_production_mode_never_alters_manual_labels(problem):
    emb, lq, y = problem
    rng = np.random.default_rng(11)
    manual = np.where(rng.uniform(size=y.size) < 0.15, y, -1)
    truth = np.where(rng.uniform(size=y.size) < 0.5, y, -1)  # hidden truth, partial
    truth[manual >= 0] = manual[manual >= 0]
    variants = [v for v in VARIANTS if v["method"] != "manual_all"]
    cfg = make_config(n_repetitions=2, variants=variants)
    out = A.run_evaluation_study(
        emb, lq, truth, cfg, CLASS_NAMES, manual_labels=manual, progress=False
    )
    m = manual >= 0
    for s in out["label_sets"]:
        np.testing.assert_array_equal(s["labelled_mask"], m)
        for name, labels in s["labels"].items():
            np.testing.assert_array_equal(labels[m], manual[m], err_msg=name)
        np.testing.assert_array_equal(s["labels"]["none"], manual)
    # accuracy counts only propagated samples with known truth
    sel = out["selection"].set_index("repetition")
    best = sel.loc[0, "best_config"]
    got = std_knn(emb[best], manual, 5).labels
    prop = (manual == -1) & (got != -1)
    scored = prop & (truth != -1)
    row = _row(out["results"], repetition=0, projection="best", method="std_knn", K=5)
    assert row["annotation_accuracy"] == pytest.approx(
        np.mean(got[scored] == truth[scored])
    )
    assert row["labelled_fraction"] == pytest.approx(prop.sum() / (manual == -1).sum())


# --------------------------------------------------------------------------- #
# Summary and calibration
# --------------------------------------------------------------------------- #
def test_summarise_results_matches_pandas(study):
    res = study["results"]
    summary = A.summarise_results(res)
    per_projection = len(KS) * (1 + len(KEYS) * len(TAUS) + len(TAUS))
    assert len(summary) == 2 * per_projection
    for _, row in summary.iterrows():
        m = (res["projection"] == row["projection"]) & (res["method"] == row["method"])
        for key in ("quality", "tau", "K"):
            m &= res[key].isna() if row[key] == "-" else res[key] == row[key]
        group = res[m]
        assert len(group) == 3 == row["repetitions"]
        acc = group["annotation_accuracy"].to_numpy()
        lab = group["labelled_fraction"].to_numpy()
        assert row["accuracy_mean"] == pytest.approx(100 * acc.mean())
        assert row["accuracy_std"] == pytest.approx(100 * acc.std(ddof=1))
        assert row["labelled_mean"] == pytest.approx(100 * lab.mean())
        assert row["labelled_std"] == pytest.approx(100 * lab.std(ddof=1))
        assert row["ms_per_sample"] == pytest.approx(group["ms_per_sample"].mean())


def test_summarise_results_keeps_integer_K_with_opf_rows():
    """OPF-semi rows have no K; the K of the other rows must stay integers."""
    res = pd.DataFrame(
        {
            "projection": ["best"] * 4,
            "method": ["std_knn", "std_knn", "opf_semi", "opf_semi"],
            "K": [5, 5, np.nan, np.nan],
            "tau": [np.nan] * 4,
            "quality": [np.nan] * 4,
            "annotation_accuracy": [0.8, 0.6, 0.5, 0.7],
            "labelled_fraction": [0.5, 0.7, 1.0, 1.0],
            "ms_per_sample": [1.0, 3.0, 10.0, 20.0],
        }
    )
    summary = A.summarise_results(res)
    assert list(summary["K"]) == [5, "-"]
    assert type(summary["K"].iloc[0]) is int
    assert str(summary["K"].iloc[0]) == "5"
    assert summary["accuracy_mean"].tolist() == pytest.approx([70.0, 60.0])
    assert summary["accuracy_std"].iloc[0] == pytest.approx(
        100 * np.std([0.8, 0.6], ddof=1)
    )


def test_calibration_table_joins_estimates_and_truth(study):
    res, est = study["results"], study["estimates"]
    cal = A.calibration_table(res, est)
    # estimates: R x (lq_knn: |Ks| x |taus| + std_knn: |Ks|)
    assert len(est) == 3 * (len(KS) * len(TAUS) + len(KS))
    assert len(cal) == len(est)
    for _, row in cal.iterrows():
        tau = None if pd.isna(row["tau"]) else row["tau"]
        e = _row(
            est, repetition=row["repetition"], method=row["method"], K=row["K"], tau=tau
        )
        t = _row(
            res,
            repetition=row["repetition"],
            projection="best",
            method=row["method"],
            K=row["K"],
            tau=tau,
            quality=None if row["method"] == "std_knn" else "ks10_kt10",
        )
        assert row["estimated_accuracy"] == pytest.approx(e["accuracy"], nan_ok=True)
        assert row["estimated_coverage"] == pytest.approx(e["coverage"])
        assert row["true_accuracy"] == pytest.approx(t["annotation_accuracy"])
        assert row["true_coverage"] == pytest.approx(t["labelled_fraction"])
    assert A.calibration_table(res, pd.DataFrame()).empty


# --------------------------------------------------------------------------- #
# annotate() and the annotated table
# --------------------------------------------------------------------------- #
def _production_problem(noisy=False, seed=5):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), [80, 80, 80])
    n = y.size
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    emb = centres[y] + rng.normal(size=(n, 2)) * 1.4
    lq = np.round(rng.uniform(0.05, 1.0, size=n), 1)
    labelled = np.zeros(n, dtype=bool)
    for c in range(3):
        labelled[rng.choice(np.flatnonzero(y == c), 20, replace=False)] = True
    given = rng.integers(0, 3, size=n) if noisy else y
    return emb, lq, np.where(labelled, given, -1), y


def test_annotate_meets_target_with_max_coverage():
    emb, lq, manual, _ = _production_problem()
    result, chosen, est = A.annotate(
        emb,
        lq,
        manual,
        Ks=(3, 5, 8),
        taus=(0.1, 0.3, 0.5),
        target_accuracy=0.9,
        n_splits=4,
        seed=1,
    )
    assert len(est) == 9 and set(est["method"]) == {"lq_knn"}
    ok = est[est["accuracy"] >= 0.9]
    assert len(ok) > 0
    assert chosen["meets_target"] is True
    assert chosen["accuracy"] >= 0.9
    assert chosen["coverage"] == pytest.approx(ok["coverage"].max())
    K, tau = int(chosen["K"]), float(chosen["tau"])
    np.testing.assert_array_equal(result.labels, lq_knn(emb, manual, lq, K, tau).labels)
    np.testing.assert_array_equal(result.parent, lq_knn(emb, manual, lq, K, tau).parent)
    m = manual >= 0
    np.testing.assert_array_equal(result.labels[m], manual[m])


def test_annotate_falls_back_when_target_is_impossible(caplog):
    emb, lq, manual, _ = _production_problem(noisy=True)
    with caplog.at_level("WARNING", logger="lqknn.annotation"):
        result, chosen, est = A.annotate(
            emb,
            lq,
            manual,
            Ks=(3, 5),
            taus=(0.1, 0.3),
            target_accuracy=0.999999,
            n_splits=3,
            seed=0,
        )
    assert (est["accuracy"] < 0.999999).all()
    assert chosen["meets_target"] is False
    assert chosen["accuracy"] == pytest.approx(est["accuracy"].max())
    assert "target accuracy" in caplog.text
    np.testing.assert_array_equal(
        result.labels,
        lq_knn(emb, manual, lq, int(chosen["K"]), float(chosen["tau"])).labels,
    )


def test_annotate_fallback_setting_overrides_best_estimate():
    emb, lq, manual, _ = _production_problem(noisy=True)
    result, chosen, _ = A.annotate(
        emb,
        lq,
        manual,
        Ks=(3, 5),
        taus=(0.1, 0.3),
        target_accuracy=0.999999,
        n_splits=2,
        fallback={"K": 4, "tau": 0.2},
    )
    assert chosen["meets_target"] is False
    assert (chosen["K"], chosen["tau"]) == (4, 0.2)
    np.testing.assert_array_equal(result.labels, lq_knn(emb, manual, lq, 4, 0.2).labels)


def test_annotate_rejects_bad_target():
    emb, lq, manual, _ = _production_problem()
    with pytest.raises(ValueError, match="target_accuracy"):
        A.annotate(emb, lq, manual, Ks=(3,), taus=(0.1,), target_accuracy=1.01)
    with pytest.raises(ValueError, match="manual_labels"):
        A.annotate(emb, lq, manual[:-1], Ks=(3,), taus=(0.1,), target_accuracy=0.9)
    with pytest.raises(ValueError, match="local_quality"):
        A.annotate(emb, lq[:-1], manual, Ks=(3,), taus=(0.1,), target_accuracy=0.9)
    with pytest.raises(ValueError, match="Ks"):
        A.annotate(emb, lq, manual, Ks=(), taus=(0.1,), target_accuracy=0.9)


def _samples_for(n, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.array([f"s{i:04d}" for i in rng.permutation(10 * n)[:n]], dtype=object)
    return pd.DataFrame(
        {"sample_id": ids, "subject_id": [f"p{i % 4}" for i in range(n)]}
    )


def test_annotated_table_provenance():
    emb, lq, manual, _ = _production_problem()
    result, chosen, _ = A.annotate(
        emb, lq, manual, Ks=(3, 5), taus=(0.1, 0.3), target_accuracy=0.8, n_splits=3
    )
    samples = _samples_for(manual.size)
    table = A.annotated_table(samples, result, manual, lq, CLASS_NAMES, chosen)
    assert list(table["sample_id"]) == list(samples["sample_id"])
    assert list(table["subject_id"]) == list(samples["subject_id"])
    m = manual >= 0
    prop = ~m & (result.labels >= 0)
    unl = result.labels < 0
    assert prop.any() and unl.any()
    # manual: copied unchanged
    assert (table.loc[m, "source"] == "manual").all()
    np.testing.assert_array_equal(table.loc[m, "label"], manual[m])
    assert (table.loc[m, "parent_sample_id"] == "").all()
    assert (table.loc[m, "iteration"] == 0).all()
    # propagated: parent is the sample id of result.parent
    assert (table.loc[prop, "source"] == "propagated").all()
    ids = samples["sample_id"].to_numpy()
    assert list(table.loc[prop, "parent_sample_id"]) == list(ids[result.parent[prop]])
    assert (table.loc[prop, "iteration"] >= 1).all()
    # unlabelled
    assert (table.loc[unl, "source"] == "unlabelled").all()
    assert (table.loc[unl, "label"] == -1).all()
    assert (table.loc[unl, "label_name"] == "").all()
    # names, lq and the setting
    lab = ~unl
    expected = np.asarray(CLASS_NAMES, dtype=object)[result.labels[lab]]
    assert list(table.loc[lab, "label_name"]) == list(expected)
    np.testing.assert_array_equal(table["local_quality"], lq)
    assert (table["K"] == int(chosen["K"])).all()
    assert (table["tau"] == float(chosen["tau"])).all()
    assert table["estimated_accuracy"].iloc[0] == pytest.approx(chosen["accuracy"])


def test_annotated_table_keeps_unknown_samples_out_of_the_classes():
    """A sample an expert marked "unknown" never gets a class label in the
    annotated set, even when propagation reached it."""
    emb, lq, manual, _ = _production_problem()
    result, chosen, _ = A.annotate(
        emb, lq, manual, Ks=(3, 5), taus=(0.1, 0.3), target_accuracy=0.8, n_splits=3
    )
    samples = _samples_for(manual.size).copy()
    reached = np.flatnonzero((manual < 0) & (result.labels >= 0))[:3]
    samples["label_name"] = ""
    samples.loc[reached, "label_name"] = "unknown"
    table = A.annotated_table(samples, result, manual, lq, CLASS_NAMES, chosen)
    rows = table.iloc[reached]
    assert (rows["source"] == "unlabelled").all()
    assert (rows["label"] == -1).all() and (rows["label_name"] == "unknown").all()
    assert (rows["parent_sample_id"] == "").all() and (rows["iteration"] == -1).all()
    others = np.setdiff1d(np.flatnonzero((manual < 0) & (result.labels >= 0)), reached)
    assert (table.iloc[others]["source"] == "propagated").all()


def test_annotated_table_rejects_misaligned_inputs():
    emb, lq, manual, _ = _production_problem()
    result = lq_knn(emb, manual, lq, 3, 0.1)
    setting = {"K": 3, "tau": 0.1, "accuracy": 0.9}
    samples = _samples_for(manual.size)
    with pytest.raises(ValueError, match="samples"):
        A.annotated_table(samples.iloc[:-1], result, manual, lq, CLASS_NAMES, setting)
    with pytest.raises(ValueError, match="manual_labels"):
        A.annotated_table(samples, result, manual[:-1], lq, CLASS_NAMES, setting)
    with pytest.raises(ValueError, match="local_quality"):
        A.annotated_table(samples, result, manual, lq[:-1], CLASS_NAMES, setting)
    with pytest.raises(ValueError, match="class_names"):
        A.annotated_table(samples, result, manual, lq, CLASS_NAMES[:2], setting)


# --------------------------------------------------------------------------- #
# Bad input
# --------------------------------------------------------------------------- #
def test_study_rejects_bad_inputs(problem):
    emb, lq, y = problem
    cfg = make_config(n_repetitions=1)
    with pytest.raises(ValueError, match="embeddings must have shape"):
        A.run_evaluation_study(emb[0], lq, y, cfg, CLASS_NAMES, progress=False)
    with pytest.raises(ValueError, match="true_labels"):
        A.run_evaluation_study(emb, lq, y[:-1], cfg, CLASS_NAMES, progress=False)
    with pytest.raises(ValueError, match="manual_labels"):
        A.run_evaluation_study(
            emb, lq, y, cfg, CLASS_NAMES, manual_labels=y[:-1], progress=False
        )
    with pytest.raises(ValueError, match=r"\['ks5_kt5'\] was not computed"):
        A.run_evaluation_study(
            emb, {"ks10_kt10": lq["ks10_kt10"]}, y, cfg, CLASS_NAMES, progress=False
        )
    # lq arrays must cover every configuration and every sample
    short = {k: v[:2] for k, v in lq.items()}
    with pytest.raises(ValueError, match="local_quality"):
        A.run_evaluation_study(emb, short, y, cfg, CLASS_NAMES, progress=False)
    wide = {k: np.c_[v, v[:, :1]] for k, v in lq.items()}
    with pytest.raises(ValueError, match="local_quality"):
        A.run_evaluation_study(emb, wide, y, cfg, CLASS_NAMES, progress=False)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"methods": ("lq_knn", "magic")}, r"unknown methods \['magic'\]"),
        ({"projections": ("best", "median")}, "projections must be"),
        ({"projections": ()}, "projections must be"),
        ({"ks_kt": ()}, "ks_kt"),
        ({"labelled_fraction": 1.5}, "labelled_fraction"),
        ({"n_repetitions": 0}, "n_repetitions"),
        ({"Ks": (0, 5)}, "every K"),
        ({"taus": (0.1, 1.2)}, "every tau"),
        (
            {"variants": [{"name": "x", "method": "magic"}]},
            "method 'magic' is not one of",
        ),
        ({"variants": [{"method": "none"}]}, "needs 'name' and 'method'"),
        ({"variants": [{"name": "x", "method": "std_knn"}]}, "needs K"),
        ({"variants": [{"name": "x", "method": "lq_knn", "K": 5}]}, "needs tau"),
    ],
)
def test_config_rejects_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        make_config(**kw)


def test_quality_key():
    assert A.quality_key(10, 5) == "ks10_kt5"
    cfg = make_config(ks_kt=((5, 5), (10, 10)))
    assert cfg.default_quality == "ks5_kt5"
    assert all(isinstance(v, A.Variant) for v in cfg.variants)


# --------------------------------------------------------------------------- #
# Samples kept out of propagation (an expert's "unknown" samples)
# --------------------------------------------------------------------------- #
def _exclusion(n, seed=11, count=25):
    exclude = np.zeros(n, dtype=bool)
    exclude[np.random.default_rng(seed).choice(n, count, replace=False)] = True
    return exclude


def test_study_with_exclude_equals_the_study_without_those_samples(problem):
    """Oracle: the same study on the arrays with the excluded rows removed."""
    emb, lq, y = problem
    exclude = _exclusion(y.size)
    y_unknown = np.where(exclude, -1, y)  # unknown samples carry no label
    cfg = make_config(n_repetitions=2)
    out = A.run_evaluation_study(
        emb, lq, y_unknown, cfg, CLASS_NAMES, exclude=exclude, progress=False
    )
    keep = ~exclude
    oracle = A.run_evaluation_study(
        emb[:, keep],
        {k: v[:, keep] for k, v in lq.items()},
        y[keep],
        cfg,
        CLASS_NAMES,
        progress=False,
    )
    pd.testing.assert_frame_equal(
        out["results"].drop(columns=["seconds", "ms_per_sample", "neighbour_seconds"]),
        oracle["results"].drop(
            columns=["seconds", "ms_per_sample", "neighbour_seconds"]
        ),
    )
    for got, want in zip(out["label_sets"], oracle["label_sets"], strict=True):
        assert got["labelled_mask"].shape == y.shape
        assert not got["labelled_mask"][exclude].any()
        np.testing.assert_array_equal(got["labelled_mask"][keep], want["labelled_mask"])
        for name, labels in got["labels"].items():
            assert labels.shape == y.shape
            assert (labels[exclude] == -1).all(), name
            np.testing.assert_array_equal(labels[keep], want["labels"][name])
    # the excluded samples are not in the labelled fraction's denominator
    row = out["results"].iloc[0]
    n_labelled = int(out["label_sets"][0]["labelled_mask"].sum())
    assert row["n_unlabelled"] == keep.sum() - n_labelled


def test_annotate_with_exclude_never_labels_nor_relays_through_them():
    emb, lq, manual, _ = _production_problem()
    exclude = _exclusion(manual.size) & (manual < 0)
    kw = dict(Ks=(3, 5), taus=(0.1, 0.3), target_accuracy=0.8, n_splits=3)
    result, chosen, est = A.annotate(emb, lq, manual, exclude=exclude, **kw)
    keep = np.flatnonzero(~exclude)
    oracle, chosen_o, est_o = A.annotate(emb[keep], lq[keep], manual[keep], **kw)
    assert (result.labels[exclude] == -1).all()
    assert (result.iteration[exclude] == -1).all()
    assert not np.isin(result.parent, np.flatnonzero(exclude)).any()
    np.testing.assert_array_equal(result.labels[keep], oracle.labels)
    np.testing.assert_array_equal(result.iteration[keep], oracle.iteration)
    has = oracle.parent >= 0
    np.testing.assert_array_equal(result.parent[keep][has], keep[oracle.parent[has]])
    assert (result.parent[keep][~has] == -1).all()
    assert (chosen["K"], chosen["tau"]) == (chosen_o["K"], chosen_o["tau"])
    pd.testing.assert_frame_equal(est, est_o)


def test_exclude_must_be_a_boolean_mask_of_the_samples():
    emb, lq, manual, _ = _production_problem()
    kw = dict(Ks=(3,), taus=(0.1,), target_accuracy=0.8, n_splits=3)
    with pytest.raises(ValueError, match="exclude must be a boolean mask"):
        A.annotate(emb, lq, manual, exclude=np.zeros(manual.size), **kw)
    with pytest.raises(ValueError, match="exclude must be a boolean mask"):
        A.annotate(emb, lq, manual, exclude=np.zeros(3, dtype=bool), **kw)
