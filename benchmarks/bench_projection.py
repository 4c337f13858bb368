"""Benchmark: the paper's MNIST t-SNE grid, affinity reuse + parallelism vs scratch.

The paper's 27-configuration MNIST grid (perplexity {10, 30, 50} x early
exaggeration {50, 250, 500} x learning rate {10, 100, 1000}; METHOD.md section 2)
on MNIST features (PCA to 32 dimensions of the 10,000-image MNIST test set, then a
seeded subset of ``--n`` images):

- reuse + parallel: ``tsne_grid(..., reuse_affinities=True, n_jobs=--n-jobs)``:
  affinities once per perplexity, initialisation once, configurations on joblib
  workers (loky processes, joblib's default);
- scratch: ``tsne_grid(..., reuse_affinities=False, n_jobs=1)``: every
  configuration computes its own affinities and initialisation, one after the
  other (what a plain loop of ``TSNE().fit`` calls does);
- reuse alone: ``reuse_affinities=True, n_jobs=1`` (separates the two effects);
- unless ``--skip-threads``: reuse + parallel under joblib's threading backend.

All must give bit-identical embeddings (checked), hence the same best silhouette
(10 % of the samples labelled, stratified as METHOD.md section 1). Wall and
process CPU times are reported: the machine is shared, so CPU time shows the work
saved more reliably than wall time. Results go to
``benchmarks/results/projection.md`` (``projection_quick.md`` for ``--quick``).

Usage::

    python benchmarks/bench_projection.py --quick        # 1,000 points, 4 configs
    python benchmarks/bench_projection.py --n 1000 --n-iter 400 --exaggeration-iter 100 \
        --skip-threads                                        # what was run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from _machine import load_average, machine_line
from joblib import parallel_config
from sklearn.decomposition import PCA

from lqknn.data.mnist import read_idx
from lqknn.projection import select_projection, silhouette_scores, tsne_grid
from lqknn.split import labelled_subset

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"
RESULTS = ROOT / "benchmarks" / "results" / "projection.md"

PAPER_GRID = {
    "perplexities": [10, 30, 50],
    "early_exaggerations": [50, 250, 500],
    "learning_rates": [10, 100, 1000],
}
QUICK_GRID = {
    "perplexities": [10, 30],
    "early_exaggerations": [50],
    "learning_rates": [100, 1000],
}


def mnist_features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA-32 of the 10k MNIST test images (pixels / 255), then n random images."""
    images = read_idx(MNIST / "t10k-images-idx3-ubyte.gz").reshape(10_000, -1)
    labels = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    feats = PCA(32, random_state=seed).fit_transform(images / 255.0)
    idx = np.sort(np.random.default_rng(seed).permutation(10_000)[:n])
    return feats[idx], labels[idx]


def summarise(name: str, res, labels) -> dict:
    scores = silhouette_scores(res.embeddings, labels)
    t0 = time.perf_counter()
    for _ in range(10):
        silhouette_scores(res.embeddings, labels)
    sil_ms = (time.perf_counter() - t0) / 10 * 1e3
    best, worst = select_projection(scores)
    row = res.table.loc[best]
    return {
        "mode": name,
        "total_s": res.total_seconds,
        "sum_config_s": float(res.table.seconds.sum()),
        "affinity_s": float(sum(res.affinity_seconds.values())),
        "best": best,
        "best_sil": float(scores[best]),
        "best_cfg": (
            f"p={row.perplexity:g}, ee={row.early_exaggeration:g}, "
            f"lr={row.learning_rate:g}"
        ),
        "worst": worst,
        "worst_sil": float(scores[worst]),
        "sil_ms": sil_ms,
        "scores": scores,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 points, 4 configs")
    ap.add_argument("--n", type=int, default=1000, help="MNIST images (<= 10,000)")
    ap.add_argument("--n-iter", type=int, default=400, help="total iterations")
    ap.add_argument("--exaggeration-iter", type=int, default=100)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--skip-serial",
        action="store_true",
        help="skip the 'reuse affinities, n_jobs=1' mode (saves one serial grid)",
    )
    ap.add_argument(
        "--skip-threads",
        action="store_true",
        help="skip the threading-backend identity check",
    )
    args = ap.parse_args(argv)
    grid = QUICK_GRID if args.quick else PAPER_GRID
    n = 1000 if args.quick else args.n
    n_iter, ex_iter = (150, 50) if args.quick else (args.n_iter, args.exaggeration_iter)

    load_before = load_average()
    x, y = mnist_features(n, args.seed)
    labels = np.where(labelled_subset(y, 0.10, args.seed), y, -1)
    common = {
        "n_iter": n_iter,
        "exaggeration_iter": ex_iter,
        "seed": args.seed,
        "progress": False,
    } | grid
    n_configs = (
        len(grid["perplexities"])
        * len(grid["early_exaggerations"])
        * len(grid["learning_rates"])
    )
    print(
        f"MNIST N={n}, d=32, {n_configs} configs, n_iter={n_iter} "
        f"({ex_iter} exaggerated), {(labels >= 0).sum()} labelled",
        flush=True,
    )

    modes = [
        ("reuse_parallel", {"n_jobs": args.n_jobs}),
        ("scratch", {"n_jobs": 1, "reuse_affinities": False}),
        ("reuse_serial", {"n_jobs": 1}),
    ]
    if args.skip_serial:
        modes = modes[:2]
    runs = {}
    for mode, kwargs in modes:
        cpu0 = time.process_time()
        res = tsne_grid(x, **common, **kwargs)
        # Process CPU time of this process only: loky workers' CPU is not included.
        cpu = time.process_time() - cpu0 if kwargs["n_jobs"] == 1 else float("nan")
        runs[mode] = (res, cpu)
        print(
            f"{mode}: {res.total_seconds:.1f} s wall, {runs[mode][1]:.1f} s CPU",
            flush=True,
        )
    reuse, scratch = runs["reuse_parallel"][0], runs["scratch"][0]
    serial = runs.get("reuse_serial", (None, float("nan")))[0]
    identical = all(
        np.array_equal(r.embeddings, scratch.embeddings) for r, _ in runs.values()
    )
    threads_note = "not run (--skip-threads)"
    if not args.skip_threads:
        with parallel_config(backend="threading"):
            thr = tsne_grid(x, **common, n_jobs=args.n_jobs)
        same = np.array_equal(thr.embeddings, reuse.embeddings)
        threads_note = (
            f"{thr.total_seconds:.1f} s wall, "
            f"embeddings identical to the process run: {same}"
        )
        print(f"reuse + threads: {threads_note}", flush=True)

    names = {
        "reuse_parallel": f"reuse affinities, n_jobs={args.n_jobs} (loky processes)",
        "scratch": "from scratch, n_jobs=1",
        "reuse_serial": "reuse affinities, n_jobs=1",
    }
    rows = [summarise(names[m], r, labels) | {"cpu_s": c} for m, (r, c) in runs.items()]
    cmd = "python " + " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    lines = [
        "# Projection grid benchmark (`lqknn.projection.tsne_grid`)",
        "",
        f"Command: `{cmd}`",
        "",
        machine_line(load_before),
        "",
        f"Data: MNIST test set, PCA to 32 dimensions (fitted on all 10,000 images), "
        f"seeded subset of N = {n} images; {(labels >= 0).sum()} labelled (10 % per "
        "class, METHOD.md section 1) for the silhouette.",
        "",
        f"Grid: perplexity {grid['perplexities']} x early exaggeration "
        f"{grid['early_exaggerations']} x learning rate {grid['learning_rates']} = "
        f"{n_configs} configurations; n_iter = {n_iter} in all ({ex_iter} with early "
        "exaggeration), momentum 0.8, PCA initialisation, openTSNE "
        "neighbors='auto' (Annoy for N >= 1,000), Barnes-Hut gradient (N < 10,000), "
        f"seed {args.seed}.",
        "",
        "CPU s: CPU time of the benchmark process (n/a for the process pool, whose "
        "workers' CPU it cannot see). Sum of per-config s: each configuration's own "
        "wall time (with 2 workers they overlap). Shared affinity s: the per-"
        "perplexity stage (for the process pool it includes the workers' start-up).",
        "",
        "| mode | total wall s | CPU s | sum of per-config s "
        "| shared affinity s | best config | best silhouette | worst silhouette "
        "| silhouette of all configs (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['total_s']:.1f} | "
            f"{'n/a' if np.isnan(r['cpu_s']) else format(r['cpu_s'], '.1f')} | "
            f"{r['sum_config_s']:.1f} | {r['affinity_s']:.2f} | "
            f"#{r['best']} ({r['best_cfg']}) | {r['best_sil']:.4f} | "
            f"{r['worst_sil']:.4f} (#{r['worst']}) | {r['sil_ms']:.1f} |"
        )
    serial_note = (
        "reuse alone not run (--skip-serial)"
        if serial is None
        else f"reuse alone {scratch.total_seconds / serial.total_seconds:.2f}x. "
        "CPU-time ratio scratch / reuse (the work saved, less sensitive to other "
        f"processes): {runs['scratch'][1] / runs['reuse_serial'][1]:.2f}x"
    )
    lines += [
        "",
        "Wall-time speed-up over from scratch: reuse + parallel "
        f"{scratch.total_seconds / reuse.total_seconds:.2f}x, {serial_note}. "
        f"Embeddings bit-identical across the {len(runs)} modes: {identical}.",
        f"Threading backend check (`joblib.parallel_config(backend='threading')`): "
        f"{threads_note}.",
        "",
        "Per configuration (reuse run):",
        "",
        "| config | perplexity | early exagg. | learning rate | KL | seconds "
        "| silhouette |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in reuse.table.iterrows():
        lines.append(
            f"| {i} | {r.perplexity:g} | {r.early_exaggeration:g} | "
            f"{r.learning_rate:g} | {r.kl_divergence:.3f} | {r.seconds:.1f} | "
            f"{rows[0]['scores'][i]:.4f} |"
        )
    text = "\n".join(lines) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    out = RESULTS.with_name("projection_quick.md") if args.quick else RESULTS
    out.write_text(text)
    print(text)
    print(f"written to {out}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
