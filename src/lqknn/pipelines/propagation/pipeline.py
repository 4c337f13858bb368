"""The ``propagation`` pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    build_annotated_dataset,
    plot_propagation,
    run_propagation_study,
    summarise_propagation,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=run_propagation_study,
                inputs=[
                    "embeddings",
                    "grid_local_quality",
                    "samples",
                    "ground_truth",
                    "classes",
                    "params:propagation",
                ],
                outputs=[
                    "propagation_results",
                    "projection_choices",
                    "error_estimates",
                    "propagated_label_sets",
                ],
                name="run_propagation_study",
            ),
            Node(
                func=summarise_propagation,
                inputs=["propagation_results", "error_estimates", "params:propagation"],
                outputs=[
                    "propagation_summary",
                    "propagation_summary_table",
                    "error_calibration",
                    "propagation_metrics",
                ],
                name="summarise_propagation",
            ),
            Node(
                func=build_annotated_dataset,
                inputs=[
                    "embeddings",
                    "grid_local_quality",
                    "samples",
                    "classes",
                    "propagated_label_sets",
                    "params:propagation",
                ],
                outputs=["annotated_dataset", "annotation_setting"],
                name="build_annotated_dataset",
            ),
            Node(
                func=plot_propagation,
                inputs=[
                    "propagation_results",
                    "error_calibration",
                    "embeddings",
                    "projection_choices",
                    "propagated_label_sets",
                    "samples",
                    "ground_truth",
                    "classes",
                    "params:propagation",
                ],
                outputs=[
                    "accuracy_vs_k_plot",
                    "sorted_vs_unsorted_plot",
                    "best_vs_worst_plot",
                    "calibration_plot",
                    "propagation_map_plot",
                ],
                name="plot_propagation",
            ),
        ],
        tags="propagation",
    )
