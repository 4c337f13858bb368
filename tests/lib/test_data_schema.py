"""Tests of the data schema: validate_dataset and check_label_coverage."""

import numpy as np
import pandas as pd
import pytest

from lqknn.data.schema import (
    Dataset,
    check_label_coverage,
    unknown_mask,
    validate_dataset,
)

CLASSES = ["a", "b", "c"]


def make(n=6):
    images = np.full((n, 1, 4, 4), 0.5, np.float32)
    samples = pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(n)],
            "subject_id": "all",
            "label": np.array([0, 1, 2, -1, -1, 0], dtype=np.int64)[:n],
            "label_name": ["a", "b", "c", "", "unknown", "a"][:n],
            "split": "pool",
        }
    )
    return Dataset(images, samples, list(CLASSES))


def test_valid_dataset_passes_and_is_returned():
    ds = make()
    assert validate_dataset(ds) is ds
    assert ds.report.empty and ds.ground_truth.empty
    np.testing.assert_array_equal(unknown_mask(ds.samples), [0, 0, 0, 0, 1, 0])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: setattr(d, "images", d.images.astype(np.float64)), "float32"),
        (lambda d: setattr(d, "images", d.images[:, 0]), "4-D"),
        (lambda d: d.images.__setitem__((0, 0, 0, 0), np.nan), "NaN"),
        (lambda d: d.images.__setitem__((1, 0, 0, 0), 1.5), r"\[0, 1\]"),
        (lambda d: setattr(d, "samples", d.samples.iloc[:5]), "rows"),
        (lambda d: d.samples.__setitem__("sample_id", ["s0"] * 6), "unique"),
        (lambda d: d.samples.__setitem__("label", [0, 1, 3, -1, -1, 0]), "label"),
        (lambda d: d.samples.__setitem__("label", [0, 1, -2, -1, -1, 0]), "label"),
        (lambda d: d.samples.__setitem__("label_name", list("abbxua")), "label_name"),
        (lambda d: d.samples.__setitem__("split", "train"), "split"),
        (lambda d: setattr(d, "samples", d.samples.drop(columns="split")), "split"),
        (lambda d: setattr(d, "classes", ["a", "a", "c"]), "unique"),
        (lambda d: setattr(d, "classes", ["a", "unknown", "c"]), "reserved"),
    ],
)
def test_broken_invariants_are_named(mutate, message):
    ds = make()
    mutate(ds)
    with pytest.raises(ValueError, match=message):
        validate_dataset(ds)


def test_ground_truth_rules():
    ds = make()
    ds.ground_truth = pd.DataFrame(
        {"sample_id": ["s3"], "label": [1], "label_name": ["b"]}
    )
    validate_dataset(ds)
    ds.ground_truth = pd.DataFrame(
        {"sample_id": ["s0"], "label": [1], "label_name": ["b"]}
    )
    with pytest.raises(ValueError, match="only hold samples unlabelled"):
        validate_dataset(ds)
    ds.ground_truth = pd.DataFrame(
        {"sample_id": ["zz"], "label": [1], "label_name": ["b"]}
    )
    with pytest.raises(ValueError, match="not in samples"):
        validate_dataset(ds)
    ds.ground_truth = pd.DataFrame(
        {"sample_id": ["s3"], "label": [1], "label_name": ["c"]}
    )
    with pytest.raises(ValueError, match="disagrees"):
        validate_dataset(ds)


def test_not_a_dataset():
    with pytest.raises(TypeError, match="Dataset"):
        validate_dataset({"images": None})


def test_label_coverage():
    ds = make()
    assert check_label_coverage(ds.samples, CLASSES) == []
    s = ds.samples.copy()
    s.loc[s["label"] == 2, ["label", "label_name"]] = [-1, ""]
    with pytest.raises(ValueError, match=r"no labelled sample of class\(es\) \['c'\]"):
        check_label_coverage(s, CLASSES)
    assert check_label_coverage(s, CLASSES, on_missing="return") == ["c"]
    # only the pool counts by default
    s2 = ds.samples.copy()
    s2.loc[1, "split"] = "test"
    assert check_label_coverage(s2, CLASSES, on_missing="return") == ["b"]
    assert check_label_coverage(s2, CLASSES, split=None, on_missing="return") == []


def test_label_coverage_bad_arguments():
    ds = make()
    with pytest.raises(ValueError, match="on_missing"):
        check_label_coverage(ds.samples, CLASSES, on_missing="warn")
    with pytest.raises(ValueError, match="split"):
        check_label_coverage(ds.samples, CLASSES, split="train")
    with pytest.raises(ValueError, match="label"):
        check_label_coverage(ds.samples.drop(columns="label"), CLASSES)
