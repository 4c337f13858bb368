"""Project hooks: quiet third-party logging and name the MLflow run legibly."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.utils import find_kedro_project

# Libraries that are chatty at INFO level; their warnings still show.
_QUIET_LOGGERS = ("opfython", "numba", "matplotlib", "PIL", "alembic", "mlflow", "git")


def project_path() -> str:
    """Absolute path of the Kedro project that contains the working directory."""
    root = find_kedro_project(Path.cwd())
    return str(Path(root if root is not None else Path.cwd()).resolve())


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite store inside the project."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{project_path()}/mlflow.db"


class ProjectHooks:
    """Hooks registered in ``settings.HOOKS``."""

    @hook_impl
    def after_context_created(self, context) -> None:
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", module="opfython")
        warnings.filterwarnings("ignore", category=FutureWarning, module="mlflow")
        self._env = context.env or "local"

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline, catalog
    ) -> None:
        # kedro-mlflow's hook (a plugin, registered after the project's hooks)
        # runs first and has started the run by now.
        import mlflow

        if mlflow.active_run() is None:
            return
        names = run_params.get("pipeline_names") or [
            run_params.get("pipeline_name") or "__default__"
        ]
        if isinstance(names, str):
            names = [names]
        env = run_params.get("env") or getattr(self, "_env", "local")
        label = "+".join("all" if n == "__default__" else n for n in names)
        self._run_name = (env, label, catalog)
        mlflow.set_tag("mlflow.runName", _run_name(env, label, catalog))
        mlflow.set_tags({"lqknn.env": env, "lqknn.pipelines": label})

    @hook_impl
    def after_node_run(self, node, outputs: dict[str, Any]) -> None:
        """Once propagation has decided its mode (evaluation or production, from
        the data when ``mode: auto``), say it in the run's tags and name."""
        if node.name != "run_propagation_study":
            return
        import mlflow

        sets = outputs.get("propagated_label_sets")
        mode = sets.get("mode") if isinstance(sets, dict) else None
        if mlflow.active_run() is None or mode is None:
            return
        mlflow.set_tag("lqknn.propagation_mode", mode)
        if getattr(self, "_run_name", None) is not None:
            mlflow.set_tag("mlflow.runName", _run_name(*self._run_name, mode=mode))


def _run_name(env: str, label: str, catalog, mode: str | None = None) -> str:
    key = _key_parameters(catalog, mode)
    return " | ".join([env, label] + ([key] if key else []))


#: Sources whose pool is always fully labelled (propagation's evaluation mode).
_FULLY_LABELLED_SOURCES = ("mnist", "medmnist", "digits")


def _expected_mode(params: dict[str, Any]) -> str | None:
    """Propagation mode known from the parameters alone, or None (own HITS data
    with ``mode: auto``: only the data tell)."""
    prop = params.get("propagation") or {}
    if prop.get("mode", "auto") != "auto":
        return prop["mode"]
    ingest = params.get("ingest") or {}
    source = ingest.get("source")
    if source == "synthetic_hits":
        synthetic = ingest.get("synthetic") or {}
        hidden = synthetic.get("unlabelled_fraction") or synthetic.get(
            "n_extra_unlabelled"
        )
        return "production" if hidden else "evaluation"
    return "evaluation" if source in _FULLY_LABELLED_SOURCES else None


def _key_parameters(catalog, mode: str | None = None) -> str:
    """Short summary of the parameters that distinguish runs, for run names:
    data source, feature method, how labels are used (evaluation: labelled
    fraction x repetitions; production: the manual labels), losses. ``mode`` is
    the propagation mode once known; before, it is guessed from the parameters
    and left out where only the data can tell."""
    try:
        params = catalog.load("parameters")
    except Exception:  # noqa: BLE001 - a run name must never stop a run
        return ""
    parts = []
    source = (params.get("ingest") or {}).get("source")
    if source:
        parts.append(str(source))
    method = (params.get("features") or {}).get("method")
    if method:
        parts.append(f"{method} features")
    prop = params.get("propagation") or {}
    mode = mode or _expected_mode(params)
    if mode == "production":
        # production mode propagates from the manual labels; no subsets are drawn
        parts.append("manual labels")
    elif mode == "evaluation" and prop.get("n_repetitions"):
        parts.append(
            f"{prop.get('labelled_fraction', '?')} labelled x {prop['n_repetitions']}"
        )
    losses = (params.get("classification") or {}).get("losses") or []
    names = [str(x.get("name", x)) if isinstance(x, dict) else str(x) for x in losses]
    if names:
        parts.append("+".join(names))
    return ", ".join(parts)
