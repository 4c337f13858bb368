"""The one data schema that every source is converted to.

Every loader of :mod:`lqknn.data` returns a :class:`Dataset`, so the pipelines that
follow ingestion never need to know where the images came from:

- ``images``: float32 array of shape (N, C, H, W), values in [0, 1], one fixed size;
- ``samples``: a table with one row per image, in the same order, with the columns
  ``sample_id`` (unique str), ``subject_id`` (str; :data:`NO_SUBJECT` for data sets
  without subjects), ``label`` (int class id, -1 = not labelled), ``label_name``
  (the class name, ``""`` when unlabelled, ``"unknown"`` for samples an expert could
  not classify), ``split`` (``"pool"`` or ``"test"``), and any metadata columns;
- ``classes``: the ordered class names (``label == i`` means ``classes[i]``);
- ``report``: the rows that were skipped at ingestion and why (possibly empty);
- ``ground_truth``: true labels of samples that are unlabelled in ``samples``
  (only scoring may read it; empty when there is none);
- ``info``: a small dict of ingestion statistics (source, counts, resizing).

Samples marked ``"unknown"`` have ``label == -1``: they belong to the data (they are
embedded and may receive propagated labels like any unlabelled sample) but must be
kept out of classifier training and of every score; :func:`unknown_mask` finds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: subject id used by data sets that have no subjects (MNIST, MedMNIST, digits).
NO_SUBJECT = "all"
#: ``label_name`` of samples an expert could not classify (``label`` is -1).
UNKNOWN = "unknown"
#: the two values of the ``split`` column.
SPLITS = ("pool", "test")
#: columns every ``samples`` table has, in this order.
SAMPLE_COLUMNS = ("sample_id", "subject_id", "label", "label_name", "split")
#: columns of the ingestion report.
REPORT_COLUMNS = ("row", "line", "sample_id", "file", "kind", "problem")
#: columns of the ground-truth table.
GROUND_TRUTH_COLUMNS = ("sample_id", "label", "label_name")


def empty_report() -> pd.DataFrame:
    """Return an ingestion report with no rows (the report of a clean source)."""
    return pd.DataFrame(
        {
            "row": pd.Series(dtype="int64"),
            "line": pd.Series(dtype="int64"),
            "sample_id": pd.Series(dtype="object"),
            "file": pd.Series(dtype="object"),
            "kind": pd.Series(dtype="object"),
            "problem": pd.Series(dtype="object"),
        }
    )


def empty_ground_truth() -> pd.DataFrame:
    """Return a ground-truth table with no rows (every true label is visible)."""
    return pd.DataFrame(
        {
            "sample_id": pd.Series(dtype="object"),
            "label": pd.Series(dtype="int64"),
            "label_name": pd.Series(dtype="object"),
        }
    )


@dataclass
class Dataset:
    """Images, their sample table and class names, in the project's one schema.

    Attributes
    ----------
    images : ndarray of shape (n_samples, n_channels, height, width), float32
        Pixel values in [0, 1].
    samples : DataFrame with n_samples rows
        ``sample_id``, ``subject_id``, ``label``, ``label_name``, ``split`` and any
        metadata columns, in the order of ``images``.
    classes : list of str
        Ordered class names.
    report : DataFrame
        Skipped rows (``row``, ``line``, ``sample_id``, ``file``, ``kind``,
        ``problem``); empty when nothing was skipped.
    ground_truth : DataFrame
        ``sample_id``, ``label``, ``label_name`` of samples whose label is hidden in
        ``samples``; only scoring reads it.
    info : dict
        Ingestion statistics (``source``, ``n_rows``, ``n_skipped``, ...), suitable
        for logging as parameters or metrics.
    """

    images: np.ndarray
    samples: pd.DataFrame
    classes: list[str]
    report: pd.DataFrame = field(default_factory=empty_report)
    ground_truth: pd.DataFrame = field(default_factory=empty_ground_truth)
    info: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        """Number of samples (rows of ``samples``, images)."""
        return int(self.images.shape[0])

    @property
    def labels(self) -> np.ndarray:
        """Integer labels of shape (n_samples,), -1 = not labelled."""
        return self.samples["label"].to_numpy(dtype=np.int64)


def unknown_mask(samples: pd.DataFrame) -> np.ndarray:
    """Boolean mask of shape (n_samples,): samples an expert marked ``"unknown"``.

    These samples carry ``label == -1`` and must be kept out of classifier training
    and scoring.
    """
    return (samples["label_name"].astype(str) == UNKNOWN).to_numpy()


def _fail(problems: list[str]) -> None:
    if problems:
        raise ValueError("invalid Dataset: " + "; ".join(problems))


def validate_dataset(ds: Dataset) -> Dataset:
    """Check every invariant of the schema and return ``ds`` unchanged.

    Parameters
    ----------
    ds : Dataset
        The data set to check.

    Returns
    -------
    Dataset
        ``ds`` itself, so the call can be chained.

    Raises
    ------
    ValueError
        Listing every broken invariant: images not float32 4-D in [0, 1] or not
        finite, sample table of the wrong length or missing a column, duplicate or
        empty ``sample_id``, labels out of range, ``label_name`` inconsistent with
        ``classes``, unknown ``split`` values, a malformed ground truth (sample not in
        ``samples``, or visible there with a label) or report.

    Notes
    -----
    Time O(N * C * H * W) (one pass over the pixels), no extra memory beyond a
    boolean per pixel.
    """
    if not isinstance(ds, Dataset):
        raise TypeError(f"ds must be a lqknn.data.Dataset, got {type(ds).__name__}.")
    problems: list[str] = []
    images = ds.images
    if not isinstance(images, np.ndarray):
        _fail([f"images must be a numpy array, got {type(images).__name__}"])
    if images.dtype != np.float32:
        problems.append(f"images must be float32, got {images.dtype}")
    if images.ndim != 4:
        problems.append(f"images must be 4-D (N, C, H, W), got shape {images.shape}")
    elif images.size:
        finite = np.isfinite(images)
        if not finite.all():
            rows = np.unique(np.nonzero(~finite)[0])[:10].tolist()
            problems.append(f"images hold NaN or infinite pixels in rows {rows}")
        else:
            lo, hi = float(images.min()), float(images.max())
            if lo < 0.0 or hi > 1.0:
                problems.append(f"images must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]")
    classes = list(ds.classes)
    if not classes or any(not isinstance(c, str) or not c for c in classes):
        problems.append(f"classes must be non-empty strings, got {classes!r}")
    elif len(set(classes)) != len(classes):
        problems.append(f"classes must be unique, got {classes!r}")
    elif UNKNOWN in classes:
        problems.append(f"{UNKNOWN!r} is reserved and cannot be a class name")
    _fail(problems)

    samples = ds.samples
    if not isinstance(samples, pd.DataFrame):
        _fail([f"samples must be a pandas DataFrame, got {type(samples).__name__}"])
    missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns]
    if missing:
        _fail([f"samples lacks column(s) {missing}"])
    if len(samples) != images.shape[0]:
        problems.append(
            f"samples has {len(samples)} rows but images has {images.shape[0]}"
        )
    sid = samples["sample_id"]
    if sid.isna().any() or (sid.astype(str).str.len() == 0).any():
        problems.append("sample_id has empty values")
    dup = sid[sid.duplicated()].astype(str).unique()[:5].tolist()
    if dup:
        problems.append(f"sample_id must be unique; duplicated: {dup}")
    if samples["subject_id"].isna().any():
        problems.append("subject_id has missing values")
    labels = samples["label"]
    if not pd.api.types.is_integer_dtype(labels):
        problems.append(f"label must be an integer column, got dtype {labels.dtype}")
    else:
        lab = labels.to_numpy(dtype=np.int64)
        bad = (lab < -1) | (lab >= len(classes))
        if bad.any():
            problems.append(
                f"label must be in [-1, {len(classes) - 1}]; bad values "
                f"{np.unique(lab[bad])[:5].tolist()}"
            )
        else:
            names = samples["label_name"].astype(str).to_numpy()
            expected = np.where(
                lab >= 0, np.asarray(classes, dtype=object)[np.maximum(lab, 0)], ""
            )
            ok = np.where(
                lab >= 0, names == expected, (names == "") | (names == UNKNOWN)
            )
            if not ok.all():
                i = int(np.flatnonzero(~ok)[0])
                problems.append(
                    f"label_name disagrees with label and classes (first at row {i}: "
                    f"label {lab[i]}, label_name {names[i]!r}); unlabelled rows must "
                    f"have '' or {UNKNOWN!r}"
                )
    bad_split = sorted(set(samples["split"].astype(str)) - set(SPLITS))
    if bad_split:
        problems.append(f"split must be one of {SPLITS}, got {bad_split}")
    _fail(problems)

    report = ds.report
    if not isinstance(report, pd.DataFrame) or not {"sample_id", "problem"} <= set(
        report.columns
    ):
        problems.append("report must be a DataFrame with sample_id and problem")
    gt = ds.ground_truth
    if not isinstance(gt, pd.DataFrame) or any(
        c not in gt.columns for c in GROUND_TRUTH_COLUMNS
    ):
        problems.append(f"ground_truth must be a DataFrame with {GROUND_TRUTH_COLUMNS}")
    elif len(gt):
        pos = pd.Series(np.arange(len(samples)), index=sid.astype(str).to_numpy())
        gsid = gt["sample_id"].astype(str)
        absent = gsid[~gsid.isin(pos.index)].unique()[:5].tolist()
        if absent:
            problems.append(f"ground_truth names samples not in samples: {absent}")
        elif gsid.duplicated().any():
            problems.append("ground_truth has duplicated sample_id")
        else:
            at = pos.loc[gsid.to_numpy()].to_numpy()
            visible = labels.to_numpy()[at] != -1
            if visible.any():
                problems.append(
                    "ground_truth must only hold samples unlabelled in samples; "
                    f"labelled: {gsid[visible].tolist()[:5]}"
                )
            glab = gt["label"].to_numpy(dtype=np.int64)
            if ((glab < 0) | (glab >= len(classes))).any():
                problems.append(
                    f"ground_truth labels must be in [0, {len(classes) - 1}]"
                )
            elif (
                gt["label_name"].astype(str).to_numpy()
                != np.asarray(classes, dtype=object)[glab]
            ).any():
                problems.append("ground_truth label_name disagrees with label")
    _fail(problems)
    return ds


def check_label_coverage(
    samples: pd.DataFrame,
    classes,
    *,
    split: str | None = "pool",
    on_missing: str = "raise",
) -> list[str]:
    """Find the classes that have no labelled sample.

    Run it before any training: a class without a single labelled sample can never
    be propagated nor learned.

    Parameters
    ----------
    samples : DataFrame
        A sample table of the schema (needs ``label`` and, when ``split`` is given,
        ``split``).
    classes : sequence of str
        Ordered class names.
    split : {"pool", "test"} or None, default="pool"
        Only look at rows of this split; ``None`` looks at every row.
    on_missing : {"raise", "return"}, default="raise"
        ``"raise"``: raise ``ValueError`` naming the missing classes; ``"return"``:
        only return them.

    Returns
    -------
    list of str
        Names of the classes without any labelled sample (empty when all are
        covered).

    Raises
    ------
    ValueError
        When some class has no labelled sample and ``on_missing="raise"``, or on
        bad arguments.

    Notes
    -----
    Time O(N), memory O(N).
    """
    if on_missing not in ("raise", "return"):
        raise ValueError(f"on_missing must be 'raise' or 'return', got {on_missing!r}.")
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}.")
    classes = list(classes)
    if "label" not in samples.columns:
        raise ValueError("samples must have a 'label' column.")
    rows = samples if split is None else samples[samples["split"] == split]
    counts = np.bincount(
        rows["label"].to_numpy(dtype=np.int64)[rows["label"].to_numpy() >= 0],
        minlength=len(classes),
    )
    missing = [c for c, n in zip(classes, counts, strict=False) if n == 0]
    if missing and on_missing == "raise":
        where = "" if split is None else f" in the {split!r} split"
        raise ValueError(
            f"no labelled sample of class(es) {missing}{where} "
            f"({len(rows)} rows, labelled per class: "
            f"{dict(zip(classes, counts.tolist(), strict=False))}); label at least "
            "one sample of every class before training, or drop the class."
        )
    return missing
