"""Load a HITS folder (``manifest.csv`` + spectrogram images) into the schema.

Folder format
-------------
``manifest.csv`` (required), one row per high-intensity transient signal:

- ``sample_id`` -- unique id (str);
- ``subject_id`` -- the patient (str);
- ``file`` -- path of the spectrogram image, relative to the folder: a grayscale
  PNG (8 or 16 bit) or a ``.npy`` array (2-D, or 3-D with one singleton channel);
- ``label`` -- ``solid`` | ``gaseous`` | ``artifact`` (the ``classes``; matched
  case-insensitively), empty for an unlabelled sample, or ``unknown`` for a sample
  the expert could not classify;
- any other column (``hospital``, ``recording``, ``contrast_agent`` ...) is kept.

``ground_truth.csv`` (optional): ``sample_id``, ``label`` -- true labels of samples
left unlabelled in the manifest; only scoring reads them (``Dataset.ground_truth``).

Conventions
-----------
- Labels: a class name -> its index in ``classes``; empty -> ``label = -1``,
  ``label_name = ""``; ``unknown`` -> ``label = -1``, ``label_name = "unknown"``:
  such samples stay in the data (they are embedded and may receive propagated
  labels) but must be kept out of classifier training and scoring
  (:func:`lqknn.data.schema.unknown_mask`).
- Pixels: 8-bit PNG / ``uint8`` NPY are divided by 255, 16-bit PNG / ``uint16`` NPY
  by 65535; float NPY must already lie in [0, 1] (values outside by more than 1e-6
  make the row bad, slight excursions are clipped): a spectrogram's absolute level
  carries the transient's intensity, so it is never rescaled per image. A colour PNG
  is accepted only when its three channels are equal.
- Size: images whose size differs from ``image_size`` are resized (``"resize"``,
  bilinear, antialiased), centre-cropped (``"crop"``; smaller images are bad rows),
  or bad rows (``"error"``); the number resized or cropped is logged and stored in
  ``Dataset.info``.
- Every sample has ``split = "pool"`` (HITS has no fixed test split; evaluation is
  leave-one-subject-out).

Bad input
---------
A missing column, an empty manifest, a missing folder or manifest always raise.
Bad rows -- missing or unreadable image, wrong shape or size, NaN pixels, values out
of range, a label outside the classes, a duplicate ``sample_id`` (the first
occurrence is kept), an empty ``sample_id`` / ``subject_id`` / ``file`` -- are skipped
and listed in ``Dataset.report`` with one logged summary line, or, with
``strict=True``, raise a ``ValueError`` naming them.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from lqknn.data.schema import (
    UNKNOWN,
    Dataset,
    empty_ground_truth,
    empty_report,
)

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("sample_id", "subject_id", "file", "label")
HITS_CLASSES = ("solid", "gaseous", "artifact")
_RESIZE_MODES = ("resize", "crop", "error")


class _BadRow(Exception):
    def __init__(self, kind: str, problem: str):
        super().__init__(problem)
        self.kind = kind
        self.problem = problem


def _check_image_size(image_size) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in image_size)
        ok = (h, w) == tuple(image_size) and h >= 1 and w >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            "image_size must be a pair of positive integers (height, width), got "
            f"{image_size!r}."
        )
    return h, w


def _read_pixels(path: Path) -> np.ndarray:
    """Read one image as a float64 2-D array in [0, 1]; raise _BadRow on problems."""
    if not path.is_file():
        raise _BadRow("missing file", f"image file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise _BadRow(
                "unreadable file", f"cannot read NPY {path.name}: {exc}"
            ) from None
        if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
            arr = arr.reshape(arr.shape[1:] if arr.shape[0] == 1 else arr.shape[:-1])
        if arr.ndim != 2:
            raise _BadRow(
                "wrong shape",
                f"NPY array of shape {arr.shape} is not a single 2-D image",
            )
        if arr.dtype == np.uint8:
            return arr / 255.0
        if arr.dtype == np.uint16:
            return arr / 65535.0
        if not np.issubdtype(arr.dtype, np.floating):
            raise _BadRow(
                "unsupported dtype",
                f"NPY dtype {arr.dtype} (use float in [0, 1], uint8 or uint16)",
            )
        arr = arr.astype(np.float64)
    elif suffix == ".png":
        try:
            with Image.open(path) as im:
                im.load()
                mode = im.mode
                arr = np.asarray(im)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise _BadRow(
                "unreadable file", f"cannot read PNG {path.name}: {exc}"
            ) from None
        if mode in ("RGB", "RGBA"):
            if not (
                np.array_equal(arr[..., 0], arr[..., 1])
                and np.array_equal(arr[..., 0], arr[..., 2])
            ):
                raise _BadRow(
                    "wrong shape",
                    f"colour PNG (mode {mode}); spectrograms must be grayscale",
                )
            arr = arr[..., 0]
        elif mode == "LA":
            arr = arr[..., 0]
        elif mode not in ("L", "I;16", "I;16B", "I;16L", "I", "1"):
            raise _BadRow("wrong shape", f"unsupported PNG mode {mode}")
        if mode == "1":
            return arr.astype(np.float64)
        if arr.dtype == np.uint8:
            return arr / 255.0
        if arr.max(initial=0) > 65535 or arr.min(initial=0) < 0:
            raise _BadRow("values out of range", "PNG values outside 0..65535")
        return arr / 65535.0
    else:
        raise _BadRow(
            "unreadable file",
            f"unsupported file type {suffix!r} (use .png or .npy)",
        )
    if not np.isfinite(arr).all():
        n_bad = int((~np.isfinite(arr)).sum())
        raise _BadRow("NaN pixels", f"{n_bad} NaN or infinite pixel(s)")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise _BadRow(
            "values out of range",
            f"float pixels in [{lo:.4g}, {hi:.4g}], expected [0, 1] (store images "
            "scaled to [0, 1], or as uint8 / uint16)",
        )
    return np.clip(arr, 0.0, 1.0)


def _fit_size(arr: np.ndarray, size: tuple[int, int], mode: str) -> tuple:
    """Return (image of ``size``, changed?) or raise _BadRow."""
    if arr.shape == size:
        return arr, False
    if mode == "error":
        raise _BadRow(
            "wrong shape",
            f"image is {arr.shape[0]}x{arr.shape[1]}, expected {size[0]}x{size[1]} "
            "(set resize to 'resize' or 'crop' to convert)",
        )
    if mode == "crop":
        if arr.shape[0] < size[0] or arr.shape[1] < size[1]:
            raise _BadRow(
                "wrong shape",
                f"image is {arr.shape[0]}x{arr.shape[1]}, smaller than "
                f"{size[0]}x{size[1]}: cannot crop",
            )
        top = (arr.shape[0] - size[0]) // 2
        left = (arr.shape[1] - size[1]) // 2
        return arr[top : top + size[0], left : left + size[1]], True
    im = Image.fromarray(arr.astype(np.float32), mode="F")
    out = np.asarray(im.resize((size[1], size[0]), Image.Resampling.BILINEAR))
    return np.clip(out, 0.0, 1.0), True


def _require_folder(folder: Path) -> Path:
    manifest = folder / "manifest.csv"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"HITS folder {folder} does not exist. Put your data there: a "
            "manifest.csv with columns sample_id, subject_id, file, label (solid | "
            "gaseous | artifact | unknown | empty) and the image files it names "
            "(PNG or NPY, paths relative to the folder); or generate a synthetic "
            "set with lqknn.data.synthetic_hits.generate_hits_folder."
        )
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{manifest} not found. A HITS folder needs a manifest.csv with columns "
            "sample_id, subject_id, file, label (solid | gaseous | artifact | unknown "
            "| empty) next to the images it names."
        )
    return manifest


def load_hits_folder(
    folder,
    *,
    image_size=(64, 64),
    resize: str = "resize",
    strict: bool = False,
    classes=HITS_CLASSES,
    progress: bool = False,
) -> Dataset:
    """Read a HITS folder into a :class:`~lqknn.data.schema.Dataset`.

    Parameters
    ----------
    folder : str or Path
        Folder holding ``manifest.csv`` and the images (see the module docstring).
    image_size : (int, int), default=(64, 64)
        (height, width) of the output images.
    resize : {"resize", "crop", "error"}, default="resize"
        What to do with an image of another size: bilinear resize, centre crop, or
        a bad row.
    strict : bool, default=False
        Raise on the first pass over the manifest if any row is bad, naming the
        rows; by default bad rows are skipped and reported.
    classes : sequence of str, default=("solid", "gaseous", "artifact")
        Ordered class names; ``label`` ids follow this order.
    progress : bool, default=False
        Show a progress bar while reading images.

    Returns
    -------
    Dataset
        ``images`` of shape (n_good, 1, height, width) float32 in [0, 1];
        ``samples`` with the manifest's columns (``file`` kept), ``split = "pool"``;
        ``report`` of skipped rows; ``ground_truth`` from ``ground_truth.csv`` when
        present; ``info`` with ``n_rows``, ``n_skipped``, ``n_resized`` ...

    Raises
    ------
    FileNotFoundError
        Missing folder or manifest (the message says what to put there).
    ValueError
        Missing required column, empty manifest, bad arguments, no usable row, a
        malformed ``ground_truth.csv``, or any bad row when ``strict=True``.

    Notes
    -----
    Time O(N * H * W) (one image read per row), memory O(N * H * W) for the output.
    """
    size = _check_image_size(image_size)
    if resize not in _RESIZE_MODES:
        raise ValueError(f"resize must be one of {_RESIZE_MODES}, got {resize!r}.")
    classes = [str(c).strip().lower() for c in classes]
    if not classes or len(set(classes)) != len(classes) or UNKNOWN in classes:
        raise ValueError(
            f"classes must be unique non-empty names other than {UNKNOWN!r}, got "
            f"{classes!r}."
        )
    folder = Path(folder)
    manifest_path = _require_folder(folder)
    try:
        manifest = pd.read_csv(
            manifest_path, dtype=str, keep_default_na=False, skipinitialspace=True
        )
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{manifest_path} is empty: it needs a header (sample_id, subject_id, "
            "file, label) and one row per image."
        ) from None
    manifest.columns = [str(c).strip() for c in manifest.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in manifest.columns]
    if missing:
        raise ValueError(
            f"{manifest_path} lacks required column(s) {missing}; it must have "
            f"{list(REQUIRED_COLUMNS)} (found {list(manifest.columns)})."
        )
    if len(manifest) == 0:
        raise ValueError(f"{manifest_path} has a header but no rows.")
    for c in REQUIRED_COLUMNS:
        manifest[c] = manifest[c].str.strip()

    class_id = {c: i for i, c in enumerate(classes)}
    bad: list[dict] = []
    good_rows: list[int] = []
    images: list[np.ndarray] = []
    labels: list[int] = []
    names: list[str] = []
    first_seen: dict[str, int] = {}
    n_resized = 0
    rows = manifest[list(REQUIRED_COLUMNS)].itertuples(index=False, name=None)
    for i, (sid, subject, file, label) in enumerate(
        tqdm(rows, total=len(manifest), desc="ingest", disable=not progress)
    ):
        try:
            for col, val in (
                ("sample_id", sid),
                ("subject_id", subject),
                ("file", file),
            ):
                if not val:
                    raise _BadRow("missing value", f"empty {col}")
            if sid in first_seen:
                raise _BadRow(
                    "duplicate sample_id",
                    f"sample_id {sid!r} already used on line {first_seen[sid] + 2}",
                )
            lab = label.lower()
            if lab == "":
                y, name = -1, ""
            elif lab == UNKNOWN:
                y, name = -1, UNKNOWN
            elif lab in class_id:
                y, name = class_id[lab], lab
            else:
                raise _BadRow(
                    "unknown label",
                    f"label {label!r} is not one of {classes}, {UNKNOWN!r} or empty",
                )
            first_seen[sid] = i
            arr, changed = _fit_size(_read_pixels(folder / file), size, resize)
        except _BadRow as exc:
            if exc.kind != "duplicate sample_id" and sid and sid not in first_seen:
                first_seen.setdefault(sid, i)
            bad.append(
                {
                    "row": i,
                    "line": i + 2,
                    "sample_id": sid,
                    "file": file,
                    "kind": exc.kind,
                    "problem": exc.problem,
                }
            )
            continue
        n_resized += changed
        good_rows.append(i)
        images.append(arr)
        labels.append(y)
        names.append(name)

    report = pd.DataFrame(bad, columns=list(empty_report().columns))
    if bad:
        report = report.astype({"row": "int64", "line": "int64"})
    else:
        report = empty_report()
    kinds = Counter(report["kind"])
    summary = ", ".join(f"{n} {k}" for k, n in kinds.most_common())
    if bad and strict:
        shown = "; ".join(
            f"line {r.line} ({r.sample_id}): {r.problem}"
            for r in report.head(10).itertuples()
        )
        more = f" (and {len(report) - 10} more)" if len(report) > 10 else ""
        raise ValueError(
            f"ingest (strict): {len(report)} bad row(s) of {len(manifest)} in "
            f"{manifest_path} [{summary}]: {shown}{more}"
        )
    if not good_rows:
        raise ValueError(
            f"ingest: none of the {len(manifest)} rows of {manifest_path} is usable "
            f"[{summary}]; first problem: line {report['line'].iloc[0]}: "
            f"{report['problem'].iloc[0]}"
        )
    if bad:
        logger.warning(
            "ingest: skipped %d of %d rows (%s); see ingestion report",
            len(report),
            len(manifest),
            summary,
        )
    if n_resized:
        logger.warning(
            "ingest: %s %d of %d images to %dx%d (resize=%r)",
            "cropped" if resize == "crop" else "resized",
            n_resized,
            len(good_rows),
            size[0],
            size[1],
            resize,
        )

    samples = manifest.iloc[good_rows].reset_index(drop=True)
    extra = [
        c for c in samples.columns if c not in ("sample_id", "subject_id", "label")
    ]
    samples = pd.concat(
        [
            pd.DataFrame(
                {
                    "sample_id": samples["sample_id"],
                    "subject_id": samples["subject_id"],
                    "label": np.asarray(labels, dtype=np.int64),
                    "label_name": names,
                    "split": "pool",
                }
            ),
            samples[extra],
        ],
        axis=1,
    )
    stack = np.stack(images).astype(np.float32)[:, None]
    ground_truth = _read_ground_truth(folder, samples, classes)
    info = {
        "source": "hits",
        "folder": str(folder),
        "n_rows": len(manifest),
        "n_samples": len(samples),
        "n_skipped": len(report),
        "n_resized": int(n_resized),
        "resize": resize,
        "n_labelled": int((samples["label"] >= 0).sum()),
        "n_unknown": int((samples["label_name"] == UNKNOWN).sum()),
        "n_subjects": int(samples["subject_id"].nunique()),
    }
    return Dataset(stack, samples, list(classes), report, ground_truth, info)


def _read_ground_truth(folder: Path, samples: pd.DataFrame, classes) -> pd.DataFrame:
    path = folder / "ground_truth.csv"
    if not path.is_file():
        return empty_ground_truth()
    gt = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("sample_id", "label") if c not in gt.columns]
    if missing:
        raise ValueError(
            f"{path} lacks column(s) {missing}; it needs sample_id, label."
        )
    gt["label"] = gt["label"].str.strip().str.lower()
    bad = sorted(set(gt["label"]) - set(classes))
    if bad:
        raise ValueError(f"{path} has labels {bad} outside the classes {classes}.")
    if gt["sample_id"].duplicated().any():
        dup = gt["sample_id"][gt["sample_id"].duplicated()].tolist()[:5]
        raise ValueError(f"{path} has duplicated sample_id {dup}.")
    visible = samples.set_index("sample_id")["label"]
    known = gt["sample_id"].isin(visible.index)
    labelled = known & gt["sample_id"].map(visible).fillna(-1).ge(0)
    if labelled.any():
        raise ValueError(
            f"{path} holds samples that are labelled in manifest.csv "
            f"({gt['sample_id'][labelled].tolist()[:5]}); ground truth is only for "
            "samples left unlabelled."
        )
    # rows skipped at ingestion have no image: their ground truth is dropped too
    gt = gt[known].reset_index(drop=True)
    ids = {c: i for i, c in enumerate(classes)}
    return pd.DataFrame(
        {
            "sample_id": gt["sample_id"].astype(object),
            "label": gt["label"].map(ids).astype("int64"),
            "label_name": gt["label"].astype(object),
        }
    )
