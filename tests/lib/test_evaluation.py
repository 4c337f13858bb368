"""Tests for lqknn.evaluation: folds, balancing, metrics, protocol runner, figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    matthews_corrcoef,
    recall_score,
)

from lqknn.evaluation import (
    aggregate,
    balance_propagated,
    classification_metrics,
    fold_train_index,
    holdout_split,
    loso_folds,
    plot_confusion,
    plot_metric_boxes,
    plot_per_class_accuracy,
    run_protocol,
    subjects_without_ground_truth,
)

FAST = {"epochs": 3, "batch_size": 16, "learning_rate": 5e-3}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _table(seed: int = 0):
    """Five subjects of uneven size; subject "e" has no ground-truth label."""
    rng = np.random.default_rng(seed)
    subjects = np.repeat(["a", "b", "c", "d", "e"], [12, 8, 15, 5, 10])
    rng.shuffle(subjects)
    n = subjects.size
    truth = rng.integers(0, 3, n)
    gt = np.where(rng.random(n) < 0.6, truth, -1)
    gt[subjects == "e"] = -1
    training = np.where(rng.random(n) < 0.7, truth, -1)
    samples = pd.DataFrame(
        {
            "sample_id": np.arange(n),
            "subject_id": subjects,
            "label": gt,
            "split": np.where(np.arange(n) % 3 == 0, "test", "pool"),
        }
    )
    return samples, gt, training


def _images(labels: np.ndarray, size: int = 8, seed: int = 0) -> np.ndarray:
    """Images whose bright quarter encodes the class (class 0, 1, 2 or none)."""
    rng = np.random.default_rng(seed)
    x = rng.random((labels.size, 1, size, size), dtype=np.float32) * 0.4
    h = size // 2
    for c, (r, q) in enumerate(
        [
            (slice(0, h), slice(0, h)),
            (slice(0, h), slice(h, None)),
            (slice(h, None), slice(0, h)),
        ]
    ):
        x[labels == c, 0, r, q] += 0.6
    return x


# ---------------------------------------------------------------------------
# Folds
# ---------------------------------------------------------------------------


def test_loso_folds_test_sets_are_the_subjects_ground_truth_samples():
    samples, gt, _ = _table()
    folds = loso_folds(samples, gt)
    assert [f.subject_id for f in folds] == ["a", "b", "c", "d"]
    subjects = samples["subject_id"].tolist()
    for fold in folds:
        expected = [
            i
            for i in range(len(subjects))
            if subjects[i] == fold.subject_id and gt[i] >= 0
        ]
        assert fold.test_index.tolist() == expected
        assert fold.train_subjects == tuple(
            s for s in ["a", "b", "c", "d", "e"] if s != fold.subject_id
        )


def test_subjects_without_ground_truth_are_never_test_folds():
    samples, gt, _ = _table()
    assert subjects_without_ground_truth(samples, gt) == ["e"]
    assert "e" not in [f.subject_id for f in loso_folds(samples, gt)]


def test_fold_train_index_has_no_subject_leakage():
    samples, gt, training = _table()
    subjects = samples["subject_id"].tolist()
    for fold in loso_folds(samples, gt):
        train = fold_train_index(fold, samples, training)
        expected = [
            i
            for i in range(len(subjects))
            if subjects[i] != fold.subject_id and training[i] >= 0
        ]
        assert train.tolist() == expected
        assert not set(train) & set(fold.test_index)
        assert fold.subject_id not in set(samples["subject_id"].iloc[train])


def test_loso_bad_input():
    samples, gt, _ = _table()
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['subject_id'\]"):
        loso_folds(samples.drop(columns="subject_id"), gt)
    with pytest.raises(ValueError, match="aligned"):
        loso_folds(samples, gt[:-1])
    with pytest.raises(TypeError, match="samples must be a pandas DataFrame"):
        loso_folds(samples.to_dict(), gt)
    with pytest.raises(ValueError, match="at least one row"):
        loso_folds(samples.iloc[:0], gt[:0])
    bad = samples.copy()
    bad["subject_id"] = bad["subject_id"].astype(object)
    bad.loc[0, "subject_id"] = None
    with pytest.raises(ValueError, match="subject_id must not contain missing"):
        loso_folds(bad, gt)


def test_holdout_split():
    samples, _, _ = _table()
    pool, test = holdout_split(samples)
    assert test.tolist() == list(range(0, len(samples), 3))
    assert sorted(pool.tolist() + test.tolist()) == list(range(len(samples)))
    bad = samples.assign(split="train")
    with pytest.raises(ValueError, match=r"'pool' or 'test', got \['train'\]"):
        holdout_split(bad)
    with pytest.raises(ValueError, match="both 'pool' and 'test'"):
        holdout_split(samples.assign(split="pool"))


# ---------------------------------------------------------------------------
# Balancing
# ---------------------------------------------------------------------------


def _balancing_case():
    # propagated counts per class: 0 -> 30, 1 -> 12, 2 -> 20; manual: 5, 2, 4
    labels = np.array([0] * 35 + [1] * 14 + [2] * 24 + [-1] * 10)
    manual = np.zeros(labels.size, dtype=bool)
    manual[:5] = True
    manual[35:37] = True
    manual[49:53] = True
    manual[-3:] = True  # "manual" but unlabelled: not part of the training set
    return labels, manual


def test_balance_keeps_all_manual_and_equalises_propagated():
    labels, manual = _balancing_case()
    kept = balance_propagated(labels, manual, seed=0)
    assert np.all(np.diff(kept) > 0)
    manual_labelled = np.flatnonzero(manual & (labels >= 0))
    assert set(manual_labelled) <= set(kept)
    propagated = [i for i in kept if not manual[i]]
    counts = np.bincount(labels[propagated], minlength=3)
    assert counts.tolist() == [12, 12, 12]
    assert len(kept) == 11 + 36
    assert (labels[kept] >= 0).all()


def test_balance_is_seeded():
    labels, manual = _balancing_case()
    a = balance_propagated(labels, manual, seed=1)
    b = balance_propagated(labels, manual, seed=1)
    c = balance_propagated(labels, manual, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_balance_reference_class_and_absent_class():
    labels, manual = _balancing_case()
    kept = balance_propagated(labels, manual, seed=0, reference_class=2)
    counts = np.bincount(labels[[i for i in kept if not manual[i]]], minlength=3)
    assert counts.tolist() == [20, 12, 20]  # class 1 has only 12: all kept
    # a fourth class without any sample makes the minimum 0
    only_manual = balance_propagated(labels, manual, seed=0, n_classes=4)
    np.testing.assert_array_equal(only_manual, np.flatnonzero(manual & (labels >= 0)))


def test_balance_bad_input():
    labels, manual = _balancing_case()
    with pytest.raises(ValueError, match="is_manual must be a boolean array"):
        balance_propagated(labels, manual.astype(int))
    with pytest.raises(ValueError, match="is_manual must be a boolean array"):
        balance_propagated(labels, manual[:-1])
    with pytest.raises(ValueError, match=r"reference_class must be one of"):
        balance_propagated(labels, manual, reference_class=7)
    with pytest.raises(ValueError, match="n_classes=2"):
        balance_propagated(labels, manual, n_classes=2)


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 4, 200))
    m = classification_metrics(y_true, y_pred, 4, ["w", "x", "y", "z"])
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["mcc"] == pytest.approx(matthews_corrcoef(y_true, y_pred))
    np.testing.assert_array_equal(
        m["confusion_matrix"], confusion_matrix(y_true, y_pred, labels=range(4))
    )
    recall = recall_score(y_true, y_pred, labels=range(4), average=None)
    assert list(m["per_class_accuracy"]) == ["w", "x", "y", "z"]
    np.testing.assert_allclose(list(m["per_class_accuracy"].values()), recall)
    assert m["mean_class_accuracy"] == pytest.approx(recall.mean())
    assert m["support"] == dict(
        zip("wxyz", np.bincount(y_true, minlength=4).tolist(), strict=True)
    )
    assert m["n"] == 200


def test_metrics_absent_class_is_none_not_nan():
    y_true = np.array([0, 0, 1, 1, 1])
    y_pred = np.array([0, 2, 1, 1, 0])
    m = classification_metrics(y_true, y_pred, 3)
    assert m["per_class_accuracy"] == {"0": 0.5, "1": pytest.approx(2 / 3), "2": None}
    assert m["mean_class_accuracy"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert m["confusion_matrix"] == [[1, 0, 1], [1, 2, 0], [0, 0, 0]]


def test_metrics_single_predicted_class_gives_zero_mcc():
    m = classification_metrics([0, 1, 1, 0], [1, 1, 1, 1], 2)
    assert m["mcc"] == 0.0 and m["accuracy"] == 0.5


def test_metrics_bad_input():
    with pytest.raises(ValueError, match=r"y_pred must hold class ids in 0..2"):
        classification_metrics([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match=r"y_true must hold class ids in 0..2"):
        classification_metrics([-1, 1], [0, 1], 3)
    with pytest.raises(ValueError, match="aligned"):
        classification_metrics([0, 1], [0], 3)
    with pytest.raises(ValueError, match="at least one sample"):
        classification_metrics([], [], 3)
    with pytest.raises(ValueError, match="class_names has 2 names but n_classes=3"):
        classification_metrics([0], [0], 3, ["a", "b"])
    with pytest.raises(ValueError, match="class_names must be unique"):
        classification_metrics([0], [0], 2, ["a", "a"])


# ---------------------------------------------------------------------------
# Protocol runner
# ---------------------------------------------------------------------------


def _protocol_case():
    samples, gt, training = _table()
    truth = np.where(gt >= 0, gt, np.maximum(training, 0))
    return _images(truth), samples, gt, training


def test_run_protocol_loso_rows_and_callback():
    images, samples, gt, training = _protocol_case()
    seen = []
    results = run_protocol(
        images,
        samples,
        training,
        gt,
        protocol="loso",
        n_classes=3,
        class_names=["p", "q", "r"],
        loss="gce",
        loss_params={"q": 0.7},
        training_params=FAST,
        tags={"variant": "no propagation", "repetition": 0},
        on_fold_done=seen.append,
        progress=False,
    )
    assert results["subject_id"].tolist() == ["a", "b", "c", "d", "e"]
    assert results["fold"].tolist() == [0, 1, 2, 3, 4]
    assert sorted(r["subject_id"] for r in seen) == ["a", "b", "c", "d", "e"]
    excluded = results.set_index("subject_id").loc["e"]
    assert excluded["status"] == "excluded: no ground-truth label"
    ok = results[results["status"] == "ok"]
    assert len(ok) == 4
    assert (ok["variant"] == "no propagation").all() and (ok["loss"] == "gce").all()
    assert (ok["loss_params"] == '{"q": 0.7}').all()
    subjects = samples["subject_id"].to_numpy()
    for _, row in ok.iterrows():
        mine = subjects == row["subject_id"]
        assert row["n_test"] == np.count_nonzero(mine & (gt >= 0))
        assert row["n_train"] == np.count_nonzero(~mine & (training >= 0))
        per_class = np.bincount(training[~mine & (training >= 0)], minlength=3)
        assert [row["n_train_p"], row["n_train_q"], row["n_train_r"]] == list(per_class)
        cm = np.array(json.loads(row["confusion_matrix"]))
        assert cm.sum() == row["n_test"]
        assert row["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
        assert 0.0 <= row["accuracy"] <= 1.0 and -1.0 <= row["mcc"] <= 1.0
    assert ok["fold_seed"].nunique() == 4 and (ok["seed"] == 0).all()


def test_run_protocol_is_deterministic():
    images, samples, gt, training = _protocol_case()
    kwargs = {
        "protocol": "holdout",
        "n_classes": 3,
        "training_params": FAST,
        "seed": 5,
        "progress": False,
    }
    a = run_protocol(images, samples, training, gt, **kwargs)
    b = run_protocol(images, samples, training, gt, **kwargs)
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))
    assert a["subject_id"].tolist() == ["holdout"]
    pool, test = holdout_split(samples)
    assert a["n_test"].iloc[0] == np.count_nonzero(gt[test] >= 0)
    assert a["n_train"].iloc[0] == np.count_nonzero(training[pool] >= 0)


def test_run_protocol_learns_an_easy_problem():
    images, samples, gt, training = _protocol_case()
    truth = np.where(gt >= 0, gt, np.maximum(training, 0))
    results = run_protocol(
        images,
        samples,
        truth,
        truth,
        protocol="holdout",
        n_classes=3,
        training_params={"epochs": 15, "batch_size": 8, "learning_rate": 1e-2},
        progress=False,
    )
    assert results["accuracy"].iloc[0] > 0.6  # chance is about 1/3


def test_run_protocol_skips_a_fold_whose_training_set_misses_a_class():
    images, samples, gt, training = _protocol_case()
    subjects = samples["subject_id"].to_numpy()
    training = training.copy()
    training[(training == 2) & (subjects != "b")] = 0  # only subject b has class 2
    results = run_protocol(
        images,
        samples,
        training,
        gt,
        protocol="loso",
        n_classes=3,
        class_names=["p", "q", "r"],
        training_params={"epochs": 1},
        progress=False,
    ).set_index("subject_id")
    assert results.loc["b", "status"] == "skipped: training set lacks class(es) ['r']"
    assert pd.isna(results.loc["b", "accuracy"])
    assert results.loc["b", "n_train_r"] == 0
    assert (results.drop(index=["b", "e"])["status"] == "ok").all()


def test_run_protocol_skips_an_empty_training_set():
    images, samples, gt, _ = _protocol_case()
    none = np.full(len(samples), -1)
    results = run_protocol(
        images, samples, none, gt, protocol="holdout", n_classes=3, progress=False
    )
    assert results["status"].tolist() == ["skipped: 0 training sample(s)"]


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"protocol": "kfold"}, ValueError, "protocol must be one of"),
        ({"loss": "focal"}, ValueError, r"loss must be one of \['ce', 'gce', 'sce'\]"),
        ({"training_params": {"lr": 0.1}}, ValueError, r"unknown key\(s\) \['lr'\]"),
        ({"training_params": {"epochs": 0}}, ValueError, r"epochs must be in \[1"),
        ({"training_params": {"optimizer": "lbfgs"}}, ValueError, "optimizer must be"),
        (
            {"training_params": {"learning_rate": -1.0}},
            ValueError,
            r"learning_rate must be in \(0.0",
        ),
        ({"images": np.zeros((3, 1, 8, 8), np.float32)}, ValueError, "N = 50"),
        ({"n_classes": 2}, ValueError, "contain class id 2 but n_classes=2"),
        ({"n_jobs": 0}, ValueError, "n_jobs must be"),
        ({"ground_truth_labels": np.full(50, -1)}, ValueError, "nothing to test on"),
        ({"class_names": ["x"]}, ValueError, "class_names has 1 names"),
    ],
)
def test_run_protocol_bad_input(change, error, match):
    images, samples, gt, training = _protocol_case()
    kwargs = {
        "images": images,
        "samples": samples,
        "training_labels": training,
        "ground_truth_labels": gt,
        "protocol": "holdout",
        "n_classes": 3,
        "training_params": {"epochs": 1},
        "progress": False,
    }
    kwargs.update(change)
    with pytest.raises(error, match=match):
        run_protocol(**kwargs)


# ---------------------------------------------------------------------------
# Aggregation and figures
# ---------------------------------------------------------------------------


def _fake_results():
    rows = []
    values = {("A", "ce"): [0.5, 0.7, 0.6, 0.8], ("A", "gce"): [0.9, 0.7, 0.8, 1.0]}
    for (variant, loss), accs in values.items():
        for i, acc in enumerate(accs):
            rows.append(
                {
                    "variant": variant,
                    "loss": loss,
                    "repetition": i // 2,
                    "status": "ok",
                    "accuracy": acc,
                    "mcc": acc - 0.5,
                    "acc_x": acc if i else np.nan,
                }
            )
    rows.append({"variant": "A", "loss": "ce", "repetition": 0, "status": "skipped: x"})
    rows.append(
        {"variant": "A", "loss": "ce", "repetition": 0, "status": "excluded: y"}
    )
    return pd.DataFrame(rows)


def test_aggregate_per_fold():
    out = aggregate(_fake_results()).set_index("loss")
    ce = out.loc["ce"]
    assert (ce["n_ok"], ce["n_skipped"], ce["n_excluded"]) == (4, 1, 1)
    assert ce["accuracy_mean"] == pytest.approx(0.65)
    assert ce["accuracy_std"] == pytest.approx(np.std([0.5, 0.7, 0.6, 0.8], ddof=1))
    assert ce["mcc_mean"] == pytest.approx(0.15)
    assert ce["acc_x_mean"] == pytest.approx(0.7) and ce["acc_x_n"] == 3
    assert out.loc["gce", "accuracy_mean"] == pytest.approx(0.85)


def test_aggregate_per_repetition():
    out = aggregate(_fake_results(), level="repetition").set_index("loss")
    # ce: repetition means 0.6 and 0.7
    assert out.loc["ce", "n_repetitions"] == 2
    assert out.loc["ce", "accuracy_mean"] == pytest.approx(0.65)
    assert out.loc["ce", "accuracy_std"] == pytest.approx(np.std([0.6, 0.7], ddof=1))


def test_aggregate_bad_input():
    with pytest.raises(ValueError, match="'status' column"):
        aggregate(pd.DataFrame({"accuracy": [1.0]}))
    with pytest.raises(ValueError, match=r"grouping column\(s\) \['dataset'\]"):
        aggregate(_fake_results(), by=["dataset"])
    with pytest.raises(ValueError, match="level must be"):
        aggregate(_fake_results(), level="subject")
    with pytest.raises(ValueError, match=r"\['repetition'\]"):
        aggregate(_fake_results().drop(columns="repetition"), level="repetition")


def test_figures():
    results = _fake_results()
    fig = plot_metric_boxes(results, "accuracy")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["A"]
    fig = plot_per_class_accuracy(results, ["x"])
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "accuracy of class x"
    fig = plot_confusion([[3, 1], [0, 0]], ["x", "y"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["3\n75%", "1\n25%", "0\n0%", "0\n0%"]


def test_figures_bad_input():
    with pytest.raises(ValueError, match="metric 'f1' is not a column"):
        plot_metric_boxes(_fake_results(), "f1")
    with pytest.raises(ValueError, match=r"per-class column\(s\) \['acc_y'\]"):
        plot_per_class_accuracy(_fake_results(), ["x", "y"])
    with pytest.raises(ValueError, match="cm must be a square"):
        plot_confusion([[1, 2, 3]], ["a"])
    with pytest.raises(ValueError, match="class_names has 1 names but cm is 2 x 2"):
        plot_confusion([[1, 0], [0, 1]], ["a"])
