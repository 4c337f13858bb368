"""Load a MedMNIST ``.npz`` file (2-D flags) into the schema.

The medmnist package stores each data set as ``{flag}.npz`` (28 x 28) or
``{flag}_{size}.npz`` with the keys ``train_images``, ``train_labels``,
``val_images``, ``val_labels``, ``test_images``, ``test_labels``; images are uint8
of shape (N, H, W) or (N, H, W, 3), labels of shape (N, 1).

References
----------
Yang, J. et al. (2023). MedMNIST v2 - A large-scale lightweight benchmark for 2D and
3D biomedical image classification. Scientific Data 10, 41.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lqknn._validation import check_int
from lqknn.data.schema import NO_SUBJECT, Dataset

_SIZES = (28, 64, 128, 224)
_SPLITS = (("train", "pool"), ("val", "pool"), ("test", "test"))


def _info() -> dict:
    from medmnist.info import INFO  # imports torch via the package: only on demand

    return INFO


def medmnist_2d_flags() -> list[str]:
    """Names of the MedMNIST flags this loader accepts (2-D, single-label)."""
    info = _info()
    return sorted(
        f
        for f, v in info.items()
        if not f.endswith("3d") and v.get("task") in ("multi-class", "binary-class")
    )


def load_medmnist_npz(folder, flag: str = "organcmnist", *, size: int = 28) -> Dataset:
    """Read ``{flag}.npz`` (or ``{flag}_{size}.npz``) into a :class:`Dataset`.

    Parameters
    ----------
    folder : str or Path
        Folder holding the npz file.
    flag : str, default="organcmnist"
        A 2-D single-label MedMNIST flag (see :func:`medmnist_2d_flags`).
    size : {28, 64, 128, 224}, default=28
        Image size of the file.

    Returns
    -------
    Dataset
        ``images`` (N, C, size, size) float32 = pixels / 255 (C = 1 or 3);
        ``samples`` with ``sample_id`` ``{flag}_{split}_{index}``, ``subject_id``
        ``"all"``, ``split`` ``pool`` (train + val) or ``test``, and
        ``medmnist_split``; classes from ``medmnist.INFO[flag]["label"]``.

    Raises
    ------
    FileNotFoundError
        When the file is missing (the message says where to put it and how to
        fetch it where internet is available).
    ValueError
        Unknown, 3-D or multi-label flag; bad size; missing keys; images or
        labels of the wrong shape or out of range.

    Notes
    -----
    Time and memory O(N * C * size * size). Never downloads anything.

    References
    ----------
    Yang et al. (2023), MedMNIST v2.
    """
    info = _info()
    if flag not in info:
        raise ValueError(
            f"flag must be a MedMNIST flag, got {flag!r}; 2-D flags: "
            f"{medmnist_2d_flags()}."
        )
    if flag.endswith("3d"):
        raise ValueError(
            f"flag {flag!r} is a 3-D MedMNIST data set; only 2-D flags are "
            f"supported: {medmnist_2d_flags()}."
        )
    meta = info[flag]
    if meta.get("task") not in ("multi-class", "binary-class"):
        raise ValueError(
            f"flag {flag!r} is a {meta.get('task')} task; only single-label flags "
            f"are supported: {medmnist_2d_flags()}."
        )
    size = check_int(size, "size")
    if size not in _SIZES:
        raise ValueError(f"size must be one of {_SIZES}, got {size}.")
    folder = Path(folder)
    names = [f"{flag}.npz", f"{flag}_28.npz"] if size == 28 else [f"{flag}_{size}.npz"]
    path = next((folder / n for n in names if (folder / n).is_file()), None)
    if path is None:
        suffix = "" if size == 28 else f", size={size}"
        raise FileNotFoundError(
            f"{folder / names[0]} not found. Put the MedMNIST file {names[0]} in "
            f"{folder}. Where internet is available, fetch it with: python -c "
            f"\"import medmnist; medmnist.{meta['python_class']}(split='train', "
            f"download=True, root='{folder}'{suffix})\" (create the folder first), "
            f"or download {meta.get('url' if size == 28 else f'url_{size}')}."
        )
    classes = [meta["label"][k] for k in sorted(meta["label"], key=int)]
    with np.load(path, allow_pickle=False) as npz:
        missing = [
            f"{s}_{k}"
            for s, _ in _SPLITS
            for k in ("images", "labels")
            if f"{s}_{k}" not in npz.files
        ]
        if missing:
            raise ValueError(f"{path} lacks key(s) {missing} (found {npz.files}).")
        arrays = {k: npz[k] for k in npz.files}

    images, tables = [], []
    for split, role in _SPLITS:
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4 and x.shape[-1] in (1, 3):
            x = np.moveaxis(x, -1, 1)
        else:
            raise ValueError(
                f"{path}: {split}_images must have shape (N, H, W) or (N, H, W, C), "
                f"got {x.shape}."
            )
        if x.shape[2:] != (size, size):
            raise ValueError(
                f"{path}: {split}_images are {x.shape[2]}x{x.shape[3]}, expected "
                f"{size}x{size}."
            )
        y = np.asarray(y).reshape(len(y), -1)
        if y.shape[1] != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"{path}: {split}_labels must have shape ({x.shape[0]}, 1), got "
                f"{arrays[f'{split}_labels'].shape}."
            )
        y = y[:, 0].astype(np.int64)
        if y.size and (y.min() < 0 or y.max() >= len(classes)):
            raise ValueError(
                f"{path}: {split}_labels must lie in [0, {len(classes) - 1}], got "
                f"[{y.min()}, {y.max()}]."
            )
        images.append(x)
        width = max(5, len(str(len(y))))
        tables.append(
            pd.DataFrame(
                {
                    "sample_id": [
                        f"{flag}_{split}_{i:0{width}d}" for i in range(len(y))
                    ],
                    "subject_id": NO_SUBJECT,
                    "label": y,
                    "label_name": np.asarray(classes, dtype=object)[y],
                    "split": role,
                    "medmnist_split": split,
                }
            )
        )
    channels = {x.shape[1] for x in images}
    if len(channels) != 1:
        raise ValueError(f"{path}: splits disagree on the number of channels.")
    stack = np.concatenate(images).astype(np.float32) / 255.0
    samples = pd.concat(tables, ignore_index=True)
    info_out = {
        "source": "medmnist",
        "flag": flag,
        "file": str(path),
        "n_samples": len(samples),
        "n_pool": int((samples["split"] == "pool").sum()),
        "n_test": int((samples["split"] == "test").sum()),
        "n_skipped": 0,
    }
    return Dataset(stack, samples, classes, info=info_out)
