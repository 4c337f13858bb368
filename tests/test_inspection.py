"""How a person inspects the project: kedro-viz in a browser, the MLflow store and
``lqknn compare``, and the notebook, all on the tiny ``test`` run (``tiny_run``).

Screenshots, the executed notebook and its figures are written to
``test-artifacts/`` under the project root (git-ignored).
"""

from __future__ import annotations

import base64
import functools
import http.server
import math
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from lqknn import compare as cmp
from lqknn.cli import cli

from .conftest import PROJECT_ROOT, kedro

ARTEFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# One node that belongs to each pipeline only (from its pipeline.py).
KNOWN_NODES = {
    "ingest_hits": "ingest_source",
    "feature_extraction": "train_feature_encoder",
    "projection_selection": "compute_tsne_grid",
    "propagation": "run_propagation_study",
    "noisy_classification": "train_noisy_classifiers",
    "evaluation": "write_report",
}
CLASSES = ("solid", "gaseous", "artifact")
FOLD_METRICS = {"accuracy", "mcc", "mean_class_accuracy", "n_train", "n_test"}


def _artefacts(name: str) -> Path:
    folder = ARTEFACTS / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _fold_results(project: Path) -> pd.DataFrame:
    path = project / "data" / "07_model_output" / "test" / "classification_results.csv"
    return pd.read_csv(path)


# --------------------------------------------------------------------------- #
# kedro-viz, in headless Chromium
# --------------------------------------------------------------------------- #


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def viz_site(tiny_run):
    """``kedro viz build --include-previews`` of the test run, served over HTTP."""
    build = tiny_run / "build"
    shutil.rmtree(build, ignore_errors=True)
    # `kedro viz build` has no --env option; Kedro reads KEDRO_ENV instead.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KEDRO_ENV", "test")
        kedro(tiny_run, "viz", "build", "--include-previews", timeout=300)
    assert (build / "index.html").is_file() and (build / "api" / "main").is_file()
    handler = functools.partial(_QuietHandler, directory=str(build))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's `chromium` package "
            "(.ci/run does) to run the browser tests"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def viz_page(browser, viz_site):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    # What a person does once: dismiss kedro-viz's "new feature" tour.
    context.add_init_script(
        "window.localStorage.setItem('KedroViz', "
        "JSON.stringify({showFeatureHints: false}))"
    )
    page = context.new_page()
    page.set_default_timeout(30_000)
    expect.set_options(timeout=15_000)  # the flowchart animates between pipelines
    page.goto(viz_site)
    page.wait_for_selector(".pipeline-node")
    yield page
    context.close()


def _screenshot(page, path: Path) -> None:
    page.wait_for_timeout(1_000)  # let kedro-viz's transitions finish
    # clicking a node scrolls the app's frame sideways to reveal it; scroll back
    page.evaluate(
        "() => document.querySelectorAll('.kedro-pipeline')"
        ".forEach(e => { e.scrollLeft = 0; })"
    )
    page.screenshot(path=str(path))


def _select_pipeline(page, name: str) -> None:
    from playwright.sync_api import expect

    selector = page.locator("[data-test=kedro-pipeline-selector]")
    selector.locator(".dropdown__label").click()
    option = selector.locator(".dropdown__options .menu-option").filter(
        has_text=re.compile(rf"^\s*{re.escape(name)}\s*$")
    )
    option.click()
    expect(selector.locator(".dropdown__label")).to_have_text(name)


def _task_node(page, name: str):
    return page.locator(".pipeline-node--task .pipeline-node__text").filter(
        has_text=re.compile(rf"^{re.escape(name)}$")
    )


def _open_dataset(page, name: str):
    from playwright.sync_api import expect

    page.locator(".pipeline-node--data").filter(
        has=page.locator(".pipeline-node__text").filter(
            has_text=re.compile(rf"^{re.escape(name)}$")
        )
    ).click()
    panel = page.locator(".pipeline-metadata--visible")
    expect(panel.locator(".pipeline-metadata__title")).to_have_text(name)
    return panel


@pytest.mark.slow
@pytest.mark.browser
def test_kedro_viz_selects_each_pipeline(viz_page):
    from playwright.sync_api import expect

    page = viz_page
    selector = page.locator("[data-test=kedro-pipeline-selector]")
    selector.locator(".dropdown__label").click()
    listed = {t.strip() for t in selector.locator(".menu-option").all_text_contents()}
    assert {"__default__", *KNOWN_NODES} <= listed
    selector.locator(".menu-option").filter(has_text="__default__").click()
    shots = _artefacts("kedro-viz")
    _screenshot(page, shots / "__default__.png")
    for pipeline, node in KNOWN_NODES.items():
        _select_pipeline(page, pipeline)
        expect(_task_node(page, node)).to_have_count(1)
        # nodes of the other pipelines are gone from the flowchart
        for other, other_node in KNOWN_NODES.items():
            if other != pipeline:
                expect(_task_node(page, other_node)).to_have_count(0)
        assert f"pid={pipeline}" in page.url
        _screenshot(page, shots / f"{pipeline}.png")


@pytest.mark.slow
@pytest.mark.browser
def test_kedro_viz_previews_summary_table_and_figure(viz_page, tiny_run):
    from playwright.sync_api import expect

    page = viz_page
    shots = _artefacts("kedro-viz")
    summary = pd.read_csv(
        tiny_run / "data" / "08_reporting" / "test" / "classification_summary.csv"
    )
    _select_pipeline(page, "noisy_classification")
    panel = _open_dataset(page, "classification_summary")
    table = panel.locator(".pipeline-metadata__preview .preview-table")
    expect(table).to_be_visible()
    expect(table.locator(".preview-table__header")).to_contain_text(
        ["variant", "loss_name", "accuracy_mean"]
    )
    # `preview_args: {nrows: 20}` in the catalog: the whole summary is shown (the
    # kedro-viz default would cut it to 5 rows).
    assert len(summary) > 5
    expect(table.locator(".preview-table__row")).to_have_count(
        len(summary),
        timeout=5_000,
    )
    _screenshot(page, shots / "preview_classification_summary.png")

    _select_pipeline(page, "evaluation")
    panel = _open_dataset(page, "classification_boxplot")
    image = panel.locator("img.pipeline-metadata__plot-image")
    expect(image).to_be_visible()
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert image.evaluate("img => img.naturalWidth") > 100
    _screenshot(page, shots / "preview_classification_boxplot.png")


# --------------------------------------------------------------------------- #
# MLflow: what the compare view and `lqknn compare` rely on
# --------------------------------------------------------------------------- #


@pytest.mark.slow
def test_fold_runs_share_params_and_metric_names(tiny_run):
    """Complements test_pipelines_e2e's parent/nested check: every fold run has
    the same parameters and metric names, so MLflow's compare view lines them
    up."""
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tiny_run / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lqknn-test")
    folds = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`lqknn.level` = 'fold'"
    )
    assert folds
    per_class = {f"acc_{c}" for c in CLASSES}
    for run in folds:
        params = run.data.params
        assert {"variant", "loss_name", "repetition", "subject_id", "status"} <= set(
            params
        )
        assert FOLD_METRICS <= set(run.data.metrics) <= FOLD_METRICS | per_class
        assert run.info.run_name == (
            f"variant={params['variant']} | loss_name={params['loss_name']} | "
            f"repetition={params['repetition']} | subject_id={params['subject_id']}"
        )
        assert run.info.status == "FINISHED"


def _oracle(results: pd.DataFrame, level: str) -> pd.DataFrame:
    """Mean and std per (variant, loss_name) straight from the fold CSV."""
    ok = results[results["status"] == "ok"]
    metrics = ["accuracy", "mcc", "mean_class_accuracy"] + [f"acc_{c}" for c in CLASSES]
    if level == "repetition":
        ok = ok.groupby(["variant", "loss_name", "repetition"])[metrics].mean()
        ok = ok.reset_index()
    rows = {}
    for (variant, loss), group in ok.groupby(["variant", "loss_name"]):
        row = {}
        for m in metrics:
            values = group[m].dropna().to_numpy(dtype=float)
            row[f"{m}_mean"] = values.mean() if len(values) else math.nan
            row[f"{m}_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
        rows[(variant, loss)] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def _assert_matches_oracle(table: pd.DataFrame, oracle: pd.DataFrame) -> None:
    assert len(table) == len(oracle)
    for row in table.itertuples(index=False):
        expected = oracle.loc[(row.variant, row.loss_name)]
        for col, value in expected.items():
            got = getattr(row, col)
            if math.isnan(value):
                assert math.isnan(got), (row.variant, row.loss_name, col)
            else:
                assert got == pytest.approx(value, abs=1e-12), (
                    row.variant,
                    row.loss_name,
                    col,
                )


@pytest.mark.slow
@pytest.mark.parametrize("level", ["fold", "repetition"])
def test_compare_cli_long_csv_matches_fold_results(tiny_run, tmp_path, level):
    out = tmp_path / f"compare_{level}.csv"
    result = CliRunner().invoke(
        cli,
        [
            "compare",
            "--tracking-uri",
            f"sqlite:///{tiny_run / 'mlflow.db'}",
            "--experiment",
            "lqknn-test",
            "--layout",
            "long",
            "--level",
            level,
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    results = _fold_results(tiny_run)
    assert set(table["env"]) == {"test"}
    assert (table["n_ok"] == 4).all()  # one fold per subject (LOSO, 4 subjects)
    _assert_matches_oracle(table, _oracle(results, level))
    # the printed table shows the same numbers, "mean ± std"
    first = table.iloc[0]
    std = "" if math.isnan(first["accuracy_std"]) else f" ± {first['accuracy_std']:.3f}"
    assert f"{first['accuracy_mean']:.3f}{std}" in result.output


@pytest.mark.slow
def test_lqknn_compare_command_in_the_project(tiny_run, tmp_path):
    """`lqknn compare --env test` from the project folder, as in the README."""
    out = tmp_path / "compare.md"
    exe = shutil.which("lqknn")
    command = [exe] if exe else [sys.executable, "-m", "lqknn.cli"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run(
        [*command, "compare", "--env", "test", "--output", str(out)],
        cwd=tiny_run,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Experiment 'lqknn-test'" in proc.stdout
    assert "'test | " in proc.stdout  # the parent run's name
    oracle = _oracle(_fold_results(tiny_run), "repetition")
    lines = out.read_text().strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:2] == ["env", "variant"]
    assert {"accuracy [ce]", "accuracy [gce_q0.7]", "mcc [ce]"} <= set(header)
    assert "accuracy Δ[gce_q0.7 - ce]" in header
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [r[1] for r in rows] == [
        "no_propagation",
        "std_knn_K10",
        "lq_knn_K10_tau0.1",
    ]
    for r in rows:
        cells = dict(zip(header, r, strict=True))
        ce = oracle.loc[(r[1], "ce"), "accuracy_mean"]
        gce = oracle.loc[(r[1], "gce_q0.7"), "accuracy_mean"]
        assert cells["accuracy [ce]"].split(" ")[0] == f"{ce:.3f}"
        assert cells["accuracy [gce_q0.7]"].split(" ")[0] == f"{gce:.3f}"
        assert cells["accuracy Δ[gce_q0.7 - ce]"] == f"{gce - ce:+.3f}"
        assert r[1] in proc.stdout


@pytest.mark.slow
def test_compare_cli_reports_bad_arguments(tiny_run, tmp_path):
    uri = f"sqlite:///{tiny_run / 'mlflow.db'}"
    runner = CliRunner()
    base = ["compare", "--tracking-uri", uri]
    result = runner.invoke(cli, [*base, "--experiment", "lqknn-nope"])
    assert result.exit_code == 1
    assert "lqknn-nope" in result.output and "lqknn-test" in result.output
    result = runner.invoke(cli, [*base, "--experiment", "lqknn-test", "-o", "x.txt"])
    assert result.exit_code == 2 and "must end in .csv or .md" in result.output
    result = runner.invoke(
        cli, [*base, "--experiment", "lqknn-test", "--metrics", "accuracy,f1"]
    )
    assert result.exit_code == 2 and "['f1']" in result.output
    result = runner.invoke(cli, [*base, "--experiment", "lqknn-test", "--env", "mnist"])
    assert result.exit_code == 1 and "no run with classification fold runs" in (
        result.output
    )


# --------------------------------------------------------------------------- #
# compare_runs on a hand-made store: latest parent per environment, statuses
# --------------------------------------------------------------------------- #


def _log_parent(client, exp_id, env, name, start, folds):
    """A parent run (tag lqknn.env) with fold runs ``(variant, loss, rep, acc,
    status)``; returns its id."""
    parent = client.create_run(
        exp_id,
        run_name=name,
        start_time=start,
        tags={"lqknn.env": env},
    )
    for i, (variant, loss, rep, acc, status) in enumerate(folds):
        run = client.create_run(
            exp_id,
            run_name=f"{variant} {loss} {rep} {i}",
            start_time=start + 1 + i,
            tags={"mlflow.parentRunId": parent.info.run_id, "lqknn.level": "fold"},
        )
        for key, value in {
            "variant": variant,
            "loss_name": loss,
            "repetition": rep,
            "status": status,
        }.items():
            client.log_param(run.info.run_id, key, value)
        if status == "ok":
            client.log_metric(run.info.run_id, "accuracy", acc)
            client.log_metric(run.info.run_id, "mcc", 2 * acc - 1)
        client.set_terminated(run.info.run_id)
    client.set_terminated(parent.info.run_id)
    return parent.info.run_id


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("lqknn-x", artifact_location=str(folder / "art"))
    folds = [
        ("lq", "ce", "0", 0.5, "ok"),
        ("lq", "ce", "0", 0.7, "ok"),
        ("lq", "ce", "1", 0.9, "ok"),
        ("lq", "ce", "1", 0.0, "skipped: no training sample"),
        ("lq", "gce", "0", 0.6, "ok"),
        ("lq", "gce", "1", 0.8, "ok"),
        ("std", "ce", "0", 0.4, "ok"),
        ("std", "gce", "0", 0.3, "ok"),
    ]
    ids = {
        "old": _log_parent(client, exp, "a", "a | all", 1_000, [folds[0]]),
        "new": _log_parent(client, exp, "a", "a | all", 2_000, folds),
        "b": _log_parent(client, exp, "b", "b | all", 1_500, folds[4:6]),
        # newest of env a, but without fold runs (e.g. `--pipeline evaluation`)
        "no_folds": _log_parent(client, exp, "a", "a | evaluation", 3_000, []),
    }
    return uri, ids


def test_compare_runs_takes_latest_parent_per_env(small_store):
    uri, ids = small_store
    table = cmp.compare_runs(uri, "lqknn-x", level="fold")
    assert list(table["env"].unique()) == ["a", "b"]  # newest first
    a = table[table["env"] == "a"].set_index(["variant", "loss_name"])
    assert set(a["parent_run_id"]) == {ids["new"]}
    assert list(a.index) == [("lq", "ce"), ("lq", "gce"), ("std", "ce"), ("std", "gce")]
    row = a.loc[("lq", "ce")]
    assert (row["n_ok"], row["n_skipped"]) == (3, 1)  # the skipped fold is left out
    assert row["accuracy_mean"] == pytest.approx(0.7)
    assert row["accuracy_std"] == pytest.approx(0.2)  # std of 0.5, 0.7, 0.9
    assert row["mcc_mean"] == pytest.approx(0.4)
    assert math.isnan(a.loc[("std", "ce"), "accuracy_std"])  # one value
    b = table[table["env"] == "b"]
    assert set(b["parent_run_id"]) == {ids["b"]} and len(b) == 1


def test_compare_runs_repetition_level_and_filters(small_store):
    uri, ids = small_store
    table = cmp.compare_runs(uri, "lqknn-x", env="a", level="repetition")
    assert set(table["env"]) == {"a"}
    row = table.set_index(["variant", "loss_name"]).loc[("lq", "ce")]
    # repetition 0: mean(0.5, 0.7) = 0.6, repetition 1: 0.9 -> mean 0.75
    assert row["n_repetitions"] == 2
    assert row["accuracy_mean"] == pytest.approx(0.75)
    assert row["accuracy_std"] == pytest.approx(np.std([0.6, 0.9], ddof=1))
    old = cmp.compare_runs(uri, "lqknn-x", parent_run_id=ids["old"], level="fold")
    assert len(old) == 1 and old["accuracy_mean"].iloc[0] == pytest.approx(0.5)
    wide = cmp.side_by_side(table, ["accuracy"])
    assert list(wide.columns) == [
        "env",
        "variant",
        "accuracy_mean[ce]",
        "accuracy_std[ce]",
        "accuracy_mean[gce]",
        "accuracy_std[gce]",
        "accuracy_diff[gce - ce]",
    ]
    lq = wide.set_index("variant").loc["lq"]
    assert lq["accuracy_diff[gce - ce]"] == pytest.approx(0.7 - 0.75)


def test_compare_runs_rejects_bad_arguments(small_store):
    uri, ids = small_store
    with pytest.raises(ValueError, match="experiment 'nope' is not in"):
        cmp.compare_runs(uri, "nope")
    with pytest.raises(ValueError, match="level must be one of"):
        cmp.compare_runs(uri, "lqknn-x", level="subject")
    with pytest.raises(ValueError, match="no run with classification fold runs"):
        cmp.compare_runs(uri, "lqknn-x", env="zzz")
    with pytest.raises(ValueError, match="has no fold runs"):
        cmp.compare_runs(uri, "lqknn-x", parent_run_id=ids["no_folds"])
    with pytest.raises(ValueError, match="is not a run in"):
        cmp.compare_runs(uri, "lqknn-x", parent_run_id="0" * 32)
    with pytest.raises(ValueError, match="experiment must be a non-empty string"):
        cmp.compare_runs(uri, "")
    table = cmp.compare_runs(uri, "lqknn-x", env="b")
    with pytest.raises(ValueError, match=r"metrics \['f1'\] are not in the table"):
        cmp.side_by_side(table, ["f1"])
    with pytest.raises(ValueError, match="reference_loss must be one of"):
        cmp.side_by_side(table, ["accuracy"], reference_loss="sce")
    with pytest.raises(ValueError, match="output suffix must be one of"):
        cmp.write_table(table, "table.xlsx")


# --------------------------------------------------------------------------- #
# The notebook, executed headless against the finished test run
# --------------------------------------------------------------------------- #


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tiny_run):
    import nbformat
    from nbclient import NotebookClient

    source = tiny_run / "notebooks" / "explore_annotation.ipynb"
    notebook = nbformat.read(source, as_version=4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LQKNN_ENV", "test")  # read by the notebook's parameter cell
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        client = NotebookClient(
            notebook,
            timeout=300,
            kernel_name="python3",
            # the folder Jupyter starts the kernel in: the notebook's own
            resources={"metadata": {"path": str(source.parent)}},
        )
        client.execute()
    out = _artefacts("notebook")
    nbformat.write(notebook, out / "explore_annotation.ipynb")
    text, images = [], []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", output
            if output["output_type"] == "stream":
                text.append(output["text"])
            data = output.get("data", {})
            if "image/png" in data:
                images.append(base64.b64decode(data["image/png"]))
            # tables: their HTML (Kedro's extension renders text/plain with rich)
            text.append(data.get("text/html", ""))
    text = "\n".join(text)
    assert "env 'test': 150 samples" in text
    assert "lq_knn_K10_tau0.1" in text and "gce_q0.7" in text  # summary table
    # projection, local-quality map, provenance, classification summary
    assert len(images) >= 4
    for i, png in enumerate(images):
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        (out / f"figure_{i}.png").write_bytes(png)
