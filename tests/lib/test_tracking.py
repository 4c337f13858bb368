"""Tests for lqknn.tracking: kedro-mlflow metric formats and nested MLflow runs.

The nested-run test writes to a temporary SQLite store and reads it back with
``MlflowClient.search_runs``; the process-wide tracking URI is restored after.
"""

from __future__ import annotations

import math

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from lqknn.tracking import as_metric_history, as_metrics, log_nested_runs


# --------------------------------------------------------------------------- #
# Metric dictionaries
# --------------------------------------------------------------------------- #
def test_as_metrics_keeps_finite_numbers_only():
    values = {
        "acc": 0.75,
        "n": np.int64(12),
        "f32": np.float32(0.5),
        "nan": float("nan"),
        "inf": np.inf,
        "ninf": -np.inf,
        "text": "ok",
        "numeric_text": "0.5",
        "bytes": b"1",
        "none": None,
        "list": [1, 2],
        3: 1.5,
    }
    out = as_metrics(values, step=4)
    assert out == {
        "acc": {"value": 0.75, "step": 4},
        "n": {"value": 12.0, "step": 4},
        "f32": {"value": 0.5, "step": 4},
        "3": {"value": 1.5, "step": 4},
    }
    assert all(type(v["value"]) is float for v in out.values())
    assert as_metrics({}) == {}
    assert as_metrics({"x": 1})["x"]["step"] == 0


def test_as_metric_history_steps_follow_positions():
    hist = as_metric_history("train_loss", [1.0, 0.5, float("nan"), 0.25, "7"])
    # a dropped value leaves its step out, the others keep their epoch index
    assert hist == {
        "train_loss": [
            {"value": 1.0, "step": 0},
            {"value": 0.5, "step": 1},
            {"value": 0.25, "step": 3},
        ]
    }
    assert as_metric_history("empty", []) == {"empty": []}
    hist = as_metric_history("g", np.array([3, 2, 1]))
    assert [s["step"] for s in hist["g"]] == [0, 1, 2]
    assert [s["value"] for s in hist["g"]] == [3.0, 2.0, 1.0]


# --------------------------------------------------------------------------- #
# Nested runs
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    """A throw-away SQLite store as the process-wide tracking URI, shared by the
    module's tests (creating the store costs seconds)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/m.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        yield uri
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)  # back to the environment, restored by mp


def _all_runs(uri):
    client = MlflowClient(tracking_uri=uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


ROWS = [
    {"variant": "none", "loss_name": "ce", "fold": 0, "accuracy": 0.5, "mcc": 0.1},
    {
        "variant": "none",
        "loss_name": "gce_q0.7",
        "fold": 1,
        "accuracy": 0.75,
        "mcc": float("nan"),
    },
    {
        "variant": "lq",
        "loss_name": "ce",
        "fold": 2,
        "accuracy": np.float64(1.0),
        "mcc": np.inf,
        "status": "ok",
    },
]


def test_log_nested_runs_under_active_parent(tracking_uri):
    with mlflow.start_run(run_name="parent") as parent:
        n = log_nested_runs(
            ROWS,
            param_keys=("variant", "loss_name", "fold", "status"),
            metric_keys=("accuracy", "mcc", "missing"),
            run_name_keys=("variant", "loss_name", "fold"),
            tags={"lqknn.level": "fold"},
        )
        parent_id = parent.info.run_id
        experiment_id = parent.info.experiment_id
    assert n == 3
    client = MlflowClient(tracking_uri=tracking_uri)
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    assert len(runs) == 3
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) == {
        "variant=none | loss_name=ce | fold=0",
        "variant=none | loss_name=gce_q0.7 | fold=1",
        "variant=lq | loss_name=ce | fold=2",
    }
    for row in ROWS:
        name = f"variant={row['variant']} | loss_name={row['loss_name']} | fold={row['fold']}"
        run = by_name[name]
        expected_params = {
            k: str(row[k])
            for k in ("variant", "loss_name", "fold", "status")
            if k in row
        }
        assert run.data.params == expected_params
        expected_metrics = {
            k: float(row[k])
            for k in ("accuracy", "mcc")
            if math.isfinite(float(row[k]))
        }
        assert run.data.metrics == pytest.approx(expected_metrics)
        assert run.data.tags["lqknn.level"] == "fold"
        assert run.data.tags["mlflow.parentRunId"] == parent_id
        assert run.info.status == "FINISHED"
    # the parent itself holds none of the fold metrics
    assert client.get_run(parent_id).data.metrics == {}
    assert len(client.search_runs([experiment_id])) == 4


def test_log_nested_runs_without_active_run_logs_nothing(tracking_uri):
    before = len(_all_runs(tracking_uri))
    assert mlflow.active_run() is None
    n = log_nested_runs(
        ROWS, param_keys=("variant",), metric_keys=("accuracy",), run_name_keys=()
    )
    assert n == 0
    assert len(_all_runs(tracking_uri)) == before


def test_log_nested_runs_with_no_rows(tracking_uri):
    with mlflow.start_run() as parent:
        n = log_nested_runs(
            [], param_keys=("a",), metric_keys=("b",), run_name_keys=("a",)
        )
        parent_id = parent.info.run_id
    assert n == 0
    client = MlflowClient(tracking_uri=tracking_uri)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
    )
    assert children == []


def test_run_names_say_how_labels_are_used():
    from lqknn.hooks import _key_parameters

    class Catalog:
        def __init__(self, params):
            self.params = params

        def load(self, name):
            assert name == "parameters"
            return self.params

    base = {
        "ingest": {"source": "synthetic_hits", "synthetic": {}},
        "features": {"method": "autoencoder"},
        "propagation": {"labelled_fraction": 0.1, "n_repetitions": 10},
        "classification": {"losses": [{"name": "ce"}, {"name": "gce", "q": 0.7}]},
    }
    assert _key_parameters(Catalog(base)) == (
        "synthetic_hits, autoencoder features, 0.1 labelled x 10, ce+gce"
    )
    large = {
        **base,
        "ingest": {"source": "synthetic_hits", "synthetic": {"n_extra_unlabelled": 9}},
    }
    assert "manual labels" in _key_parameters(Catalog(large))
    assert "labelled x" not in _key_parameters(Catalog(large))
    # an explicit mode wins over the guess
    forced = {**large, "propagation": {**base["propagation"], "mode": "evaluation"}}
    assert "0.1 labelled x 10" in _key_parameters(Catalog(forced))
    # own HITS data with mode auto: only the data tell, so nothing is claimed ...
    own = {**base, "ingest": {"source": "hits"}}
    name = _key_parameters(Catalog(own))
    assert "labelled x" not in name and "manual labels" not in name
    # ... until propagation has resolved the mode (after_node_run passes it)
    assert "manual labels" in _key_parameters(Catalog(own), mode="production")
    assert "0.1 labelled x 10" in _key_parameters(Catalog(own), mode="evaluation")
    digits = {**base, "ingest": {"source": "digits"}}
    assert "0.1 labelled x 10" in _key_parameters(Catalog(digits))
    assert _key_parameters(object()) == ""  # never stops a run
