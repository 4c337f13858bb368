"""Node-level checks of the Kedro adapters: clear errors before expensive work."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lqknn.pipelines.common import check_pool_aligned, pool_rows, true_pool_labels
from lqknn.pipelines.noisy_classification.nodes import resolve_protocol
from lqknn.pipelines.projection_selection.nodes import compute_tsne_grid
from lqknn.pipelines.propagation.nodes import (
    _markdown,
    resolve_mode,
    run_propagation_study,
)


def _samples(n=40, labels=None, split="pool"):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, n) if labels is None else np.asarray(labels)
    return pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(n)],
            "subject_id": ["a"] * n,
            "label": labels,
            "label_name": np.where(labels >= 0, "x", ""),
            "split": split,
        }
    )


def test_modes_and_protocols_follow_the_data():
    full = _samples()
    assert resolve_mode(full, "auto") == "evaluation"
    partly = _samples(labels=np.r_[np.zeros(20, int), -np.ones(20, int)])
    assert resolve_mode(partly, "auto") == "production"
    unknown = full.copy()
    unknown.loc[:3, ["label", "label_name"]] = [-1, "unknown"]
    assert resolve_mode(unknown, "auto") == "evaluation"  # unknown is not unlabelled
    assert resolve_protocol(full, "auto") == "loso"
    assert resolve_protocol(_samples(split="test"), "auto") == "holdout"
    with pytest.raises(ValueError, match="mode"):
        resolve_mode(full, "sometimes")
    with pytest.raises(ValueError, match="protocol"):
        resolve_protocol(full, "kfold")


def test_stale_arrays_are_named():
    samples = _samples()
    with pytest.raises(ValueError, match="features has 39 rows but samples has 40"):
        pool_rows(np.zeros((39, 3)), samples, "features")
    with pytest.raises(ValueError, match="embeddings has 30 pool samples"):
        check_pool_aligned(np.zeros((2, 30, 2)), samples, "embeddings", axis=1)


def test_true_pool_labels_fill_hidden_truth_only_where_unlabelled():
    samples = _samples(labels=np.r_[np.zeros(2, int), -np.ones(2, int)], n=4)
    truth = pd.DataFrame({"sample_id": ["s2", "s0"], "label": [1, 1]})
    np.testing.assert_array_equal(true_pool_labels(samples, truth), [0, 0, 1, -1])


@pytest.mark.parametrize(
    ("quality", "labels", "message"),
    [
        ({"ks_kt": [[40, 10]]}, None, "ks and kt must be in"),
        ({"ks_kt": [[10, 0]]}, None, "ks and kt must be in"),
        ({"ks_kt": [[5, 5]]}, np.zeros(40, int), "fewer than two labelled classes"),
    ],
)
def test_projection_inputs_checked_before_any_tsne(
    monkeypatch, quality, labels, message
):
    import lqknn.projection

    def boom(*args, **kwargs):
        raise AssertionError("t-SNE ran before the inputs were checked")

    monkeypatch.setattr(lqknn.projection, "tsne_grid", boom)
    params = {"perplexities": [5], "early_exaggerations": [12], "learning_rates": [100]}
    with pytest.raises(ValueError, match=message):
        compute_tsne_grid(np.zeros((40, 3)), _samples(labels=labels), params, quality)


def test_unknown_map_variant_is_an_error_before_propagating():
    samples = _samples()
    emb = np.random.default_rng(1).normal(size=(1, 40, 2))
    params = {
        "labelled_fraction": 0.5,
        "n_repetitions": 1,
        "Ks": [3],
        "taus": [0.1],
        "methods": ["std_knn"],
        "ks_kt": [[5, 5]],
        "variants": [{"name": "none", "method": "none"}],
        "map_variant": "lq_knn_K10_tau0.1",
    }
    with pytest.raises(ValueError, match="map_variant"):
        run_propagation_study(
            emb,
            {"ks5_kt5": np.ones((1, 40))},
            samples,
            pd.DataFrame(),
            ["a", "b"],
            params,
        )


def test_classification_repetitions_need_their_own_labelled_subsets():
    from lqknn.experiments import run_experiments

    samples = _samples()
    sets = {
        "mode": "evaluation",
        "pool_sample_id": samples["sample_id"].to_numpy(),
        "repetitions": [{"labels": {"none": samples["label"].to_numpy()}}],
    }
    with pytest.raises(ValueError, match="propagation repetitions"):
        run_experiments(
            np.zeros((40, 1, 8, 8), np.float32),
            samples,
            samples["label"].to_numpy(),
            sets,
            variants=["none"],
            losses=["ce"],
            protocol="loso",
            n_repetitions=2,
            class_names=["a", "b"],
            training_params={"epochs": 1},
        )


def test_propagation_summary_markdown_shows_spread_only_with_repetitions():
    summary = pd.DataFrame(
        {
            "projection": ["best", "best"],
            "method": ["lq_knn", "opf_semi"],
            "quality": ["ks10_kt10", "-"],
            "tau": [0.1, "-"],
            "K": [10, "-"],
            "accuracy_mean": [91.5, 70.0],
            "accuracy_std": [1.25, np.nan],
            "labelled_mean": [99.0, 100.0],
            "labelled_std": [0.5, np.nan],
            "ms_per_sample": [0.0004, 5.0],
            "repetitions": [3, 1],
        }
    )
    lines = _markdown(summary).splitlines()
    assert (
        "| best | lq_knn | ks10_kt10 | 0.1 | 10 | 91.50 +- 1.25 | 99.00 +- 0.50 |"
        in (lines[-2])
    )
    assert "| best | opf_semi | - | - | - | 70.00 | 100.00 | 5.0000 |" == lines[-1]


@pytest.mark.parametrize("method", ["pca", "raw"])
def test_feature_nodes_run_for_encoders_without_epochs(method, tmp_path):
    """The history of pca / raw survives the CSV catalog entry (header only) and
    every later node accepts what comes back."""
    from lqknn.pipelines.feature_extraction.nodes import (
        assess_features,
        encode_features,
        plot_feature_training,
        train_feature_encoder,
    )

    rng = np.random.default_rng(0)
    samples = _samples(60)
    images = rng.uniform(size=(60, 1, 8, 8)).astype(np.float32)
    params = {"method": method, "n_components": 4, "seed": 0}
    model, history = train_feature_encoder(images, samples, params)
    path = tmp_path / "history.csv"
    history.to_csv(path, index=False)
    history = pd.read_csv(path)
    assert list(history.columns) == ["epoch", "train_loss"] and history.empty
    features = encode_features(model, images, params)
    assert features.shape == (60, 4 if method == "pca" else 64)
    summary, _ = assess_features(features, samples, model, history, images, params)
    assert summary["method"] == method and 0 <= summary["knn5_accuracy"] <= 1
    figures = plot_feature_training(model, history, images, samples, ["a", "b"])
    assert len(figures) == 2


def _production_params():
    return {
        "labelled_fraction": 0.1,
        "n_repetitions": 3,
        "Ks": [3],
        "taus": [0.1],
        "methods": ["std_knn", "lq_knn"],
        "ks_kt": [[5, 5]],
        "error_control": {"n_splits": 2},
        "variants": [
            {"name": "none", "method": "none"},
            {"name": "lq3", "method": "lq_knn", "K": 3, "tau": 0.1},
            {"name": "all_manual", "method": "manual_all"},
        ],
        "map_variant": None,
    }


def test_production_mode_skips_manual_all_without_hidden_truth(caplog):
    """Real data (manual labels only): the base configuration's manual_all
    variant would just repeat the manual labels, so it is skipped with a warning
    instead of failing the run."""
    rng = np.random.default_rng(2)
    labels = np.where(rng.uniform(size=40) < 0.5, rng.integers(0, 2, 40), -1)
    samples = _samples(labels=labels)
    emb = rng.normal(size=(1, 40, 2))
    lq = {"ks5_kt5": np.ones((1, 40))}
    with caplog.at_level("WARNING"):
        _, _, _, sets = run_propagation_study(
            emb, lq, samples, pd.DataFrame(), ["a", "b"], _production_params()
        )
    assert sets["mode"] == "production"
    assert [v["name"] for v in sets["variants"]] == ["none", "lq3"]
    assert len(sets["repetitions"]) == 1  # manual labels are fixed
    assert "all_manual" in caplog.text and "skipped" in caplog.text
    rep = sets["repetitions"][0]["labels"]
    np.testing.assert_array_equal(rep["none"], labels)


def test_production_mode_keeps_manual_all_where_hidden_truth_exists():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 40)
    labels = np.where(np.arange(40) % 3 == 0, truth, -1)
    samples = _samples(labels=labels)
    hidden = pd.DataFrame(
        {"sample_id": samples["sample_id"][labels < 0], "label": truth[labels < 0]}
    )
    emb = rng.normal(size=(1, 40, 2))
    lq = {"ks5_kt5": np.ones((1, 40))}
    _, _, _, sets = run_propagation_study(
        emb, lq, samples, hidden, ["a", "b"], _production_params()
    )
    rep = sets["repetitions"][0]["labels"]
    np.testing.assert_array_equal(rep["all_manual"], truth)


def test_summaries_log_every_repetition_as_a_metric_history():
    from lqknn.pipelines.noisy_classification.nodes import summarise_classification
    from lqknn.pipelines.propagation.nodes import summarise_propagation

    results = pd.DataFrame(
        {
            "projection": ["best"] * 5 + ["worst"],
            "method": ["std_knn", "std_knn", "lq_knn", "lq_knn", "opf_semi", "std_knn"],
            "K": [5, 5, 5, 5, np.nan, 5],
            "tau": [np.nan, np.nan, 0.1, 0.1, np.nan, np.nan],
            "quality": [np.nan, np.nan, "ks10_kt10", "ks10_kt10", np.nan, np.nan],
            "repetition": [1, 0, 0, 1, 0, 0],
            "annotation_accuracy": [0.8, 0.7, 0.9, 0.95, 0.6, 0.1],
            "labelled_fraction": [0.9, 0.8, 0.7, 0.75, 1.0, 0.5],
            "ms_per_sample": [0.1] * 6,
        }
    )
    *_, metrics = summarise_propagation(results, pd.DataFrame(), {"ks_kt": [[10, 10]]})
    assert metrics["std_knn_K5_accuracy"] == {"value": 75.0, "step": 0}
    assert metrics["std_knn_K5_accuracy_per_repetition"] == [
        {"value": 70.0, "step": 0},
        {"value": 80.0, "step": 1},
    ]
    assert metrics["lq_knn_K5_tau0.1_labelled_per_repetition"] == [
        {"value": 70.0, "step": 0},
        {"value": 75.0, "step": 1},
    ]
    assert metrics["opf_semi_accuracy_per_repetition"] == [{"value": 60.0, "step": 0}]

    folds = pd.DataFrame(
        {
            "variant": ["v"] * 4,
            "loss_name": ["ce"] * 4,
            "repetition": [0, 0, 1, 1],
            "fold": [0, 1, 0, 1],
            "status": ["ok"] * 4,
            "accuracy": [0.5, 0.7, 0.9, 1.0],
            "mcc": [0.1, 0.3, 0.5, 0.7],
            "mean_class_accuracy": [0.5, 0.5, 0.5, 0.5],
        }
    )
    _, metrics = summarise_classification(folds, [])
    assert metrics["v.ce.accuracy"]["value"] == pytest.approx(0.775)
    history = metrics["v.ce.mcc_per_repetition"]
    assert [h["step"] for h in history] == [0, 1]
    assert [h["value"] for h in history] == pytest.approx([0.2, 0.6])


def test_feature_architecture_comes_from_parameters():
    from lqknn.features import encoder_from_state
    from lqknn.pipelines.feature_extraction.nodes import train_feature_encoder

    images = np.random.default_rng(0).uniform(size=(40, 1, 8, 8)).astype(np.float32)
    params = {
        "method": "autoencoder",
        "n_components": 3,
        "epochs": 1,
        "architecture": {"channels": [4, 8], "dropout": 0.1},
    }
    state, history = train_feature_encoder(images, _samples(), params)
    config = encoder_from_state(state).model_.config
    assert config.channels == (4, 8) and config.dropout == 0.1
    assert config.latent_dim == 3 and len(history) == 1
    params["architecture"] = {"latent_dim": 5}
    with pytest.raises(ValueError, match="n_components"):
        train_feature_encoder(images, _samples(), params)


def test_bad_parameter_keys_are_named(tmp_path):
    from lqknn.pipelines.ingest_hits.nodes import prepare_raw_source
    from lqknn.pipelines.noisy_classification.nodes import train_noisy_classifiers

    params = {
        "source": "synthetic_hits",
        "folder": str(tmp_path / "hits"),
        "image_size": [16, 16],
        "synthetic": {"n_sample": 30},
    }
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['n_sample'\].*n_samples"):
        prepare_raw_source(params)
    assert not (tmp_path / "hits").exists()  # nothing written
    with pytest.raises(ValueError, match="balance_reference_class is 'solid'"):
        train_noisy_classifiers(
            np.zeros((40, 1, 8, 8), np.float32),
            _samples(),
            ["a", "b"],
            {"mode": "evaluation", "repetitions": []},
            {
                "variants": [],
                "losses": [],
                "training": {},
                "balance": True,
                "balance_reference_class": "solid",
            },
        )


@pytest.mark.parametrize("mode", ["evaluation", "production"])
def test_propagation_nodes_keep_unknown_samples_out(mode):
    """Rows an expert marked unknown: -1 in every label set, never in a labelled
    subset, never the parent of a propagated label in the annotated set."""
    from lqknn.pipelines.propagation.nodes import build_annotated_dataset

    rng = np.random.default_rng(4)
    n = 60
    truth = np.repeat([0, 1], n // 2)
    emb = (truth[:, None] * 3.0 + rng.normal(size=(n, 2)))[None]  # 1 configuration
    labels = (
        truth.copy()
        if mode == "evaluation"
        else np.where(np.arange(n) % 4 == 0, truth, -1)
    )
    unknown = np.zeros(n, dtype=bool)
    unknown[[3, 10, 33, 47]] = True
    labels[unknown] = -1
    samples = _samples(n, labels=labels)
    samples.loc[unknown, "label_name"] = "unknown"
    lq = {"ks5_kt5": np.ones((1, n))}
    params = _production_params() | {
        "labelled_fraction": 0.5,
        "n_repetitions": 2,
        "Ks": [3, 5],
        "ks_kt": [[5, 5]],
    }
    _, _, _, sets = run_propagation_study(
        emb, lq, samples, pd.DataFrame(), ["a", "b"], params
    )
    assert sets["mode"] == mode
    for rep in sets["repetitions"]:
        assert not rep["labelled_mask"][unknown].any()
        for name, labs in rep["labels"].items():
            assert (labs[unknown] == -1).all(), name
        assert (rep["labels"]["lq3"][~unknown] >= 0).any()
    table, setting = build_annotated_dataset(
        emb, lq, samples, ["a", "b"], sets, params | {"taus": [0.1]}
    )
    ids = set(samples["sample_id"][unknown])
    assert not set(table["parent_sample_id"]) & ids
    assert (table.loc[unknown, "source"] == "unlabelled").all()
    assert (table.loc[unknown, "label_name"] == "unknown").all()
    assert setting["n_unknown"] == unknown.sum()
    assert (
        setting["n_unlabelled"] == ((table["source"] == "unlabelled") & ~unknown).sum()
    )


def test_annotated_set_never_routes_labels_through_unknown_samples():
    """A 1-D chain where an unknown sample U is the only bridge from the labelled
    group A to the unlabelled group B (K = 3): kept out, U relays nothing, so B
    stays unlabelled; let in, B would take its labels from U."""
    from lqknn.pipelines.propagation.nodes import build_annotated_dataset

    x = np.array([0, 1, 2, 3, 4.6, 7, 8, 9, 0, 1, 2, 3], dtype=float)
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 50, 50, 50, 50], dtype=float)
    emb = np.c_[x, y][None]
    labels = np.array([0, 0, 0, 0, -1, -1, -1, -1, 1, 1, 1, 1])
    samples = _samples(12, labels=labels)
    samples.loc[4, "label_name"] = "unknown"
    lq = {"ks5_kt5": np.ones((1, 12))}
    params = _production_params() | {"Ks": [3], "taus": [0.1], "ks_kt": [[5, 5]]}
    params["error_control"] = {"n_splits": 2, "target_accuracy": 0.5}
    sets = {"mode": "production", "repetitions": [{"labelled_mask": labels >= 0}]}
    table, _ = build_annotated_dataset(emb, lq, samples, ["a", "b"], sets, params)
    assert (table["parent_sample_id"] != "s4").all()
    assert (table.loc[[5, 6, 7], "source"] == "unlabelled").all()
    assert (table.loc[[0, 1, 2, 3, 8, 9, 10, 11], "source"] == "manual").all()
