"""Stratified labelled subsets (METHOD.md section 1)."""

import numpy as np
import pytest

from lqknn.split import hide_labels, labelled_subset


def _labels():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2, 3], [100, 37, 9, 250])
    y = np.concatenate([y, np.full(20, -1)])
    return rng.permutation(y)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.99, 1.0])
def test_counts_per_class_are_floor(fraction):
    y = _labels()
    mask = labelled_subset(y, fraction, seed=1)
    expected = {0: 100, 1: 37, 2: 9, 3: 250}
    for c, n_c in expected.items():
        # exact decimal floor, independent of float rounding
        want = (round(fraction * 100) * n_c) // 100
        assert mask[y == c].sum() == want
    assert not mask[y == -1].any()


def test_floor_of_exact_products():
    """0.1 * 30 is 3.0000000000000004 in floats: exactly 3 are kept."""
    y = np.zeros(30, dtype=int)
    assert labelled_subset(y, 0.1, seed=0).sum() == 3
    y = np.zeros(70, dtype=int)
    assert labelled_subset(y, 0.1, seed=0).sum() == 7


def test_deterministic_and_seed_dependent():
    y = _labels()
    a = labelled_subset(y, 0.1, seed=5)
    np.testing.assert_array_equal(a, labelled_subset(y, 0.1, seed=5))
    b = labelled_subset(y, 0.1, seed=6)
    assert not np.array_equal(a, b)
    assert a.sum() == b.sum()


def test_every_sample_can_be_drawn():
    y = np.repeat([0, 1], [10, 10])
    seen = np.zeros(20, dtype=bool)
    for seed in range(60):
        seen |= labelled_subset(y, 0.2, seed=seed)
    assert seen.all()


def test_hide_labels():
    y = np.array([0, 1, 2, -1, 1])
    mask = np.array([True, False, True, False, True])
    np.testing.assert_array_equal(hide_labels(y, mask), [0, -1, 2, -1, 1])
    np.testing.assert_array_equal(y, [0, 1, 2, -1, 1])  # input untouched


def test_bad_inputs():
    y = np.array([0, 1, 1, 0])
    with pytest.raises(ValueError, match="fraction"):
        labelled_subset(y, 1.5, seed=0)
    with pytest.raises(ValueError, match="fraction"):
        labelled_subset(y, -0.1, seed=0)
    with pytest.raises(ValueError, match="fraction"):
        labelled_subset(y, float("nan"), seed=0)
    with pytest.raises(ValueError, match="labels"):
        labelled_subset(np.array([0, -2, 1]), 0.5, seed=0)
    with pytest.raises(ValueError, match="labels"):
        labelled_subset(np.array([0.5, 1.0]), 0.5, seed=0)
    with pytest.raises(TypeError, match="seed"):
        labelled_subset(y, 0.5, seed="x")
    with pytest.raises(ValueError, match="mask"):
        hide_labels(y, np.array([True, False]))
    with pytest.raises(ValueError, match="mask"):
        hide_labels(y, np.array([1, 0, 1, 0]))
