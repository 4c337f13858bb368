"""The ``noisy_classification`` pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import summarise_classification, train_noisy_classifiers


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=train_noisy_classifiers,
                inputs=[
                    "images",
                    "samples",
                    "classes",
                    "propagated_label_sets",
                    "params:classification",
                ],
                outputs="classification_results",
                name="train_noisy_classifiers",
            ),
            Node(
                func=summarise_classification,
                inputs=["classification_results", "classes"],
                outputs=["classification_summary", "classification_metrics"],
                name="summarise_classification",
            ),
        ],
        tags="noisy_classification",
    )
