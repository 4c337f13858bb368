"""Tests of the scikit-learn digits source."""

import numpy as np
import pytest

from lqknn.data.digits import load_digits_dataset
from lqknn.data.schema import validate_dataset


def test_digits_schema_and_split():
    ds = validate_dataset(load_digits_dataset(test_fraction=0.2, seed=0))
    assert ds.images.shape == (1797, 1, 8, 8)
    assert ds.images.max() == 1.0 and ds.images.min() == 0.0  # 16 / 16 and 0 / 16
    assert ds.classes == [str(d) for d in range(10)]
    test = ds.samples["split"] == "test"
    assert test.sum() == 360  # ceil(0.2 * 1797)
    # stratified: each class's test share is 20 % up to rounding
    share = (
        ds.samples[test]["label"].value_counts() / ds.samples["label"].value_counts()
    )
    assert np.all(np.abs(share - 0.2) < 0.02)
    assert (ds.samples["subject_id"] == "all").all()
    assert ds.ground_truth.empty


def test_digits_seeded():
    a = load_digits_dataset(seed=1).samples["split"]
    b = load_digits_dataset(seed=1).samples["split"]
    c = load_digits_dataset(seed=2).samples["split"]
    assert a.equals(b) and not a.equals(c)


def test_digits_bad_arguments():
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_dataset(test_fraction=1.0)
    with pytest.raises(ValueError, match="seed"):
        load_digits_dataset(seed=-1)
