"""Shared fixtures: a throw-away copy of the project for end-to-end Kedro runs.

The copy holds the configuration and an empty data tree; the package itself is
the installed ``lqknn``. Its MLflow store is the copy's own ``mlflow.db``, so
tests never touch the developer's runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = PROJECT_ROOT.parent / "shared" / "data" / "mnist"


def copy_project(dest: Path) -> Path:
    """Copy what ``kedro run`` needs (pyproject, conf, notebooks; src linked) into
    ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", ".telemetry", "README.md"):
        shutil.copy2(PROJECT_ROOT / name, dest / name)
    shutil.copytree(
        PROJECT_ROOT / "conf",
        dest / "conf",
        ignore=shutil.ignore_patterns("credentials.yml", "mlflow.yml.local"),
    )
    shutil.copytree(PROJECT_ROOT / "notebooks", dest / "notebooks")
    # Kedro puts <project>/src on sys.path: link the real sources (read-only use).
    (dest / "src").mkdir()
    (dest / "src" / "lqknn").symlink_to(PROJECT_ROOT / "src" / "lqknn")
    for layer in (
        "01_raw",
        "02_intermediate",
        "03_primary",
        "04_feature",
        "05_model_input",
        "06_models",
        "07_model_output",
        "08_reporting",
    ):
        (dest / "data" / layer).mkdir(parents=True, exist_ok=True)
    return dest


def kedro(project: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``kedro ARGS`` in ``project``; fail the test with its output on error."""
    # Telemetry is NOT disabled here: the project's own settings must keep every
    # run free of prompts (stdin is closed, so a prompt would fail the run).
    drop = ("MLFLOW_TRACKING_URI", "KEDRO_DISABLE_TELEMETRY", "DO_NOT_TRACK")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(MPLBACKEND="Agg", PYTHONHASHSEED="0")
    proc = subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"kedro {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A project copy on which ``kedro run --env test`` (all pipelines) has run."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    kedro(project, "run", "--env", "test")
    return project
