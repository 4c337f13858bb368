"""Label propagation on a 2-D projection: LQ-KNN, its baselines and error control.

Every method takes integer labels with ``-1`` for "unlabelled" and returns a
:class:`PropagationResult`: the labels after propagation, the sample each label
came from (``parent``), the iteration that gave it, and the seconds spent.

* :func:`lq_knn` - the paper's Algorithm 1 (METHOD.md section 4), sorted or not;
* :func:`std_knn` - the Std-KNN baseline (METHOD.md section 5);
* :func:`opf_semi` - opfython's semi-supervised Optimum-Path Forest (section 6);
* :func:`label_spreading` - scikit-learn's LabelSpreading, an extra baseline;
* :func:`propagate` - the same, chosen by name;
* :func:`estimate_setting_accuracy` / :func:`choose_setting` - annotation-error
  control: estimate the accuracy and coverage of every (K, tau) from the labelled
  samples alone, and pick the setting with the largest coverage that meets a
  target accuracy.

The KNN methods take an optional precomputed neighbour array (as openTSNE reuses
its affinities): ``neighbors[j]`` = ``V_K(j)``, the K nearest neighbours of ``j``
in the embedding, self excluded, nearest first (``lqknn.neighbors.
knn_excluding_self``). An array computed for a larger K may be passed: its first K
columns are used, which is exact because the neighbour lists of a smaller K are
prefixes of those of a larger one.

References
----------
Vindas, Y., Roux, E., Guépié, B. K., Almar, M. and Delachartre, P. (2022).
Semi-automatic data annotation based on feature-space projection and local
quality metrics: an application to cerebral emboli characterization.
Medical Image Analysis.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import dataclass, field

import numba
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from lqknn._validation import (
    check_array,
    check_float,
    check_int,
    check_labels,
    check_random_state,
)

__all__ = [
    "METHODS",
    "PropagationResult",
    "choose_setting",
    "estimate_setting_accuracy",
    "label_spreading",
    "lq_knn",
    "opf_semi",
    "propagate",
    "std_knn",
]

#: Method names accepted by :func:`propagate`.
METHODS = ("lq_knn", "lq_knn_unsorted", "std_knn", "opf_semi", "label_spreading")

#: Method names accepted by :func:`estimate_setting_accuracy`.
_CONTROL_METHODS = ("lq_knn", "lq_knn_unsorted", "std_knn")


# --------------------------------------------------------------------------- #
# Result type
# --------------------------------------------------------------------------- #
@dataclass
class PropagationResult:
    """Labels after propagation, with where and when each label came from.

    Attributes
    ----------
    labels : ndarray of shape (n_samples,), int64
        Label of every sample after propagation; ``-1`` = still unlabelled.
        Manual (initial) labels are copied unchanged.
    parent : ndarray of shape (n_samples,), int64
        Index of the sample the label was taken from; ``-1`` for manual labels,
        unlabelled samples, and methods without a single source sample
        (OPF-semi, LabelSpreading).
    iteration : ndarray of shape (n_samples,), int64
        ``0`` for manual labels, ``1, 2, ...`` for the iteration (LQ-KNN) or
        pass (Std-KNN, unsorted LQ-KNN) that labelled the sample, ``-1`` for
        samples never labelled.
    seconds : float
        Wall-clock seconds of the whole call, neighbour search included when the
        method computed it.
    neighbor_seconds : float
        Part of ``seconds`` spent searching neighbours (0 when they were given
        or the method uses none).
    method : str
        Name of the method (one of :data:`METHODS`).
    params : dict
        The method's parameters (K, tau, ...).
    """

    labels: np.ndarray
    parent: np.ndarray
    iteration: np.ndarray
    seconds: float
    neighbor_seconds: float = 0.0
    method: str = ""
    params: dict = field(default_factory=dict)

    @property
    def n_iterations(self) -> int:
        """Number of iterations (passes) that labelled at least one sample."""
        return int(max(self.iteration.max(initial=0), 0))

    def propagated_mask(self, initial_labels=None) -> np.ndarray:
        """Boolean mask (n_samples,) of samples unlabelled at the start and labelled now.

        Without ``initial_labels`` the mask is ``iteration >= 1``, which is the
        same thing for every method of this module.
        """
        if initial_labels is None:
            return self.iteration >= 1
        initial = check_labels(
            initial_labels, "initial_labels", n_samples=self.labels.shape[0]
        )
        return (initial == -1) & (self.labels != -1)

    @property
    def n_propagated(self) -> int:
        """Number of samples that received a label by propagation."""
        return int(np.count_nonzero(self.iteration >= 1))

    @property
    def ms_per_sample(self) -> float:
        """Milliseconds per propagated sample (NaN when nothing was propagated)."""
        n = self.n_propagated
        return 1000.0 * self.seconds / n if n else float("nan")

    def score(self, initial_labels, true_labels) -> dict:
        """Score the propagation the way the paper does (METHOD.md section 4).

        Parameters
        ----------
        initial_labels : array-like of shape (n_samples,)
            Labels given to the method (-1 = unlabelled).
        true_labels : array-like of shape (n_samples,)
            Ground truth; ``-1`` where it is unknown (such samples count in the
            labelled fraction but not in the accuracy).

        Returns
        -------
        dict
            ``n_unlabelled`` (initially unlabelled samples), ``n_propagated``,
            ``n_scored`` (propagated with known truth), ``n_correct``,
            ``annotation_accuracy`` = n_correct / n_scored (fraction in [0, 1],
            NaN if nothing was scored), ``labelled_fraction`` = n_propagated /
            n_unlabelled (fraction in [0, 1]; the paper's "labelled %" / 100),
            ``ms_per_sample`` and ``seconds``.
        """
        n = self.labels.shape[0]
        initial = check_labels(initial_labels, "initial_labels", n_samples=n)
        truth = check_labels(true_labels, "true_labels", n_samples=n)
        unl = initial == -1
        prop = unl & (self.labels != -1)
        scored = prop & (truth != -1)
        n_unl = int(unl.sum())
        n_prop = int(prop.sum())
        n_scored = int(scored.sum())
        n_correct = int(np.count_nonzero(self.labels[scored] == truth[scored]))
        return {
            "n_unlabelled": n_unl,
            "n_propagated": n_prop,
            "n_scored": n_scored,
            "n_correct": n_correct,
            "annotation_accuracy": n_correct / n_scored if n_scored else float("nan"),
            "labelled_fraction": n_prop / n_unl if n_unl else float("nan"),
            "ms_per_sample": 1000.0 * self.seconds / n_prop if n_prop else float("nan"),
            "seconds": float(self.seconds),
        }

    def per_class_accuracy(self, initial_labels, true_labels) -> pd.Series:
        """Annotation accuracy among propagated samples of each TRUE class.

        Returns a Series indexed by class id (every class present in
        ``true_labels``), NaN for a class with no propagated sample.
        """
        n = self.labels.shape[0]
        initial = check_labels(initial_labels, "initial_labels", n_samples=n)
        truth = check_labels(true_labels, "true_labels", n_samples=n)
        classes = np.unique(truth[truth != -1])
        scored = (initial == -1) & (self.labels != -1) & (truth != -1)
        acc = {}
        for c in classes:
            m = scored & (truth == c)
            acc[int(c)] = (
                float(np.mean(self.labels[m] == c)) if m.any() else float("nan")
            )
        return pd.Series(acc, name="accuracy", dtype=float)


# --------------------------------------------------------------------------- #
# Validation helpers
# --------------------------------------------------------------------------- #
def _check_embedding_labels(embedding, labels):
    emb = check_array(embedding, "embedding", ndim=2, min_rows=2)
    y = check_labels(labels, "labels", n_samples=emb.shape[0])
    labelled = y[y != -1]
    if labelled.size == 0:
        raise ValueError(
            "labels has no labelled sample (all are -1); at least one labelled "
            "sample of each of at least two classes is needed."
        )
    classes = np.unique(labelled)
    if classes.size < 2:
        raise ValueError(
            f"labels holds a single class ({int(classes[0])}); propagation needs "
            "labelled samples of at least two classes."
        )
    return emb, y


def _check_local_quality(local_quality, n):
    if local_quality is None:
        raise ValueError(
            "local_quality is required for LQ-KNN (see lqknn.quality.local_quality)."
        )
    lq = check_array(local_quality, "local_quality", ndim=1)
    if lq.shape[0] != n:
        raise ValueError(
            f"local_quality has {lq.shape[0]} entries but there are {n} samples; "
            "arrays must be aligned."
        )
    return lq


def _check_K(K, n):
    return check_int(K, "K", low=1, high=n - 1)


def _check_tau(tau):
    return check_float(tau, "tau", low=0.0, high=1.0)


def _check_neighbors(neighbors, n, K):
    nb = np.asarray(neighbors)
    if nb.ndim != 2 or nb.shape[0] != n:
        raise ValueError(
            f"neighbors must have shape ({n}, >= K={K}), got shape {nb.shape}."
        )
    if nb.shape[1] < K:
        raise ValueError(
            f"neighbors has {nb.shape[1]} columns but K={K} neighbours are needed."
        )
    if not np.issubdtype(nb.dtype, np.integer):
        raise ValueError(f"neighbors must hold integer indices, got dtype {nb.dtype}.")
    nb = np.ascontiguousarray(nb[:, :K], dtype=np.int64)
    if nb.size and (nb.min() < 0 or nb.max() >= n):
        raise ValueError(
            f"neighbors holds indices outside [0, {n - 1}] "
            f"(min {nb.min()}, max {nb.max()})."
        )
    if (nb == np.arange(n)[:, None]).any():
        raise ValueError(
            "neighbors must exclude each sample itself (V_K(j), self excluded); "
            "use lqknn.neighbors.knn_excluding_self."
        )
    return nb


def _resolve_neighbors(emb, K, neighbors):
    """Return (neighbours (N, K) int64, seconds spent searching them)."""
    n = emb.shape[0]
    if neighbors is not None:
        return _check_neighbors(neighbors, n, K), 0.0
    from lqknn.neighbors import knn_excluding_self

    t0 = time.perf_counter()
    nb = knn_excluding_self(emb, K)
    return np.ascontiguousarray(nb, dtype=np.int64), time.perf_counter() - t0


def _empty_result(y):
    labels = y.copy()
    parent = np.full(y.shape[0], -1, dtype=np.int64)
    iteration = np.where(y != -1, 0, -1).astype(np.int64)
    return labels, parent, iteration


# --------------------------------------------------------------------------- #
# Cores (no validation; used by the public functions and the error control)
# --------------------------------------------------------------------------- #
def _lq_knn_sorted_core(nb, y, lq, tau):
    """METHOD section 4, one vectorised step per iteration.

    Only samples labelled in the previous iteration can be candidates in this one:
    a sample of ``S`` from an earlier iteration was already a candidate for every
    eligible unlabelled neighbour, which was therefore labelled then. So each
    edge (j, i) is looked at once: O(N K) time in all.
    """
    n, K = nb.shape
    labels, parent, iteration = _empty_result(y)
    eligible = lq > tau
    # Visiting order of S: decreasing lq, equal lq by higher index first.
    order = np.argsort(lq, kind="stable")[::-1]
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n, dtype=np.int64)

    frontier = np.flatnonzero((labels != -1) & eligible)
    it = 0
    while frontier.size:
        it += 1
        frontier = frontier[np.argsort(pos[frontier], kind="stable")]
        cand_i = nb[frontier].ravel()
        cand_j = np.repeat(frontier, K)
        ok = (labels[cand_i] == -1) & eligible[cand_i]
        cand_i, cand_j = cand_i[ok], cand_j[ok]
        if cand_i.size == 0:
            break
        # First occurrence in visiting order = highest lq, ties by first visited.
        new, first = np.unique(cand_i, return_index=True)
        src = cand_j[first]
        labels[new] = labels[src]
        parent[new] = src
        iteration[new] = it
        frontier = new
    return labels, parent, iteration


@numba.njit(cache=True)
def _sequential_passes(
    nb, labels, parent, iteration, order, eligible
):  # pragma: no cover - numba
    """Std-KNN passes (METHOD section 5), restricted to ``eligible`` samples."""
    n_pass = 0
    while True:
        n_pass += 1
        changed = 0
        for t in range(order.shape[0]):
            v = order[t]
            if labels[v] == -1 or not eligible[v]:
                continue
            lab = labels[v]
            for k in range(nb.shape[1]):
                i = nb[v, k]
                if labels[i] == -1 and eligible[i]:
                    labels[i] = lab
                    parent[i] = v
                    iteration[i] = n_pass
                    changed += 1
        if changed == 0:
            break
    return n_pass - 1


def _sequential_core(nb, y, eligible):
    labels, parent, iteration = _empty_result(y)
    order = np.concatenate([np.flatnonzero(y != -1), np.flatnonzero(y == -1)])
    _sequential_passes(
        nb,
        labels,
        parent,
        iteration,
        order.astype(np.int64),
        np.ascontiguousarray(eligible, dtype=np.bool_),
    )
    return labels, parent, iteration


def _lq_knn_core(nb, y, lq, tau, sort):
    if sort:
        return _lq_knn_sorted_core(nb, y, lq, tau)
    return _sequential_core(nb, y, lq > tau)


def _std_knn_core(nb, y):
    return _sequential_core(nb, y, np.ones(y.shape[0], dtype=np.bool_))


# --------------------------------------------------------------------------- #
# Public methods
# --------------------------------------------------------------------------- #
def lq_knn(
    embedding,
    labels,
    local_quality,
    K: int = 10,
    tau: float = 0.1,
    sort: bool = True,
    *,
    neighbors=None,
) -> PropagationResult:
    """Propagate labels with LQ-KNN (the paper's Algorithm 1, METHOD.md section 4).

    Repeat until an iteration labels nothing: ``S`` = samples labelled at the start
    of the iteration with ``lq > tau``; every unlabelled ``i`` with ``lq(i) > tau``
    that lies in ``V_K(j)`` of some ``j`` in ``S`` takes the label of the ``j`` with
    the highest lq, equal lq settled by the visiting order
    ``numpy.argsort(lq, kind="stable")[::-1]`` (higher index first); all
    assignments of an iteration happen together. Samples with ``lq <= tau`` are
    never labelled and never propagate (a manual label with ``lq <= tau`` is kept
    but does not spread).

    With ``sort=False`` (the paper's "without sorting" ablation) the propagation
    makes Std-KNN passes instead (:func:`std_knn`: initially labelled samples in
    index order, then the others in index order; labels given immediately, first
    visitor wins), restricted to samples with ``lq > tau``; ``iteration`` is then
    the pass number.

    Parameters
    ----------
    embedding : array-like of shape (n_samples, n_dims)
        The projection ``E`` (usually 2-D t-SNE).
    labels : array-like of shape (n_samples,)
        Integer class ids, ``-1`` = unlabelled; at least two classes labelled.
    local_quality : array-like of shape (n_samples,)
        Normalised local quality ``lq`` (``lqknn.quality.local_quality``).
    K : int, default=10
        Neighbourhood size, ``1 <= K <= n_samples - 1``.
    tau : float, default=0.1
        Quality threshold in [0, 1]; ``tau = 1`` labels nothing since lq <= 1.
    sort : bool, default=True
        False for the "without sorting" ablation.
    neighbors : array-like of shape (n_samples, >= K), optional
        Precomputed ``V_K`` lists (``lqknn.neighbors.knn_excluding_self``);
        only the first K columns are used. Computed when not given.

    Returns
    -------
    PropagationResult

    Notes
    -----
    Time O(N K) for the propagation itself (each neighbour edge is examined
    once with ``sort=True``, once per pass with ``sort=False``), plus the
    neighbour search; memory O(N K).

    References
    ----------
    Vindas et al. (2022), Algorithm 1; METHOD.md section 4.
    """
    t0 = time.perf_counter()
    emb, y = _check_embedding_labels(embedding, labels)
    n = emb.shape[0]
    lq = _check_local_quality(local_quality, n)
    K = _check_K(K, n)
    tau = _check_tau(tau)
    nb, nb_s = _resolve_neighbors(emb, K, neighbors)
    lab, par, itr = _lq_knn_core(nb, y, lq, tau, bool(sort))
    return PropagationResult(
        lab,
        par,
        itr,
        time.perf_counter() - t0,
        nb_s,
        "lq_knn" if sort else "lq_knn_unsorted",
        {"K": K, "tau": tau, "sort": bool(sort)},
    )


def std_knn(embedding, labels, K: int = 10, *, neighbors=None) -> PropagationResult:
    """Propagate labels with Std-KNN (Vindas et al. 2021; METHOD.md section 5).

    Passes are repeated until one labels nothing. A pass visits the samples
    labelled at the start of the whole propagation first, in index order, then all
    other samples in index order; a visited sample that is labelled at that moment
    (including one labelled earlier in the same pass) gives its label at once to
    every still-unlabelled neighbour in ``V_K`` (first visitor wins). The loop is
    sequential by definition; it runs compiled with numba.

    Parameters
    ----------
    embedding : array-like of shape (n_samples, n_dims)
    labels : array-like of shape (n_samples,)
        Integer class ids, ``-1`` = unlabelled; at least two classes labelled.
    K : int, default=10
        Neighbourhood size, ``1 <= K <= n_samples - 1``.
    neighbors : array-like of shape (n_samples, >= K), optional
        Precomputed ``V_K`` lists; the first K columns are used.

    Returns
    -------
    PropagationResult
        ``iteration`` holds the pass number.

    Notes
    -----
    Time O(P N K) for P passes (the last one labels nothing), plus the neighbour
    search; memory O(N K).

    References
    ----------
    Vindas et al. (2021), "Semi-supervised annotation of transcranial Doppler
    ultrasound micro-embolic data"; METHOD.md section 5.
    """
    t0 = time.perf_counter()
    emb, y = _check_embedding_labels(embedding, labels)
    K = _check_K(K, emb.shape[0])
    nb, nb_s = _resolve_neighbors(emb, K, neighbors)
    lab, par, itr = _std_knn_core(nb, y)
    return PropagationResult(
        lab, par, itr, time.perf_counter() - t0, nb_s, "std_knn", {"K": K}
    )


@contextlib.contextmanager
def _quiet_opfython():
    """Silence opfython's loggers (they print at DEBUG level to stdout and a file)."""
    import opfython.models  # noqa: F401  (creates the module loggers first)

    loggers = [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name == "opfython" or name.startswith("opfython.")
    ]
    saved = [(lg, lg.disabled) for lg in loggers]
    try:
        for lg in loggers:
            lg.disabled = True
        yield
    finally:
        for lg, disabled in saved:
            lg.disabled = disabled


def opf_semi(embedding, labels) -> PropagationResult:
    """Propagate labels with opfython's semi-supervised OPF (METHOD.md section 6).

    ``SemiSupervisedOPF(distance="log_squared_euclidean")`` is fitted on the
    labelled points with their labels and on the unlabelled points, then
    ``predict`` labels the unlabelled points: every one of them gets a label.
    opfython needs non-negative labels, so class ids are shifted by one inside and
    back on return; its logging is silenced during the call.

    Parameters
    ----------
    embedding : array-like of shape (n_samples, n_dims)
    labels : array-like of shape (n_samples,)
        Integer class ids, ``-1`` = unlabelled.

    Returns
    -------
    PropagationResult
        ``parent`` is -1 (the forest does not name one source sample);
        ``iteration`` is 1 for every predicted sample.

    Notes
    -----
    Pure-Python O(N^2) distance evaluations (the optimum-path forest over the
    complete graph): minutes at N = 10,000. Memory O(N).

    References
    ----------
    Amorim, Falcão and Carvalho (2014), "Semi-supervised pattern classification
    using optimum-path forest", SIBGRAPI.
    """
    t0 = time.perf_counter()
    emb, y = _check_embedding_labels(embedding, labels)
    with _quiet_opfython():
        from opfython.models import SemiSupervisedOPF

        lab_idx = np.flatnonzero(y != -1)
        unl_idx = np.flatnonzero(y == -1)
        out, parent, iteration = _empty_result(y)
        if unl_idx.size:
            model = SemiSupervisedOPF(distance="log_squared_euclidean")
            model.fit(emb[lab_idx], y[lab_idx] + 1, emb[unl_idx])
            pred = np.asarray(model.predict(emb[unl_idx]), dtype=np.int64) - 1
            out[unl_idx] = pred
            iteration[unl_idx] = np.where(pred != -1, 1, -1)
    return PropagationResult(
        out, parent, iteration, time.perf_counter() - t0, 0.0, "opf_semi", {}
    )


def label_spreading(
    embedding,
    labels,
    *,
    kernel: str = "knn",
    n_neighbors: int = 10,
    alpha: float = 0.2,
    max_iter: int = 30,
    gamma: float = 20.0,
) -> PropagationResult:
    """Propagate labels with scikit-learn's ``LabelSpreading`` (extra baseline).

    Parameters
    ----------
    embedding : array-like of shape (n_samples, n_dims)
    labels : array-like of shape (n_samples,)
        Integer class ids, ``-1`` = unlabelled.
    kernel : {"knn", "rbf"}, default="knn"
        "rbf" builds a dense N x N matrix: small N only.
    n_neighbors : int, default=10
        Neighbours of the "knn" kernel, ``1 <= n_neighbors <= n_samples - 1``.
    alpha : float, default=0.2
        Clamping factor in (0, 1).
    max_iter : int, default=30
    gamma : float, default=20.0
        Width of the "rbf" kernel.

    Returns
    -------
    PropagationResult
        Manual labels kept; unlabelled samples take the transduced label, or stay
        -1 where the label distribution is empty (a component without labels).
        ``parent`` is -1, ``iteration`` is 1 for predicted samples.

    Notes
    -----
    "knn" kernel: O(N K) memory, O(max_iter N K C) time plus the neighbour search.

    References
    ----------
    Zhou, Bousquet, Lal, Weston and Schölkopf (2004), "Learning with local and
    global consistency", NIPS.
    """
    from sklearn.semi_supervised import LabelSpreading

    t0 = time.perf_counter()
    emb, y = _check_embedding_labels(embedding, labels)
    n = emb.shape[0]
    if kernel not in ("knn", "rbf"):
        raise ValueError(f"kernel must be 'knn' or 'rbf', got {kernel!r}.")
    n_neighbors = check_int(n_neighbors, "n_neighbors", low=1, high=n - 1)
    alpha = check_float(
        alpha, "alpha", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
    )
    max_iter = check_int(max_iter, "max_iter", low=1)
    gamma = check_float(gamma, "gamma", low=0.0, low_inclusive=False)
    model = LabelSpreading(
        kernel=kernel,
        n_neighbors=n_neighbors,
        alpha=alpha,
        max_iter=max_iter,
        gamma=gamma,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        model.fit(emb, y)
    dist = model.label_distributions_
    valid = np.isfinite(dist).all(axis=1) & (dist.sum(axis=1) > 0)
    out, parent, iteration = _empty_result(y)
    unl = (y == -1) & valid
    out[unl] = np.asarray(model.transduction_, dtype=np.int64)[unl]
    iteration[unl] = 1
    return PropagationResult(
        out,
        parent,
        iteration,
        time.perf_counter() - t0,
        0.0,
        "label_spreading",
        {"kernel": kernel, "n_neighbors": n_neighbors, "alpha": alpha},
    )


def propagate(
    method: str, embedding, labels, local_quality=None, **params
) -> PropagationResult:
    """Run the propagation method named ``method`` (one of :data:`METHODS`).

    ``"lq_knn"`` and ``"lq_knn_unsorted"`` need ``local_quality`` (and take ``K``,
    ``tau``, ``neighbors``); ``"std_knn"`` takes ``K`` and ``neighbors``;
    ``"opf_semi"`` takes nothing; ``"label_spreading"`` takes its keyword
    arguments. ``local_quality`` is ignored by the methods that do not use it.
    """
    if method == "lq_knn":
        return lq_knn(embedding, labels, local_quality, **params)
    if method == "lq_knn_unsorted":
        if "sort" in params:
            raise ValueError(
                "method 'lq_knn_unsorted' fixes sort=False; do not pass sort."
            )
        return lq_knn(embedding, labels, local_quality, sort=False, **params)
    if method == "std_knn":
        return std_knn(embedding, labels, **params)
    if method == "opf_semi":
        return opf_semi(embedding, labels, **params)
    if method == "label_spreading":
        return label_spreading(embedding, labels, **params)
    raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}.")


# --------------------------------------------------------------------------- #
# Annotation-error control
# --------------------------------------------------------------------------- #
def _hidden_split(y, hide_fraction, rng):
    """Stratified hide: round(hide_fraction * n_c) of each class, keeping >= 1."""
    hidden = []
    for c in np.unique(y[y != -1]):
        idx = np.flatnonzero(y == c)
        n_hide = min(int(round(hide_fraction * idx.size)), idx.size - 1)
        if n_hide > 0:
            hidden.append(rng.choice(idx, size=n_hide, replace=False))
    return np.sort(np.concatenate(hidden)) if hidden else np.empty(0, np.int64)


def _run_split(nb_max, y, lq, settings, hidden):
    y_s = y.copy()
    y_s[hidden] = -1
    truth = y[hidden]
    rows = []
    for method, K, tau in settings:
        nb = nb_max[:, :K]
        if method == "std_knn":
            lab = _std_knn_core(nb, y_s)[0]
        else:
            lab = _lq_knn_core(nb, y_s, lq, tau, method == "lq_knn")[0]
        got = lab[hidden]
        prop = got != -1
        n_prop = int(prop.sum())
        rows.append(
            (
                np.mean(got[prop] == truth[prop]) if n_prop else np.nan,
                n_prop / hidden.size,
            )
        )
    return rows


def estimate_setting_accuracy(
    embedding,
    labels,
    local_quality,
    Ks,
    taus,
    *,
    methods=("lq_knn", "std_knn"),
    hide_fraction: float = 0.2,
    n_splits: int = 10,
    seed=0,
    n_jobs: int | None = None,
    progress: bool = False,
    neighbors=None,
) -> pd.DataFrame:
    """Estimate annotation accuracy and coverage of every (K, tau) from the labels alone.

    For each of ``n_splits`` splits, a stratified ``hide_fraction`` of the
    labelled samples is hidden (per class ``round(hide_fraction * n_c)`` samples,
    at most ``n_c - 1`` so every class keeps a labelled sample; all other points
    stay in the graph), every setting propagates from the remaining labels, and
    is scored on the hidden samples: accuracy = correct / propagated hidden
    samples, coverage = propagated hidden / hidden.

    Parameters
    ----------
    embedding : array-like of shape (n_samples, n_dims)
    labels : array-like of shape (n_samples,)
        Integer class ids, ``-1`` = unlabelled.
    local_quality : array-like of shape (n_samples,) or None
        Normalised lq; may be None when ``methods`` is only ``("std_knn",)``.
    Ks : sequence of int
        Neighbourhood sizes, each in ``[1, n_samples - 1]`` (duplicates dropped).
    taus : sequence of float
        Thresholds in [0, 1], used by the LQ-KNN methods (duplicates dropped).
    methods : sequence of str, default=("lq_knn", "std_knn")
        Any of "lq_knn", "lq_knn_unsorted", "std_knn".
    hide_fraction : float, default=0.2
        Fraction of each class hidden per split, in (0, 1).
    n_splits : int, default=10
    seed : int, Generator or None, default=0
        Same seed -> same splits -> same table.
    n_jobs : int or None
        joblib workers over the splits (None = 1).
    progress : bool, default=False
        tqdm bar over the splits.
    neighbors : array-like of shape (n_samples, >= max(Ks)), optional
        Precomputed ``V_K`` lists; otherwise computed once at ``max(Ks)`` and
        sliced for the smaller K.

    Returns
    -------
    pandas.DataFrame
        One row per (method, K, tau) with columns ``method``, ``K``, ``tau``
        (NaN for std_knn), ``accuracy``, ``accuracy_std``, ``coverage``,
        ``coverage_std`` (mean and standard deviation over splits; accuracy
        averages the splits where something was propagated), ``n_splits``,
        ``n_hidden`` (hidden samples per split).

    Notes
    -----
    Time O(n_splits * n_settings * N K) plus one neighbour search; memory
    O(N max(Ks)).
    """
    emb, y = _check_embedding_labels(embedding, labels)
    n = emb.shape[0]
    methods = tuple(methods)
    for m in methods:
        if m not in _CONTROL_METHODS:
            raise ValueError(
                f"methods must be among {list(_CONTROL_METHODS)}, got {m!r}."
            )
    if not methods:
        raise ValueError("methods must name at least one method.")
    uses_lq = any(m != "std_knn" for m in methods)
    lq = _check_local_quality(local_quality, n) if uses_lq else np.zeros(n)
    Ks = list(dict.fromkeys(_check_K(k, n) for k in np.atleast_1d(Ks).tolist()))
    if not Ks:
        raise ValueError("Ks must hold at least one K.")
    taus = (
        list(dict.fromkeys(_check_tau(t) for t in np.atleast_1d(taus).tolist()))
        if uses_lq
        else []
    )
    if uses_lq and not taus:
        raise ValueError("taus must hold at least one tau for the LQ-KNN methods.")
    hide_fraction = check_float(
        hide_fraction,
        "hide_fraction",
        low=0.0,
        high=1.0,
        low_inclusive=False,
        high_inclusive=False,
    )
    n_splits = check_int(n_splits, "n_splits", low=1)
    rng = check_random_state(seed)

    nb_max, _ = _resolve_neighbors(emb, max(Ks), neighbors)
    settings = []
    for m in methods:
        for K in Ks:
            if m == "std_knn":
                settings.append((m, K, np.nan))
            else:
                settings.extend((m, K, t) for t in taus)

    splits = [_hidden_split(y, hide_fraction, rng) for _ in range(n_splits)]
    if splits[0].size == 0:
        raise ValueError(
            f"hide_fraction={hide_fraction} hides no labelled sample (classes have "
            f"{np.bincount(y[y != -1]).max()} labelled samples at most); use a larger "
            "hide_fraction or more labels."
        )
    jobs = (
        delayed(_run_split)(nb_max, y, lq, settings, h)
        for h in tqdm(splits, disable=not progress, desc="error control")
    )
    results = Parallel(n_jobs=n_jobs)(jobs)
    arr = np.asarray(results, dtype=float)  # (n_splits, n_settings, 2)
    acc, cov = arr[..., 0], arr[..., 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN accuracy columns
        acc_mean = np.nanmean(acc, axis=0)
        acc_std = np.nanstd(acc, axis=0)
    return pd.DataFrame(
        {
            "method": [s[0] for s in settings],
            "K": [s[1] for s in settings],
            "tau": [s[2] for s in settings],
            "accuracy": acc_mean,
            "accuracy_std": acc_std,
            "coverage": cov.mean(axis=0),
            "coverage_std": cov.std(axis=0),
            "n_splits": n_splits,
            "n_hidden": splits[0].size,
        }
    )


def choose_setting(estimates: pd.DataFrame, target_accuracy: float) -> dict | None:
    """Pick the setting with the largest estimated coverage meeting a target accuracy.

    Parameters
    ----------
    estimates : pandas.DataFrame
        Output of :func:`estimate_setting_accuracy` (columns ``accuracy`` and
        ``coverage`` at least).
    target_accuracy : float
        Required estimated annotation accuracy, in [0, 1].

    Returns
    -------
    dict or None
        The chosen row as a dict (ties in coverage: higher accuracy, then the
        earlier row) with a ``reason`` entry; None when no setting reaches the
        target, after a ``UserWarning`` that gives the best accuracy reached.
    """
    target = check_float(target_accuracy, "target_accuracy", low=0.0, high=1.0)
    if not isinstance(estimates, pd.DataFrame):
        raise TypeError(
            f"estimates must be a pandas DataFrame, got {type(estimates).__name__}."
        )
    missing = {"accuracy", "coverage"} - set(estimates.columns)
    if missing:
        raise ValueError(f"estimates lacks column(s) {sorted(missing)}.")
    if estimates.empty:
        raise ValueError("estimates is empty.")
    acc = estimates["accuracy"].to_numpy(dtype=float)
    ok = np.isfinite(acc) & (acc >= target)
    if not ok.any():
        finite = np.isfinite(acc)
        best = (
            f"the best estimate is {np.nanmax(acc):.4f} (row {int(np.nanargmax(acc))})"
            if finite.any()
            else "no setting propagated any hidden sample"
        )
        warnings.warn(
            f"No setting reaches target_accuracy={target}: {best}.",
            UserWarning,
            stacklevel=2,
        )
        return None
    cand = estimates.loc[ok]
    # Stable sort: coverage desc, then accuracy desc, then original order.
    ranked = cand.iloc[
        np.lexsort(
            (
                np.arange(len(cand)),
                -cand["accuracy"].to_numpy(float),
                -cand["coverage"].to_numpy(float),
            )
        )
    ]
    row = ranked.iloc[0].to_dict()
    row = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
    row["reason"] = (
        f"largest estimated coverage ({row['coverage']:.4f}) among the "
        f"{int(ok.sum())} setting(s) with estimated accuracy >= {target}"
    )
    return row
