"""Project pipelines: the six steps of the method, linked only through the catalog."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

PIPELINE_ORDER = (
    "ingest_hits",
    "feature_extraction",
    "projection_selection",
    "propagation",
    "noisy_classification",
    "evaluation",
)


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines; ``__default__`` runs them all in order."""
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(
        (pipelines[name] for name in PIPELINE_ORDER if name in pipelines),
        start=Pipeline([]),
    )
    return pipelines
