"""Time the synthetic HITS generator and the HITS loader.

Usage: python benchmarks/bench_synthetic_hits.py [--quick]
Writes benchmarks/results/synthetic_hits.md.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _machine import load_average, machine_line

from lqknn.data.hits import load_hits_folder
from lqknn.data.synthetic_hits import generate_hits_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,500 images only")
    args = parser.parse_args()
    load_before = load_average()
    sizes = [1500] if args.quick else [1500, 20000]
    rows = []
    root = Path(tempfile.mkdtemp(prefix="bench_hits_"))
    try:
        for n in sizes:
            folder = root / f"n{n}"
            t0 = time.perf_counter()
            generate_hits_folder(folder, n_samples=n, n_subjects=20, seed=0)
            t_gen = time.perf_counter() - t0
            t0 = time.perf_counter()
            generate_hits_folder(folder, n_samples=n, n_subjects=20, seed=0)
            t_skip = time.perf_counter() - t0
            t0 = time.perf_counter()
            ds = load_hits_folder(folder)
            t_load = time.perf_counter() - t0
            mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
            rows.append((n, t_gen, t_skip, t_load, mb, ds.images.shape))
            print(
                f"n={n}: generate {t_gen:.1f} s, up-to-date check {t_skip:.2f} s, "
                f"load {t_load:.1f} s, {mb:.1f} MB"
            )
    finally:
        shutil.rmtree(root)
    out = Path(__file__).parent / "results" / "synthetic_hits.md"
    out.parent.mkdir(exist_ok=True)
    lines = [
        "# Synthetic HITS generator and loader",
        "",
        f"Command: `python {' '.join(sys.argv)}`",
        machine_line(load_before, "images 64 x 64, 16-bit PNG, 20 subjects"),
        "",
        "| images | generate (s) | up-to-date check (s) | load (s) | folder (MB) |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {n} | {g:.1f} | {s:.2f} | {ld:.1f} | {mb:.1f} |"
        for n, g, s, ld, mb, _ in rows
    ]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
