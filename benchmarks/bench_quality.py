"""Benchmark exact local quality: speed against brute force, time and memory at scale.

Usage: ``python benchmarks/bench_quality.py [--quick]``; writes
``benchmarks/results/quality.md``.

1. ``local_quality`` against ``_brute_force_local_quality`` (full N x N rank
   matrices) at N = 2,000 (500 with ``--quick``): seconds, speed ratio, max |diff|.
2. ``local_quality`` at N = 68,492 (10,000 with ``--quick``), the paper's large HITS
   set, with 32-d Gaussian-mixture features and a 2-D projection (first two PCA
   components + noise): seconds (wall and CPU), the high-dimensional search alone,
   and peak memory (tracemalloc peak of the call; process ru_maxrss).
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _machine import load_average, machine_line

from lqknn.neighbors import ranked_neighbors
from lqknn.quality import _brute_force_local_quality, local_quality

RESULTS = Path(__file__).parent / "results" / "quality.md"
MACHINE_LINE_AT = "<machine>"  # filled in at the end, with the load average


def mixture(n, d=32, n_clusters=10, seed=0):
    """Gaussian mixture features and a 2-D projection (PCA + noise)."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.normal(size=(n_clusters, d))
    high = centres[rng.integers(0, n_clusters, n)] + rng.normal(size=(n, d))
    centred = high - high.mean(axis=0)
    _, _, vt = np.linalg.svd(centred[: min(n, 5000)], full_matrices=False)
    low = centred @ vt[:2].T + 0.5 * rng.normal(size=(n, 2))
    return high, low


def timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    args = parser.parse_args(argv)
    load_before = load_average()
    n_small, n_large = (500, 10_000) if args.quick else (2_000, 68_492)
    ks = kt = 10
    lines = [
        "# Local quality benchmark",
        "",
        f"Command: `python benchmarks/{Path(__file__).name}"
        f"{' --quick' if args.quick else ''}`",
        MACHINE_LINE_AT,
        f"ks = kt = {ks}. Data: 32-d mixture of 10 Gaussians, 2-D = first two PCA "
        "components + N(0, 0.5^2) noise.",
        "",
    ]

    # warm-up: numba kernels compiled / loaded from cache
    warm_high, warm_low = mixture(300)
    local_quality(warm_high, warm_low, ks, kt)

    # 1. against brute force
    high, low = mixture(n_small, seed=1)
    fast, t_fast, _ = timed(local_quality, high, low, ks, kt)
    brute, t_brute, _ = timed(_brute_force_local_quality, high, low, ks, kt)
    diff = float(np.abs(fast - brute).max())
    lines += [
        f"## N = {n_small:,}: exact local_quality vs brute force (full rank matrices)",
        "",
        "| version | seconds |",
        "|---|---|",
        f"| local_quality (neighbour lists) | {t_fast:.3f} |",
        f"| brute force (N x N ranks) | {t_brute:.3f} |",
        "",
        f"Speed ratio: {t_brute / t_fast:.1f}x; max |difference| = {diff:.1e}.",
        "",
    ]
    print("\n".join(lines[-9:]))

    # 2. at scale
    high, low = mixture(n_large, seed=2)
    _, t_high, c_high = timed(ranked_neighbors, high, ks + kt + 1)
    _, t_low, c_low = timed(ranked_neighbors, low, ks + kt + 1)
    tracemalloc.start()
    lq, t_all, c_all = timed(local_quality, high, low, ks, kt)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    data_mb = (high.nbytes + low.nbytes) / 2**20
    lines += [
        f"## N = {n_large:,}, 32-d features, 2-D projection",
        "",
        "| step | wall s | CPU s |",
        "|---|---|---|",
        f"| ranked_neighbors(high, 21), 32-d | {t_high:.2f} | {c_high:.2f} |",
        f"| ranked_neighbors(low, 21), 2-D | {t_low:.2f} | {c_low:.2f} |",
        f"| local_quality (all, tracemalloc on) | {t_all:.2f} | {c_all:.2f} |",
        "",
        f"Peak memory allocated during local_quality (tracemalloc): "
        f"{peak / 2**20:.0f} MiB (input arrays, {data_mb:.0f} MiB, not included). "
        f"Process peak RSS (ru_maxrss, imports and data included): {rss:.0f} MiB.",
        f"lq: min {lq.min():.3f}, mean {lq.mean():.3f}, max {lq.max():.3f}.",
        "",
    ]
    print("\n".join(lines[-11:]))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    versions = f"Python {platform.python_version()}, numpy {np.__version__}"
    lines[lines.index(MACHINE_LINE_AT)] = machine_line(load_before, versions)
    RESULTS.write_text("\n".join(lines))
    print(f"written to {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
