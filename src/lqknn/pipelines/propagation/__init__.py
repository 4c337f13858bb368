"""``propagation``: LQ-KNN and its baselines over repetitions, error control and
the annotated data set."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
