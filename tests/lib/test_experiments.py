"""Tests for lqknn.experiments: training labels placed by sample id, exclusion,
balancing, and the (variant, loss, repetition, fold) fan-out of run_experiments.

Oracles are written here: a sample-id dictionary for label placement, counts per
class for balancing, and per-fold training-set sizes counted by hand.
"""

from __future__ import annotations

import json

import joblib
import numpy as np
import pandas as pd
import pytest

from lqknn import experiments as X

CLASSES = ["left", "right"]
TRAINING = {"optimizer": "adam", "epochs": 1, "batch_size": 16, "learning_rate": 1e-3}


# --------------------------------------------------------------------------- #
# Fixtures
# --------------------------------------------------------------------------- #
def make_samples(n_pool=30, n_test=10, seed=0):
    """A samples table in a shuffled row order, pool and test splits."""
    rng = np.random.default_rng(seed)
    n = n_pool + n_test
    frame = pd.DataFrame(
        {
            "sample_id": [f"id{i:03d}" for i in range(n)],
            "subject_id": [f"subj{i % 3}" for i in range(n)],
            "label": rng.integers(0, 2, size=n),
            "label_name": "",
            "split": ["pool"] * n_pool + ["test"] * n_test,
        }
    )
    frame["label_name"] = np.asarray(CLASSES)[frame["label"]]
    return frame.iloc[rng.permutation(n)].reset_index(drop=True)


def make_label_sets(samples, n_reps=2, seed=1, mode="evaluation"):
    """Label sets in a pool order different from the samples table's row order."""
    rng = np.random.default_rng(seed)
    pool = samples[samples["split"] == "pool"]
    pool_ids = pool["sample_id"].to_numpy()[rng.permutation(len(pool))]
    truth = samples.set_index("sample_id").loc[pool_ids, "label"].to_numpy()
    reps = []
    for r in range(n_reps):
        mask = rng.uniform(size=len(pool_ids)) < 0.3
        mask[:2] = True
        manual = np.where(mask, truth, -1)
        propagated = manual.copy()
        fill = ~mask & (rng.uniform(size=len(pool_ids)) < 0.7)
        propagated[fill] = rng.integers(0, 2, size=fill.sum())
        reps.append(
            {
                "repetition": r,
                "seed": r,
                "labelled_mask": mask,
                "labels": {"none": manual, "prop": propagated},
            }
        )
    return {"mode": mode, "pool_sample_id": pool_ids, "repetitions": reps}


def by_id(label_sets, r, variant):
    rep = label_sets["repetitions"][r % len(label_sets["repetitions"])]
    return dict(zip(label_sets["pool_sample_id"], rep["labels"][variant], strict=True))


# --------------------------------------------------------------------------- #
# training_labels
# --------------------------------------------------------------------------- #
def test_labels_are_placed_by_sample_id():
    samples = make_samples()
    sets = make_label_sets(samples)
    for r in (0, 1, 2):  # r = 2 wraps around to label set 0
        labels, manual = X.training_labels(samples, sets, "prop", r)
        expected = by_id(sets, r, "prop")
        masks = dict(
            zip(
                sets["pool_sample_id"],
                sets["repetitions"][r % 2]["labelled_mask"],
                strict=True,
            )
        )
        for i, sid in enumerate(samples["sample_id"]):
            if sid in expected:
                assert labels[i] == expected[sid], sid
                assert manual[i] == masks[sid], sid
            else:  # test split
                assert labels[i] == -1 and not manual[i], sid
    assert labels.shape == (len(samples),) and manual.dtype == bool


def test_pool_order_matters_not_row_order():
    """Shuffling the samples table's rows moves the labels with their ids."""
    samples = make_samples()
    sets = make_label_sets(samples)
    labels, _ = X.training_labels(samples, sets, "prop", 0)
    shuffled = samples.iloc[::-1].reset_index(drop=True)
    labels2, _ = X.training_labels(shuffled, sets, "prop", 0)
    np.testing.assert_array_equal(labels2, labels[::-1])


def test_production_mode_manual_from_samples():
    samples = make_samples()
    sets = make_label_sets(samples, mode="production")
    pool = samples["split"].to_numpy() == "pool"
    # in production, samples' own labels mark the manual samples
    samples.loc[pool & (np.arange(len(samples)) % 2 == 0), "label"] = -1
    _, manual = X.training_labels(samples, sets, "none", 0)
    np.testing.assert_array_equal(manual, pool & (samples["label"].to_numpy() >= 0))


def test_excluded_samples_get_no_label_and_are_not_manual():
    samples = make_samples()
    sets = make_label_sets(samples)
    _, manual0 = X.training_labels(samples, sets, "prop", 0)
    exclude = np.zeros(len(samples), dtype=bool)
    exclude[np.flatnonzero(manual0)[:2]] = True  # two manual samples
    exclude[np.flatnonzero(~manual0)[:3]] = True  # and three others
    labels, manual = X.training_labels(samples, sets, "prop", 0, exclude=exclude)
    assert (labels[exclude] == -1).all()
    assert not manual[exclude].any()
    base, _ = X.training_labels(samples, sets, "prop", 0)
    np.testing.assert_array_equal(labels[~exclude], base[~exclude])
    np.testing.assert_array_equal(manual[~exclude], manual0[~exclude])


def test_balancing_keeps_manual_and_equalises_propagated():
    samples = make_samples(n_pool=120, n_test=0, seed=3)
    sets = make_label_sets(samples, seed=4)
    full, manual = X.training_labels(samples, sets, "prop", 0)
    labels, manual_b = X.training_labels(
        samples, sets, "prop", 0, balance=True, n_classes=2, seed=9
    )
    np.testing.assert_array_equal(manual_b, manual)
    np.testing.assert_array_equal(labels[manual], full[manual])  # all manual kept
    kept = labels >= 0
    assert (labels[kept] == full[kept]).all()  # only drops, never relabels
    prop_full = [np.sum((full == c) & ~manual) for c in (0, 1)]
    prop_kept = [np.sum((labels == c) & ~manual) for c in (0, 1)]
    assert prop_full[0] != prop_full[1], "fixture should be unbalanced"
    assert prop_kept == [min(prop_full)] * 2
    # a reference class sets the target instead of the smallest class
    big = int(np.argmax(prop_full))
    labels_r, _ = X.training_labels(
        samples, sets, "prop", 0, balance=True, reference_class=big, n_classes=2
    )
    np.testing.assert_array_equal(labels_r, full)


def test_unknown_variant_names_available_ones():
    samples = make_samples()
    sets = make_label_sets(samples)
    with pytest.raises(ValueError, match=r"'magic'.*\['none', 'prop'\]"):
        X.training_labels(samples, sets, "magic", 0)


def test_label_sets_of_another_data_set_are_rejected():
    samples = make_samples()
    sets = make_label_sets(samples)
    sets["pool_sample_id"] = sets["pool_sample_id"].copy()
    sets["pool_sample_id"][0] = "not-a-sample"
    with pytest.raises(ValueError, match="unknown sample ids"):
        X.training_labels(samples, sets, "prop", 0)


# --------------------------------------------------------------------------- #
# run_experiments
# --------------------------------------------------------------------------- #
def bright_side_images(labels, seed=0):
    """16 x 16 images: class 0 bright on the left half, class 1 on the right."""
    rng = np.random.default_rng(seed)
    n = labels.size
    images = rng.uniform(0, 0.2, size=(n, 1, 16, 16)).astype(np.float32)
    images[labels == 0, :, :, :8] += 0.8
    images[labels == 1, :, :, 8:] += 0.8
    return images


def expected_train_counts(samples, sets, variant, r, subject):
    labels = by_id(sets, r, variant)
    counts = np.zeros(2, dtype=int)
    for sid, subj in zip(samples["sample_id"], samples["subject_id"], strict=True):
        if subj != subject and labels.get(sid, -1) >= 0:
            counts[labels[sid]] += 1
    return counts


def test_run_experiments_loso_rows_and_callbacks():
    samples = make_samples(n_pool=36, n_test=0)
    sets = make_label_sets(samples)
    truth = samples["label"].to_numpy()
    images = bright_side_images(truth)
    seen = []
    res = X.run_experiments(
        images,
        samples,
        truth,
        sets,
        variants=["none", "prop"],
        losses=["ce", {"name": "gce", "q": 0.7}],
        protocol="loso",
        n_repetitions=2,
        class_names=CLASSES,
        training_params=TRAINING,
        seed=3,
        n_jobs=1,
        on_fold_done=seen.append,
        progress=False,
    )
    assert len(res) == 2 * 2 * 2 * 3
    keys = set(
        zip(
            res["variant"],
            res["loss_name"],
            res["repetition"],
            res["fold"],
            strict=True,
        )
    )
    assert len(keys) == len(res)
    assert set(res["variant"]) == {"none", "prop"}
    assert set(res["repetition"]) == {0, 1}
    assert set(res["fold"]) == {0, 1, 2}
    assert set(res["subject_id"]) == {"subj0", "subj1", "subj2"}
    gce = res[res["loss"] == "gce"]
    assert set(gce["loss_name"]) == {"gce_q0.7"}  # also a valid MLflow name
    assert all(json.loads(p) == {"q": 0.7} for p in gce["loss_params"])
    assert set(res.loc[res["loss"] == "ce", "loss_name"]) == {"ce"}
    assert (res["status"] == "ok").all()
    assert res["accuracy"].between(0, 1).all()
    # the callback saw every row once, in this process
    assert len(seen) == len(res)
    seen_keys = {
        (s["variant"], s["loss_name"], s["repetition"], s["fold"]) for s in seen
    }
    assert seen_keys == keys
    # each fold trained on the other subjects' labels of its variant and repetition
    for _, row in res.iterrows():
        counts = expected_train_counts(
            samples, sets, row["variant"], row["repetition"], row["subject_id"]
        )
        assert row["n_train"] == counts.sum()
        assert [row["n_train_left"], row["n_train_right"]] == counts.tolist()
        assert row["n_test"] == np.sum(samples["subject_id"] == row["subject_id"])
    # the repetition seeds the training: same row, same seed
    assert (res["seed"] == 3 + res["repetition"]).all()


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_run_experiments_holdout_rows_and_callbacks(n_jobs):
    samples = make_samples(n_pool=30, n_test=12)
    sets = make_label_sets(samples)
    truth = samples["label"].to_numpy()
    images = bright_side_images(truth)
    seen = []
    # n_jobs=2 takes the joblib branch (callbacks after the runs); threads keep it
    # fast here (process workers would spend ~20 s importing torch).
    with joblib.parallel_config(backend="threading"):
        res = X.run_experiments(
            images,
            samples,
            truth,
            sets,
            variants=["prop"],
            losses=["ce", {"name": "SCE", "label": "sce"}],
            protocol="holdout",
            n_repetitions=2,
            class_names=CLASSES,
            training_params=TRAINING,
            n_jobs=n_jobs,
            on_fold_done=seen.append,
            progress=False,
        )
    assert len(res) == 1 * 2 * 2
    assert sorted(zip(res["loss_name"], res["repetition"], strict=True)) == [
        ("ce", 0),
        ("ce", 1),
        ("sce", 0),
        ("sce", 1),
    ]
    assert sorted(res["loss"]) == ["ce", "ce", "sce", "sce"]
    assert (res["fold"] == 0).all() and (res["subject_id"] == "holdout").all()
    assert len(seen) == len(res)
    test_n = int(np.sum(samples["split"] == "test"))
    assert (res["n_test"] == test_n).all()
    for _, row in res.iterrows():
        labels = by_id(sets, row["repetition"], "prop")
        assert row["n_train"] == sum(v >= 0 for v in labels.values())


def test_run_experiments_excludes_and_balances():
    samples = make_samples(n_pool=36, n_test=0, seed=5)
    sets = make_label_sets(samples, seed=6)
    truth = samples["label"].to_numpy()
    exclude = np.zeros(len(samples), dtype=bool)
    exclude[:4] = True
    res = X.run_experiments(
        bright_side_images(truth),
        samples,
        truth,
        sets,
        variants=["prop"],
        losses=["ce"],
        protocol="loso",
        n_repetitions=1,
        class_names=CLASSES,
        training_params=TRAINING,
        exclude=exclude,
        balance=True,
        seed=2,
        progress=False,
    )
    labels, manual = X.training_labels(
        samples, sets, "prop", 0, exclude=exclude, balance=True, n_classes=2, seed=2
    )
    assert not (labels[exclude] >= 0).any()
    subjects = samples["subject_id"].to_numpy()
    for _, row in res.iterrows():
        other = subjects != row["subject_id"]
        assert row["n_train"] == np.sum(other & (labels >= 0))


def test_run_experiments_rejects_unknown_loss_and_variant():
    samples = make_samples(n_pool=12, n_test=0)
    sets = make_label_sets(samples)
    truth = samples["label"].to_numpy()
    kw = dict(
        protocol="loso",
        n_repetitions=1,
        class_names=CLASSES,
        training_params=TRAINING,
        progress=False,
    )
    images = bright_side_images(truth)
    with pytest.raises(ValueError, match=r"loss 'hinge' does not exist.*'ce'"):
        X.run_experiments(
            images, samples, truth, sets, variants=["none"], losses=["hinge"], **kw
        )
    with pytest.raises(ValueError, match="loss '' does not exist"):
        X.run_experiments(
            images, samples, truth, sets, variants=["none"], losses=[{"q": 1}], **kw
        )
    with pytest.raises(ValueError, match="available"):
        X.run_experiments(
            images, samples, truth, sets, variants=["nope"], losses=["ce"], **kw
        )
