"""The one place that talks to MLflow.

Nodes return plain dictionaries; the functions here turn them into what
kedro-mlflow's datasets expect, and log nested runs (one per repetition / fold)
from the parent process only, so joblib workers never race on the store.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


def _finite(value: Any) -> float | None:
    if isinstance(value, (str, bytes)):
        return None  # float("0.5") would pass a text value off as a metric
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def as_metrics(values: Mapping[str, Any], step: int = 0) -> dict[str, dict]:
    """``{name: number}`` -> kedro-mlflow's ``MlflowMetricsHistoryDataset`` format.

    Non-numeric and non-finite values are dropped (MLflow would reject NaN as a
    metric); names are kept as given.
    """
    out = {}
    for name, value in values.items():
        v = _finite(value)
        if v is not None:
            out[str(name)] = {"value": v, "step": int(step)}
    return out


def as_metric_history(
    name: str, values: Iterable[Any], steps: Iterable[int] | None = None
) -> dict[str, list[dict]]:
    """A sequence (e.g. loss per epoch) -> one metric with one step per value.

    Steps are 0, 1, ... unless ``steps`` gives them (e.g. repetition numbers);
    non-finite values are dropped with their step.
    """
    values = list(values)
    steps = range(len(values)) if steps is None else list(steps)
    if len(steps) != len(values):
        raise ValueError(
            f"metric {name!r}: {len(values)} values but {len(steps)} steps."
        )
    history = [
        {"value": v, "step": int(s)}
        for s, v in zip(steps, (_finite(x) for x in values), strict=True)
        if v is not None
    ]
    return {name: history}


def log_nested_runs(
    rows: Iterable[Mapping[str, Any]],
    *,
    param_keys: Iterable[str],
    metric_keys: Iterable[str],
    run_name_keys: Iterable[str],
    tags: Mapping[str, str] | None = None,
) -> int:
    """Log one nested MLflow run per row under the active (parent) run.

    Each row is a mapping; ``param_keys`` become run parameters, ``metric_keys``
    metrics (non-finite values skipped), and ``run_name_keys`` build the run name
    (``"key=value | ..."``). Does nothing and returns 0 when no run is active
    (e.g. a library call outside ``kedro run``). Returns the number of runs logged.
    """
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    parent = mlflow.active_run()
    if parent is None:
        return 0
    client = mlflow.MlflowClient()
    experiment_id = parent.info.experiment_id
    param_keys, metric_keys = list(param_keys), list(metric_keys)
    run_name_keys = list(run_name_keys)
    n = 0
    for row in rows:
        name = " | ".join(f"{k}={row[k]}" for k in run_name_keys if k in row)
        run_tags = {"mlflow.parentRunId": parent.info.run_id, **(tags or {})}
        run = client.create_run(experiment_id, run_name=name, tags=run_tags)
        timestamp = int(np.int64(run.info.start_time))
        metrics = [
            Metric(k, v, timestamp, 0)
            for k in metric_keys
            if k in row and (v := _finite(row[k])) is not None
        ]
        params = [Param(k, str(row[k])) for k in param_keys if k in row]
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=params,
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )
        client.set_terminated(run.info.run_id)
        n += 1
    return n
