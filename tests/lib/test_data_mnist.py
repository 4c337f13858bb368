"""Tests of the MNIST IDX loader (hand-written IDX files and the shared test set)."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from lqknn.data.mnist import load_mnist_idx, read_idx
from lqknn.data.schema import validate_dataset

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


def write_idx(path, arr, gz=False, magic=None):
    head = magic if magic is not None else bytes([0, 0, 8, arr.ndim])
    data = head + b"".join(struct.pack(">I", s) for s in arr.shape) + arr.tobytes()
    if gz:
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)


def write_pair(folder, prefix, n, rng, gz=True):
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    y = np.arange(n, dtype=np.uint8) % 10
    ext = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", x, gz)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", y, gz)
    return x, y


def test_read_idx_plain_and_gzip(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", a)
    write_idx(tmp_path / "b", a, gz=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), a)
    np.testing.assert_array_equal(read_idx(tmp_path / "b"), a)


@pytest.mark.parametrize(
    "magic, extra, msg",
    [
        (bytes([1, 0, 8, 1]), b"", "two zero bytes"),
        (bytes([0, 0, 0x0D, 1]), b"", "not supported"),
        (None, b"xx", "announces shape"),
    ],
)
def test_read_idx_bad_files(tmp_path, magic, extra, msg):
    a = np.zeros(5, np.uint8)
    write_idx(tmp_path / "a", a, magic=magic)
    (tmp_path / "a").write_bytes((tmp_path / "a").read_bytes() + extra)
    with pytest.raises(ValueError, match=msg):
        read_idx(tmp_path / "a")


def test_single_pair_stratified_split(tmp_path):
    x, y = write_pair(tmp_path, "digits", 300, np.random.default_rng(0))
    ds = validate_dataset(load_mnist_idx(tmp_path, test_size=50, seed=0))
    s = ds.samples
    assert ds.images.shape == (300, 1, 28, 28)
    assert (s["split"] == "test").sum() == 50 and (s["split"] == "pool").sum() == 250
    assert (s[s["split"] == "test"]["label"].value_counts() == 5).all()  # 30 per class
    idx = s["source_index"].to_numpy()
    np.testing.assert_allclose(ds.images[:, 0], x[idx] / 255.0, atol=1e-7)
    assert (s["label"].to_numpy() == y[idx]).all()
    assert s["sample_id"].is_unique and (s["subject_id"] == "all").all()
    again = load_mnist_idx(tmp_path, test_size=50, seed=0)
    assert again.samples.equals(s)
    other = load_mnist_idx(tmp_path, test_size=50, seed=1)
    assert not other.samples["sample_id"].equals(s["sample_id"])


def test_train_and_t10k_pairs(tmp_path):
    rng = np.random.default_rng(1)
    write_pair(tmp_path, "train", 200, rng)
    xt, _ = write_pair(tmp_path, "t10k", 40, rng, gz=False)
    ds = validate_dataset(load_mnist_idx(tmp_path, pool_size=100, seed=0))
    s = ds.samples
    assert (s["split"] == "pool").sum() == 100 and (s["split"] == "test").sum() == 40
    assert s[s["split"] == "pool"]["sample_id"].str.startswith("train_").all()
    assert (s[s["split"] == "pool"]["label"].value_counts() == 10).all()
    np.testing.assert_allclose(ds.images[100:, 0], xt / 255.0, atol=1e-7)
    with pytest.raises(ValueError, match="pool_size"):
        load_mnist_idx(tmp_path, pool_size=201)


def test_folder_problems(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist_idx(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no IDX pair"):
        load_mnist_idx(tmp_path)
    rng = np.random.default_rng(0)
    write_pair(tmp_path, "a", 30, rng)
    write_pair(tmp_path, "b", 30, rng)
    with pytest.raises(ValueError, match="exactly one pair"):
        load_mnist_idx(tmp_path, test_size=10)
    (tmp_path / "b-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match="without their partner"):
        load_mnist_idx(tmp_path, test_size=10)
    (tmp_path / "b-images-idx3-ubyte.gz").unlink()
    with pytest.raises(ValueError, match="test_size"):
        load_mnist_idx(tmp_path, test_size=30)
    write_idx(tmp_path / "a-labels-idx1-ubyte.gz", np.zeros(29, np.uint8), gz=True)
    with pytest.raises(ValueError, match="30 images but"):
        load_mnist_idx(tmp_path, test_size=10)


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared MNIST test set not present")
def test_shared_mnist_test_set():
    ds = validate_dataset(load_mnist_idx(SHARED))
    s = ds.samples
    assert ds.images.shape == (10000, 1, 28, 28)
    assert (s["split"] == "test").sum() == 2000 and (s["split"] == "pool").sum() == 8000
    # class counts documented in the folder's README
    counts = s["label"].value_counts().sort_index().tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    test_share = (
        s[s["split"] == "test"]["label"].value_counts() / s["label"].value_counts()
    )
    assert np.all(np.abs(test_share - 0.2) < 0.01)
