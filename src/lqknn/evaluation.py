"""Evaluation protocols, class balancing, metrics and figures for classification.

The paper judges a propagated label set by training a CNN on it and testing on
manually labelled samples only (METHOD.md section 7):

- **Leave-one-subject-out** (HITS, :func:`loso_folds`): one fold per subject that
  has at least one ground-truth (manual, expert) label; the test set is ALL of that
  subject's ground-truth samples (hidden or not in the 10 %-labelled experiment),
  the training set is every sample of the OTHER subjects that carries a training
  label (manual or propagated, :func:`fold_train_index`). Subjects without any
  ground-truth label are never test folds: :func:`loso_folds` logs them and
  :func:`run_protocol` reports each as a row with status
  ``"excluded: no ground-truth label"``.
- **Hold-out** (MNIST, OrganCMNIST, :func:`holdout_split`): the fixed ``split ==
  "test"`` samples are the test set, the ``"pool"`` samples with a training label
  the training set.
- **Balancing** (experiment 4, :func:`balance_propagated`): keep every manual
  sample and subsample the propagated samples of every class to the count of the
  smallest (or of a named) class.

:func:`run_protocol` runs one repetition of a protocol (folds in parallel with
joblib) and returns a tidy table, one row per fold; :func:`aggregate` summarises
such tables, and :func:`plot_metric_boxes`, :func:`plot_per_class_accuracy` and
:func:`plot_confusion` draw the paper's Figs. 8-13 style figures.

References: Vindas et al. (2022), experiments 3 and 4; METHOD.md section 7.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from lqknn._validation import (
    check_float,
    check_int,
    check_labels,
    check_random_state,
)
from lqknn.classification import (
    OPTIMIZERS,
    CNNConfig,
    _mcc,
    _torch_threads,
    predict,
    train_classifier,
)
from lqknn.losses import make_loss

__all__ = [
    "PROTOCOLS",
    "Fold",
    "aggregate",
    "balance_propagated",
    "class_columns",
    "classification_metrics",
    "fold_train_index",
    "holdout_split",
    "loso_folds",
    "plot_confusion",
    "plot_metric_boxes",
    "plot_per_class_accuracy",
    "run_protocol",
    "subjects_without_ground_truth",
]

logger = logging.getLogger(__name__)

#: Protocol names accepted by :func:`run_protocol`.
PROTOCOLS: tuple[str, ...] = ("loso", "holdout")

_TRAINING_KEYS = frozenset(
    {"optimizer", "epochs", "batch_size", "learning_rate", "weight_decay"}
)


# ---------------------------------------------------------------------------
# Folds and splits
# ---------------------------------------------------------------------------


def _check_samples(samples, columns: Sequence[str]) -> pd.DataFrame:
    if not isinstance(samples, pd.DataFrame):
        raise TypeError(
            f"samples must be a pandas DataFrame, got {type(samples).__name__}."
        )
    missing = [c for c in columns if c not in samples.columns]
    if missing:
        raise ValueError(
            f"samples lacks column(s) {missing}; it has {list(samples.columns)}."
        )
    if len(samples) == 0:
        raise ValueError("samples must have at least one row.")
    return samples


@dataclass(frozen=True)
class Fold:
    """One leave-one-subject-out fold.

    Attributes
    ----------
    subject_id : object
        The held-out subject.
    test_index : ndarray of shape (n_test,)
        Sorted row positions (into ``samples``) of that subject's samples that
        carry a ground-truth label.
    train_subjects : tuple
        Every other subject of ``samples`` (sorted), whose samples may train.
    """

    subject_id: object
    test_index: np.ndarray
    train_subjects: tuple


def loso_folds(samples: pd.DataFrame, ground_truth_labels) -> list[Fold]:
    """Leave-one-subject-out folds, one per subject with a ground-truth label.

    Parameters
    ----------
    samples : pandas.DataFrame
        Samples table with a ``subject_id`` column, one row per sample.
    ground_truth_labels : ndarray of shape (N,)
        Manual (expert) labels, -1 where a sample has none.

    Returns
    -------
    list of Fold
        Sorted by subject id. Subjects with no ground-truth label are never test
        folds; they are logged at INFO level (see also
        :func:`subjects_without_ground_truth`).

    Notes
    -----
    Time O(N log N), memory O(N).
    """
    samples = _check_samples(samples, ["subject_id"])
    gt = check_labels(ground_truth_labels, "ground_truth_labels", len(samples))
    subjects = samples["subject_id"].to_numpy()
    if pd.isna(subjects).any():
        raise ValueError("samples.subject_id must not contain missing values.")
    all_subjects = np.unique(subjects)
    folds = []
    for subject in all_subjects:
        test_index = np.flatnonzero((subjects == subject) & (gt >= 0))
        if test_index.size == 0:
            continue
        others = tuple(s for s in all_subjects.tolist() if s != subject)
        folds.append(Fold(subject, test_index, others))
    excluded = subjects_without_ground_truth(samples, gt)
    if excluded:
        logger.info(
            "%d subject(s) without ground-truth labels are never test folds: %s",
            len(excluded),
            excluded,
        )
    return folds


def subjects_without_ground_truth(samples: pd.DataFrame, ground_truth_labels) -> list:
    """Return the sorted subject ids that have no ground-truth label at all."""
    samples = _check_samples(samples, ["subject_id"])
    gt = check_labels(ground_truth_labels, "ground_truth_labels", len(samples))
    subjects = samples["subject_id"].to_numpy()
    with_gt = set(np.unique(subjects[gt >= 0]).tolist())
    return [s for s in np.unique(subjects).tolist() if s not in with_gt]


def fold_train_index(fold: Fold, samples: pd.DataFrame, training_labels) -> np.ndarray:
    """Row positions of the fold's training set.

    Parameters
    ----------
    fold : Fold
        A fold from :func:`loso_folds`.
    samples : pandas.DataFrame
        The samples table the fold was built from (``subject_id`` column).
    training_labels : ndarray of shape (N,)
        Manual and propagated labels, -1 where none.

    Returns
    -------
    ndarray of shape (n_train,)
        Sorted positions of the samples of the OTHER subjects whose training label
        is >= 0; never a sample of the held-out subject.
    """
    samples = _check_samples(samples, ["subject_id"])
    labels = check_labels(training_labels, "training_labels", len(samples))
    subjects = samples["subject_id"].to_numpy()
    return np.flatnonzero((subjects != fold.subject_id) & (labels >= 0))


def holdout_split(samples: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(pool_index, test_index)`` from the ``split`` column.

    Parameters
    ----------
    samples : pandas.DataFrame
        Samples table whose ``split`` column holds ``"pool"`` or ``"test"``.

    Returns
    -------
    pool_index, test_index : ndarray
        Sorted row positions of the pool and test samples; both non-empty.
    """
    samples = _check_samples(samples, ["split"])
    split = samples["split"].astype(str).to_numpy()
    unknown = sorted(set(np.unique(split).tolist()) - {"pool", "test"})
    if unknown:
        raise ValueError(
            f"samples.split must hold 'pool' or 'test', got {unknown[:5]}."
        )
    pool, test = np.flatnonzero(split == "pool"), np.flatnonzero(split == "test")
    if pool.size == 0 or test.size == 0:
        raise ValueError(
            f"samples.split must mark both 'pool' and 'test' samples, got "
            f"{pool.size} pool and {test.size} test."
        )
    return pool, test


# ---------------------------------------------------------------------------
# Balancing (experiment 4)
# ---------------------------------------------------------------------------


def balance_propagated(
    labels,
    is_manual,
    seed=0,
    *,
    reference_class: int | None = None,
    n_classes: int | None = None,
) -> np.ndarray:
    """Indices of a training set with the propagated samples balanced per class.

    Every manually labelled sample is kept; the propagated samples (labelled but
    not manual) of every class are subsampled without replacement to a common
    count: that of the class with the fewest propagated samples, or that of
    ``reference_class`` (the paper uses the propagated solid emboli). A class with
    fewer propagated samples than the target keeps them all (no oversampling).

    Parameters
    ----------
    labels : ndarray of shape (N,)
        Training labels (manual and propagated), -1 where none.
    is_manual : ndarray of bool, shape (N,)
        True where the label is a manual one.
    seed : int, Generator or None, default 0
        Seed of the subsampling.
    reference_class : int, optional
        Class whose propagated count is the target.
    n_classes : int, optional
        Number of classes; classes ``0..n_classes-1`` then count even when they
        have no label (a class with no propagated sample makes the minimum 0).
        Default: the classes present in ``labels``.

    Returns
    -------
    ndarray of shape (n_kept,)
        Sorted row positions of the kept samples.

    Notes
    -----
    Time O(N log N), memory O(N).

    References
    ----------
    Vindas et al. (2022), experiment 4; METHOD.md section 7.
    """
    labels = check_labels(labels, "labels")
    manual = np.asarray(is_manual)
    if manual.shape != labels.shape or manual.dtype != np.bool_:
        raise ValueError(
            f"is_manual must be a boolean array of shape {labels.shape}, got "
            f"dtype {manual.dtype} and shape {manual.shape}."
        )
    rng = check_random_state(seed)
    if n_classes is not None:
        n_classes = check_int(n_classes, "n_classes", low=1)
        if labels.size and labels.max() >= n_classes:
            raise ValueError(
                f"labels contain class id {int(labels.max())} but "
                f"n_classes={n_classes}."
            )
        classes = np.arange(n_classes)
    else:
        classes = np.unique(labels[labels >= 0])
    propagated = (labels >= 0) & ~manual
    counts = {
        int(c): int(np.count_nonzero(propagated & (labels == c))) for c in classes
    }
    if reference_class is not None:
        reference_class = check_int(reference_class, "reference_class", low=0)
        if reference_class not in counts:
            raise ValueError(
                f"reference_class must be one of the classes {sorted(counts)}, "
                f"got {reference_class}."
            )
        target = counts[reference_class]
    else:
        target = min(counts.values()) if counts else 0
    if target == 0 and propagated.any():
        logger.warning(
            "balance_propagated: the target count is 0, every propagated sample "
            "is dropped (propagated counts per class: %s).",
            counts,
        )
    kept = [np.flatnonzero(manual & (labels >= 0))]
    for c in classes:
        idx = np.flatnonzero(propagated & (labels == c))
        if idx.size > target:
            idx = rng.choice(idx, size=target, replace=False)
        kept.append(idx)
    return np.sort(np.concatenate(kept)).astype(np.int64)


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------


def _class_names(class_names, n_classes: int) -> list[str]:
    if class_names is None:
        return [str(c) for c in range(n_classes)]
    names = [str(n) for n in class_names]
    if len(names) != n_classes:
        raise ValueError(
            f"class_names has {len(names)} names but n_classes={n_classes}."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"class_names must be unique, got {names}.")
    return names


def class_columns(class_names: Sequence[str]) -> list[str]:
    """Column names ``acc_<name>`` of the per-class accuracies in result tables."""
    return [f"acc_{name}" for name in class_names]


def classification_metrics(
    y_true, y_pred, n_classes: int, class_names: Sequence[str] | None = None
) -> dict:
    """Accuracy, MCC, per-class accuracy and confusion matrix.

    Parameters
    ----------
    y_true, y_pred : ndarray of shape (n,)
        True and predicted class ids in ``0..n_classes-1`` (n >= 1).
    n_classes : int
        Number of classes (>= 2).
    class_names : sequence of str, optional
        Names of the classes (default ``"0"``, ``"1"``, ...).

    Returns
    -------
    dict
        ``accuracy`` (float), ``mcc`` (float, scikit-learn's
        ``matthews_corrcoef``: 0 when undefined, e.g. a single predicted class),
        ``per_class_accuracy`` ({name: recall of that class, or None when the
        class is absent from ``y_true``}), ``mean_class_accuracy`` (mean over the
        present classes), ``support`` ({name: count in ``y_true``}),
        ``confusion_matrix`` (nested list, rows = true, columns = predicted),
        ``n`` (int).

    Notes
    -----
    An absent class never yields NaN: its accuracy is None and it is left out of
    ``mean_class_accuracy``. Time O(n + C^2), memory O(C^2).
    """
    n_classes = check_int(n_classes, "n_classes", low=2)
    names = _class_names(class_names, n_classes)
    yt = check_labels(y_true, "y_true")
    yp = check_labels(y_pred, "y_pred", n_samples=yt.size)
    if yt.size == 0:
        raise ValueError("y_true must hold at least one sample.")
    for arr, name in ((yt, "y_true"), (yp, "y_pred")):
        if arr.min() < 0 or arr.max() >= n_classes:
            raise ValueError(
                f"{name} must hold class ids in 0..{n_classes - 1}, got values in "
                f"[{int(arr.min())}, {int(arr.max())}]."
            )
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (yt, yp), 1)
    support = cm.sum(axis=1)
    per_class = {
        name: (float(cm[c, c] / support[c]) if support[c] > 0 else None)
        for c, name in enumerate(names)
    }
    present = [v for v in per_class.values() if v is not None]
    return {
        "accuracy": float(np.trace(cm) / yt.size),
        "mcc": _mcc(yt, yp),
        "per_class_accuracy": per_class,
        "mean_class_accuracy": float(np.mean(present)),
        "support": {name: int(support[c]) for c, name in enumerate(names)},
        "confusion_matrix": cm.tolist(),
        "n": int(yt.size),
    }


# ---------------------------------------------------------------------------
# Protocol runner
# ---------------------------------------------------------------------------


def _fold_seed(seed: int, position: int) -> int:
    """Seed of one fold, independent of the execution order and of n_jobs."""
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


def _base_row(tags, protocol, position, subject, seed, loss) -> dict:
    row = dict(tags)
    row.update(
        {
            "protocol": protocol,
            "fold": position,
            "subject_id": subject,
            "loss": loss,
            "seed": seed,
            "fold_seed": _fold_seed(seed, position),
        }
    )
    return row


def _run_fold(
    images: np.ndarray,
    train_index: np.ndarray,
    train_labels: np.ndarray,
    test_index: np.ndarray,
    test_labels: np.ndarray,
    base: dict,
    *,
    n_classes: int,
    names: list[str],
    config: CNNConfig | None,
    loss: str,
    loss_params: dict,
    training_params: dict,
    num_threads: int | None,
) -> dict:
    start = time.perf_counter()
    row = dict(base)
    row["n_train"] = int(train_index.size)
    row["n_test"] = int(test_index.size)
    counts = np.bincount(train_labels, minlength=n_classes)
    for name, count in zip(names, counts, strict=True):
        row[f"n_train_{name}"] = int(count)
    missing = [names[c] for c in range(n_classes) if counts[c] == 0]
    if train_index.size < 2:
        status = f"skipped: {train_index.size} training sample(s)"
    elif missing:
        status = f"skipped: training set lacks class(es) {missing}"
    else:
        status = "ok"
    if status != "ok":
        row.update({"status": status, "seconds": time.perf_counter() - start})
        return row
    result = train_classifier(
        images[train_index],
        train_labels,
        n_classes=n_classes,
        config=config,
        loss=loss,
        loss_params=loss_params,
        seed=row["fold_seed"],
        progress=False,
        num_threads=num_threads,
        **training_params,
    )
    with _torch_threads(num_threads):
        predictions = predict(result.model, images[test_index])
    metrics = classification_metrics(test_labels, predictions, n_classes, names)
    row.update(
        {
            "accuracy": metrics["accuracy"],
            "mcc": metrics["mcc"],
            "mean_class_accuracy": metrics["mean_class_accuracy"],
        }
    )
    for name, value in metrics["per_class_accuracy"].items():
        row[f"acc_{name}"] = np.nan if value is None else value
    row["final_train_loss"] = float(result.history["train_loss"].iloc[-1])
    row["confusion_matrix"] = json.dumps(metrics["confusion_matrix"])
    row["status"] = status
    row["seconds"] = time.perf_counter() - start
    return row


def _check_training_params(training_params) -> dict:
    params = dict(training_params or {})
    unknown = sorted(set(params) - _TRAINING_KEYS)
    if unknown:
        raise ValueError(
            f"training_params has unknown key(s) {unknown}; allowed: "
            f"{sorted(_TRAINING_KEYS)}."
        )
    if "optimizer" in params and params["optimizer"] not in OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {list(OPTIMIZERS)}, got {params['optimizer']!r}."
        )
    for key in ("epochs", "batch_size"):
        if key in params:
            check_int(params[key], key, low=1)
    if "learning_rate" in params:
        check_float(
            params["learning_rate"], "learning_rate", low=0.0, low_inclusive=False
        )
    if "weight_decay" in params:
        check_float(params["weight_decay"], "weight_decay", low=0.0)
    return params


def _check_class_ids(labels: np.ndarray, name: str, n_classes: int) -> None:
    if labels.size and labels.max() >= n_classes:
        raise ValueError(
            f"{name} contain class id {int(labels.max())} but n_classes={n_classes}; "
            f"allowed ids are 0..{n_classes - 1} and -1."
        )


def run_protocol(
    images,
    samples: pd.DataFrame,
    training_labels,
    ground_truth_labels,
    *,
    protocol: str,
    n_classes: int,
    class_names: Sequence[str] | None = None,
    loss: str = "ce",
    loss_params: dict | None = None,
    training_params: dict | None = None,
    config: CNNConfig | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    tags: Mapping[str, object] | None = None,
    on_fold_done: Callable[[dict], None] | None = None,
    progress: bool = True,
    num_threads: int | None = None,
) -> pd.DataFrame:
    """Train and test one repetition of a protocol; one result row per fold.

    Parameters
    ----------
    images : ndarray of shape (N, C, H, W)
        All images, float32 in [0, 1], aligned with ``samples``.
    samples : pandas.DataFrame
        Samples table (``subject_id`` for ``"loso"``, ``split`` for ``"holdout"``).
    training_labels : ndarray of shape (N,)
        Manual and propagated labels to train on, -1 where none (e.g. the output of
        a propagation, possibly restricted by :func:`balance_propagated`).
    ground_truth_labels : ndarray of shape (N,)
        Manual (expert) labels to test on, -1 where none.
    protocol : {"loso", "holdout"}
        ``"loso"``: one fold per subject with a ground-truth label, test = that
        subject's ground-truth samples, train = other subjects' labelled samples
        (:func:`loso_folds`, :func:`fold_train_index`). ``"holdout"``: one fold,
        train = ``split == "pool"`` samples with a training label, test =
        ``split == "test"`` samples with a ground-truth label (training labels
        on test samples are ignored).
    n_classes : int
        Number of classes (>= 2).
    class_names : sequence of str, optional
        Class names for the per-class columns (default ``"0"``, ``"1"``, ...).
    loss, loss_params : str, dict
        Loss name and parameters (:func:`lqknn.losses.make_loss`).
    training_params : dict, optional
        Keys ``optimizer``, ``epochs``, ``batch_size``, ``learning_rate``,
        ``weight_decay`` for :func:`lqknn.classification.train_classifier` (e.g.
        :func:`lqknn.classification.default_training_params`).
    config : CNNConfig, optional
        Network parameters.
    seed : int, default 0
        Seed of the repetition; fold ``i`` trains with a seed derived from
        ``(seed, i)``, so results do not depend on ``n_jobs``.
    n_jobs : int, default 1
        joblib workers over folds (-1 = all cores). With ``n_jobs != 1`` each
        worker trains with one torch thread; workers only return their rows.
    tags : mapping, optional
        Extra columns copied into every row (e.g. ``{"variant": ..., "repetition":
        ...}``) for :func:`aggregate` and the plots.
    on_fold_done : callable, optional
        Called in this process with each finished row (dict) as soon as it is
        available, e.g. to persist it or log it to MLflow; rows of excluded
        subjects are passed too.
    progress : bool, default True
        Show a tqdm bar over folds.
    num_threads : int, optional
        Torch threads when ``n_jobs == 1`` (default: leave torch's setting).

    Returns
    -------
    pandas.DataFrame
        One row per fold, sorted by ``fold``: the ``tags`` columns, ``protocol``,
        ``fold``, ``subject_id`` (``"holdout"`` for the hold-out), ``loss``,
        ``loss_params`` (JSON), ``seed`` (the repetition's), ``fold_seed`` (the
        training's), ``status``, ``n_train``, ``n_test``,
        ``accuracy``, ``mcc``, ``mean_class_accuracy``, ``acc_<class>``,
        ``n_train_<class>``, ``final_train_loss``, ``seconds``,
        ``confusion_matrix`` (JSON). ``status`` is ``"ok"``, ``"skipped:
        <reason>"`` (a training set with fewer than 2 samples or lacking a
        class; its metrics are missing) or, for LOSO subjects without any
        ground-truth label, ``"excluded: no ground-truth label"``.
        ``acc_<class>`` is missing when the class is absent from the fold's test
        set.

    Notes
    -----
    Time: one training per fold (:func:`lqknn.classification.train_classifier`).
    Memory: the images once in this process; joblib memory-maps them for the
    workers, each of which copies its fold's training images.

    References
    ----------
    Vindas et al. (2022), experiments 3 and 4; METHOD.md section 7.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}."
        )
    samples = _check_samples(
        samples, ["subject_id"] if protocol == "loso" else ["split"]
    )
    n = len(samples)
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] != n:
        raise ValueError(
            f"images must have shape (N, C, H, W) with N = {n} (rows of samples), "
            f"got {images.shape}."
        )
    if images.dtype != np.float32:
        images = images.astype(np.float32)
    n_classes = check_int(n_classes, "n_classes", low=2)
    names = _class_names(class_names, n_classes)
    train_labels = check_labels(training_labels, "training_labels", n)
    gt = check_labels(ground_truth_labels, "ground_truth_labels", n)
    _check_class_ids(train_labels, "training_labels", n_classes)
    _check_class_ids(gt, "ground_truth_labels", n_classes)
    loss_params = dict(loss_params or {})
    make_loss(loss, **loss_params)
    params = _check_training_params(training_params)
    seed = check_int(seed, "seed", low=0)
    n_jobs = check_int(n_jobs, "n_jobs")
    if n_jobs == 0:
        raise ValueError(
            "n_jobs must be a positive integer or negative (joblib), got 0."
        )
    tags = dict(tags or {})
    loss_name = loss.lower()
    base_tags = {**tags, "loss_params": json.dumps(loss_params, sort_keys=True)}

    rows: list[dict] = []
    tasks = []
    if protocol == "holdout":
        pool, test = holdout_split(samples)
        test_index = test[gt[test] >= 0]
        if test_index.size == 0:
            raise ValueError(
                "ground_truth_labels mark no sample of the test split; nothing to "
                "test on."
            )
        train_index = pool[train_labels[pool] >= 0]
        tasks.append((0, "holdout", train_index, test_index))
    else:
        folds = loso_folds(samples, gt)
        by_subject = {f.subject_id: f for f in folds}
        subjects = np.unique(samples["subject_id"].to_numpy()).tolist()
        for position, subject in enumerate(subjects):
            fold = by_subject.get(subject)
            if fold is None:
                row = _base_row(
                    base_tags,
                    protocol,
                    position,
                    subject,
                    seed,
                    loss_name,
                )
                row.update(
                    {
                        "status": "excluded: no ground-truth label",
                        "n_train": 0,
                        "n_test": 0,
                        **{f"n_train_{name}": 0 for name in names},
                        "seconds": 0.0,
                    }
                )
                rows.append(row)
                continue
            train_index = fold_train_index(fold, samples, train_labels)
            tasks.append((position, subject, train_index, fold.test_index))
    for row in rows:
        if on_fold_done is not None:
            on_fold_done(dict(row))

    worker_threads = 1 if n_jobs != 1 else num_threads
    calls = (
        delayed(_run_fold)(
            images,
            train_index,
            train_labels[train_index],
            test_index,
            gt[test_index],
            _base_row(
                base_tags,
                protocol,
                position,
                subject,
                seed,
                loss_name,
            ),
            n_classes=n_classes,
            names=names,
            config=config,
            loss=loss_name,
            loss_params=loss_params,
            training_params=params,
            num_threads=worker_threads,
        )
        for position, subject, train_index, test_index in tasks
    )
    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
    bar = tqdm(
        total=len(tasks), desc=f"{protocol} folds", disable=not progress, unit="fold"
    )
    with bar:
        for row in parallel(calls):
            rows.append(row)
            if on_fold_done is not None:
                on_fold_done(dict(row))
            bar.update(1)
    return _result_frame(rows, list(tags), names)


def _result_frame(rows: list[dict], tag_columns: list[str], names: list[str]):
    columns = [
        *tag_columns,
        "protocol",
        "fold",
        "subject_id",
        "loss",
        "loss_params",
        "seed",
        "fold_seed",
        "status",
        "n_train",
        "n_test",
        "accuracy",
        "mcc",
        "mean_class_accuracy",
        *class_columns(names),
        *[f"n_train_{name}" for name in names],
        "final_train_loss",
        "seconds",
        "confusion_matrix",
    ]
    frame = pd.DataFrame(rows).reindex(columns=columns)
    return frame.sort_values("fold", kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------
# Aggregation and figures
# ---------------------------------------------------------------------------


def _metric_columns(results: pd.DataFrame) -> list[str]:
    base = [c for c in ("accuracy", "mcc", "mean_class_accuracy") if c in results]
    return base + [c for c in results.columns if c.startswith("acc_")]


def aggregate(
    results: pd.DataFrame,
    by: Sequence[str] | None = None,
    *,
    level: str = "fold",
) -> pd.DataFrame:
    """Mean and standard deviation of the metrics per group of result rows.

    Parameters
    ----------
    results : pandas.DataFrame
        Rows of :func:`run_protocol` (several repetitions, variants and losses
        concatenated).
    by : sequence of str, optional
        Grouping columns; default the ones of ``("variant", "loss")`` present.
    level : {"fold", "repetition"}, default "fold"
        ``"fold"``: statistics over all ``ok`` fold rows of a group.
        ``"repetition"``: first average the folds of each repetition (column
        ``repetition``), then take mean and std over repetitions (the paper's
        "mean +- std over repetitions").

    Returns
    -------
    pandas.DataFrame
        One row per group: the ``by`` columns, ``n_ok`` (fold rows with status
        ok), ``n_skipped`` and ``n_excluded`` (rows with status ``"skipped: ..."``
        and ``"excluded: ..."``, which never enter the statistics),
        ``n_repetitions`` (``level="repetition"``), then
        ``<metric>_mean`` and ``<metric>_std`` (sample std, ddof 1: missing for a
        single value) for accuracy, mcc, mean_class_accuracy and every
        ``acc_<class>``, and ``acc_<class>_n``: the number of values behind the
        class's statistics (folds whose test set holds the class).
    """
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"results must be a DataFrame, got {type(results).__name__}.")
    if "status" not in results:
        raise ValueError("results must have a 'status' column (from run_protocol).")
    if level not in ("fold", "repetition"):
        raise ValueError(f"level must be 'fold' or 'repetition', got {level!r}.")
    by = [c for c in ("variant", "loss") if c in results] if by is None else list(by)
    missing = [c for c in by if c not in results]
    if level == "repetition" and "repetition" not in results:
        missing.append("repetition")
    if missing:
        raise ValueError(f"results lacks grouping column(s) {missing}.")
    metrics = _metric_columns(results)
    frame = results.copy()
    keys = by if by else ["_group"]
    if not by:
        frame["_group"] = "all"
    status = frame["status"].astype(str)
    frame["_ok"] = status == "ok"
    frame["_skipped"] = status.str.startswith("skipped")
    frame["_excluded"] = status.str.startswith("excluded")
    counts = frame.groupby(keys, sort=False)[["_ok", "_skipped", "_excluded"]].sum()
    counts.columns = ["n_ok", "n_skipped", "n_excluded"]
    extra = ["repetition"] if level == "repetition" else []
    data = frame.loc[frame["_ok"], keys + extra + metrics].copy()
    data[metrics] = data[metrics].astype(float)
    if level == "repetition":
        data = data.groupby(keys + extra, sort=False)[metrics].mean().reset_index()
    grouped = data.groupby(keys, sort=False)
    stats = grouped[metrics].agg(["mean", "std"])
    stats.columns = [f"{m}_{s}" for m, s in stats.columns]
    for m in metrics:
        if m.startswith("acc_"):
            stats[f"{m}_n"] = grouped[m].count()
    if level == "repetition":
        stats.insert(0, "n_repetitions", grouped.size())
    out = counts.join(stats, how="left").reset_index()
    if not by:
        out = out.drop(columns="_group")
    return out


def _groups(results: pd.DataFrame, by: Sequence[str]):
    variant_col, loss_col = by
    variants = list(dict.fromkeys(results[variant_col].tolist()))
    losses = list(dict.fromkeys(results[loss_col].tolist()))
    return variants, losses


def _prepare_plot_frame(results: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"results must be a DataFrame, got {type(results).__name__}.")
    if len(by) != 2:
        raise ValueError(f"by must name two columns (x groups, colours), got {by!r}.")
    frame = (
        results[results["status"] == "ok"].copy()
        if "status" in results
        else (results.copy())
    )
    for col, default in zip(by, ("all", "loss"), strict=True):
        if col not in frame:
            frame[col] = default
    return frame


def _box_axes(ax, frame: pd.DataFrame, column: str, by: Sequence[str]) -> None:
    variants, losses = _groups(frame, by)
    width = 0.8 / max(len(losses), 1)
    handles = []
    from matplotlib.patches import Patch

    for j, loss in enumerate(losses):
        color = f"C{j % 10}"
        positions, data = [], []
        for i, variant in enumerate(variants):
            sel = (frame[by[0]] == variant) & (frame[by[1]] == loss)
            values = frame.loc[sel, column].dropna().to_numpy(dtype=float)
            if values.size:
                positions.append(i - 0.4 + width * (j + 0.5))
                data.append(values)
        if data:
            ax.boxplot(
                data,
                positions=positions,
                widths=width * 0.9,
                patch_artist=True,
                boxprops={"facecolor": color, "alpha": 0.6},
                medianprops={"color": "black"},
                manage_ticks=False,
            )
        handles.append(Patch(facecolor=color, alpha=0.6, label=str(loss)))
    ax.set_xticks(range(len(variants)))
    ax.set_xticklabels([str(v) for v in variants], rotation=30, ha="right")
    ax.set_xlim(-0.6, len(variants) - 0.4)
    ax.grid(axis="y", alpha=0.3)
    if handles:
        ax.legend(handles=handles, title=by[1], fontsize="small")


def plot_metric_boxes(
    results: pd.DataFrame,
    metric: str = "mcc",
    *,
    by: Sequence[str] = ("variant", "loss"),
) -> Figure:
    """Box plots of a metric per training-set variant (x) and loss (colour).

    Parameters
    ----------
    results : pandas.DataFrame
        Rows of :func:`run_protocol`; only ``status == "ok"`` rows are drawn.
    metric : str, default "mcc"
        Column to draw (``"accuracy"``, ``"mcc"``, ``"acc_<class>"``...).
    by : (str, str), default ("variant", "loss")
        Column of the x groups and column of the colours; a missing column counts
        as a single group.

    Returns
    -------
    matplotlib.figure.Figure
        One axes (the paper's Figs. 8-13 layout); save with ``fig.savefig``.
    """
    frame = _prepare_plot_frame(results, by)
    if metric not in results:
        raise ValueError(f"metric {metric!r} is not a column of results.")
    n_variants = max(frame[by[0]].nunique(), 1)
    fig = Figure(figsize=(max(4.0, 1.2 * n_variants + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    _box_axes(ax, frame, metric, by)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per {by[0]} and {by[1]}")
    return fig


def plot_per_class_accuracy(
    results: pd.DataFrame,
    class_names: Sequence[str],
    *,
    by: Sequence[str] = ("variant", "loss"),
) -> Figure:
    """One box-plot panel per class: its accuracy per variant (x) and loss (colour).

    Parameters
    ----------
    results : pandas.DataFrame
        Rows of :func:`run_protocol` with ``acc_<class>`` columns.
    class_names : sequence of str
        Classes to draw, in panel order.
    by : (str, str), default ("variant", "loss")
        As in :func:`plot_metric_boxes`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    frame = _prepare_plot_frame(results, by)
    names = [str(c) for c in class_names]
    if not names:
        raise ValueError("class_names must name at least one class.")
    missing = [c for c in class_columns(names) if c not in results]
    if missing:
        raise ValueError(f"results lacks per-class column(s) {missing}.")
    n_variants = max(frame[by[0]].nunique(), 1)
    fig = Figure(
        figsize=(max(4.0, 1.2 * n_variants + 2) * len(names), 4),
        layout="constrained",
    )
    axes = fig.subplots(1, len(names), squeeze=False, sharey=True)[0]
    for ax, name, column in zip(axes, names, class_columns(names), strict=True):
        _box_axes(ax, frame, column, by)
        ax.set_title(f"accuracy of class {name}")
    axes[0].set_ylabel("per-class accuracy")
    return fig


def plot_confusion(cm, class_names: Sequence[str], *, normalize: bool = True) -> Figure:
    """Confusion matrix as a heat map (rows = true class, columns = predicted).

    Parameters
    ----------
    cm : array-like of shape (C, C)
        Counts, e.g. ``classification_metrics(...)["confusion_matrix"]`` or a sum
        of several folds' matrices.
    class_names : sequence of str
        C names.
    normalize : bool, default True
        Colour by row fraction (per-class accuracy on the diagonal); every cell
        shows its count and, when normalised, its fraction. Rows with no sample
        show 0.

    Returns
    -------
    matplotlib.figure.Figure
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square 2-D array, got shape {cm.shape}.")
    if not np.issubdtype(cm.dtype, np.number) or (cm < 0).any():
        raise ValueError("cm must hold non-negative counts.")
    names = [str(c) for c in class_names]
    if len(names) != cm.shape[0]:
        raise ValueError(
            f"class_names has {len(names)} names but cm is {cm.shape[0]} x "
            f"{cm.shape[1]}."
        )
    totals = cm.sum(axis=1, keepdims=True)
    fractions = np.divide(cm, totals, out=np.zeros(cm.shape), where=totals > 0)
    shown = fractions if normalize else cm
    size = 1.0 + 0.7 * len(names)
    fig = Figure(figsize=(size + 1.5, size), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(
        image, ax=ax, label="fraction of the true class" if normalize else "count"
    )
    threshold = (1.0 if normalize else max(cm.max(), 1)) / 2
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            text = f"{cm[i, j]:g}" + (f"\n{fractions[i, j]:.0%}" if normalize else "")
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize="small",
                color="white" if shown[i, j] > threshold else "black",
            )
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    return fig
