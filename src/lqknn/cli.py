"""Project commands: ``lqknn run`` (Kedro's run) and ``lqknn compare``.

Kedro treats ``<package>/cli.py`` as the project's command line: the ``cli``
group below is merged into ``kedro`` (so ``kedro compare`` works as well), and its
``run`` is Kedro's own ``kedro run`` command, which ``python -m lqknn`` and
``lqknn run`` call too.

``lqknn compare`` prints the classification results of the latest ``kedro run``
of each environment, read from the MLflow tracking store through MLflow's client:
one row per variant, CE and GCE side by side (``mean ± std``). Without options it
uses the project's own configuration (``conf/<env>/mlflow.yml``): the tracking
store ``sqlite:///<project>/mlflow.db`` (or ``MLFLOW_TRACKING_URI``) and the
experiment ``lqknn-<dataset>`` of the environment.

Examples::

    lqknn compare                        # default environment (lqknn-hits)
    lqknn compare --env test             # experiment lqknn-test, runs of env test
    lqknn compare --metrics accuracy,mcc,acc_solid --output results/compare.md
    lqknn compare --tracking-uri sqlite:///mlflow.db --experiment lqknn-mnist \\
        --layout long --output compare.csv
"""

from __future__ import annotations

import warnings
from pathlib import Path

import click
from kedro.framework.cli.project import run

PACKAGE = "lqknn"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """lqknn: semi-automatic annotation (a Kedro project).

    \b
    lqknn run [KEDRO RUN OPTIONS]   run the pipelines (same as `kedro run`)
    lqknn compare [OPTIONS]         compare CE and GCE per variant from MLflow
    """
    from kedro.framework.project import configure_project

    configure_project(PACKAGE)


cli.add_command(run)


def project_settings(env: str | None, project: Path | None = None) -> dict[str, str]:
    """Tracking URI and experiment name of ``env`` from the project's
    ``conf/*/mlflow.yml`` (as ``kedro run`` would resolve them).

    Returns ``{"tracking_uri": ..., "experiment": ...}``; raises
    ``click.UsageError`` outside a Kedro project.
    """
    from kedro.config import OmegaConfigLoader
    from kedro.utils import find_kedro_project

    root = find_kedro_project(project or Path.cwd())
    if root is None:
        raise click.UsageError(
            "not inside a Kedro project: give --tracking-uri and --experiment, "
            "or run the command from the project folder."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lqknn.settings import CONFIG_LOADER_ARGS

        args = dict(CONFIG_LOADER_ARGS)
        args["config_patterns"] = {"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]}
        loader = OmegaConfigLoader(
            conf_source=str(Path(root) / "conf"), env=env, **args
        )
        config = loader["mlflow"]
    return {
        "tracking_uri": str(config["server"]["mlflow_tracking_uri"]),
        "experiment": str(config["tracking"]["experiment"]["name"]),
    }


@cli.command()
@click.option(
    "--tracking-uri",
    help="MLflow tracking URI [default: the project's, sqlite:///<project>/mlflow.db "
    "or MLFLOW_TRACKING_URI].",
)
@click.option(
    "--experiment",
    help="MLflow experiment [default: lqknn-<dataset> of --env, from conf/].",
)
@click.option(
    "-e",
    "--env",
    help="Kedro environment: picks its experiment and keeps only its runs "
    "[default: every environment that logged to the experiment].",
)
@click.option("--run-id", help="Compare this parent run instead of the latest one.")
@click.option(
    "--level",
    type=click.Choice(["repetition", "fold"]),
    default="repetition",
    show_default=True,
    help="repetition: mean ± std over repetitions of the fold-averaged metrics "
    "(the paper's); fold: over all folds.",
)
@click.option(
    "--metrics",
    default="accuracy,mcc",
    show_default=True,
    help="Comma-separated metrics for the side-by-side layout (e.g. "
    "accuracy,mcc,mean_class_accuracy,acc_<class>), or 'all'.",
)
@click.option(
    "--layout",
    type=click.Choice(["wide", "long"]),
    default="wide",
    show_default=True,
    help="wide: one row per variant, losses side by side; long: one row per "
    "(variant, loss) with every metric.",
)
@click.option(
    "--digits",
    type=click.IntRange(0, 10),
    default=3,
    show_default=True,
    help="Decimals.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the table: .csv (numbers, mean and std in columns of their "
    "own) or .md (the printed table).",
)
def compare(
    tracking_uri, experiment, env, run_id, level, metrics, layout, digits, output
) -> None:
    """Compare the losses (CE, GCE) per label-set variant from MLflow runs.

    Reads the nested fold runs of the latest `kedro run` per environment (or of
    --run-id) through MLflow's client and prints mean ± std of each metric per
    (variant, loss).
    """
    from lqknn import compare as cmp

    if output is not None and output.suffix.lower() not in (".csv", ".md"):
        raise click.BadParameter(
            f"{output} must end in .csv or .md.", param_hint="--output"
        )
    if tracking_uri is None or experiment is None:
        settings = project_settings(env)
        tracking_uri = tracking_uri or settings["tracking_uri"]
        experiment = experiment or settings["experiment"]
    try:
        table = cmp.compare_runs(
            tracking_uri, experiment, env=env, parent_run_id=run_id, level=level
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if layout == "wide":
        if metrics.strip() == "all":
            names = [c.removesuffix("_mean") for c in table if c.endswith("_mean")]
        else:
            names = [m.strip() for m in metrics.split(",") if m.strip()]
        try:
            numbers = cmp.side_by_side(table, names)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--metrics") from None
        shown = cmp.format_side_by_side(numbers, digits=digits)
    else:
        numbers = table
        shown = cmp.format_long(table, digits=digits)
    runs = table.drop_duplicates("parent_run_id")
    click.echo(f"Experiment {experiment!r} ({tracking_uri}), level={level}")
    for row in runs.itertuples(index=False):
        click.echo(
            f"  env {row.env}: run {row.run_name!r} {row.parent_run_id} "
            f"started {row.started} [{row.run_status}]"
        )
    click.echo("")
    click.echo(shown.to_string(index=False))
    if output is not None:
        frame = numbers if output.suffix.lower() == ".csv" else shown
        cmp.write_table(frame, output)
        click.echo(f"\nwritten to {output}")


def main(*args, **kwargs):
    """Console-script entry point (``lqknn``)."""
    return cli(*args, **kwargs)


if __name__ == "__main__":
    main()
