"""Tests of lqknn.projection: t-SNE grid, silhouette selection, figures.

Oracles: openTSNE's own ``TSNE.fit`` (one configuration at a time), scikit-learn's
``silhouette_score`` on the labelled subset, hand-computed silhouettes, and
properties (reuse == from scratch, n_jobs invariance, seeds).
"""

from __future__ import annotations

import itertools

import numpy as np
import openTSNE
import openTSNE.affinity
import openTSNE.initialization
import pandas as pd
import pytest
from joblib import parallel_config
from matplotlib.figure import Figure
from sklearn.metrics import silhouette_score

from lqknn import projection
from lqknn.projection import (
    GridResult,
    TSNEGridConfig,
    grid_configurations,
    plot_grid_scores,
    plot_local_quality,
    plot_projection,
    select_projection,
    silhouette_scores,
    tsne_grid,
)

N = 150
FAST = {"n_iter": 60, "exaggeration_iter": 20, "progress": False}


def _blobs(n=N, d=6, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    centres = rng.normal(scale=6.0, size=(n_classes, d))
    return centres[y] + rng.normal(size=(n, d)), y


@pytest.fixture(scope="module")
def data():
    return _blobs()


@pytest.fixture(scope="module")
def grid(data):
    x, _ = data
    return tsne_grid(x, [5, 20], [4, 12], [50.0, "auto"], seed=3, **FAST)


# --------------------------------------------------------------------------------------
# Grid search
# --------------------------------------------------------------------------------------


def test_grid_shapes_and_table(grid):
    assert isinstance(grid, GridResult)
    assert grid.embeddings.shape == (8, N, 2)
    assert grid.embeddings.dtype == np.float32
    assert np.isfinite(grid.embeddings).all()
    t = grid.table
    assert list(t.columns) == [
        "perplexity",
        "early_exaggeration",
        "learning_rate",
        "kl_divergence",
        "seconds",
    ]
    assert t.index.name == "config"
    assert list(t.index) == list(range(8))
    expected = list(itertools.product([5.0, 20.0], [4.0, 12.0], [50.0, np.nan]))
    got = list(zip(t.perplexity, t.early_exaggeration, t.learning_rate, strict=True))
    for (p, e, lr), (gp, ge, glr) in zip(expected, got, strict=True):
        assert (p, e) == (gp, ge)
        assert (np.isnan(lr) and np.isnan(glr)) or lr == glr
    assert (t.kl_divergence > 0).all() and np.isfinite(t.kl_divergence).all()
    assert (t.seconds > 0).all()
    assert set(grid.affinity_seconds) == {5.0, 20.0}
    assert grid.total_seconds >= t.seconds.max()


@pytest.mark.parametrize(
    ("config", "lr"), [(1, "auto"), (6, 50.0)], ids=["lr-auto", "lr-50"]
)
def test_each_configuration_equals_opentsne_fit(data, grid, config, lr):
    """Independent oracle: openTSNE's high-level TSNE.fit for that configuration."""
    x, _ = data
    row = grid.table.loc[config]
    aff = openTSNE.affinity.PerplexityBasedNN(
        x, perplexity=row.perplexity, n_jobs=1, random_state=3
    )
    tsne = openTSNE.TSNE(
        perplexity=row.perplexity,
        early_exaggeration=row.early_exaggeration,
        learning_rate=lr,
        early_exaggeration_iter=20,
        n_iter=40,  # openTSNE counts the normal phase only: 60 - 20
        initialization="pca",
        n_jobs=1,
        random_state=3,
    )
    ref = tsne.fit(x, affinities=aff)
    np.testing.assert_allclose(grid.embeddings[config], np.asarray(ref), rtol=1e-5)
    assert grid.table.kl_divergence[config] == pytest.approx(ref.kl_divergence)


def test_affinities_and_initialisation_computed_once(data, monkeypatch):
    x, _ = data
    calls = {"nn": [], "pca": 0}
    real_nn = openTSNE.affinity.PerplexityBasedNN
    real_pca = openTSNE.initialization.pca

    def spy_nn(*args, **kwargs):
        calls["nn"].append(kwargs["perplexity"])
        return real_nn(*args, **kwargs)

    def spy_pca(*args, **kwargs):
        calls["pca"] += 1
        return real_pca(*args, **kwargs)

    monkeypatch.setattr(openTSNE.affinity, "PerplexityBasedNN", spy_nn)
    monkeypatch.setattr(openTSNE.initialization, "pca", spy_pca)
    kw = {"n_iter": 3, "exaggeration_iter": 1, "progress": False}
    tsne_grid(x, [5, 8, 20], [4, 12], [10.0, 50.0], **kw)
    assert sorted(calls["nn"]) == [5.0, 8.0, 20.0]
    assert calls["pca"] == 1

    calls["nn"].clear()
    calls["pca"] = 0
    tsne_grid(x, [5, 20], [4, 12], [10.0], reuse_affinities=False, **kw)
    assert sorted(calls["nn"]) == [5.0, 5.0, 20.0, 20.0]
    assert calls["pca"] == 4


# Positions in the fixture grid: config = 4 * perplexity + 2 * exaggeration + lr.
def test_reuse_gives_same_embeddings_as_from_scratch(data, grid):
    x, _ = data
    scratch = tsne_grid(x, [5, 20], [4], [50.0], seed=3, reuse_affinities=False, **FAST)
    np.testing.assert_array_equal(scratch.embeddings, grid.embeddings[[0, 4]])
    np.testing.assert_array_equal(
        scratch.table.kl_divergence, grid.table.kl_divergence[[0, 4]]
    )
    assert scratch.affinity_seconds == {}


def test_same_seed_same_embedding_other_seed_differs(data, grid):
    """A sub-grid with the same seed reproduces those configurations exactly."""
    x, _ = data
    again = tsne_grid(x, [5, 20], [12], ["auto"], seed=3, **FAST)
    np.testing.assert_array_equal(again.embeddings, grid.embeddings[[3, 7]])
    other = tsne_grid(x, [5], [4], [50.0], seed=4, **FAST)
    assert not np.allclose(other.embeddings[0], grid.embeddings[0])


def test_n_jobs_2_equals_n_jobs_1(data, grid):
    """Default joblib backend (loky processes)."""
    x, _ = data
    par = tsne_grid(x, [5, 20], [4, 12], [50.0, "auto"], seed=3, n_jobs=2, **FAST)
    np.testing.assert_array_equal(par.embeddings, grid.embeddings)
    np.testing.assert_array_equal(par.table.kl_divergence, grid.table.kl_divergence)


def test_threading_backend_gives_the_same_embeddings(data, grid):
    x, _ = data
    with parallel_config(backend="threading"):
        par = tsne_grid(x, [5, 20], [4], [50.0], seed=3, n_jobs=2, **FAST)
    np.testing.assert_array_equal(par.embeddings, grid.embeddings[[0, 4]])


def test_spectral_initialisation_and_config_object(data):
    x, _ = data
    cfg = TSNEGridConfig(
        [5, 10],
        [12],
        [50],
        n_iter=30,
        exaggeration_iter=10,
        initialization="spectral",
        seed=1,
    )
    assert cfg.n_configs == 2
    assert list(cfg.configurations().perplexity) == [5.0, 10.0]
    res = cfg.run(x, progress=False)
    direct = tsne_grid(x, **cfg.as_kwargs(), progress=False, reuse_affinities=False)
    np.testing.assert_array_equal(res.embeddings, direct.embeddings)
    assert not np.allclose(res.embeddings[0], res.embeddings[1])


def test_no_early_exaggeration_phase(data):
    x, _ = data
    res = tsne_grid(
        x, [5], [12, 50], [50.0], n_iter=20, exaggeration_iter=0, progress=False
    )
    # Without the exaggerated phase the early exaggeration plays no part.
    np.testing.assert_array_equal(res.embeddings[0], res.embeddings[1])


def test_grid_configurations_order():
    t = grid_configurations([30, 10], [4], ["auto", 100])
    assert t.perplexity.tolist() == [30.0, 30.0, 10.0, 10.0]
    assert np.isnan(t.learning_rate[0]) and t.learning_rate[1] == 100.0


# --------------------------------------------------------------------------------------
# Bad input: always before any t-SNE runs
# --------------------------------------------------------------------------------------


@pytest.fixture
def no_tsne(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("t-SNE ran before the arguments were checked")

    monkeypatch.setattr(openTSNE.affinity, "PerplexityBasedNN", boom)
    monkeypatch.setattr(openTSNE.initialization, "pca", boom)


@pytest.mark.usefixtures("no_tsne")
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"perplexities": [50]}, r"perplexities .*\[1, 50\).*N = 150.*got 50"),
        ({"perplexities": [10, 60]}, r"N = 150 samples, got 60"),
        ({"perplexities": [0.5]}, r"perplexities values must be in \[1, inf\)"),
        ({"perplexities": [-3]}, r"perplexities values must be in \[1"),
        ({"perplexities": []}, r"perplexities must hold at least one value"),
        ({"perplexities": [10, 10]}, r"perplexities contains 10.0 twice"),
        ({"learning_rates": [0]}, r"learning_rates values must be in \(0, inf\)"),
        ({"learning_rates": [-10]}, r"learning_rates values must be in \(0, inf\)"),
        ({"learning_rates": ["fast"]}, r"learning_rates values must be > 0 or 'auto'"),
        ({"learning_rates": [np.inf]}, r"learning_rates values must be in \(0, inf\)"),
        ({"early_exaggerations": [0.5]}, r"early_exaggerations values .*\[1, inf\)"),
        ({"early_exaggerations": [np.nan]}, r"early_exaggerations values"),
        ({"n_iter": 0}, r"n_iter must be in \[1, inf\], got 0"),
        (
            {"n_iter": 100, "exaggeration_iter": 100},
            r"exaggeration_iter must be < n_iter",
        ),
        ({"exaggeration_iter": -1}, r"exaggeration_iter must be in \[0, inf\]"),
        ({"seed": -1}, r"seed must be in \[0, 2147483647\], got -1"),
        (
            {"n_jobs": 0},
            r"n_jobs must be a positive number of workers or -1 \(all cores\), got 0",
        ),
        ({"neighbors": "kdtree"}, r"neighbors must be one of .*got 'kdtree'"),
        ({"negative_gradient_method": "exact"}, r"negative_gradient_method must be"),
        ({"initialization": "umap"}, r"initialization must be one of"),
        ({"theta": 2.0}, r"theta must be in \[0, 1\], got 2.0"),
        ({"metric": "mahalanobis"}, r"metric must be one of .*'auto'.*'mahalanobis'"),
        ({"metric": "braycurtis", "neighbors": "annoy"}, r"metric must be one of"),
    ],
)
def test_bad_grid_arguments(data, kwargs, match):
    x, _ = data
    args = {
        "perplexities": [10],
        "early_exaggerations": [12],
        "learning_rates": [100],
        "progress": False,
    } | kwargs
    with pytest.raises(ValueError, match=match):
        tsne_grid(x, **args)


@pytest.mark.usefixtures("no_tsne")
def test_bad_features(data):
    x, _ = data
    bad = x.copy()
    bad[7, 2] = np.nan
    bad[42, 0] = np.inf
    with pytest.raises(ValueError, match=r"features contains NaN or infinite .*7, 42"):
        tsne_grid(bad, [10], [12], [100], progress=False)
    with pytest.raises(ValueError, match=r"features must have at least 4 row"):
        tsne_grid(x[:3], [1], [12], [100], progress=False)
    with pytest.raises(ValueError, match=r"features must be a 2-D array"):
        tsne_grid(x[:, 0], [10], [12], [100], progress=False)
    with pytest.raises(ValueError, match=r"identical for every sample"):
        tsne_grid(np.ones((20, 3)), [2], [12], [100], progress=False)


def test_bad_config_object():
    with pytest.raises(
        ValueError, match=r"learning_rates values must be in \(0, inf\)"
    ):
        TSNEGridConfig([10], [12], [0])
    with pytest.raises(ValueError, match=r"exaggeration_iter must be < n_iter"):
        TSNEGridConfig([10], [12], [10], n_iter=10, exaggeration_iter=50)


# --------------------------------------------------------------------------------------
# Silhouette selection
# --------------------------------------------------------------------------------------


def test_silhouette_hand_computed():
    # Class 0 at x = 0, 1; class 1 at x = 4, 5; squared distances.
    e = np.array([[0.0, 0.0], [1.0, 0.0], [4.0, 0.0], [5.0, 0.0]])
    labels = np.array([0, 0, 1, 1])
    s0 = (20.5 - 1.0) / 20.5  # a = 1, b = (16 + 25) / 2
    s1 = (12.5 - 1.0) / 12.5  # a = 1, b = (9 + 16) / 2
    expected = (s0 + s1) / 2  # the other class is the mirror image
    assert silhouette_scores(e, labels)[0] == pytest.approx(expected, abs=1e-15)
    # Euclidean: a = 1, b = (4 + 5) / 2 and (3 + 4) / 2.
    expected_eu = ((4.5 - 1) / 4.5 + (3.5 - 1) / 3.5) / 2
    got = silhouette_scores(e, labels, metric="euclidean")[0]
    assert got == pytest.approx(expected_eu, abs=1e-15)


def test_silhouette_selects_separated_over_shuffled():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 40)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    separated = centres[y] + rng.normal(scale=0.5, size=(120, 2))
    shuffled = separated[rng.permutation(120)]
    mild = centres[y] + rng.normal(scale=4.0, size=(120, 2))
    labels = np.where(np.arange(120) % 3 == 0, y, -1)  # a third labelled
    scores = silhouette_scores(np.stack([mild, separated, shuffled]), labels)
    assert scores[1] > 0.9 and scores[2] < 0.1
    assert select_projection(scores) == (1, 2)


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "manhattan"])
def test_silhouette_matches_sklearn_on_labelled_subset(metric):
    rng = np.random.default_rng(1)
    n = 200
    emb = rng.normal(size=(3, n, 2)) * [1.0, 3.0] + rng.normal(size=(3, 1, 2)) * 50
    emb[:, 10] = emb[:, 11]  # duplicate points
    y = rng.integers(0, 4, n)
    labels = np.where(rng.random(n) < 0.3, y, -1)
    labels[:3] = [3, 5, -1]
    assert (labels == 5).sum() == 1
    got = silhouette_scores(emb, labels, metric=metric)
    mask = labels >= 0
    expected = [silhouette_score(e[mask], labels[mask], metric=metric) for e in emb]
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    # Unlabelled samples play no part: moving them changes nothing.
    moved = emb.copy()
    moved[:, ~mask] = rng.normal(size=(3, (~mask).sum(), 2))
    np.testing.assert_allclose(
        silhouette_scores(moved, labels, metric=metric), got, rtol=1e-12
    )


def test_silhouette_chunking_does_not_change_scores():
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(7, 60, 2))
    labels = np.arange(60) % 3
    np.testing.assert_allclose(
        silhouette_scores(emb, labels, chunk_size=2),
        silhouette_scores(emb, labels, chunk_size=100),
        rtol=1e-13,
    )


def test_silhouette_bad_input():
    emb = np.zeros((2, 6, 2))
    emb[:, :, 0] = np.arange(6)
    with pytest.raises(ValueError, match=r"at least 2 classes, got 1 class"):
        silhouette_scores(emb, [0, 0, 0, -1, -1, -1])
    with pytest.raises(ValueError, match=r"at least 2 classes, got 0 class"):
        silhouette_scores(emb, [-1] * 6)
    with pytest.raises(
        ValueError, match=r"every labelled sample is alone in its class"
    ):
        silhouette_scores(emb, [0, 1, 2, -1, -1, -1])
    with pytest.raises(ValueError, match=r"labels has 5 entries but there are 6"):
        silhouette_scores(emb, [0, 0, 1, 1, -1])
    with pytest.raises(ValueError, match=r"labels contains ids \[-2\]"):
        silhouette_scores(emb, [0, 0, 1, 1, -2, -1])
    bad = emb.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(
        ValueError, match=r"NaN or infinite .* configuration\(s\) \[1\]"
    ):
        silhouette_scores(bad, [0, 0, 1, 1, -1, -1])
    bad[1, 2, 0] = 2.0
    bad[1, 4, 0] = np.nan  # an unlabelled sample takes no part
    assert np.isfinite(silhouette_scores(bad, [0, 0, 1, 1, -1, -1])).all()
    with pytest.raises(ValueError, match=r"embeddings must be a 3-D numeric array"):
        silhouette_scores(np.zeros(6), [0, 0, 1, 1, -1, -1])
    with pytest.raises(ValueError, match=r"chunk_size must be in \[1, inf\], got 0"):
        silhouette_scores(emb, [0, 0, 1, 1, -1, -1], chunk_size=0)


def test_select_projection_ties_and_tables():
    assert select_projection([0.2, 0.5, 0.5, -0.1, -0.1]) == (1, 3)
    table = pd.DataFrame({"silhouette": [0.1, 0.3, 0.3, 0.0]}, index=[10, 11, 12, 13])
    assert select_projection(table) == (11, 13)
    with pytest.raises(ValueError, match=r"table has no column 'silhouette'"):
        select_projection(pd.DataFrame({"score": [1.0]}))
    with pytest.raises(ValueError, match=r"scores contains NaN"):
        select_projection([0.1, np.nan])
    with pytest.raises(ValueError, match=r"scores must have at least 1 row"):
        select_projection([])


def test_grid_selection_end_to_end(data, grid):
    """Embeddings are label-free: selection is redone per labelled subset."""
    _, y = data
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        labels = np.where(rng.random(N) < 0.2, y, -1)
        scores = silhouette_scores(grid.embeddings, labels)
        mask = labels >= 0
        ref = [
            silhouette_score(e[mask], labels[mask], metric="sqeuclidean")
            for e in grid.embeddings.astype(np.float64)
        ]
        best, worst = select_projection(scores)
        assert best == int(np.argmax(ref)) and worst == int(np.argmin(ref))


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def _n_points(ax):
    return sum(c.get_offsets().shape[0] for c in ax.collections)


def test_plot_projection(tmp_path, data, grid):
    _, y = data
    labels = np.where(np.arange(N) % 4 == 0, y, -1)
    subjects = np.arange(N) % 3
    fig = plot_projection(
        grid.embeddings[0],
        labels,
        ["a", "b", "c"],
        title="best",
        subjects=subjects,
        highlight=labels >= 0,
    )
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    n_highlight = (labels >= 0).sum()
    assert _n_points(ax) == N + n_highlight
    grey = ax.collections[0]
    assert grey.get_zorder() < ax.collections[-1].get_zorder()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"a", "b", "c", "subject 0", "subject 1", "subject 2"} <= set(legend)
    assert any(t.startswith("unlabelled") for t in legend)
    fig.savefig(tmp_path / "projection.png", dpi=60)
    fig2 = plot_projection(
        grid.embeddings[0], y, ["a", "b", "c"], title="all", highlight=[0, 5]
    )
    assert _n_points(fig2.axes[0]) == N + 2


def test_plot_projection_bad_input(grid):
    e = grid.embeddings[0]
    y = np.zeros(N, int)
    y[0] = 3
    with pytest.raises(ValueError, match=r"class id 3 but class_names has only 3"):
        plot_projection(e, y, ["a", "b", "c"], title="t")
    with pytest.raises(ValueError, match=r"embedding must have shape \(N, 2\)"):
        plot_projection(np.zeros((N, 3)), y, ["a"], title="t")
    with pytest.raises(ValueError, match=r"subjects has 13 distinct values"):
        plot_projection(
            e, np.zeros(N, int), ["a"], title="t", subjects=np.arange(N) % 13
        )
    with pytest.raises(ValueError, match=r"subjects must have shape \(150,\)"):
        plot_projection(e, np.zeros(N, int), ["a"], title="t", subjects=[1, 2])
    with pytest.raises(ValueError, match=r"highlight indices must be in \[0, 149\]"):
        plot_projection(e, np.zeros(N, int), ["a"], title="t", highlight=[150])
    with pytest.raises(ValueError, match=r"highlight mask must have shape"):
        plot_projection(
            e, np.zeros(N, int), ["a"], title="t", highlight=np.ones(3, bool)
        )


def test_plot_local_quality(tmp_path, grid):
    lq = np.linspace(0, 1, N)
    fig = plot_local_quality(grid.embeddings[0], lq, title="lq")
    assert len(fig.axes) == 2  # scatter + colour bar
    assert _n_points(fig.axes[0]) == N
    np.testing.assert_array_equal(np.sort(fig.axes[0].collections[0].get_array()), lq)
    fig.savefig(tmp_path / "lq.png", dpi=60)
    with pytest.raises(ValueError, match=r"lq has 3 entries but embedding has 150"):
        plot_local_quality(grid.embeddings[0], [0.1, 0.2, 0.3], title="lq")


def test_plot_grid_scores(tmp_path, grid):
    table = grid.table.assign(silhouette=np.linspace(-0.2, 0.6, 8))
    fig = plot_grid_scores(table)
    assert len(fig.axes) == 3  # two perplexities + colour bar
    assert "best #7" in fig.get_suptitle() and "worst #0" in fig.get_suptitle()
    fig.savefig(tmp_path / "grid.png", dpi=60)
    with pytest.raises(ValueError, match=r"table lacks column\(s\) \['silhouette'\]"):
        plot_grid_scores(grid.table)


def test_module_has_no_pyplot_state():
    assert "matplotlib.pyplot" not in projection.__dict__
