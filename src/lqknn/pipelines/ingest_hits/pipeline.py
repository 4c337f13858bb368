"""The ``ingest_hits`` pipeline: one node per step, data flow readable at a glance."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    describe_dataset,
    ingest_source,
    plot_example_images,
    prepare_raw_source,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=prepare_raw_source,
                inputs="params:ingest",
                outputs="raw_source",
                name="prepare_raw_source",
            ),
            Node(
                func=ingest_source,
                inputs=["raw_source", "params:ingest"],
                outputs=[
                    "images",
                    "samples",
                    "classes",
                    "ground_truth",
                    "ingestion_report",
                ],
                name="ingest_source",
            ),
            Node(
                func=describe_dataset,
                inputs=["samples", "classes", "ground_truth", "ingestion_report"],
                outputs=["dataset_summary", "dataset_metrics"],
                name="describe_dataset",
            ),
            Node(
                func=plot_example_images,
                inputs=["images", "samples", "classes", "params:ingest"],
                outputs="example_images_plot",
                name="plot_example_images",
            ),
        ],
        tags="ingest_hits",
    )
