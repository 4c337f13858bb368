"""scikit-learn's 8 x 8 digits as a :class:`Dataset` (no file needed).

References
----------
Alpaydin, E. and Kaynak, C. (1998). Optical recognition of handwritten digits. UCI
Machine Learning Repository.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from lqknn._validation import check_float, check_int
from lqknn.data.schema import NO_SUBJECT, Dataset


def load_digits_dataset(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Load the 1,797 digits with a seeded, stratified test split.

    Parameters
    ----------
    test_fraction : float in (0, 1), default=0.2
        Fraction of the samples in the test split.
    seed : int, default=0
        Seed of the split.

    Returns
    -------
    Dataset
        ``images`` (1797, 1, 8, 8) float32 = pixels / 16; ``samples`` in the
        original order with ``sample_id`` ``digits_<index>``, ``subject_id``
        ``"all"``, every label known; classes ``"0"``..``"9"``.

    Notes
    -----
    Time and memory O(1797 * 64).
    """
    test_fraction = check_float(
        test_fraction,
        "test_fraction",
        low=0,
        high=1,
        low_inclusive=False,
        high_inclusive=False,
    )
    seed = check_int(seed, "seed", low=0)
    bunch = load_digits()
    y = bunch.target.astype(np.int64)
    _, test_idx = train_test_split(
        np.arange(y.size), test_size=test_fraction, stratify=y, random_state=seed
    )
    split = np.full(y.size, "pool", dtype=object)
    split[test_idx] = "test"
    samples = pd.DataFrame(
        {
            "sample_id": [f"digits_{i:04d}" for i in range(y.size)],
            "subject_id": NO_SUBJECT,
            "label": y,
            "label_name": y.astype(str),
            "split": split,
        }
    )
    images = (bunch.images.astype(np.float32) / 16.0)[:, None]
    info = {
        "source": "digits",
        "n_samples": int(y.size),
        "n_pool": int((split == "pool").sum()),
        "n_test": int((split == "test").sum()),
        "n_skipped": 0,
    }
    return Dataset(images, samples, [str(d) for d in range(10)], info=info)
