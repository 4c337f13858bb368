"""``feature_extraction``: auto-encoder (or PCA / raw) features for every sample."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
