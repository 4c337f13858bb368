"""The ``feature_extraction`` pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    assess_features,
    encode_features,
    plot_feature_training,
    train_feature_encoder,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=train_feature_encoder,
                inputs=["images", "samples", "params:features"],
                outputs=["feature_model", "feature_training_history"],
                name="train_feature_encoder",
            ),
            Node(
                func=encode_features,
                inputs=["feature_model", "images", "params:features"],
                outputs="features",
                name="encode_features",
            ),
            Node(
                func=assess_features,
                inputs=[
                    "features",
                    "samples",
                    "feature_model",
                    "feature_training_history",
                    "images",
                    "params:features",
                ],
                outputs=["feature_summary", "feature_metrics"],
                name="assess_features",
            ),
            Node(
                func=plot_feature_training,
                inputs=[
                    "feature_model",
                    "feature_training_history",
                    "images",
                    "samples",
                    "classes",
                ],
                outputs=["reconstructions_plot", "loss_curves_plot"],
                name="plot_feature_training",
            ),
        ],
        tags="feature_extraction",
    )
