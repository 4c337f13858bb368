"""Noisy-label classification experiments: every (training-set variant, loss,
repetition) through the data set's protocol (METHOD.md section 7).

Training sets come from the propagation study (``propagated_label_sets``); this
module turns them into per-sample training labels, optionally balances the
propagated samples (experiment 4), and runs :func:`lqknn.evaluation.run_protocol`.
Fan-out goes through joblib: over folds for LOSO, over (variant, loss,
repetition) for the hold-out protocol, which has a single fold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from lqknn.classification import CNNConfig
from lqknn.evaluation import balance_propagated, run_protocol
from lqknn.losses import LOSS_NAMES

logger = logging.getLogger(__name__)


def training_labels(
    samples: pd.DataFrame,
    label_sets: Mapping[str, Any],
    variant: str,
    repetition: int,
    *,
    exclude: np.ndarray | None = None,
    balance: bool = False,
    reference_class: int | None = None,
    n_classes: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample training labels (N,) of one variant and repetition, and the mask
    of manual labels.

    Pool samples take the variant's labels, test-split samples and ``exclude``d
    ones (e.g. ``unknown``) get -1. With ``balance`` the propagated samples are
    subsampled per class (:func:`lqknn.evaluation.balance_propagated`); dropped
    ones get -1. Repetition ``r`` uses label set ``r`` modulo the number stored.
    """
    reps = label_sets["repetitions"]
    rep = reps[repetition % len(reps)]
    if variant not in rep["labels"]:
        raise ValueError(
            f"training-set variant {variant!r} was not computed by the propagation "
            f"pipeline (available: {sorted(rep['labels'])}); add it to "
            "params:propagation.variants and re-run propagation."
        )
    ids = pd.Index(samples["sample_id"])
    pos = ids.get_indexer(label_sets["pool_sample_id"])
    if (pos < 0).any():
        raise ValueError(
            "propagated_label_sets do not match samples (unknown sample ids); "
            "re-run the propagation pipeline on the current data set."
        )
    n = len(samples)
    labels = np.full(n, -1, dtype=np.int64)
    labels[pos] = rep["labels"][variant]
    manual = np.zeros(n, dtype=bool)
    if label_sets.get("mode") == "production":
        manual[pos] = samples["label"].to_numpy()[pos] >= 0
    else:
        manual[pos] = rep["labelled_mask"]
    if exclude is not None:
        labels[exclude] = -1
        manual &= ~exclude
    if balance:
        keep = balance_propagated(
            labels, manual, seed, reference_class=reference_class, n_classes=n_classes
        )
        kept = np.zeros(n, dtype=bool)
        kept[keep] = True
        labels[~kept] = -1
    return labels, manual


def _loss_spec(spec: Mapping[str, Any] | str) -> tuple[str, str, dict]:
    if isinstance(spec, str):
        spec = {"name": spec}
    spec = dict(spec)
    name = str(spec.pop("name", "")).lower()
    if name not in LOSS_NAMES:
        raise ValueError(f"loss {name!r} does not exist; choose from {LOSS_NAMES}.")
    # A label that is also a valid MLflow metric-name fragment, e.g. "gce_q0.7".
    label = spec.pop("label", None) or "_".join(
        [name] + [f"{k}{v}" for k, v in spec.items()]
    )
    return label, name, spec


def run_experiments(
    images: np.ndarray,
    samples: pd.DataFrame,
    ground_truth_labels: np.ndarray,
    label_sets: Mapping[str, Any],
    *,
    variants: Sequence[str],
    losses: Sequence[Mapping[str, Any] | str],
    protocol: str,
    n_repetitions: int,
    class_names: Sequence[str],
    training_params: Mapping[str, Any],
    network: Mapping[str, Any] | None = None,
    exclude: np.ndarray | None = None,
    balance: bool = False,
    reference_class: int | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    on_fold_done: Callable[[dict], None] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """All (variant, loss, repetition) runs of a protocol; one row per fold.

    Returns the concatenated rows of :func:`lqknn.evaluation.run_protocol` with
    ``variant``, ``loss_name`` and ``repetition`` columns. ``on_fold_done`` is
    called in this process as each fold finishes (for MLflow and crash safety).

    Time: one CNN training per (variant, loss, repetition, fold), each
    O(epochs x n_train) forward/backward passes (about 0.4 ms per 28 x 28 image and
    epoch and 0.8-3 ms per 64 x 64 spectrogram on one CPU thread, see
    ``benchmarks/results/classification.md``), spread over ``n_jobs`` joblib
    workers. Memory: the images once (O(N C H W)) plus one model per worker.
    """
    loss_specs = [_loss_spec(s) for s in losses]
    config = CNNConfig(**network) if network else None
    stored = len(label_sets["repetitions"])
    if label_sets.get("mode") == "evaluation" and n_repetitions > stored:
        raise ValueError(
            f"{n_repetitions} classification repetitions need as many propagation "
            f"repetitions (each with its own labelled subset) but only {stored} were "
            "stored; raise params:propagation.n_repetitions or lower "
            "params:classification.n_repetitions."
        )
    jobs = []
    for r in range(n_repetitions):
        for variant in variants:
            labels, _ = training_labels(
                samples,
                label_sets,
                variant,
                r,
                exclude=exclude,
                balance=balance,
                reference_class=reference_class,
                n_classes=len(class_names),
                seed=seed + r,
            )
            for label, name, params in loss_specs:
                tags = {"variant": variant, "loss_name": label, "repetition": r}
                jobs.append((labels, name, params, tags, seed + r))

    def one(labels, name, params, tags, rep_seed, inner_jobs, callback):
        return run_protocol(
            images,
            samples,
            labels,
            ground_truth_labels,
            protocol=protocol,
            n_classes=len(class_names),
            class_names=class_names,
            loss=name,
            loss_params=params,
            training_params=dict(training_params),
            config=config,
            seed=rep_seed,
            n_jobs=inner_jobs,
            tags=tags,
            on_fold_done=callback,
            progress=progress and inner_jobs != 1,
            num_threads=1 if n_jobs != 1 else None,
        )

    if protocol == "loso" or n_jobs == 1:
        frames = []
        iterator = jobs
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(jobs, desc="classification runs", leave=False)
        for job in iterator:
            frames.append(one(*job, n_jobs, on_fold_done))
    else:
        # Runs are logged as each one completes, so an interrupted run keeps them.
        frames = []
        parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
        for frame in parallel(delayed(one)(*job, 1, None) for job in jobs):
            frames.append(frame)
            if on_fold_done is not None:
                for row in frame.to_dict("records"):
                    on_fold_done(row)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
