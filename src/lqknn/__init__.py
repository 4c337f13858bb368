"""lqknn: semi-automatic annotation with local-quality KNN label propagation.

The algorithms live in plain modules (``lqknn.quality``, ``lqknn.propagation``,
``lqknn.projection``, ...) that import without Kedro; ``lqknn.pipelines`` holds the
thin Kedro adapters.
"""

import os as _os

# Idle OpenMP threads spin by default; on a 2-core machine that makes two torch
# threads 10-30x slower than one. Set before torch loads; a user's value wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
