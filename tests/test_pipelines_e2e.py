"""End-to-end: ``kedro run`` on the tiny ``test`` environment in a project copy.

One full run (all six pipelines) is shared by the tests of this module; each
pipeline is then re-run alone on what the catalog persisted.
"""

from __future__ import annotations

import json
import re

import joblib
import mlflow
import numpy as np
import pandas as pd
import pytest

from .conftest import SHARED_MNIST, copy_project, kedro

pytestmark = pytest.mark.slow

PIPELINES = (
    "ingest_hits",
    "feature_extraction",
    "projection_selection",
    "propagation",
    "noisy_classification",
    "evaluation",
)


def _reporting(project):
    return project / "data" / "08_reporting" / "test"


def test_full_run_writes_schema_and_report(tiny_run):
    primary = tiny_run / "data" / "03_primary" / "test"
    images = joblib.load(primary / "images.joblib")
    samples = pd.read_parquet(primary / "samples.parquet")
    classes = json.loads((primary / "classes.json").read_text())
    assert classes == ["solid", "gaseous", "artifact"]
    assert images.dtype == np.float32 and images.shape == (len(samples), 1, 32, 32)
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert samples["sample_id"].is_unique
    assert set(samples["split"]) == {"pool"}
    assert samples["subject_id"].nunique() == 4
    report = (_reporting(tiny_run) / "report.md").read_text()
    for section in (
        "## Features",
        "## Projection",
        "## Propagation",
        "## Classification",
    ):
        assert section in report
    for png in (
        "example_images",
        "best_projection",
        "accuracy_vs_k",
        "classification_boxplot",
    ):
        assert (_reporting(tiny_run) / f"{png}.png").stat().st_size > 5_000


def test_propagation_outputs_are_consistent(tiny_run):
    out = tiny_run / "data"
    results = pd.read_parquet(
        out / "07_model_output" / "test" / "propagation_results.parquet"
    )
    assert set(results["repetition"]) == {0, 1}
    assert {"std_knn", "lq_knn", "lq_knn_unsorted", "opf_semi"} <= set(
        results["method"]
    )
    assert results["annotation_accuracy"].between(0, 1).all()
    sets = joblib.load(out / "05_model_input" / "test" / "propagated_label_sets.joblib")
    assert sets["mode"] == "evaluation"
    samples = pd.read_parquet(out / "03_primary" / "test" / "samples.parquet")
    for rep in sets["repetitions"]:
        manual = rep["labels"]["no_propagation"]
        truth = samples["label"].to_numpy()
        # every variant keeps the manual labels of its repetition unchanged
        for labels in rep["labels"].values():
            np.testing.assert_array_equal(labels[manual >= 0], manual[manual >= 0])
        np.testing.assert_array_equal(manual >= 0, rep["labelled_mask"])
        np.testing.assert_array_equal(manual[manual >= 0], truth[manual >= 0])
    annotated = list(
        (out / "07_model_output" / "test" / "annotated_dataset.csv").iterdir()
    )
    table = pd.read_csv(annotated[0] / "annotated_dataset.csv")
    assert set(table["source"]) <= {"manual", "propagated", "unlabelled"}
    assert {
        "parent_sample_id",
        "iteration",
        "local_quality",
        "estimated_accuracy",
    } <= set(table.columns)


def test_mlflow_has_parent_run_with_nested_fold_runs(tiny_run):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tiny_run / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lqknn-test")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_name.startswith("test | all | synthetic_hits")
    assert "autoencoder features" in parent.info.run_name
    assert parent.data.params["ingest.source"] == "synthetic_hits"
    assert "features.knn5_accuracy" in parent.data.metrics
    # per repetition (2 in the test environment) as a history, plus the mean
    history = client.get_metric_history(
        parent.info.run_id, "propagation.lq_knn_K10_tau0.1_accuracy_per_repetition"
    )
    assert sorted(m.step for m in history) == [0, 1]
    mean = parent.data.metrics["propagation.lq_knn_K10_tau0.1_accuracy"]
    assert mean == pytest.approx(np.mean([m.value for m in history]))
    history = client.get_metric_history(
        parent.info.run_id, "classification.std_knn_K10.ce.mcc_per_repetition"
    )
    assert [m.step for m in history] == [0]  # one classification repetition
    assert history[0].value == pytest.approx(
        parent.data.metrics["classification.std_knn_K10.ce.mcc"]
    )
    assert parent.data.tags["lqknn.propagation_mode"] == "evaluation"
    # the report and every figure it links sit together under report/
    listed = {
        a.path.rsplit("/", 1)[-1]
        for a in client.list_artifacts(parent.info.run_id, "report")
    }
    report = (_reporting(tiny_run) / "report.md").read_text()
    linked = set(re.findall(r"\]\(([^)]+\.png)\)", report))
    assert len(linked) >= 10 and linked | {"report.md"} <= listed
    nested = [
        r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    ]
    results = pd.read_csv(
        tiny_run / "data" / "07_model_output" / "test" / "classification_results.csv"
    )
    assert len(nested) == len(results)  # one nested run per fold row
    variants = {r.data.params["variant"] for r in nested}
    assert variants == {"no_propagation", "std_knn_K10", "lq_knn_K10_tau0.1"}
    assert {r.data.params["loss_name"] for r in nested} == {"ce", "gce_q0.7"}


@pytest.mark.parametrize("pipeline", PIPELINES[1:])
def test_each_pipeline_runs_alone_on_persisted_outputs(tiny_run, pipeline):
    kedro(tiny_run, "run", "--env", "test", "--pipeline", pipeline)
    if pipeline == "propagation":
        folder = (
            tiny_run / "data" / "07_model_output" / "test" / "annotated_dataset.csv"
        )
        # versioned: the earlier annotated set is still there, untouched
        assert len(list(folder.iterdir())) >= 2


def test_mnist_ingestion_from_shared_idx(tmp_path):
    if not SHARED_MNIST.exists():
        pytest.skip("../shared/data/mnist is not beside the project")
    project = copy_project(tmp_path / "p")
    kedro(
        project,
        "run",
        "--env",
        "mnist",
        "--pipeline",
        "ingest_hits",
        "--params",
        f"ingest.folder={SHARED_MNIST}",
    )
    samples = pd.read_parquet(
        project / "data" / "03_primary" / "mnist" / "samples.parquet"
    )
    assert (samples["split"] == "test").sum() == 2000
    assert (samples["split"] == "pool").sum() == 8000


def test_digits_environment_runs_each_pipeline_alone(tmp_path):
    """``--env digits`` (no file at all): every pipeline, one after the other,
    each on what the previous ones persisted (short training for the suite)."""
    project = copy_project(tmp_path / "digits")
    quick = (
        "features.epochs=1,propagation.n_repetitions=2,"
        "classification.training.epochs=1,classification.n_jobs=1"
    )
    for pipeline in PIPELINES:
        kedro(
            project, "run", "--env", "digits", "--pipeline", pipeline, "--params", quick
        )
    out = project / "data"
    samples = pd.read_parquet(out / "03_primary" / "digits" / "samples.parquet")
    assert len(samples) == 1797 and samples["label"].nunique() == 10
    features = joblib.load(out / "04_feature" / "digits" / "features.joblib")
    assert features.shape == (len(samples), 32)  # pool and test samples
    results = pd.read_csv(
        out / "07_model_output" / "digits" / "classification_results.csv"
    )
    assert (results["status"] == "ok").all()
    assert set(results["protocol"]) == {"holdout"}  # digits has a test split
    assert (out / "08_reporting" / "digits" / "report.md").exists()
