"""Annotation studies: propagation measured over repetitions, and the annotated set.

Two modes (issue 5):

* **evaluation** — a fully labelled pool: each repetition keeps a stratified
  fraction of the labels (METHOD.md section 1), selects its best and worst
  projection from the stored t-SNE grid with ITS OWN labelled subset
  (section 2), runs every propagation method over the K / tau grids and scores
  against the hidden labels. The estimated accuracy of every (K, tau) (error
  control from the labelled samples alone) is stored beside the true one.
* **production** — manual labels only: propagate from all of them with the
  (K, tau) that meets ``target_accuracy`` with the largest estimated coverage,
  and write the annotated data set with each label's provenance. Where hidden
  ground truth exists (a synthetic set), propagated labels are scored too.

Repetitions run through joblib (``n_jobs``), so they can move to a cluster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from lqknn._validation import check_float, check_int, check_labels
from lqknn.data.schema import unknown_mask
from lqknn.neighbors import knn_excluding_self
from lqknn.projection import select_projection, silhouette_scores
from lqknn.propagation import (
    PropagationResult,
    choose_setting,
    estimate_setting_accuracy,
    label_spreading,
    lq_knn,
    opf_semi,
    std_knn,
)
from lqknn.split import labelled_subset

logger = logging.getLogger(__name__)

#: Methods a study can run; ``lq_knn_unsorted`` is the paper's ablation.
STUDY_METHODS = ("std_knn", "lq_knn", "lq_knn_unsorted", "opf_semi", "label_spreading")


def quality_key(ks: int, kt: int) -> str:
    """Key of a local-quality array computed with (ks, kt), e.g. ``"ks10_kt10"``."""
    return f"ks{int(ks)}_kt{int(kt)}"


def _kept_indices(exclude, n: int) -> np.ndarray | None:
    """Indices of the samples that take part in propagation, or None for all.

    ``exclude`` (bool, shape (N,)) marks samples kept out of the problem: an
    expert's ``unknown`` samples, which are neither labelled, nor relays, nor
    scored. Propagation then runs on the other samples only (their map, their
    neighbour lists); results are expanded back with -1 for excluded samples.
    """
    if exclude is None:
        return None
    mask = np.asarray(exclude)
    if mask.dtype != bool or mask.shape != (n,):
        raise ValueError(
            f"exclude must be a boolean mask of shape ({n},), got dtype "
            f"{mask.dtype} and shape {mask.shape}."
        )
    return np.flatnonzero(~mask) if mask.any() else None


def _expand(values: np.ndarray, keep: np.ndarray, n: int, fill) -> np.ndarray:
    """Scatter values of the kept samples back into an array of N entries."""
    full = np.full(n, fill, dtype=values.dtype)
    full[keep] = values
    return full


def _expand_result(result: PropagationResult, keep: np.ndarray, n: int):
    """A result on the kept samples, as a result on all N samples."""
    parent = np.where(result.parent >= 0, keep[np.maximum(result.parent, 0)], -1)
    return PropagationResult(
        labels=_expand(result.labels, keep, n, -1),
        parent=_expand(parent, keep, n, -1),
        iteration=_expand(result.iteration, keep, n, -1),
        seconds=result.seconds,
        neighbor_seconds=result.neighbor_seconds,
        method=result.method,
        params=result.params,
    )


@dataclass
class Variant:
    """A training-set variant: which labels a classifier trains on.

    ``method`` is ``"none"`` (manual labels only), ``"manual_all"`` (every
    ground-truth label: the fully annotated reference, evaluation mode only),
    ``"std_knn"`` or ``"lq_knn"`` (with ``K`` and, for LQ-KNN, ``tau``).
    """

    name: str
    method: str
    K: int | None = None
    tau: float | None = None

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Variant:
        if "name" not in spec or "method" not in spec:
            raise ValueError(
                f"a training-set variant needs 'name' and 'method', got {dict(spec)}."
            )
        method = spec["method"]
        allowed = ("none", "manual_all", "std_knn", "lq_knn")
        if method not in allowed:
            raise ValueError(
                f"variant {spec['name']!r}: method {method!r} is not one of {allowed}."
            )
        if method in ("std_knn", "lq_knn") and spec.get("K") is None:
            raise ValueError(f"variant {spec['name']!r}: method {method} needs K.")
        if method == "lq_knn" and spec.get("tau") is None:
            raise ValueError(f"variant {spec['name']!r}: method lq_knn needs tau.")
        return cls(
            name=str(spec["name"]),
            method=method,
            K=None if spec.get("K") is None else int(spec["K"]),
            tau=None if spec.get("tau") is None else float(spec["tau"]),
        )


@dataclass
class StudyConfig:
    """Parameters of an evaluation study (see ``conf/base/parameters_propagation.yml``)."""

    labelled_fraction: float = 0.1
    n_repetitions: int = 10
    seed: int = 0
    Ks: Sequence[int] = (5, 10)
    taus: Sequence[float] = (0.1, 0.3, 0.5)
    methods: Sequence[str] = ("std_knn", "lq_knn", "lq_knn_unsorted")
    ks_kt: Sequence[Sequence[int]] = ((10, 10),)
    silhouette_metric: str = "sqeuclidean"
    projections: Sequence[str] = ("best", "worst")
    error_control: bool = True
    hide_fraction: float = 0.2
    n_splits: int = 10
    variants: Sequence[Mapping[str, Any]] = field(default_factory=list)
    n_jobs: int = 1
    #: OPF-semi is O(N^2) in pure Python: run it on the best projection of the
    #: first ``opf_repetitions`` repetitions only (None = every repetition).
    opf_repetitions: int | None = 1

    def __post_init__(self) -> None:
        check_float(self.labelled_fraction, "labelled_fraction", low=0, high=1)
        check_int(self.n_repetitions, "n_repetitions", low=1)
        bad = [m for m in self.methods if m not in STUDY_METHODS]
        if bad:
            raise ValueError(f"unknown methods {bad}; choose from {STUDY_METHODS}.")
        bad = [p for p in self.projections if p not in ("best", "worst")]
        if bad or not self.projections:
            raise ValueError(
                f"projections must be a non-empty subset of ['best', 'worst'], "
                f"got {list(self.projections)}."
            )
        if not self.ks_kt:
            raise ValueError("ks_kt must list at least one (ks, kt) pair.")
        for K in self.Ks:
            check_int(K, "every K", low=1)
        for tau in self.taus:
            check_float(tau, "every tau", low=0, high=1)
        self.variants = [Variant.from_dict(v) for v in self.variants]

    @property
    def default_quality(self) -> str:
        """The first (ks, kt) pair: the one decisions and training sets use."""
        ks, kt = self.ks_kt[0]
        return quality_key(ks, kt)


def _score_row(result: PropagationResult, y, y_true, class_names) -> dict:
    row = result.score(y, y_true)
    per_class = result.per_class_accuracy(y, y_true)
    for c, name in enumerate(class_names):
        value = per_class.get(c, np.nan) if hasattr(per_class, "get") else np.nan
        row[f"acc_{name}"] = float(value)
    return row


def _methods_on_projection(
    embedding, lq_by_key, y, y_true, cfg: StudyConfig, class_names, neighbors, run_opf
) -> list[dict]:
    """Every method of ``cfg`` on one projection; one row per (method, K, tau, ks/kt)."""
    rows = []

    def add(result, **tags):
        rows.append({**tags, **_score_row(result, y, y_true, class_names)})

    default = cfg.default_quality
    for K in cfg.Ks:
        nb = neighbors[:, :K]
        if "std_knn" in cfg.methods:
            add(std_knn(embedding, y, K, neighbors=nb), method="std_knn", K=K)
        for key, lq in lq_by_key.items():
            for tau in cfg.taus:
                if "lq_knn" in cfg.methods:
                    res = lq_knn(embedding, y, lq, K, tau, sort=True, neighbors=nb)
                    add(res, method="lq_knn", K=K, tau=tau, quality=key)
                if "lq_knn_unsorted" in cfg.methods and key == default:
                    res = lq_knn(embedding, y, lq, K, tau, sort=False, neighbors=nb)
                    add(res, method="lq_knn_unsorted", K=K, tau=tau, quality=key)
    if "opf_semi" in cfg.methods and run_opf:
        add(opf_semi(embedding, y), method="opf_semi")
    if "label_spreading" in cfg.methods:
        add(label_spreading(embedding, y), method="label_spreading")
    return rows


def _variant_labels(
    variant: Variant, embedding, y, y_true, lq, neighbors
) -> np.ndarray:
    if variant.method == "none":
        return y.copy()
    if variant.method == "manual_all":
        return y_true.copy()
    nb = neighbors[:, : variant.K]
    if variant.method == "std_knn":
        return std_knn(embedding, y, variant.K, neighbors=nb).labels
    return lq_knn(embedding, y, lq, variant.K, variant.tau, neighbors=nb).labels


def _one_repetition(
    repetition: int,
    embeddings: np.ndarray,
    lq_grid: Mapping[str, np.ndarray],
    y_true: np.ndarray,
    cfg: StudyConfig,
    class_names: Sequence[str],
    manual_labels: np.ndarray | None = None,
) -> dict:
    seed = cfg.seed + repetition
    if manual_labels is None:
        mask = labelled_subset(y_true, cfg.labelled_fraction, seed)
        y = np.where(mask, y_true, -1)
    else:
        y = manual_labels
        mask = y >= 0
    scores = silhouette_scores(embeddings, y, metric=cfg.silhouette_metric)
    best, worst = select_projection(scores)
    chosen = {"best": best, "worst": worst}
    max_k = max(list(cfg.Ks) + [v.K for v in cfg.variants if v.K is not None])
    rows, out = [], {"repetition": repetition, "seed": seed, "labelled_mask": mask}
    nb_best = None
    for proj in cfg.projections:
        idx = chosen[proj]
        emb = embeddings[idx]
        t0 = time.perf_counter()
        nb = knn_excluding_self(emb, max_k)
        neighbour_seconds = time.perf_counter() - t0
        if proj == "best":
            nb_best = nb
        lq_by_key = {key: lq_grid[key][idx] for key in lq_grid}
        run_opf = proj == "best" and (
            cfg.opf_repetitions is None or repetition < cfg.opf_repetitions
        )
        for row in _methods_on_projection(
            emb, lq_by_key, y, y_true, cfg, class_names, nb, run_opf
        ):
            row.update(
                repetition=repetition,
                projection=proj,
                config=int(idx),
                silhouette=float(scores[idx]),
                neighbour_seconds=neighbour_seconds,
            )
            rows.append(row)
    best_emb = embeddings[best]
    if nb_best is None:
        nb_best = knn_excluding_self(best_emb, max_k)
    lq_best = lq_grid[cfg.default_quality][best]
    out["results"] = rows
    out["selection"] = {
        "repetition": repetition,
        "best_config": int(best),
        "worst_config": int(worst),
        "best_silhouette": float(scores[best]),
        "worst_silhouette": float(scores[worst]),
    }
    if cfg.error_control:
        est = estimate_setting_accuracy(
            best_emb,
            y,
            lq_best,
            list(cfg.Ks),
            list(cfg.taus),
            hide_fraction=cfg.hide_fraction,
            n_splits=cfg.n_splits,
            seed=seed,
            neighbors=nb_best,
        )
        est.insert(0, "repetition", repetition)
        out["estimates"] = est
    out["label_sets"] = {
        v.name: _variant_labels(v, best_emb, y, y_true, lq_best, nb_best)
        for v in cfg.variants
    }
    return out


def run_evaluation_study(
    embeddings,
    local_quality: Mapping[str, np.ndarray],
    true_labels,
    config: StudyConfig,
    class_names: Sequence[str],
    *,
    manual_labels=None,
    exclude=None,
    progress: bool = True,
) -> dict[str, Any]:
    """Propagation measured over ``config.n_repetitions`` labelled subsets.

    With ``manual_labels`` (production mode) every repetition propagates from
    those labels as they are instead of drawing a labelled subset, and
    ``true_labels`` only serve scoring (hidden ground truth, -1 where unknown).

    Parameters
    ----------
    embeddings : ndarray of shape (n_configs, N, 2)
        The stored t-SNE grid (labels play no part in it).
    local_quality : mapping of str to ndarray of shape (n_configs, N)
        Normalised lq of every embedding, per (ks, kt) key (:func:`quality_key`).
    true_labels : ndarray of shape (N,)
        Ground truth (-1 = none: such samples may be labelled, and count in the
        labelled fraction, but not in the accuracy; ``exclude`` keeps samples out
        entirely).
    config : StudyConfig
    class_names : sequence of str
    manual_labels : ndarray of shape (N,), optional
        Production mode: the labels to propagate from (-1 = unlabelled).
    exclude : bool ndarray of shape (N,), optional
        Samples kept out of the study (an expert's ``unknown`` samples): never
        labelled, never a relay, never scored; -1 in every label set.

    Returns
    -------
    dict with ``results`` (long table: repetition, projection, method, K, tau,
    quality, annotation_accuracy, labelled_fraction, ms_per_sample, acc_<class>),
    ``selection`` (best/worst configuration per repetition), ``estimates``
    (estimated accuracy/coverage of every (K, tau) per repetition, or empty) and
    ``label_sets`` (per repetition: labelled mask and the labels of every
    training-set variant).

    Complexity: per repetition O(N K) per propagation run (neighbour lists are
    computed once per projection at the largest K), memory O(N K).
    """
    emb = np.asarray(embeddings)
    if emb.ndim != 3 or emb.shape[2] != 2:
        raise ValueError(
            f"embeddings must have shape (n_configs, N, 2), got {emb.shape}."
        )
    y_true = check_labels(true_labels, "true_labels", n_samples=emb.shape[1])
    if manual_labels is not None:
        manual_labels = check_labels(
            manual_labels, "manual_labels", n_samples=emb.shape[1]
        )
    missing = [
        quality_key(ks, kt)
        for ks, kt in config.ks_kt
        if quality_key(ks, kt) not in local_quality
    ]
    if missing:
        raise ValueError(
            f"local quality for {missing} was not computed; add these (ks, kt) pairs "
            "to projection_selection's quality.ks_kt or remove them from "
            "propagation.ks_kt."
        )
    lq_grid = {
        quality_key(ks, kt): np.asarray(local_quality[quality_key(ks, kt)])
        for ks, kt in config.ks_kt
    }
    for key, lq in lq_grid.items():
        if lq.shape != emb.shape[:2]:
            raise ValueError(
                f"local_quality[{key!r}] has shape {lq.shape}; it must be "
                f"(n_configs, N) = {emb.shape[:2]}, one row per embedding."
            )
    n = emb.shape[1]
    keep = _kept_indices(exclude, n)
    if keep is not None:
        emb, y_true = emb[:, keep], y_true[keep]
        lq_grid = {key: lq[:, keep] for key, lq in lq_grid.items()}
        if manual_labels is not None:
            manual_labels = manual_labels[keep]
    reps = range(config.n_repetitions)
    if progress:
        from tqdm.auto import tqdm

        reps = tqdm(reps, desc="propagation repetitions", leave=False)
    outs = Parallel(n_jobs=config.n_jobs)(
        delayed(_one_repetition)(
            r, emb, lq_grid, y_true, config, class_names, manual_labels
        )
        for r in reps
    )
    results = pd.DataFrame([row for o in outs for row in o["results"]])
    estimates = (
        pd.concat([o["estimates"] for o in outs], ignore_index=True)
        if config.error_control
        else pd.DataFrame()
    )
    return {
        "results": results,
        "selection": pd.DataFrame([o["selection"] for o in outs]),
        "estimates": estimates,
        "label_sets": [
            {
                "repetition": o["repetition"],
                "seed": o["seed"],
                "labelled_mask": o["labelled_mask"]
                if keep is None
                else _expand(o["labelled_mask"], keep, n, False),
                "labels": {
                    name: labels if keep is None else _expand(labels, keep, n, -1)
                    for name, labels in o["label_sets"].items()
                },
            }
            for o in outs
        ],
    }


def summarise_results(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over repetitions per (projection, method, K, tau, quality),
    in percent, in the layout of the paper's Table 4."""
    keys = [c for c in ("projection", "method", "quality", "tau", "K") if c in results]
    frame = results.copy()
    if "K" in frame:
        # Methods without K (OPF-semi, LabelSpreading) make the column float;
        # keep K an integer so tables and metric names read "5", not "5.0".
        frame["K"] = frame["K"].astype("Int64")
    for c in keys:
        frame[c] = frame[c].astype(object).where(frame[c].notna(), "-")
    agg = frame.groupby(keys, sort=False).agg(
        accuracy_mean=("annotation_accuracy", "mean"),
        accuracy_std=("annotation_accuracy", "std"),
        labelled_mean=("labelled_fraction", "mean"),
        labelled_std=("labelled_fraction", "std"),
        ms_per_sample=("ms_per_sample", "mean"),
        repetitions=("annotation_accuracy", "size"),
    )
    for c in ("accuracy_mean", "accuracy_std", "labelled_mean", "labelled_std"):
        agg[c] = 100 * agg[c]
    return agg.reset_index()


def rows_of_quality(results: pd.DataFrame, key: str | None = None) -> pd.DataFrame:
    """Rows of a results table that use the local quality ``key`` (default: the
    first one in the table, i.e. the first (ks, kt) pair of the study), plus the
    rows of methods that use none (Std-KNN, OPF-semi, LabelSpreading)."""
    if "quality" not in results or results["quality"].isna().all():
        return results
    if key is None:
        key = results["quality"].dropna().iloc[0]
    return results[results["quality"].isna() | (results["quality"] == key)]


def calibration_table(results: pd.DataFrame, estimates: pd.DataFrame) -> pd.DataFrame:
    """Estimated (from labelled samples alone) against true accuracy and coverage
    per (method, K, tau) and repetition, on the best projection."""
    if estimates.empty:
        return pd.DataFrame()
    true = rows_of_quality(results[(results["projection"] == "best")])
    true = true[true["method"].isin(["lq_knn", "std_knn"])]
    true = true[
        ["repetition", "method", "K", "tau", "annotation_accuracy", "labelled_fraction"]
    ]
    est = estimates.rename(
        columns={"accuracy": "estimated_accuracy", "coverage": "estimated_coverage"}
    )
    merged = est.merge(true, on=["repetition", "method", "K", "tau"], how="inner")
    return merged.rename(
        columns={
            "annotation_accuracy": "true_accuracy",
            "labelled_fraction": "true_coverage",
        }
    )


def annotate(
    embedding,
    local_quality,
    manual_labels,
    *,
    Ks: Sequence[int],
    taus: Sequence[float],
    target_accuracy: float,
    hide_fraction: float = 0.2,
    n_splits: int = 10,
    seed: int = 0,
    fallback: Mapping[str, Any] | None = None,
    exclude=None,
) -> tuple[PropagationResult, dict, pd.DataFrame]:
    """Production mode: choose (K, tau) from the labelled samples alone and
    propagate LQ-KNN from all manual labels. ``exclude`` (bool mask, shape (N,))
    keeps samples out of the problem (an expert's ``unknown`` samples): they are
    neither labelled nor relays, and are -1 in the result.

    Returns the propagation result, the chosen setting (with its estimated
    accuracy and coverage, and ``meets_target``) and the estimate table. When no
    setting meets ``target_accuracy`` the most accurate one is used and
    ``meets_target`` is False (logged as a warning).
    """
    n = np.shape(embedding)[0]
    y = check_labels(manual_labels, "manual_labels", n_samples=n)
    check_float(target_accuracy, "target_accuracy", low=0, high=1)
    if len(Ks) == 0:
        raise ValueError("Ks must hold at least one K.")
    keep = _kept_indices(exclude, n)
    if keep is not None:
        lq_all = np.asarray(local_quality)
        if lq_all.shape != (n,):
            raise ValueError(
                f"local_quality has shape {lq_all.shape}; expected ({n},)."
            )
        result, chosen, est = annotate(
            np.asarray(embedding)[keep],
            lq_all[keep],
            y[keep],
            Ks=Ks,
            taus=taus,
            target_accuracy=target_accuracy,
            hide_fraction=hide_fraction,
            n_splits=n_splits,
            seed=seed,
            fallback=fallback,
        )
        return _expand_result(result, keep, n), chosen, est
    nb = knn_excluding_self(embedding, max(Ks))
    est = estimate_setting_accuracy(
        embedding,
        y,
        local_quality,
        list(Ks),
        list(taus),
        methods=("lq_knn",),
        hide_fraction=hide_fraction,
        n_splits=n_splits,
        seed=seed,
        neighbors=nb,
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        chosen = choose_setting(est, target_accuracy)
    if chosen is None:
        best = est.sort_values(["accuracy", "coverage"], ascending=False).iloc[0]
        chosen = {**best.to_dict(), "meets_target": False}
        if fallback:
            chosen.update(fallback)
        logger.warning(
            "no (K, tau) reaches the target accuracy %.3f (best estimate %.3f at K=%s, "
            "tau=%s); using that one.",
            target_accuracy,
            best["accuracy"],
            best["K"],
            best["tau"],
        )
    else:
        chosen = {**chosen, "meets_target": True}
    K, tau = int(chosen["K"]), float(chosen["tau"])
    result = lq_knn(embedding, y, local_quality, K, tau, neighbors=nb[:, :K])
    return result, chosen, est


def annotated_table(
    samples: pd.DataFrame,
    result: PropagationResult,
    manual_labels: np.ndarray,
    local_quality: np.ndarray,
    class_names: Sequence[str],
    setting: Mapping[str, Any],
) -> pd.DataFrame:
    """The annotated data set: one row per pool sample with the label's provenance.

    Columns: sample_id, subject_id, label, label_name, source (manual /
    propagated / unlabelled), parent_sample_id, iteration, local_quality,
    estimated_accuracy, K, tau. Manual labels are copied unchanged; samples the
    expert marked ``unknown`` keep label -1 and label_name ``unknown``.
    """
    n = len(samples)
    labels = result.labels
    if labels.shape[0] != n:
        raise ValueError(
            f"result has {labels.shape[0]} labels but samples has {n} rows; "
            "both must describe the same pool, in the same order."
        )
    manual_labels = check_labels(manual_labels, "manual_labels", n_samples=n)
    local_quality = np.asarray(local_quality, dtype=float)
    if local_quality.shape != (n,):
        raise ValueError(
            f"local_quality has shape {local_quality.shape}; expected ({n},)."
        )
    if labels.max(initial=-1) >= len(class_names):
        raise ValueError(
            f"labels hold class id {int(labels.max())} but class_names has only "
            f"{len(class_names)} names."
        )
    manual = manual_labels >= 0
    if not np.array_equal(labels[manual], manual_labels[manual]):
        raise ValueError(
            "result changed manual labels; manual labels must be copied unchanged."
        )
    # Samples an expert marked "unknown" keep that decision: never a class label
    # (source "unlabelled", label_name "unknown"), even from a result that was not
    # computed with them excluded (annotate(..., exclude=...)).
    unknown = (
        unknown_mask(samples) if "label_name" in samples else np.zeros(n, dtype=bool)
    ) & ~manual
    labels = np.where(unknown, -1, labels)
    source = np.where(
        manual,
        "manual",
        np.where(labels >= 0, "propagated", "unlabelled"),
    )
    ids = samples["sample_id"].to_numpy()
    has_parent = (result.parent >= 0) & ~unknown
    parent = np.where(has_parent, ids[np.maximum(result.parent, 0)], "")
    names = np.asarray(list(class_names) + [""], dtype=object)
    label_name = names[np.where(labels >= 0, labels, len(class_names))]
    return pd.DataFrame(
        {
            "sample_id": ids,
            "subject_id": samples["subject_id"].to_numpy(),
            "label": labels,
            "label_name": np.where(unknown, "unknown", label_name),
            "source": source,
            "parent_sample_id": parent,
            "iteration": np.where(unknown, -1, result.iteration),
            "local_quality": local_quality,
            "estimated_accuracy": float(setting.get("accuracy", np.nan)),
            "K": int(setting["K"]),
            "tau": float(setting["tau"]),
        }
    )
