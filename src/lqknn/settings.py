"""Project settings (see https://docs.kedro.org/en/stable/configure/).

* Telemetry is off for this project (`.telemetry` holds ``consent: false`` and the
  environment variable below is set before any Kedro command can ask), so no run
  ever stops at a prompt.
* Parameters, globals and the MLflow configuration are merged *softly*: an
  environment (``conf/mnist``, ``conf/test``, ...) overrides only the keys it sets.
* ``${project_path:}`` and ``${mlflow_tracking_uri:}`` are available in every
  configuration file; the latter honours ``MLFLOW_TRACKING_URI`` and otherwise
  points at ``sqlite:///<project>/mlflow.db``.
"""

from __future__ import annotations

import os

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

from kedro.config import OmegaConfigLoader  # noqa: E402

from lqknn.hooks import ProjectHooks, default_tracking_uri, project_path  # noqa: E402

HOOKS = (ProjectHooks(),)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "merge_strategy": {"parameters": "soft", "mlflow": "soft", "globals": "soft"},
    "custom_resolvers": {
        "project_path": project_path,
        "mlflow_tracking_uri": default_tracking_uri,
    },
}
