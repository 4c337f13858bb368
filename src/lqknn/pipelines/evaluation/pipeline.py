"""The ``evaluation`` pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import plot_classification, write_report


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=plot_classification,
                inputs=["classification_results", "classes"],
                outputs=["classification_boxplot", "per_class_accuracy_plot"],
                name="plot_classification",
            ),
            Node(
                func=write_report,
                inputs=[
                    "dataset_summary",
                    "feature_summary",
                    "projection_quality",
                    "propagation_summary",
                    "annotation_setting",
                    "classification_summary",
                    "classification_results",
                    "classes",
                ],
                outputs="evaluation_report",
                name="write_report",
            ),
        ],
        tags="evaluation",
    )
