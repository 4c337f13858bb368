"""``projection_selection``: t-SNE grid, silhouette selection and local quality."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
