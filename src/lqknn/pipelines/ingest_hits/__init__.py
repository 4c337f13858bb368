"""``ingest_hits``: any source (HITS folder, synthetic HITS, MNIST, MedMNIST,
digits) to one schema: ``images``, ``samples``, ``classes``, ``ground_truth``."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
