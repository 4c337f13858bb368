"""The ``projection_selection`` pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    assess_projection_quality,
    compute_grid_local_quality,
    compute_tsne_grid,
    plot_grid_scores,
    plot_selected_projections,
    select_projections,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=compute_tsne_grid,
                inputs=[
                    "features",
                    "samples",
                    "params:projection",
                    "params:quality",
                ],
                outputs=["tsne_grid", "embeddings"],
                name="compute_tsne_grid",
            ),
            Node(
                func=compute_grid_local_quality,
                inputs=["features", "samples", "embeddings", "params:quality"],
                outputs="grid_local_quality",
                name="compute_grid_local_quality",
            ),
            Node(
                func=select_projections,
                inputs=["embeddings", "tsne_grid", "samples", "params:projection"],
                outputs=["projection_scores", "selected_projections"],
                name="select_projections",
            ),
            Node(
                func=assess_projection_quality,
                inputs=[
                    "features",
                    "samples",
                    "embeddings",
                    "selected_projections",
                    "params:quality",
                ],
                outputs=["projection_quality", "projection_metrics"],
                name="assess_projection_quality",
            ),
            Node(
                func=plot_selected_projections,
                inputs=[
                    "embeddings",
                    "grid_local_quality",
                    "samples",
                    "classes",
                    "selected_projections",
                    "params:quality",
                ],
                outputs=[
                    "best_projection_plot",
                    "worst_projection_plot",
                    "local_quality_plot",
                ],
                name="plot_selected_projections",
            ),
            Node(
                func=plot_grid_scores,
                inputs="projection_scores",
                outputs="grid_scores_plot",
                name="plot_grid_scores",
            ),
        ],
        tags="projection_selection",
    )
