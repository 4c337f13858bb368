"""t-SNE grid search and silhouette-based projection selection.

The expert annotates in a 2-D t-SNE projection of the learned features. Because
t-SNE has three influential hyper-parameters (perplexity, early exaggeration and
learning rate), the paper embeds the data once per configuration of a grid and
keeps the projection whose LABELLED samples have the highest silhouette score
(METHOD.md section 2); the lowest-scoring one is kept for the best-vs-worst
experiment.

Embeddings do not depend on labels, so :func:`tsne_grid` runs once and
:func:`silhouette_scores` / :func:`select_projection` are redone cheaply for every
repetition's labelled subset.

Following openTSNE's own design, the expensive, reusable state is computed once
and shared: the perplexity-based affinities (nearest neighbours plus the
perplexity calibration) once per perplexity, the initial positions once per grid
(``"pca"``, ``"random"``) or once per perplexity (``"spectral"``). Only the
gradient descent runs per configuration, in parallel through joblib.

References: Maaten & Hinton (2008), "Visualizing data using t-SNE"; Policar et
al. (2024), "openTSNE: a modular Python library for t-SNE dimensionality
reduction and embedding"; Rousseeuw (1987), "Silhouettes"; Vindas et al. (2022),
section 3.2.
"""

from __future__ import annotations

import importlib.util
import itertools
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from lqknn._validation import check_array, check_int, check_labels

if TYPE_CHECKING:  # matplotlib is imported lazily: joblib workers never need it
    from matplotlib.figure import Figure

__all__ = [
    "GridResult",
    "TSNEGridConfig",
    "grid_configurations",
    "plot_grid_scores",
    "plot_local_quality",
    "plot_projection",
    "select_projection",
    "silhouette_scores",
    "tsne_grid",
]

#: Momentum of both optimisation phases (openTSNE 1.0 default for ``TSNE``).
MOMENTUM = 0.8

_NEIGHBOR_METHODS = {
    "auto": None,
    "exact": None,
    "approx": None,
    "annoy": None,
    "pynndescent": "pynndescent",
    "hnsw": "hnswlib",
}
_GRADIENT_METHODS = ("auto", "bh", "BH", "barnes-hut", "fft", "FFT", "interpolation")
_INITIALIZATIONS = ("pca", "spectral", "random")
_TABLE_COLUMNS = [
    "perplexity",
    "early_exaggeration",
    "learning_rate",
    "kl_divergence",
    "seconds",
]


# --------------------------------------------------------------------------------------
# Validation helpers (module-private)
# --------------------------------------------------------------------------------------


def _as_value_list(values, name: str) -> list:
    """Return ``values`` as a non-empty list (a scalar becomes a one-element list)."""
    if isinstance(values, str | numbers.Real) and not isinstance(values, bool):
        values = [values]
    try:
        out = list(values)
    except TypeError:
        raise TypeError(
            f"{name} must be a sequence of numbers, got {values!r}."
        ) from None
    if not out:
        raise ValueError(f"{name} must hold at least one value, got an empty list.")
    return out


def _check_real_grid(values, name: str, *, low: float, low_inclusive: bool) -> list:
    """Check a grid of finite reals, each above ``low``; no duplicates."""
    out = []
    for v in _as_value_list(values, name):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name} must hold numbers, got {v!r}.")
        v = float(v)
        ok = np.isfinite(v) and (v >= low if low_inclusive else v > low)
        if not ok:
            bracket = "[" if low_inclusive else "("
            raise ValueError(
                f"{name} values must be in {bracket}{low:g}, inf), got {v}."
            )
        out.append(v)
    _check_no_duplicates(out, name)
    return out


def _check_learning_rates(values) -> list:
    """Learning rates: finite reals > 0, or the string ``"auto"``; no duplicates."""
    out = []
    for v in _as_value_list(values, "learning_rates"):
        if isinstance(v, str):
            if v != "auto":
                raise ValueError(
                    f"learning_rates values must be > 0 or 'auto', got {v!r}."
                )
            out.append("auto")
            continue
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"learning_rates must hold numbers or 'auto', got {v!r}.")
        v = float(v)
        if not (np.isfinite(v) and v > 0):
            raise ValueError(
                f"learning_rates values must be in (0, inf) or 'auto', got {v}."
            )
        out.append(v)
    _check_no_duplicates(out, "learning_rates")
    return out


def _check_no_duplicates(values: list, name: str) -> None:
    seen = set()
    for v in values:
        if v in seen:
            raise ValueError(
                f"{name} contains {v!r} twice; every grid value must be distinct."
            )
        seen.add(v)


def _check_choice(value, name: str, allowed) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}.")
    return value


def _check_perplexities(perplexities: list, n_samples: int) -> None:
    """openTSNE's constraint: ``3 * perplexity`` neighbours must exist (< N)."""
    for p in perplexities:
        if not 1.0 <= p < n_samples / 3.0:
            raise ValueError(
                f"perplexities values must be in [1, N/3) = [1, {n_samples / 3.0:.6g}) "
                f"for N = {n_samples} samples, got {p:g}: openTSNE builds a graph of "
                f"int(3 * perplexity) nearest neighbours, which needs "
                f"3 * perplexity < N (otherwise it silently lowers the perplexity)."
            )


def _check_seed(seed) -> int:
    return check_int(seed, "seed", low=0, high=2**31 - 1)


def _check_n_jobs(n_jobs) -> int:
    n_jobs = check_int(n_jobs, "n_jobs")
    if n_jobs == 0 or n_jobs < -1:
        raise ValueError(
            f"n_jobs must be a positive number of workers or -1 (all cores), "
            f"got {n_jobs}."
        )
    return n_jobs


def _check_features(features) -> np.ndarray:
    x = check_array(features, "features", ndim=2, dtype=np.float64, min_rows=4)
    if x.shape[1] < 1:
        raise ValueError(f"features must have at least one column, got {x.shape}.")
    if np.all(np.ptp(x, axis=0) == 0):
        raise ValueError(
            "features are identical for every sample (zero variance): there is "
            "nothing to embed."
        )
    return x


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


def grid_configurations(
    perplexities, early_exaggerations, learning_rates
) -> pd.DataFrame:
    """Return the grid's configurations, one row each, perplexity varying slowest.

    Parameters
    ----------
    perplexities : sequence of float
        Perplexity values (>= 1; the upper bound N/3 is checked by
        :func:`tsne_grid`, which knows N).
    early_exaggerations : sequence of float
        Early-exaggeration factors (>= 1).
    learning_rates : sequence of float or "auto"
        Learning rates (> 0), or ``"auto"`` (openTSNE: N / exaggeration in each
        phase, Belkina et al. 2019).

    Returns
    -------
    table : DataFrame of shape (n_configs, 3)
        Columns ``perplexity``, ``early_exaggeration``, ``learning_rate`` (float;
        NaN stands for ``"auto"``), index ``config`` = 0 .. n_configs - 1 in
        ``itertools.product(perplexities, early_exaggerations, learning_rates)``
        order.
    """
    ps = _check_real_grid(perplexities, "perplexities", low=1.0, low_inclusive=True)
    es = _check_real_grid(
        early_exaggerations, "early_exaggerations", low=1.0, low_inclusive=True
    )
    lrs = _check_learning_rates(learning_rates)
    rows = [
        (p, e, np.nan if lr == "auto" else lr)
        for p, e, lr in itertools.product(ps, es, lrs)
    ]
    table = pd.DataFrame(
        rows, columns=["perplexity", "early_exaggeration", "learning_rate"]
    )
    table.index.name = "config"
    return table


@dataclass(frozen=True)
class TSNEGridConfig:
    """Parameters of a t-SNE grid search, checked on construction.

    ``TSNEGridConfig(**params).run(features, n_jobs=2)`` is the same as
    ``tsne_grid(features, **params, n_jobs=2)``; the dataclass exists so that a
    Kedro ``params:`` dictionary can be validated before any data is loaded.

    Iterations: ``n_iter`` is the TOTAL number of gradient-descent iterations;
    the first ``exaggeration_iter`` use the configuration's early exaggeration,
    the remaining ``n_iter - exaggeration_iter`` use none (exaggeration 1).
    openTSNE's default run is ``n_iter=750, exaggeration_iter=250`` (250 + 500);
    the paper's published code runs 3,000 iterations per configuration.
    """

    perplexities: Sequence[float]
    early_exaggerations: Sequence[float]
    learning_rates: Sequence[float | str]
    n_iter: int = 750
    exaggeration_iter: int = 250
    seed: int = 0
    neighbors: str = "auto"
    negative_gradient_method: str = "auto"
    initialization: str = "pca"
    metric: str = "euclidean"
    theta: float = 0.5
    _table: pd.DataFrame = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        table = grid_configurations(
            self.perplexities, self.early_exaggerations, self.learning_rates
        )
        object.__setattr__(self, "_table", table)
        _check_iterations(self.n_iter, self.exaggeration_iter)
        _check_seed(self.seed)
        _check_options(
            self.neighbors,
            self.negative_gradient_method,
            self.initialization,
            self.theta,
            self.metric,
        )

    @property
    def n_configs(self) -> int:
        """Number of configurations of the grid."""
        return len(self._table)

    def configurations(self) -> pd.DataFrame:
        """The grid's configurations (see :func:`grid_configurations`)."""
        return self._table.copy()

    def as_kwargs(self) -> dict:
        """The parameters as keyword arguments of :func:`tsne_grid`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def run(self, features, *, n_jobs: int = 1, progress: bool = True, **kwargs):
        """Run :func:`tsne_grid` on ``features`` with these parameters."""
        return tsne_grid(
            features, **self.as_kwargs(), n_jobs=n_jobs, progress=progress, **kwargs
        )


def _check_iterations(n_iter, exaggeration_iter) -> tuple[int, int]:
    n_iter = check_int(n_iter, "n_iter", low=1)
    exaggeration_iter = check_int(exaggeration_iter, "exaggeration_iter", low=0)
    if exaggeration_iter >= n_iter:
        raise ValueError(
            f"exaggeration_iter must be < n_iter (n_iter counts ALL iterations, the "
            f"exaggerated ones included), got exaggeration_iter={exaggeration_iter} "
            f"and n_iter={n_iter}."
        )
    return n_iter, exaggeration_iter


def _check_options(
    neighbors, negative_gradient_method, initialization, theta, metric="euclidean"
) -> None:
    _check_choice(neighbors, "neighbors", _NEIGHBOR_METHODS)
    package = _NEIGHBOR_METHODS[neighbors]
    if package is not None and importlib.util.find_spec(package) is None:
        raise ValueError(
            f"neighbors={neighbors!r} needs the package {package!r}, which is not "
            "installed; use 'auto', 'exact' or 'annoy'."
        )
    _check_metric(metric, neighbors)
    _check_choice(
        negative_gradient_method, "negative_gradient_method", _GRADIENT_METHODS
    )
    _check_choice(initialization, "initialization", _INITIALIZATIONS)
    if isinstance(theta, bool) or not isinstance(theta, numbers.Real):
        raise TypeError(f"theta must be a number, got {theta!r}.")
    if not 0.0 <= float(theta) <= 1.0:
        raise ValueError(f"theta must be in [0, 1], got {theta}.")


def _check_metric(metric, neighbors: str) -> None:
    """The metric must be one that the chosen openTSNE neighbour index supports."""
    from openTSNE import nearest_neighbors as nn

    index = {
        "exact": nn.Sklearn,
        "pynndescent": nn.NNDescent,
        "hnsw": nn.HNSW,
    }.get(neighbors, nn.Annoy)  # "auto" / "approx" use Annoy from 1,000 samples
    allowed = index.VALID_METRICS
    if neighbors == "auto":
        allowed = [m for m in allowed if m in nn.Sklearn.VALID_METRICS]
    if not isinstance(metric, str) or metric not in allowed:
        raise ValueError(
            f"metric must be one of {sorted(allowed)} with neighbors={neighbors!r}, "
            f"got {metric!r}."
        )


# --------------------------------------------------------------------------------------
# Grid search
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridResult:
    """Output of :func:`tsne_grid`.

    Attributes
    ----------
    table : DataFrame of shape (n_configs, 5)
        Index ``config``; columns ``perplexity``, ``early_exaggeration``,
        ``learning_rate`` (NaN = ``"auto"``), ``kl_divergence`` (openTSNE's KL
        divergence of the final, un-exaggerated embedding) and ``seconds`` (wall
        time of the configuration's gradient descent; in from-scratch mode it also
        includes that configuration's affinities and initialisation).
    embeddings : ndarray of shape (n_configs, N, 2), float32
        ``embeddings[c]`` is the embedding of configuration ``c``.
    affinity_seconds : dict of float -> float
        Wall time of the shared affinity (and per-perplexity initialisation)
        computation, per perplexity; empty in from-scratch mode.
    total_seconds : float
        Wall time of the whole call.
    """

    table: pd.DataFrame
    embeddings: np.ndarray
    affinity_seconds: dict
    total_seconds: float


def _affinities(features, perplexity, neighbors, metric, seed):
    """openTSNE perplexity-based affinities (single-threaded, hence reproducible)."""
    from openTSNE.affinity import PerplexityBasedNN

    return PerplexityBasedNN(
        features,
        perplexity=perplexity,
        method=neighbors,
        metric=metric,
        n_jobs=1,
        random_state=seed,
    )


def _initial_positions(features, P, initialization, seed) -> np.ndarray:
    """openTSNE's initial 2-D positions (std 1e-4 along the first axis)."""
    from openTSNE import initialization as init

    if initialization == "pca":
        return init.pca(features, 2, random_state=seed)
    if initialization == "random":
        return init.random(features.shape[0], 2, random_state=seed)
    return init.spectral(P, 2, random_state=seed)


def _perplexity_stage(features, perplexity, neighbors, metric, initialization, seed):
    """Affinity matrix P (CSR) and, for spectral initialisation, positions."""
    t0 = time.perf_counter()
    P = _affinities(features, perplexity, neighbors, metric, seed).P.tocsr()
    init = None
    if initialization == "spectral":
        init = _initial_positions(features, P, initialization, seed)
    return P, init, time.perf_counter() - t0


def _optimize(P, init, early_exaggeration, learning_rate, opts):
    """Run the two openTSNE phases from ``init``; return (embedding, KL)."""
    from openTSNE.affinity import Affinities
    from openTSNE.tsne import TSNEEmbedding

    affinities = Affinities()
    # openTSNE multiplies P in place by the exaggeration and divides it back after
    # each phase: give every configuration its own copy so that shared (or
    # read-only memory-mapped) affinities are never modified and results do not
    # depend on the order in which configurations run.
    affinities.P = P.copy()
    embedding = TSNEEmbedding(
        np.array(init, dtype=np.float64, copy=True),
        affinities,
        learning_rate=learning_rate,
        momentum=MOMENTUM,
        negative_gradient_method=opts["negative_gradient_method"],
        theta=opts["theta"],
        n_jobs=1,
        random_state=opts["seed"],
    )
    if opts["exaggeration_iter"] > 0:
        embedding.optimize(
            n_iter=opts["exaggeration_iter"],
            exaggeration=early_exaggeration,
            momentum=MOMENTUM,
            inplace=True,
            propagate_exception=True,
        )
    embedding.optimize(
        n_iter=opts["n_iter"] - opts["exaggeration_iter"],
        exaggeration=None,
        momentum=MOMENTUM,
        inplace=True,
        propagate_exception=True,
    )
    return np.asarray(embedding, dtype=np.float64), float(embedding.kl_divergence)


def _run_config(P, init, early_exaggeration, learning_rate, opts):
    t0 = time.perf_counter()
    emb, kl = _optimize(P, init, early_exaggeration, learning_rate, opts)
    return emb, kl, time.perf_counter() - t0


def _run_config_from_scratch(
    features, perplexity, early_exaggeration, learning_rate, opts
):
    t0 = time.perf_counter()
    P, init, _ = _perplexity_stage(
        features,
        perplexity,
        opts["neighbors"],
        opts["metric"],
        opts["initialization"],
        opts["seed"],
    )
    if init is None:
        init = _initial_positions(features, P, opts["initialization"], opts["seed"])
    emb, kl = _optimize(P, init, early_exaggeration, learning_rate, opts)
    return emb, kl, time.perf_counter() - t0


def tsne_grid(
    features,
    perplexities,
    early_exaggerations,
    learning_rates,
    *,
    n_iter: int = 750,
    exaggeration_iter: int = 250,
    seed: int = 0,
    n_jobs: int = 1,
    progress: bool = True,
    reuse_affinities: bool = True,
    neighbors: str = "auto",
    negative_gradient_method: str = "auto",
    initialization: str = "pca",
    metric: str = "euclidean",
    theta: float = 0.5,
) -> GridResult:
    """Embed ``features`` in 2-D with t-SNE for every configuration of a grid.

    The grid is ``perplexities x early_exaggerations x learning_rates``
    (:func:`grid_configurations` order: perplexity varies slowest). Every
    configuration runs openTSNE's two phases from the same initial positions:
    ``exaggeration_iter`` iterations with the configuration's early exaggeration,
    then ``n_iter - exaggeration_iter`` without exaggeration, both with momentum
    0.8 (openTSNE's defaults: ``n_iter=750``, ``exaggeration_iter=250``; the
    paper's code runs 3,000 iterations in all).

    With ``reuse_affinities=True`` (default) the perplexity-based affinities
    (``openTSNE.affinity.PerplexityBasedNN``: ``int(3 * perplexity)`` nearest
    neighbours and the perplexity calibration) are computed ONCE per perplexity
    and the initial positions once per grid (``"pca"``, ``"random"``) or once per
    perplexity (``"spectral"``); only the gradient descent runs per
    configuration. ``reuse_affinities=False`` recomputes both for every
    configuration (the reference for the benchmark) and gives the same
    embeddings.

    Parallelism: the perplexity stage and the configurations fan out over
    ``n_jobs`` joblib workers (joblib's default backend, loky processes: true
    parallelism whatever openTSNE does with the GIL; large affinity arrays
    travel to the workers memory-mapped). Every openTSNE call runs
    single-threaded, so the workers never oversubscribe the cores and the result
    does not depend on ``n_jobs`` or on the backend
    (``joblib.parallel_config(backend="threading")`` avoids the process start-up
    for small grids). Each embedding is seeded with ``seed`` (neighbour search
    and initialisation), so the same seed gives the same embeddings.

    Parameters
    ----------
    features : array-like of shape (N, d)
        High-dimensional features of ALL samples (labelled and unlabelled);
        finite, N >= 4, not all identical.
    perplexities : sequence of float
        Each in [1, N/3): openTSNE needs ``int(3 * perplexity) < N`` neighbours.
    early_exaggerations : sequence of float
        Each >= 1.
    learning_rates : sequence of float or "auto"
        Each > 0, or ``"auto"`` (N / exaggeration in each phase).
    n_iter : int, default 750
        Total gradient-descent iterations per configuration, >= 1.
    exaggeration_iter : int, default 250
        How many of them use early exaggeration, in [0, n_iter).
    seed : int, default 0
        Seed of the neighbour search (Annoy) and of the initialisation jitter.
    n_jobs : int, default 1
        joblib workers (processes unless another joblib backend is
        configured); -1 for all cores.
    progress : bool, default True
        Show a tqdm progress bar over configurations.
    reuse_affinities : bool, default True
        Share affinities / initialisation across configurations (see above).
    neighbors : {"auto", "exact", "annoy", "approx", "pynndescent", "hnsw"}
        openTSNE's neighbour search ("auto": exact below 1,000 samples, Annoy
        above).
    negative_gradient_method : {"auto", "bh", "fft"}
        openTSNE's repulsion approximation ("auto": Barnes-Hut below 10,000
        samples, FFT interpolation above).
    initialization : {"pca", "spectral", "random"}
        openTSNE's initialisation (rescaled to std 1e-4).
    metric : str, default "euclidean"
        Distance of the neighbour search in feature space.
    theta : float, default 0.5
        Barnes-Hut accuracy, in [0, 1].

    Returns
    -------
    GridResult
        ``table`` (config, perplexity, early_exaggeration, learning_rate,
        kl_divergence, seconds), ``embeddings`` float32 (n_configs, N, 2),
        ``affinity_seconds``, ``total_seconds``.

    Raises
    ------
    ValueError
        Before any t-SNE runs, for a bad grid value, iteration count, option,
        NaN / infinite feature rows (named), fewer than 4 samples, or constant
        features.

    Notes
    -----
    Time: per perplexity one neighbour search (O(N log N d) with Annoy, O(N^2 d)
    exact below 1,000 samples) plus O(N * perplexity) calibration; per
    configuration ``n_iter`` gradient steps of O(N log N) (Barnes-Hut) or O(N)
    (FFT). Memory: the affinities are sparse, O(N * perplexity) per perplexity
    (all perplexities are held at once), plus O(n_configs * N) for the
    embeddings; no N x N array.

    References
    ----------
    Maaten & Hinton (2008); Policar, Strazar & Zupan (2024), openTSNE;
    Vindas et al. (2022), section 3.2 and METHOD.md section 2.
    """
    x = _check_features(features)
    table = grid_configurations(perplexities, early_exaggerations, learning_rates)
    n_iter, exaggeration_iter = _check_iterations(n_iter, exaggeration_iter)
    seed = _check_seed(seed)
    n_jobs = _check_n_jobs(n_jobs)
    _check_options(neighbors, negative_gradient_method, initialization, theta, metric)
    _check_perplexities(sorted(table["perplexity"].unique()), x.shape[0])
    if not isinstance(reuse_affinities, bool):
        raise TypeError(f"reuse_affinities must be a bool, got {reuse_affinities!r}.")

    opts = {
        "n_iter": n_iter,
        "exaggeration_iter": exaggeration_iter,
        "seed": seed,
        "neighbors": neighbors,
        "negative_gradient_method": negative_gradient_method,
        "initialization": initialization,
        "metric": metric,
        "theta": float(theta),
    }
    lr_values = ["auto" if np.isnan(lr) else float(lr) for lr in table["learning_rate"]]
    configs = list(
        zip(table["perplexity"], table["early_exaggeration"], lr_values, strict=True)
    )
    n = len(configs)
    t_start = time.perf_counter()
    affinity_seconds: dict = {}

    with Parallel(n_jobs=n_jobs, return_as="generator") as parallel:
        if reuse_affinities:
            ps = list(dict.fromkeys(table["perplexity"]))
            stage = parallel(
                delayed(_perplexity_stage)(
                    x, p, neighbors, metric, initialization, seed
                )
                for p in ps
            )
            shared = {}
            for p, (P, init, secs) in zip(ps, stage, strict=True):
                shared[p] = (P, init)
                affinity_seconds[p] = secs
            if initialization != "spectral":
                t0 = time.perf_counter()
                init = _initial_positions(x, None, initialization, seed)
                shared = {p: (P, init) for p, (P, _) in shared.items()}
                for p in affinity_seconds:
                    affinity_seconds[p] += (time.perf_counter() - t0) / len(ps)
            tasks = (
                delayed(_run_config)(*shared[p], e, lr, opts) for p, e, lr in configs
            )
        else:
            tasks = (
                delayed(_run_config_from_scratch)(x, p, e, lr, opts)
                for p, e, lr in configs
            )
        results = parallel(tasks)
        results = tqdm(
            results, total=n, disable=not progress, desc="t-SNE grid", unit="config"
        )
        embeddings = np.empty((n, x.shape[0], 2), dtype=np.float32)
        kls = np.empty(n)
        secs = np.empty(n)
        for i, (emb, kl, s) in enumerate(results):
            embeddings[i] = emb
            kls[i] = kl
            secs[i] = s

    table["kl_divergence"] = kls
    table["seconds"] = secs
    return GridResult(
        table=table[_TABLE_COLUMNS],
        embeddings=embeddings,
        affinity_seconds=affinity_seconds,
        total_seconds=time.perf_counter() - t_start,
    )


# --------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------


def _check_embeddings(embeddings) -> np.ndarray:
    """(n_configs, N, dims) view of ``embeddings``; values are checked later."""
    e = np.asarray(embeddings)
    if e.ndim == 2:
        e = e[None]
    if e.ndim != 3 or not np.issubdtype(e.dtype, np.number):
        raise ValueError(
            f"embeddings must be a 3-D numeric array (n_configs, N, dims) or a 2-D "
            f"one (N, dims), got shape {e.shape} and dtype {e.dtype}."
        )
    if 0 in e.shape:
        raise ValueError(
            f"embeddings must have shape (n_configs, N, dims) with every size >= 1, "
            f"got {e.shape}."
        )
    return e


def silhouette_scores(
    embeddings, labels, metric: str = "sqeuclidean", *, chunk_size: int = 16
) -> np.ndarray:
    """Silhouette score of the LABELLED samples of every embedding.

    For configuration ``c`` this is
    ``sklearn.metrics.silhouette_score(embeddings[c][labels >= 0],
    labels[labels >= 0], metric=metric)`` (METHOD.md section 2; the paper's code
    uses ``metric="sqeuclidean"``, the default here). Unlabelled samples
    (label -1) take no part. A class with a single labelled sample contributes
    s = 0 for that sample (scikit-learn's convention).

    For ``metric="sqeuclidean"`` the score is computed exactly without pairwise
    distances: the mean squared distance from a point ``x`` to the ``n_c``
    points of class ``c`` is ``||x - mu_c||^2 + v_c`` (``mu_c`` the class mean,
    ``v_c`` its mean squared deviation), and the own-class mean excludes the
    point itself by the factor ``n_c / (n_c - 1)``. Other metrics call
    scikit-learn per configuration.

    Parameters
    ----------
    embeddings : array-like of shape (n_configs, N, dims) or (N, dims)
        Embeddings of ALL samples (the grid's ``GridResult.embeddings``).
    labels : array-like of shape (N,)
        Integer class ids, -1 for unlabelled. At least two classes must have
        labelled samples, and not every labelled sample may be alone in its class
        (the silhouette is undefined otherwise).
    metric : str, default "sqeuclidean"
        Any metric of ``sklearn.metrics.pairwise_distances``.
    chunk_size : int, default 16
        Configurations processed together by the sqeuclidean path (memory
        O(chunk_size * L * C)).

    Returns
    -------
    scores : ndarray of shape (n_configs,)
        Silhouette scores in [-1, 1].

    Notes
    -----
    With L labelled samples and C classes: sqeuclidean path O(n_configs * L * C *
    dims) time; other metrics O(n_configs * L^2 * dims) time and scikit-learn's
    chunked memory.

    References
    ----------
    Rousseeuw (1987), "Silhouettes: a graphical aid to the interpretation and
    validation of cluster analysis"; Vindas et al. (2022), eq. (1).
    """
    e = _check_embeddings(embeddings)
    y = check_labels(labels, "labels", n_samples=e.shape[1])
    chunk_size = check_int(chunk_size, "chunk_size", low=1)
    if not isinstance(metric, str) and not callable(metric):
        raise TypeError(f"metric must be a string or a callable, got {metric!r}.")
    mask = y >= 0
    y_l = y[mask]
    classes, codes, counts = np.unique(y_l, return_inverse=True, return_counts=True)
    if classes.size < 2:
        raise ValueError(
            f"the silhouette needs labelled samples of at least 2 classes, got "
            f"{classes.size} class(es) among {y_l.size} labelled sample(s) "
            f"(classes present: {classes.tolist()})."
        )
    if classes.size >= y_l.size:
        raise ValueError(
            f"the silhouette is undefined when every labelled sample is alone in its "
            f"class: {y_l.size} labelled samples in {classes.size} classes; label "
            "at least two samples of some class."
        )
    # Only the labelled rows are copied (and checked): unlabelled points take no
    # part, and the whole grid can be large (configurations x N x 2).
    e_l = e[:, mask].astype(np.float64)
    bad = ~np.isfinite(e_l).all(axis=(1, 2))
    if bad.any():
        raise ValueError(
            f"embeddings contain NaN or infinite coordinates for labelled samples in "
            f"configuration(s) {np.flatnonzero(bad)[:10].tolist()}."
        )
    if metric == "sqeuclidean":
        out = np.empty(e.shape[0])
        for start in range(0, e.shape[0], chunk_size):
            stop = min(start + chunk_size, e.shape[0])
            out[start:stop] = _silhouette_sqeuclidean(e_l[start:stop], codes, counts)
        return out

    from sklearn.metrics import silhouette_score

    return np.array([silhouette_score(ec, y_l, metric=metric) for ec in e_l])


def _silhouette_sqeuclidean(e, codes, counts) -> np.ndarray:
    """Exact silhouette with squared Euclidean distances, (G, L, D) -> (G,)."""
    n_classes = counts.size
    onehot = np.zeros((codes.size, n_classes))
    onehot[np.arange(codes.size), codes] = 1.0
    # Centre each configuration for accuracy (distances are translation-invariant).
    e = e - e.mean(axis=1, keepdims=True)
    means = np.einsum("lc,gld->gcd", onehot, e) / counts[None, :, None]
    dev = e - means[:, codes, :]  # (G, L, D): offset of each point from its class mean
    spread = np.einsum("gld,gld->gl", dev, dev) @ onehot / counts  # (G, C)
    diff = e[:, :, None, :] - means[:, None, :, :]  # (G, L, C, D)
    mean_d = np.einsum("glcd,glcd->glc", diff, diff) + spread[:, None, :]
    rows = np.arange(codes.size)
    own = mean_d[:, rows, codes]
    n_own = counts[codes]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(n_own > 1, own * n_own / np.maximum(n_own - 1, 1), 0.0)
    mean_d[:, rows, codes] = np.inf
    b = mean_d.min(axis=2)
    denom = np.maximum(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(denom > 0, (b - a) / denom, 0.0)
    s = np.where(n_own > 1, s, 0.0)
    return s.mean(axis=1)


def select_projection(
    table_or_scores, *, column: str = "silhouette"
) -> tuple[int, int]:
    """Best (highest score) and worst (lowest score) configuration.

    Parameters
    ----------
    table_or_scores : DataFrame or array-like of shape (n_configs,)
        Either the scores themselves (e.g. :func:`silhouette_scores`) or a table
        with a ``column`` of scores (e.g. ``GridResult.table`` with a silhouette
        column added).
    column : str, default "silhouette"
        Score column when a DataFrame is given.

    Returns
    -------
    best, worst : int
        Positions of the highest and lowest score (for a DataFrame: its index
        labels at those positions). Ties go to the lowest position.
    """
    if isinstance(table_or_scores, pd.DataFrame):
        if column not in table_or_scores.columns:
            raise ValueError(
                f"table has no column {column!r}; columns are "
                f"{list(table_or_scores.columns)}."
            )
        scores = table_or_scores[column].to_numpy()
        index = table_or_scores.index
    else:
        scores = np.asarray(table_or_scores)
        index = None
    scores = check_array(scores, "scores", ndim=1, dtype=np.float64, min_rows=1)
    best, worst = int(np.argmax(scores)), int(np.argmin(scores))
    if index is not None:
        return int(index[best]), int(index[worst])
    return best, worst


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
_UNLABELLED_COLOUR = "#d0d0d0"


def _class_colours(n_classes: int):
    from matplotlib import colormaps

    if n_classes <= 10:
        return colormaps["tab10"].colors[:n_classes]
    if n_classes <= 20:
        return colormaps["tab20"].colors[:n_classes]
    return colormaps["turbo"](np.linspace(0, 1, n_classes))


def _check_embedding_2d(embedding) -> np.ndarray:
    e = check_array(embedding, "embedding", ndim=2, dtype=np.float64)
    if e.shape[1] != 2:
        raise ValueError(f"embedding must have shape (N, 2), got {e.shape}.")
    return e


def _point_size(n: int) -> float:
    return float(np.clip(5000.0 / max(n, 1), 2.0, 30.0))


def plot_projection(
    embedding,
    labels,
    class_names: Sequence[str],
    *,
    title: str,
    subjects=None,
    highlight=None,
) -> Figure:
    """Scatter plot of a 2-D projection coloured by class.

    Unlabelled samples (label -1) are drawn first, in light grey, so classes stay
    visible on top. With ``subjects`` every subject gets its own marker; with
    ``highlight`` the chosen samples are redrawn larger with a black edge (e.g.
    the manually labelled samples).

    Parameters
    ----------
    embedding : array-like of shape (N, 2)
    labels : array-like of shape (N,)
        Class ids 0 .. C-1, -1 = unlabelled.
    class_names : sequence of str of length C
        Legend names of the classes.
    title : str
    subjects : array-like of shape (N,), optional
        Subject (or any group) id per sample; at most 12 distinct values.
    highlight : array-like of bool of shape (N,) or of int indices, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    e = _check_embedding_2d(embedding)
    n = e.shape[0]
    y = check_labels(labels, "labels", n_samples=n)
    names = [str(c) for c in class_names]
    if y.size and y.max() >= len(names):
        raise ValueError(
            f"labels contain class id {int(y.max())} but class_names has only "
            f"{len(names)} entries."
        )
    if subjects is not None:
        subjects = np.asarray(subjects)
        if subjects.shape != (n,):
            raise ValueError(f"subjects must have shape ({n},), got {subjects.shape}.")
        groups = list(dict.fromkeys(subjects.tolist()))
        if len(groups) > len(_MARKERS):
            raise ValueError(
                f"subjects has {len(groups)} distinct values; at most "
                f"{len(_MARKERS)} can get their own marker."
            )
    else:
        groups = [None]
    hl = _highlight_mask(highlight, n)

    size = _point_size(n)
    colours = _class_colours(len(names))
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = fig.add_subplot()
    for gi, g in enumerate(groups):
        in_group = np.ones(n, bool) if g is None else subjects == g
        marker = _MARKERS[gi]
        sel = in_group & (y < 0)
        if sel.any():
            ax.scatter(
                *e[sel].T,
                s=size,
                c=_UNLABELLED_COLOUR,
                marker=marker,
                linewidths=0,
                zorder=1,
            )
    for gi, g in enumerate(groups):
        in_group = np.ones(n, bool) if g is None else subjects == g
        for c in range(len(names)):
            sel = in_group & (y == c)
            if sel.any():
                ax.scatter(
                    *e[sel].T,
                    s=size,
                    color=colours[c],
                    marker=_MARKERS[gi],
                    linewidths=0,
                    zorder=2,
                )
    if hl.any():
        ax.scatter(
            *e[hl].T,
            s=size * 4 + 10,
            c=[colours[c] if c >= 0 else _UNLABELLED_COLOUR for c in y[hl]],
            marker="o",
            edgecolors="black",
            linewidths=0.6,
            zorder=3,
        )

    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", ls="", color=colours[c], label=name)
        for c, name in enumerate(names)
        if (y == c).any()
    ]
    if (y < 0).any():
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                color=_UNLABELLED_COLOUR,
                label=f"unlabelled ({int((y < 0).sum())})",
            )
        )
    if hl.any():
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                mfc="white",
                mec="black",
                label=f"highlighted ({int(hl.sum())})",
            )
        )
    if subjects is not None:
        handles += [
            Line2D(
                [], [], marker=_MARKERS[gi], ls="", color="0.3", label=f"subject {g}"
            )
            for gi, g in enumerate(groups)
        ]
    ax.legend(
        handles=handles,
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        frameon=False,
        fontsize="small",
    )
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")
    return fig


def _highlight_mask(highlight, n: int) -> np.ndarray:
    if highlight is None:
        return np.zeros(n, bool)
    h = np.asarray(highlight)
    if h.dtype == bool:
        if h.shape != (n,):
            raise ValueError(f"highlight mask must have shape ({n},), got {h.shape}.")
        return h
    if h.size and not np.issubdtype(h.dtype, np.integer):
        raise ValueError(
            f"highlight must be a boolean mask or integer indices, got dtype {h.dtype}."
        )
    h = h.ravel().astype(np.int64)
    if h.size and (h.min() < 0 or h.max() >= n):
        raise ValueError(
            f"highlight indices must be in [0, {n - 1}], got range "
            f"[{h.min()}, {h.max()}]."
        )
    mask = np.zeros(n, bool)
    mask[h] = True
    return mask


def plot_local_quality(embedding, lq, *, title: str) -> Figure:
    """Scatter plot of a 2-D projection coloured by local quality, with a colour bar.

    Parameters
    ----------
    embedding : array-like of shape (N, 2)
    lq : array-like of shape (N,)
        Normalised local quality in [0, 1] (``lqknn.quality.local_quality``).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    e = _check_embedding_2d(embedding)
    q = check_array(lq, "lq", ndim=1, dtype=np.float64)
    if q.shape[0] != e.shape[0]:
        raise ValueError(
            f"lq has {q.shape[0]} entries but embedding has {e.shape[0]} rows."
        )
    order = np.argsort(q, kind="stable")  # high quality on top
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = fig.add_subplot()
    sc = ax.scatter(
        *e[order].T,
        c=q[order],
        s=_point_size(e.shape[0]),
        cmap="viridis",
        vmin=0.0,
        vmax=max(1.0, float(q.max())),
        linewidths=0,
    )
    fig.colorbar(sc, ax=ax, label="local quality lq", shrink=0.8)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")
    return fig


def plot_grid_scores(table: pd.DataFrame, *, column: str = "silhouette") -> Figure:
    """Heat maps of a score over the grid, one panel per perplexity.

    Rows are early exaggerations, columns learning rates; every cell shows its
    value, the best configuration is framed in black and the worst in red.

    Parameters
    ----------
    table : DataFrame
        ``GridResult.table`` with a ``column`` of scores added.
    column : str, default "silhouette"

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(
            f"table must be a pandas DataFrame, got {type(table).__name__}."
        )
    needed = ["perplexity", "early_exaggeration", "learning_rate", column]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(
            f"table lacks column(s) {missing}; it has {list(table.columns)}."
        )
    best, worst = select_projection(table, column=column)
    lr_key = table["learning_rate"].fillna(-1.0)  # -1 stands for "auto"
    ps = sorted(table["perplexity"].unique())
    es = sorted(table["early_exaggeration"].unique())
    lrs = sorted(lr_key.unique())
    values = table[column].to_numpy(dtype=float)
    vmin, vmax = np.nanmin(values), np.nanmax(values)
    from matplotlib.figure import Figure

    fig = Figure(
        figsize=(1.2 + 0.9 * len(lrs) * len(ps), 1.4 + 0.45 * len(es)),
        layout="constrained",
    )
    axes = fig.subplots(1, len(ps), squeeze=False)[0]
    im = None
    for ax, p in zip(axes, ps, strict=True):
        grid = np.full((len(es), len(lrs)), np.nan)
        sub = table[table["perplexity"] == p]
        for idx, row in sub.iterrows():
            i = es.index(row["early_exaggeration"])
            j = lrs.index(lr_key[idx])
            grid[i, j] = row[column]
            colour = "black" if idx == best else "red" if idx == worst else None
            if colour is not None:
                ax.add_patch(_frame(j, i, colour))
        im = ax.imshow(grid, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        for i in range(len(es)):
            for j in range(len(lrs)):
                if np.isfinite(grid[i, j]):
                    light = (grid[i, j] - vmin) < 0.6 * (vmax - vmin + 1e-12)
                    ax.text(
                        j,
                        i,
                        f"{grid[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize="x-small",
                        color="white" if light else "black",
                    )
        ax.set_xticks(
            range(len(lrs)),
            ["auto" if v < 0 else f"{v:g}" for v in lrs],
            fontsize="small",
        )
        ax.set_yticks(range(len(es)), [f"{v:g}" for v in es], fontsize="small")
        ax.set_xlabel("learning rate")
        ax.set_title(f"perplexity {p:g}", fontsize="medium")
    axes[0].set_ylabel("early exaggeration")
    fig.colorbar(im, ax=list(axes), label=column, shrink=0.9)
    fig.suptitle(
        f"{column} per t-SNE configuration (best #{best} black, worst #{worst} red)",
        fontsize="medium",
    )
    return fig


def _frame(j, i, colour):
    from matplotlib.patches import Rectangle

    return Rectangle(
        (j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor=colour, linewidth=2.5, zorder=3
    )
