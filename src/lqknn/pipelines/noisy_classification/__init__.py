"""``noisy_classification``: CNNs trained on propagated labels with robust losses,
evaluated by leave-one-subject-out or repeated hold-out."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
