"""``evaluation``: one report of propagation and classification results."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
