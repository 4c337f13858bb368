"""Figures of the propagation study (the paper's Fig. 4, Fig. 5, Table 5) and the
annotation map. Inputs are the tables of :mod:`lqknn.annotation`."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lqknn.annotation import rows_of_quality  # noqa: E402

_TAU_COLOURS = plt.get_cmap("viridis")


def _mean_std(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    g = frame.groupby("K")[column]
    return pd.DataFrame({"mean": 100 * g.mean(), "std": 100 * g.std().fillna(0)})


def _curve(ax, stats: pd.DataFrame, label: str, colour, style="-") -> None:
    ax.plot(stats.index, stats["mean"], style, color=colour, label=label, marker=".")
    ax.fill_between(
        stats.index,
        stats["mean"] - stats["std"],
        stats["mean"] + stats["std"],
        color=colour,
        alpha=0.15,
        linewidth=0,
    )


def plot_accuracy_vs_k(results: pd.DataFrame, *, projection: str = "best") -> Figure:
    """Annotation accuracy and labelled % against K: LQ-KNN for every tau and
    Std-KNN, mean +- std over repetitions (paper Fig. 4)."""
    frame = rows_of_quality(results[results["projection"] == projection])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    taus = sorted(frame.loc[frame["method"] == "lq_knn", "tau"].dropna().unique())
    for i, tau in enumerate(taus):
        sub = frame[(frame["method"] == "lq_knn") & (frame["tau"] == tau)]
        colour = _TAU_COLOURS(i / max(1, len(taus)))
        for ax, col in zip(
            axes, ("annotation_accuracy", "labelled_fraction"), strict=True
        ):
            _curve(ax, _mean_std(sub, col), f"LQ-KNN tau={tau:g}", colour)
    std = frame[frame["method"] == "std_knn"]
    if len(std):
        for ax, col in zip(
            axes, ("annotation_accuracy", "labelled_fraction"), strict=True
        ):
            _curve(ax, _mean_std(std, col), "Std-KNN", "tab:red", "--")
    axes[0].set_ylabel("annotation accuracy (%)")
    axes[1].set_ylabel("labelled (%)")
    for ax in axes:
        ax.set_xlabel("K (neighbours)")
        ax.grid(alpha=0.3)
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"Propagation on the {projection} projection (mean +- std)")
    fig.tight_layout()
    return fig


def plot_sorted_vs_unsorted(results: pd.DataFrame) -> Figure:
    """LQ-KNN with and without sorting by local quality (paper Fig. 5)."""
    frame = rows_of_quality(results[results["projection"] == "best"])
    taus = sorted(frame.loc[frame["method"] == "lq_knn", "tau"].dropna().unique())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, tau in enumerate(taus):
        colour = _TAU_COLOURS(i / max(1, len(taus)))
        for method, style in (("lq_knn", "-"), ("lq_knn_unsorted", ":")):
            sub = frame[(frame["method"] == method) & (frame["tau"] == tau)]
            if not len(sub):
                continue
            name = "sorted" if method == "lq_knn" else "unsorted"
            for ax, col in zip(
                axes, ("annotation_accuracy", "labelled_fraction"), strict=True
            ):
                _curve(ax, _mean_std(sub, col), f"{name}, tau={tau:g}", colour, style)
    axes[0].set_ylabel("annotation accuracy (%)")
    axes[1].set_ylabel("labelled (%)")
    for ax in axes:
        ax.set_xlabel("K (neighbours)")
        ax.grid(alpha=0.3)
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle("LQ-KNN with and without sorting by local quality")
    fig.tight_layout()
    return fig


def plot_best_vs_worst(
    results: pd.DataFrame, *, K: int = 5, tau: float = 0.1
) -> Figure:
    """Annotation accuracy and labelled % of Std-KNN and LQ-KNN on the best and the
    worst projection at one K (paper Table 5), as grouped bars with std."""
    frame = rows_of_quality(results)
    frame = frame[frame["K"] == K]
    rows = []
    for proj in ("best", "worst"):
        for method, label in (
            ("std_knn", "Std-KNN"),
            ("lq_knn", f"LQ-KNN tau={tau:g}"),
        ):
            sub = frame[(frame["projection"] == proj) & (frame["method"] == method)]
            if method == "lq_knn":
                sub = sub[np.isclose(sub["tau"].astype(float), tau)]
            if len(sub):
                rows.append(
                    {
                        "projection": proj,
                        "method": label,
                        "acc": 100 * sub["annotation_accuracy"].mean(),
                        "acc_std": 100 * sub["annotation_accuracy"].std(),
                        "lab": 100 * sub["labelled_fraction"].mean(),
                        "lab_std": 100 * sub["labelled_fraction"].std(),
                    }
                )
    table = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    if table.empty:
        for ax in axes:
            ax.text(0.5, 0.5, f"no results at K={K}", ha="center", va="center")
        return fig
    methods = list(dict.fromkeys(table["method"]))
    width = 0.8 / max(1, len(methods))
    for ax, col, ylabel in (
        (axes[0], "acc", "annotation accuracy (%)"),
        (axes[1], "lab", "labelled (%)"),
    ):
        for i, method in enumerate(methods):
            sub = table[table["method"] == method].set_index("projection")
            x = np.arange(len(sub)) + i * width
            ax.bar(x, sub[col], width, yerr=sub[f"{col}_std"].fillna(0), label=method)
            ax.set_xticks(np.arange(len(sub)) + width * (len(methods) - 1) / 2)
            ax.set_xticklabels(sub.index)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Best vs worst projection (K={K})")
    fig.tight_layout()
    return fig


def plot_calibration(calibration: pd.DataFrame) -> Figure:
    """Estimated (labelled samples only) against true annotation accuracy, one point
    per (method, K, tau, repetition); the diagonal is a perfect estimate."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    if calibration.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "error control disabled", ha="center", va="center")
        return fig
    for ax, est, true, name in (
        (axes[0], "estimated_accuracy", "true_accuracy", "annotation accuracy"),
        (axes[1], "estimated_coverage", "true_coverage", "labelled fraction"),
    ):
        for method, sub in calibration.groupby("method"):
            ax.scatter(100 * sub[est], 100 * sub[true], s=10, alpha=0.6, label=method)
        lo = 100 * min(calibration[est].min(), calibration[true].min())
        ax.plot([lo, 100], [lo, 100], "k--", linewidth=1)
        ax.set_xlabel(f"estimated {name} (%)")
        ax.set_ylabel(f"true {name} (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Annotation-error control: estimate against truth")
    fig.tight_layout()
    return fig


def plot_propagation_map(
    embedding: np.ndarray,
    initial_labels: np.ndarray,
    propagated_labels: np.ndarray,
    true_labels: np.ndarray | None,
    class_names: Sequence[str],
    *,
    title: str,
) -> Figure:
    """The 2-D map of one repetition: manual labels (large), propagated labels,
    propagation errors (red crosses) and never-labelled samples (grey)."""
    emb = np.asarray(embedding)
    y0, y = np.asarray(initial_labels), np.asarray(propagated_labels)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    never = y < 0
    ax.scatter(*emb[never].T, s=6, c="lightgrey", label="never labelled")
    colours = plt.get_cmap("tab10")
    prop = (y0 < 0) & (y >= 0)
    for c, name in enumerate(class_names):
        m = prop & (y == c)
        ax.scatter(*emb[m].T, s=6, color=colours(c % 10), alpha=0.6)
        m = y0 == c
        ax.scatter(
            *emb[m].T,
            s=30,
            color=colours(c % 10),
            edgecolors="k",
            linewidths=0.5,
            label=f"{name} (manual: large)",
        )
    if true_labels is not None:
        t = np.asarray(true_labels)
        wrong = prop & (t >= 0) & (y != t)
        ax.scatter(
            *emb[wrong].T,
            s=14,
            marker="x",
            c="red",
            linewidths=0.8,
            label=f"propagation error ({wrong.sum()})",
        )
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="best", markerscale=1.2)
    fig.tight_layout()
    return fig
