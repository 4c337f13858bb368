"""Tests of the MedMNIST npz loader on small files written here."""

import numpy as np
import pytest

from lqknn.data.medmnist import load_medmnist_npz, medmnist_2d_flags
from lqknn.data.schema import validate_dataset

ORGAN = [
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
]


def write_npz(path, n=(30, 10, 20), size=28, channels=None, n_classes=11, **override):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n, strict=True):
        shape = (k, size, size) if channels is None else (k, size, size, channels)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(k) % n_classes).reshape(-1, 1)
    arrays.update(override)
    np.savez(path, **arrays)
    return arrays


def test_organcmnist_schema(tmp_path):
    arrays = write_npz(tmp_path / "organcmnist.npz")
    ds = validate_dataset(load_medmnist_npz(tmp_path, "organcmnist"))
    assert ds.classes == ORGAN
    assert ds.images.shape == (60, 1, 28, 28)
    s = ds.samples
    assert (s["split"] == "pool").sum() == 40 and (s["split"] == "test").sum() == 20
    assert s["medmnist_split"].tolist() == ["train"] * 30 + ["val"] * 10 + ["test"] * 20
    np.testing.assert_allclose(
        ds.images[40:, 0], arrays["test_images"] / 255.0, atol=1e-7
    )
    assert s["label_name"].iloc[3] == "heart"  # train label 3
    assert s["sample_id"].is_unique and (s["subject_id"] == "all").all()


def test_rgb_and_size(tmp_path):
    write_npz(tmp_path / "pathmnist_64.npz", size=64, channels=3, n_classes=9)
    ds = validate_dataset(load_medmnist_npz(tmp_path, "pathmnist", size=64))
    assert ds.images.shape == (60, 3, 64, 64) and len(ds.classes) == 9


def test_missing_file_says_where_and_how(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match=r"organcmnist\.npz.*OrganCMNIST\(split='train', download=True",
    ):
        load_medmnist_npz(tmp_path, "organcmnist")


def test_bad_flags_and_files(tmp_path):
    with pytest.raises(ValueError, match="2-D flags.*organcmnist"):
        load_medmnist_npz(tmp_path, "nosuchmnist")
    with pytest.raises(ValueError, match="3-D"):
        load_medmnist_npz(tmp_path, "organmnist3d")
    with pytest.raises(ValueError, match="multi-label"):
        load_medmnist_npz(tmp_path, "chestmnist")
    with pytest.raises(ValueError, match="size"):
        load_medmnist_npz(tmp_path, "organcmnist", size=32)
    write_npz(tmp_path / "organcmnist.npz", test_labels=np.full((20, 1), 11))
    with pytest.raises(ValueError, match=r"test_labels must lie in \[0, 10\]"):
        load_medmnist_npz(tmp_path, "organcmnist")
    np.savez(tmp_path / "organcmnist.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="lacks key"):
        load_medmnist_npz(tmp_path, "organcmnist")


def test_flag_list():
    flags = medmnist_2d_flags()
    assert "organcmnist" in flags and "chestmnist" not in flags
    assert not any(f.endswith("3d") for f in flags)
