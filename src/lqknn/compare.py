"""Compare classification runs from the MLflow tracking store.

``kedro run`` logs one parent run per run (named ``"<env> | <pipelines>"``) and,
under it, one nested run per (variant, loss, repetition, fold) of
``noisy_classification`` (tag ``lqknn.level = fold``; parameters ``variant``,
``loss_name``, ``repetition``, ``subject_id``, ``status``; metrics ``accuracy``,
``mcc``, ``mean_class_accuracy``, ``acc_<class>``). The functions here read those
runs back through :class:`mlflow.MlflowClient` only (never the store's files) and
turn the latest parent run of each environment into a table: one row per
(variant, loss), mean and standard deviation of every metric; and a "side by
side" table with one row per variant and one column per (metric, loss), so CE and
GCE can be read next to each other.

Example
-------
>>> from lqknn.compare import compare_runs, side_by_side
>>> table = compare_runs("sqlite:///mlflow.db", "lqknn-hits")  # doctest: +SKIP
>>> side_by_side(table, metrics=("accuracy", "mcc"))  # doctest: +SKIP
"""

from __future__ import annotations

import ast
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from lqknn import evaluation

#: Tag that marks the nested per-fold runs of ``noisy_classification``.
FOLD_TAG = "lqknn.level"
#: Tag that holds the Kedro environment of a parent run (set by the project hooks).
ENV_TAG = "lqknn.env"
BASE_METRICS = ("accuracy", "mcc", "mean_class_accuracy")
_PAGE = 1000
_ID_COLUMNS = ("env", "run_name", "parent_run_id", "started", "run_status")


def _check_choice(value, name: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}.")
    return value


def _check_text(value, name: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}.")
    return value


def _quote(value: str) -> str:
    if "'" in value:
        raise ValueError(f"quotes are not allowed in search values, got {value!r}.")
    return f"'{value}'"


def _search_all(client, experiment_id: str, filter_string: str, order_by=None):
    """Every run matching ``filter_string`` (follows MLflow's page tokens)."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=filter_string,
            max_results=_PAGE,
            order_by=order_by,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _has_fold_runs(client, experiment_id: str, run_id: str) -> bool:
    page = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`mlflow.parentRunId` = {_quote(run_id)} "
            f"and tags.`{FOLD_TAG}` = 'fold'"
        ),
        max_results=1,
    )
    return len(page) > 0


def latest_parent_runs(
    client, experiment_id: str, *, env: str | None = None
) -> dict[str, object]:
    """The most recent parent run with fold runs under it, per environment.

    Parameters
    ----------
    client : mlflow.MlflowClient
    experiment_id : str
    env : str, optional
        Keep only parent runs whose ``lqknn.env`` tag equals ``env``.

    Returns
    -------
    dict
        ``{env: mlflow.entities.Run}`` in order of first appearance (newest first).
        Parent runs without the ``lqknn.env`` tag fall back to kedro-mlflow's
        ``env`` tag, then to ``"unknown"``.

    Notes
    -----
    One search over the experiment's top-level runs (newest first) and one
    one-row search per candidate until each environment has a run: time
    O(number of parent runs), memory O(number of parent runs).
    """
    runs = _search_all(
        client,
        experiment_id,
        f"tags.`{ENV_TAG}` = {_quote(env)}" if env is not None else "",
        order_by=["attributes.start_time DESC"],
    )
    chosen: dict[str, object] = {}
    for run in runs:
        tags = run.data.tags
        if "mlflow.parentRunId" in tags:
            continue
        run_env = tags.get(ENV_TAG) or tags.get("env") or "unknown"
        if run_env in chosen:
            continue
        if _has_fold_runs(client, experiment_id, run.info.run_id):
            chosen[run_env] = run
    return chosen


def _class_order(parent, metric_names: set[str]) -> list[str]:
    """``acc_<class>`` metrics in the order of ``ingest.classes``, then sorted."""
    names = []
    try:
        classes = ast.literal_eval(parent.data.params.get("ingest.classes", "None"))
    except (ValueError, SyntaxError):
        classes = None
    if isinstance(classes, (list, tuple)):
        names = [f"acc_{c}" for c in classes if f"acc_{c}" in metric_names]
    rest = sorted(m for m in metric_names if m.startswith("acc_") and m not in names)
    return names + rest


def fold_runs_frame(client, experiment_id: str, parent) -> pd.DataFrame:
    """The fold runs under ``parent`` as a results table (one row per run).

    Columns: ``variant``, ``loss_name``, ``repetition`` (int), ``subject_id``,
    ``fold``, ``status`` (``"ok"`` when the parameter is missing), then
    ``accuracy``, ``mcc``, ``mean_class_accuracy`` and ``acc_<class>`` (NaN where a
    run did not log the metric, e.g. a class absent from a fold's test set). Rows
    are in logging order (start time), so variants and losses keep their
    configured order.
    """
    runs = _search_all(
        client,
        experiment_id,
        f"tags.`mlflow.parentRunId` = {_quote(parent.info.run_id)} "
        f"and tags.`{FOLD_TAG}` = 'fold'",
        order_by=["attributes.start_time ASC"],
    )
    metric_names = set().union(*(r.data.metrics for r in runs)) if runs else set()
    metrics = [m for m in BASE_METRICS if m in metric_names]
    metrics += _class_order(parent, metric_names)
    rows = []
    for run in runs:
        params = run.data.params
        row = {
            "variant": params.get("variant"),
            "loss_name": params.get("loss_name"),
            "repetition": int(params.get("repetition", 0)),
            "subject_id": params.get("subject_id"),
            "fold": params.get("fold"),
            "status": params.get("status", "ok"),
            "_start": run.info.start_time,
        }
        row.update({m: run.data.metrics.get(m, np.nan) for m in metrics})
        rows.append(row)
    columns = ["variant", "loss_name", "repetition", "subject_id", "fold", "status"]
    frame = pd.DataFrame(rows, columns=[*columns, "_start", *metrics])
    frame = frame.sort_values("_start", kind="stable").drop(columns="_start")
    return frame.reset_index(drop=True)


def _started(millis) -> str:
    if millis is None or (isinstance(millis, float) and math.isnan(millis)):
        return ""
    stamp = datetime.fromtimestamp(int(millis) / 1000, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def compare_runs(
    tracking_uri: str,
    experiment: str,
    *,
    env: str | None = None,
    parent_run_id: str | None = None,
    level: str = "repetition",
) -> pd.DataFrame:
    """Mean and std of the classification metrics per (variant, loss) of the
    latest run of each environment.

    Parameters
    ----------
    tracking_uri : str
        MLflow tracking URI, e.g. ``"sqlite:///mlflow.db"``.
    experiment : str
        Experiment name, e.g. ``"lqknn-hits"`` (one experiment per data set).
    env : str, optional
        Only parent runs of this Kedro environment (tag ``lqknn.env``).
    parent_run_id : str, optional
        Use this parent run instead of the latest one(s).
    level : {"repetition", "fold"}, default "repetition"
        ``"repetition"``: average the folds of each repetition, then mean and
        std over repetitions (the paper's "mean +- std over repetitions", as in
        ``classification_summary.csv``). ``"fold"``: mean and std over all fold
        runs.

    Returns
    -------
    pandas.DataFrame
        One row per (environment, variant, loss): ``env``, ``run_name``,
        ``parent_run_id``, ``started`` (UTC), ``run_status``, ``variant``,
        ``loss_name``, ``n_ok`` / ``n_skipped`` / ``n_excluded`` (fold runs by
        status; only ``ok`` runs enter the statistics), ``n_repetitions``
        (``level="repetition"``), ``<metric>_mean`` and ``<metric>_std`` (sample
        std, ddof 1; NaN for a single value) for accuracy, mcc,
        mean_class_accuracy and each ``acc_<class>``, and ``acc_<class>_n``.
        Environments in order of their latest run (newest first); variants and
        losses in logging order.

    Raises
    ------
    ValueError
        Unknown experiment, parent run or level, or no run with fold runs.

    Notes
    -----
    Time O(R) MLflow rows read for R fold runs of the chosen parents (paged by
    1000), memory O(R x metrics).
    """
    import mlflow

    _check_text(tracking_uri, "tracking_uri")
    _check_text(experiment, "experiment")
    _check_text(env, "env", optional=True)
    _check_text(parent_run_id, "parent_run_id", optional=True)
    _check_choice(level, "level", ("repetition", "fold"))
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        known = sorted(e.name for e in client.search_experiments())
        raise ValueError(
            f"experiment {experiment!r} is not in the tracking store {tracking_uri}; "
            f"known experiments: {known}."
        )
    if parent_run_id is not None:
        try:
            parent = client.get_run(parent_run_id)
        except mlflow.exceptions.MlflowException:
            raise ValueError(
                f"parent_run_id {parent_run_id!r} is not a run in {tracking_uri}."
            ) from None
        if parent.info.experiment_id != exp.experiment_id:
            raise ValueError(
                f"parent_run_id {parent_run_id!r} belongs to another experiment "
                f"than {experiment!r}."
            )
        tags = parent.data.tags
        parents = {tags.get(ENV_TAG) or tags.get("env") or "unknown": parent}
    else:
        parents = latest_parent_runs(client, exp.experiment_id, env=env)
    if not parents:
        where = f" for env {env!r}" if env is not None else ""
        raise ValueError(
            f"experiment {experiment!r} has no run with classification fold runs"
            f"{where}; run `kedro run` (or its noisy_classification pipeline) first."
        )
    tables = []
    for run_env, parent in parents.items():
        folds = fold_runs_frame(client, exp.experiment_id, parent)
        if folds.empty:
            raise ValueError(
                f"run {parent.info.run_id} ({parent.info.run_name!r}) has no fold runs."
            )
        folds = folds.drop(columns=["subject_id", "fold"])
        summary = evaluation.aggregate(folds, by=["variant", "loss_name"], level=level)
        ident = {
            "env": run_env,
            "run_name": parent.info.run_name,
            "parent_run_id": parent.info.run_id,
            "started": _started(parent.info.start_time),
            "run_status": parent.info.status,
        }
        for i, (key, value) in enumerate(ident.items()):
            summary.insert(i, key, value)
        tables.append(summary)
    return pd.concat(tables, ignore_index=True)


def side_by_side(
    table: pd.DataFrame,
    metrics: Sequence[str] = ("accuracy", "mcc"),
    *,
    reference_loss: str | None = None,
) -> pd.DataFrame:
    """One row per (environment, variant); the losses next to each other.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`compare_runs`.
    metrics : sequence of str, default ("accuracy", "mcc")
        Metrics to show (names without ``_mean``), e.g. ``"acc_solid"``.
    reference_loss : str, optional
        Loss the others are compared with; default ``"ce"`` when present, else
        the first loss.

    Returns
    -------
    pandas.DataFrame
        Columns ``env``, ``variant``, then per metric and loss
        ``"<metric>_mean[<loss>]"`` and ``"<metric>_std[<loss>]"``, and per metric
        and non-reference loss ``"<metric>_diff[<loss> - <reference>]"`` (difference
        of the means). Variants keep their order in ``table``.
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a DataFrame, got {type(table).__name__}.")
    missing = [c for c in ("env", "variant", "loss_name") if c not in table]
    if missing:
        raise ValueError(f"table lacks column(s) {missing} (use compare_runs).")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if not metrics:
        raise ValueError("metrics must name at least one metric, got [].")
    unknown = [m for m in metrics if f"{m}_mean" not in table]
    if unknown:
        known = [c.removesuffix("_mean") for c in table if c.endswith("_mean")]
        raise ValueError(f"metrics {unknown} are not in the table; known: {known}.")
    losses = list(dict.fromkeys(table["loss_name"]))
    if reference_loss is None:
        reference_loss = "ce" if "ce" in losses else losses[0]
    _check_choice(reference_loss, "reference_loss", losses)
    others = [loss for loss in losses if loss != reference_loss]
    ordered = [reference_loss, *others]
    keys = ["env", "variant"]
    index = table[keys].drop_duplicates().reset_index(drop=True)
    out = index.copy()
    for m in metrics:
        for loss in ordered:
            part = table.loc[
                table["loss_name"] == loss, keys + [f"{m}_mean", f"{m}_std"]
            ]
            part = part.rename(
                columns={
                    f"{m}_mean": f"{m}_mean[{loss}]",
                    f"{m}_std": f"{m}_std[{loss}]",
                }
            )
            out = out.merge(part, on=keys, how="left")
        for loss in others:
            out[f"{m}_diff[{loss} - {reference_loss}]"] = (
                out[f"{m}_mean[{loss}]"] - out[f"{m}_mean[{reference_loss}]"]
            )
    return out


def format_side_by_side(wide: pd.DataFrame, *, digits: int = 3) -> pd.DataFrame:
    """``mean +- std`` text cells from :func:`side_by_side` (for printing).

    Each ``<metric>_mean[<loss>]`` / ``<metric>_std[<loss>]`` pair becomes one
    column ``"<metric> [<loss>]"`` reading ``"0.812 ± 0.034"`` (only the mean when
    the std is missing, ``"–"`` when both are); differences read ``"+0.021"``.
    """
    out = wide[[c for c in ("env", "variant") if c in wide]].copy()
    for col in wide.columns:
        if "_mean[" in col:
            metric, loss = col.split("_mean[", 1)
            std_col = f"{metric}_std[{loss}"
            std = wide[std_col] if std_col in wide else pd.Series(np.nan, wide.index)
            out[f"{metric} [{loss}"] = [
                _mean_std(m, s, digits) for m, s in zip(wide[col], std, strict=True)
            ]
        elif "_diff[" in col:
            metric, rest = col.split("_diff[", 1)
            out[f"{metric} Δ[{rest}"] = [
                "–" if pd.isna(v) else f"{v:+.{digits}f}" for v in wide[col]
            ]
    return out


def format_long(table: pd.DataFrame, *, digits: int = 3) -> pd.DataFrame:
    """``mean +- std`` text cells for every metric of :func:`compare_runs`."""
    keep = ["env", "run_name", "variant", "loss_name", "n_ok"]
    if "n_repetitions" in table:
        keep.append("n_repetitions")
    out = table[[c for c in keep if c in table]].copy()
    for col in table.columns:
        if col.endswith("_mean"):
            metric = col.removesuffix("_mean")
            out[metric] = [
                _mean_std(m, s, digits)
                for m, s in zip(table[col], table[f"{metric}_std"], strict=True)
            ]
    return out


def _mean_std(mean, std, digits: int) -> str:
    if mean is None or pd.isna(mean):
        return "–"
    if std is None or pd.isna(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of ``frame`` (cells as ``str``)."""

    def cell(value) -> str:
        text = (
            ""
            if value is None or (isinstance(value, float) and pd.isna(value))
            else str(value)
        )
        return text.replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = (
        "|"
        + "|".join(
            "---:" if pd.api.types.is_numeric_dtype(frame[c]) else "---"
            for c in frame.columns
        )
        + "|"
    )
    body = [
        "| " + " | ".join(cell(v) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body]) + "\n"


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as ``.csv`` or ``.md`` (by the suffix of ``path``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    _check_choice(suffix, "output suffix", (".csv", ".md"))
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        path.write_text(to_markdown(frame), encoding="utf-8")
    return path
