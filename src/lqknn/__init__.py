"""lqknn: semi-automatic annotation with local-quality KNN label propagation.

The algorithms live in plain modules (``lqknn.quality``, ``lqknn.propagation``,
``lqknn.projection``, ...) that import without Kedro; ``lqknn.pipelines`` holds the
thin Kedro adapters.
"""

__version__ = "0.1.0"
