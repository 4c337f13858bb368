"""Load MNIST from IDX files into the schema.

The IDX format (LeCun et al.): a big-endian header -- two zero bytes, a type byte
(``0x08`` = unsigned byte), the number of dimensions, then one 4-byte size per
dimension -- followed by the data. Images are ``idx3`` (N x 28 x 28), labels
``idx1`` (N). Files may be gzipped.

References
----------
LeCun, Y. and Cortes, C. (2010). MNIST handwritten digit database.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from lqknn._validation import check_int
from lqknn.data.schema import NO_SUBJECT, Dataset

_IMAGE_RE = re.compile(r"^(?P<prefix>.+?)[-.]images[-.]idx3[-.]ubyte(?P<gz>\.gz)?$")
_LABEL_RE = re.compile(r"^(?P<prefix>.+?)[-.]labels[-.]idx1[-.]ubyte(?P<gz>\.gz)?$")


def read_idx(path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a uint8 array.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    ndarray of uint8
        Shape given by the header, e.g. (N, 28, 28) or (N,).

    Raises
    ------
    ValueError
        Bad magic number, unsupported data type, or a size that disagrees with the
        header.

    Notes
    -----
    Time and memory O(file size).
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path} is not an IDX file: the magic number must start with two zero "
            f"bytes, got {raw[:4].hex() or 'an empty file'}."
        )
    if raw[2] != 0x08:
        raise ValueError(
            f"{path}: IDX data type 0x{raw[2]:02x} is not supported (only 0x08, "
            "unsigned byte, as in MNIST)."
        )
    ndim = raw[3]
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header ({ndim} dimensions).")
    shape = tuple(
        int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(
            f"{path}: header announces shape {shape} ({int(np.prod(shape))} bytes) "
            f"but the file holds {data.size} data bytes."
        )
    return data.reshape(shape)


def _find_pairs(folder: Path) -> dict[str, tuple[Path, Path]]:
    images, labels = {}, {}
    for p in sorted(folder.iterdir()):
        if m := _IMAGE_RE.match(p.name):
            images.setdefault(m["prefix"], p)
        elif m := _LABEL_RE.match(p.name):
            labels.setdefault(m["prefix"], p)
    lonely = sorted(set(images) ^ set(labels))
    if lonely:
        raise ValueError(
            f"{folder}: IDX files without their partner for prefix(es) {lonely}; "
            "every '<prefix>-images-idx3-ubyte[.gz]' needs a "
            "'<prefix>-labels-idx1-ubyte[.gz]'."
        )
    return {k: (images[k], labels[k]) for k in sorted(images)}


def _read_pair(img_path: Path, lab_path: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(img_path), read_idx(lab_path)
    if x.ndim != 3:
        raise ValueError(f"{img_path}: images must be 3-D (N, H, W), got {x.shape}.")
    if y.ndim != 1:
        raise ValueError(f"{lab_path}: labels must be 1-D, got {y.shape}.")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{img_path.name} holds {x.shape[0]} images but {lab_path.name} holds "
            f"{y.shape[0]} labels."
        )
    if y.size and y.max() > 9:
        raise ValueError(f"{lab_path}: labels must be digits 0-9, got {y.max()}.")
    return x, y


def load_mnist_idx(
    folder, *, pool_size: int = 15000, test_size: int = 2000, seed: int = 0
) -> Dataset:
    """Read MNIST IDX files from ``folder`` into a :class:`Dataset`.

    Parameters
    ----------
    folder : str or Path
        Folder holding IDX pairs ``<prefix>-images-idx3-ubyte[.gz]`` and
        ``<prefix>-labels-idx1-ubyte[.gz]`` (``-`` or ``.`` as separators).
    pool_size : int, default=15000
        With the official pairs ``train`` and ``t10k`` both present: size of the
        seeded, stratified pool drawn from the training set (the paper's set-up);
        the 10,000 ``t10k`` images form the test split.
    test_size : int, default=2000
        With a single IDX pair: size of the seeded, stratified test split; the rest
        is the pool.
    seed : int, default=0
        Seed of the draws.

    Returns
    -------
    Dataset
        ``images`` (N, 1, 28, 28) float32 = pixels / 255; ``samples`` with
        ``sample_id`` ``<prefix>_<index>``, ``subject_id`` ``"all"``, every label
        known, ``source_file`` and ``source_index`` columns; classes ``"0"``..``"9"``;
        pool rows first, then test rows, each in file order.

    Raises
    ------
    FileNotFoundError
        Missing folder or no IDX pair in it.
    ValueError
        Malformed IDX files, unpaired files, several pairs that are not exactly
        ``train`` + ``t10k``, or sizes larger than the data.

    Notes
    -----
    Time and memory O(N * 28 * 28).

    References
    ----------
    LeCun and Cortes (2010); the pool / test sizes of Vindas et al. (2022).
    """
    pool_size = check_int(pool_size, "pool_size", low=1)
    test_size = check_int(test_size, "test_size", low=1)
    seed = check_int(seed, "seed", low=0)
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"MNIST folder {folder} does not exist; put the IDX files there "
            "('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz', "
            "'t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz', or any one "
            "such pair)."
        )
    pairs = _find_pairs(folder)
    if not pairs:
        raise FileNotFoundError(
            f"no IDX pair in {folder}: expected files named like "
            "'t10k-images-idx3-ubyte.gz' and 't10k-labels-idx1-ubyte.gz'."
        )
    if len(pairs) == 1:
        prefix, (ip, lp) = next(iter(pairs.items()))
        x, y = _read_pair(ip, lp)
        if test_size >= x.shape[0]:
            raise ValueError(
                f"test_size must be smaller than the {x.shape[0]} images of "
                f"{ip.name}, got {test_size}."
            )
        _, test_idx = train_test_split(
            np.arange(y.size), test_size=test_size, stratify=y, random_state=seed
        )
        is_test = np.zeros(y.size, bool)
        is_test[test_idx] = True
        order = np.concatenate([np.flatnonzero(~is_test), np.flatnonzero(is_test)])
        parts = [(prefix, ip, x, y, order, np.where(is_test[order], "test", "pool"))]
    elif set(pairs) == {"train", "t10k"}:
        xtr, ytr = _read_pair(*pairs["train"])
        xte, yte = _read_pair(*pairs["t10k"])
        if pool_size > ytr.size:
            raise ValueError(
                f"pool_size must be at most the {ytr.size} training images, got "
                f"{pool_size}."
            )
        if pool_size == ytr.size:
            pool_idx = np.arange(ytr.size)
        else:
            pool_idx, _ = train_test_split(
                np.arange(ytr.size),
                train_size=pool_size,
                stratify=ytr,
                random_state=seed,
            )
        parts = [
            ("train", pairs["train"][0], xtr, ytr, np.sort(pool_idx), "pool"),
            ("t10k", pairs["t10k"][0], xte, yte, np.arange(yte.size), "test"),
        ]
    else:
        raise ValueError(
            f"{folder} holds IDX pairs {sorted(pairs)}; expected exactly one pair, or "
            "the official 'train' and 't10k' pairs."
        )

    images, tables = [], []
    for prefix, path, x, y, idx, split in parts:
        images.append(x[idx])
        width = len(str(x.shape[0] - 1))
        tables.append(
            pd.DataFrame(
                {
                    "sample_id": [f"{prefix}_{i:0{width}d}" for i in idx],
                    "subject_id": NO_SUBJECT,
                    "label": y[idx].astype(np.int64),
                    "label_name": y[idx].astype(str),
                    "split": split,
                    "source_file": path.name,
                    "source_index": idx.astype(np.int64),
                }
            )
        )
    stack = (np.concatenate(images).astype(np.float32) / 255.0)[:, None]
    samples = pd.concat(tables, ignore_index=True)
    info = {
        "source": "mnist",
        "folder": str(folder),
        "n_samples": len(samples),
        "n_pool": int((samples["split"] == "pool").sum()),
        "n_test": int((samples["split"] == "test").sum()),
        "n_skipped": 0,
    }
    return Dataset(stack, samples, [str(d) for d in range(10)], info=info)
