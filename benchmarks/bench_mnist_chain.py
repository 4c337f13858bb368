"""The whole chain on the MNIST pool from ../shared/data/mnist (issues 3, 5, 6).

features (auto-encoder and PCA-32) -> t-SNE grid -> local quality ->
propagation study (10 % labelled, ks = kt = 10, R repetitions; Table 4 rows) ->
noisy-label classification on the fixed 2,000-image test split (hold-out,
no propagation / Std-KNN K 10 / LQ-KNN K 10 tau 0.1, CE and GCE).

Usage::

    python benchmarks/bench_mnist_chain.py [--quick] [--repetitions 10]
        [--opf-repetitions 1] [--ae-epochs 10] [--cnn-epochs 5] [--cnn-repetitions 5]

Writes ``benchmarks/results/mnist_chain.md``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lqknn.annotation import (
    StudyConfig,
    quality_key,
    run_evaluation_study,
    summarise_results,
)
from lqknn.data.mnist import load_mnist_idx
from lqknn.experiments import run_experiments
from lqknn.features import FeatureEncoder, knn_feature_accuracy
from lqknn.neighbors import ranked_neighbors
from lqknn.projection import tsne_grid
from lqknn.quality import local_quality_from_neighbors

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"
OUT = ROOT / "benchmarks" / "results" / "mnist_chain.md"

PAPER = {  # METHOD.md section 8, MNIST (annotation accuracy %, labelled %)
    ("std_knn", 5): "91.83 +- 1.47 / 95.39 +- 1.05",
    ("std_knn", 10): "90.74 +- 1.45 / 99.43 +- 0.23",
    ("lq_knn", 5): "93.12 +- 1.36 / 93.88 +- 0.66",
    ("lq_knn", 10): "92.66 +- 1.30 / 98.16 +- 0.42",
    ("opf_semi", "-"): "82.32 +- 6.17 / 100",
}


def grid_quality(features, embeddings, ks=10, kt=10):
    high_nb = ranked_neighbors(features.astype(np.float64), ks + kt + 1)
    lq = np.stack(
        [
            local_quality_from_neighbors(
                high_nb, ranked_neighbors(e.astype(np.float64), ks + kt + 1), ks, kt
            )
            for e in embeddings
        ]
    )
    return {quality_key(ks, kt): lq}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repetitions", type=int, default=10)
    p.add_argument("--opf-repetitions", type=int, default=1)
    p.add_argument("--ae-epochs", type=int, default=10)
    p.add_argument("--cnn-epochs", type=int, default=5)
    p.add_argument("--cnn-repetitions", type=int, default=5)
    p.add_argument("--perplexities", type=float, nargs="+", default=[30.0])
    p.add_argument("--exaggerations", type=float, nargs="+", default=[12.0, 50.0])
    p.add_argument("--n-iter", type=int, default=750)
    p.add_argument(
        "--output",
        default=None,
        help="file name in benchmarks/results (default mnist_chain.md, or "
        "mnist_chain_quick.md with --quick)",
    )
    args = p.parse_args()
    if args.quick:
        args.repetitions, args.opf_repetitions, args.ae_epochs = 2, 0, 1
        args.cnn_epochs, args.cnn_repetitions = 1, 1
        args.n_iter = 350

    t_all = time.perf_counter()
    ds = load_mnist_idx(MNIST, test_size=2000, seed=0)
    if args.quick:
        keep = np.r_[
            np.flatnonzero(ds.samples["split"] == "pool")[:1500],
            np.flatnonzero(ds.samples["split"] == "test")[:300],
        ]
        ds.images, ds.samples = (
            ds.images[keep],
            ds.samples.iloc[keep].reset_index(drop=True),
        )
    pool = (ds.samples["split"] == "pool").to_numpy()
    y_pool = ds.samples.loc[pool, "label"].to_numpy()
    lines = [
        "# MNIST chain benchmark",
        "",
        f"Command: `python benchmarks/bench_mnist_chain.py {' '.join(sys.argv[1:])}`",
        "",
        f"Machine: {platform.machine()}, 2 cores, Python {platform.python_version()}. "
        f"Pool {pool.sum()} images (10 % labelled per repetition), "
        f"test split {(~pool).sum()} images.",
        "",
    ]
    feature_sets = {}
    for method in ("autoencoder", "pca"):
        t0 = time.perf_counter()
        kw = (
            {"epochs": args.ae_epochs, "progress": False}
            if method == "autoencoder"
            else {}
        )
        enc = FeatureEncoder(method, n_components=32, seed=0, **kw).fit(ds.images[pool])
        feats = enc.transform(ds.images[pool])
        secs = time.perf_counter() - t0
        acc = knn_feature_accuracy(feats, y_pool, k=5)
        feature_sets[method] = feats
        lines.append(
            f"- features `{method}`: {secs:.1f} s to fit and encode, 5-fold 5-NN "
            f"accuracy {100 * acc:.2f} %"
        )
        print(lines[-1], flush=True)
    lines.append("")

    label_sets = {}
    for method, feats in feature_sets.items():
        t0 = time.perf_counter()
        grid = tsne_grid(
            feats,
            args.perplexities,
            args.exaggerations,
            ["auto"],
            n_iter=args.n_iter,
            seed=0,
            n_jobs=1,
            progress=False,
        )
        t_tsne = time.perf_counter() - t0
        t0 = time.perf_counter()
        lq = grid_quality(feats, grid.embeddings)
        t_lq = time.perf_counter() - t0
        cfg = StudyConfig(
            labelled_fraction=0.1,
            n_repetitions=args.repetitions,
            Ks=[5, 10],
            taus=[0.1],
            methods=["std_knn", "lq_knn", "opf_semi"],
            projections=["best"],
            error_control=False,
            opf_repetitions=args.opf_repetitions,
            variants=[
                {"name": "no_propagation", "method": "none"},
                {"name": "std_knn_K10", "method": "std_knn", "K": 10},
                {"name": "lq_knn_K10_tau0.1", "method": "lq_knn", "K": 10, "tau": 0.1},
            ],
        )
        t0 = time.perf_counter()
        study = run_evaluation_study(
            grid.embeddings,
            lq,
            y_pool,
            cfg,
            [str(i) for i in range(10)],
            progress=False,
        )
        t_study = time.perf_counter() - t0
        summary = summarise_results(study["results"])
        label_sets[method] = {
            "mode": "evaluation",
            "pool_sample_id": ds.samples.loc[pool, "sample_id"].to_numpy(),
            "repetitions": study["label_sets"],
        }
        lines += [
            f"## Propagation with `{method}` features",
            "",
            f"t-SNE grid: {len(grid.table)} configuration(s) (perplexity "
            f"{args.perplexities}, early exaggeration {args.exaggerations}, learning "
            f"rate auto, {args.n_iter} iterations) in {t_tsne:.0f} s; local quality "
            f"of the grid {t_lq:.1f} s; study ({args.repetitions} repetitions, OPF-semi "
            f"in {args.opf_repetitions}) {t_study:.0f} s.",
            "",
            "| method | tau | K | annotation acc. % | labelled % | ms / sample | "
            "repetitions | paper (acc. / labelled) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for _, r in summary.iterrows():
            key = (r["method"], r["K"] if r["method"] != "opf_semi" else "-")
            lines.append(
                f"| {r['method']} | {r['tau']} | {r['K']} | {r['accuracy_mean']:.2f} +- "
                f"{np.nan_to_num(r['accuracy_std']):.2f} | {r['labelled_mean']:.2f} +- "
                f"{np.nan_to_num(r['labelled_std']):.2f} | {r['ms_per_sample']:.4f} | "
                f"{r['repetitions']} | {PAPER.get(key, '')} |"
            )
        lines.append("")
        print("\n".join(lines[-len(summary) - 6 :]), flush=True)

    # Noisy-label classification on the fixed test split (AE label sets).
    t0 = time.perf_counter()
    results = run_experiments(
        ds.images,
        ds.samples,
        ds.samples["label"].to_numpy(),
        label_sets["autoencoder"],
        variants=["no_propagation", "std_knn_K10", "lq_knn_K10_tau0.1"],
        losses=[{"name": "ce"}, {"name": "gce", "q": 0.7}],
        protocol="holdout",
        n_repetitions=args.cnn_repetitions,
        class_names=[str(i) for i in range(10)],
        training_params={
            "optimizer": "adamax",
            "epochs": args.cnn_epochs,
            "batch_size": 64,
            "learning_rate": 7e-3,
            "weight_decay": 1e-7,
        },
        n_jobs=2,
        progress=False,
    )
    t_cnn = time.perf_counter() - t0
    table = (
        results[results["status"] == "ok"]
        .groupby(["variant", "loss_name"])["accuracy"]
        .agg(["mean", "std", "size"])
        .reset_index()
    )
    lines += [
        "## Classification on the 2,000-image test split (AE label sets)",
        "",
        f"{args.cnn_repetitions} repetition(s) (repetition r trains on propagation "
        f"repetition r's labels), {args.cnn_epochs} epochs, the paper's 28 x 28 CNN, "
        f"Adamax lr 7e-3, batch 64; {t_cnn:.0f} s in all (2 joblib workers).",
        "",
        "| variant | loss | test accuracy % | repetitions |",
        "|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['variant']} | {r['loss_name']} | {100 * r['mean']:.2f} +- "
            f"{100 * np.nan_to_num(r['std']):.2f} | {r['size']} |"
        )
    acc = table.set_index(["variant", "loss_name"])["mean"]
    best = acc.idxmax()
    lines += [
        "",
        f"Best: {best[0]} + {best[1]}. LQ-KNN beats Std-KNN with CE: "
        f"{bool(acc.get(('lq_knn_K10_tau0.1', 'ce'), 0) > acc.get(('std_knn_K10', 'ce'), 0))}.",
        "",
        f"Total wall time: {time.perf_counter() - t_all:.0f} s.",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    out = OUT.with_name("mnist_chain_quick.md") if args.quick else OUT
    if args.output:
        out = OUT.with_name(Path(args.output).name)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-12:]))
    print(f"written to {out}")


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    main()
