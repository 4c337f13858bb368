"""Benchmark lqknn.propagation: LQ-KNN / Std-KNN time and OPF-semi ratio.

Usage: ``python benchmarks/bench_propagation.py [--quick]``

1. Time of ``lq_knn`` (sorted and unsorted) and ``std_knn`` at N = 68,492, K = 10
   (the size of the paper's large HITS set), neighbour search timed separately,
   numba compilation excluded by a warm-up call (target: under 2 s each).
2. Milliseconds per propagated sample of LQ-KNN / Std-KNN against ``opf_semi`` at
   N = 10,000 (``--quick``: N = 2,000; ``--opf-n N``: any N; the paper reports a
   ratio of about 10^3). OPF-semi is O(N^2) pure Python: about 1 min at N = 2,000
   and, by that scaling, about 25 min at N = 10,000 on a loaded 2-core machine.

Data: a synthetic 2-D embedding of 10 Gaussian blobs (centres on a circle of
radius 10, unit-variance blobs scaled by 2, so neighbouring blobs overlap), 10 %
labelled per class (stratified, seeded), and a synthetic local quality with few
distinct values (Beta(4, 1.5) rounded to 0.05, normalised to max 1): the
propagation's cost does not depend on how lq was computed.

Results go to ``benchmarks/results/propagation.md``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
from _machine import load_average, machine_line

from lqknn.neighbors import knn_excluding_self
from lqknn.propagation import lq_knn, opf_semi, std_knn

RESULTS = Path(__file__).resolve().parent / "results" / "propagation.md"
MACHINE_LINE_AT = "<machine>"  # filled in at the end, with the load average


def make_data(n, seed=0, n_classes=10, frac=0.1):
    """Blobs embedding, stratified 10 % labels, synthetic lq, ground truth."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n)
    angle = 2 * np.pi * np.arange(n_classes) / n_classes
    centres = 10 * np.c_[np.cos(angle), np.sin(angle)]
    E = centres[truth] + 2.0 * rng.normal(size=(n, 2))
    y = np.full(n, -1, dtype=np.int64)
    for c in range(n_classes):
        idx = np.flatnonzero(truth == c)
        keep = rng.choice(idx, int(np.floor(frac * idx.size)), replace=False)
        y[keep] = c
    lq = np.round(rng.beta(4.0, 1.5, n) / 0.05) * 0.05
    lq = lq / lq.max()
    return E, y, lq, truth


def best_of(fn, repeats):
    times, res = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times)), res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="OPF-semi at N = 2,000")
    ap.add_argument(
        "--opf-n", type=int, default=None, help="N of part 2 (overrides --quick)"
    )
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    load_before = load_average()
    lines = [
        "# Benchmark: propagation",
        "",
        f"Command: `python benchmarks/bench_propagation.py {' '.join(sys.argv[1:])}`",
        "",
        MACHINE_LINE_AT,
        "",
        "Data: 2-D embedding of 10 overlapping Gaussian blobs, 10 % labelled "
        "(stratified), synthetic lq with few distinct values (see the script).",
        "",
    ]

    # Warm-up: numba compilation / cache load is excluded from the timings.
    Ew, yw, lqw, _ = make_data(500, seed=1)
    std_knn(Ew, yw, K=10)
    lq_knn(Ew, yw, lqw, K=10, tau=0.1, sort=False)
    lq_knn(Ew, yw, lqw, K=10, tau=0.1)

    # ---- 1. speed at N = 68,492 ----------------------------------------------
    n, K, tau = 68_492, 10, 0.1
    E, y, lq, truth = make_data(n)
    t0 = time.perf_counter()
    nb = knn_excluding_self(E, K)
    t_nb = time.perf_counter() - t0
    lines += [
        f"## 1. Time at N = {n:,}, K = {K}, tau = {tau}",
        "",
        f"Neighbour search (`knn_excluding_self(E, {K})`): {t_nb:.3f} s.",
        f"Propagation with the neighbours given: best / median of {args.repeats} "
        "runs; 'total' = one call that also searches the neighbours.",
        "",
        "| method | best s | median s | total s (with search) | iterations "
        "| labelled % | accuracy % | < 2 s (propagation / with search) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    runs = {
        "LQ-KNN (sorted)": lambda **kw: lq_knn(E, y, lq, K=K, tau=tau, **kw),
        "LQ-KNN (unsorted)": lambda **kw: lq_knn(
            E, y, lq, K=K, tau=tau, sort=False, **kw
        ),
        "Std-KNN": lambda **kw: std_knn(E, y, K=K, **kw),
    }
    for name, fn in runs.items():
        best, med, res = best_of(lambda fn=fn: fn(neighbors=nb), args.repeats)
        total = fn().seconds
        s = res.score(y, truth)
        ok = f"{'yes' if best < 2.0 else 'NO'} / {'yes' if total < 2.0 else 'NO'}"
        lines.append(
            f"| {name} | {best:.3f} | {med:.3f} | {total:.3f} | {res.n_iterations} "
            f"| {100 * s['labelled_fraction']:.2f} | "
            f"{100 * s['annotation_accuracy']:.2f} | {ok} |"
        )
        print(lines[-1], flush=True)

    # ---- 2. ms per propagated sample against OPF-semi --------------------------
    n2 = args.opf_n or (2_000 if args.quick else 10_000)
    E, y, lq, truth = make_data(n2, seed=2)
    lines += [
        "",
        f"## 2. ms per propagated sample at N = {n2:,} (K = 10, tau = 0.1)",
        "",
        "Times of whole calls, neighbour search included (as the paper's code).",
        "",
        "| method | seconds | labelled % | accuracy % | ms / sample "
        "| OPF-semi / method |",
        "|---|---|---|---|---|---|",
    ]
    fast = {
        "LQ-KNN": best_of(lambda: lq_knn(E, y, lq, K=10, tau=0.1), args.repeats)[2],
        "Std-KNN": best_of(lambda: std_knn(E, y, K=10), args.repeats)[2],
    }
    print(f"running opf_semi at N = {n2} ...", flush=True)
    opf = opf_semi(E, y)
    opf_ms = opf.score(y, truth)["ms_per_sample"]
    for name, res in [*fast.items(), ("OPF-semi", opf)]:
        s = res.score(y, truth)
        lines.append(
            f"| {name} | {res.seconds:.4f} | {100 * s['labelled_fraction']:.2f} | "
            f"{100 * s['annotation_accuracy']:.2f} | {s['ms_per_sample']:.4f} | "
            f"{opf_ms / s['ms_per_sample']:.0f} |"
        )
        print(lines[-1], flush=True)
    lines.append("")
    python = f"Python {platform.python_version()}, numpy {np.__version__}"
    lines[lines.index(MACHINE_LINE_AT)] = machine_line(load_before, python)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
