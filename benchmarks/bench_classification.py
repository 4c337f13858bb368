"""Seconds per training epoch of the classification CNNs, and learning curves.

Run ``python benchmarks/bench_classification.py [--quick]`` from the project root;
results go to ``benchmarks/results/classification.md``.

Measures
1. seconds per epoch (and milliseconds per image) of ``train_classifier`` for the
   paper's 28 x 28 network on 8,000 MNIST-sized images, for the spectrogram network
   on 1,400 64 x 64 images (two channel widths) and on 1,797 8 x 8 images, with 1
   and 2 torch threads;
2. test accuracy per epoch on real MNIST (``../shared/data/mnist``: 2,000-image test
   split, 800 and 8,000 labelled training images) and on synthetic HITS (1,400
   images of 10 subjects: train on 7 subjects, test on 3), to choose the number of
   epochs and the HITS learning rate; and on scikit-learn's 8 x 8 digits (400
   test images).

``--quick`` divides the sizes by 10 and trains 2 epochs, to check the script.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lqknn.classification import CNNConfig, train_classifier
from lqknn.data.mnist import read_idx

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"
OUT = ROOT / "benchmarks" / "results" / "classification.md"


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(MNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")
    images = images.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    return images, labels.astype(np.int64)


def epoch_seconds(shape, n, config, batch_size, threads, epochs=1) -> float:
    rng = np.random.default_rng(0)
    x = rng.random((n, *shape), dtype=np.float32)
    y = np.arange(n) % 3
    result = train_classifier(
        x,
        y,
        n_classes=3,
        config=config,
        epochs=epochs,
        batch_size=batch_size,
        progress=False,
        num_threads=threads,
    )
    return float(result.history["seconds"].mean())


def timing_table(scale: float, epochs: int) -> list[str]:
    mnist = CNNConfig(architecture="mnist")
    wide = CNNConfig(architecture="spectrogram", channels=(16, 32, 64))
    narrow = CNNConfig(architecture="spectrogram", channels=(8, 16, 32))
    cases = [
        ("mnist net 28x28", (1, 28, 28), 8000, mnist, 64),
        ("mnist net 28x28", (1, 28, 28), 8000, mnist, 32),
        ("spectrogram (16,32,64) 64x64", (1, 64, 64), 1400, wide, 32),
        ("spectrogram (8,16,32) 64x64", (1, 64, 64), 1400, narrow, 32),
        ("spectrogram (16,32,64) 8x8", (1, 8, 8), 1797, wide, 32),
    ]
    lines = [
        "| network | images | batch | threads | s / epoch | ms / image |",
        "|---|---|---|---|---|---|",
    ]
    # warm-up: the first optimizer construction imports torch modules lazily
    epoch_seconds((1, 8, 8), 16, narrow, 8, 1)
    for name, shape, n, config, batch in cases:
        for threads in (1, 2):
            # 2 threads are measured on 1/16 of the images (they are slow
            # when other processes compete for the 2 cores) and scaled up
            size = max(int(n * scale / (16 if threads == 2 else 1)), 32)
            seconds = epoch_seconds(shape, size, config, batch, threads, epochs)
            per_image = seconds / size
            lines.append(
                f"| {name} | {n} | {batch} | {threads} | {per_image * n:.1f} "
                f"| {per_image * 1e3:.2f} |"
            )
            print(lines[-1], flush=True)
    return lines


def curve(images, labels, test_images, test_labels, config, params) -> list[float]:
    result = train_classifier(
        images,
        labels,
        n_classes=int(labels.max()) + 1,
        config=config,
        test_images=test_images,
        test_labels=test_labels,
        progress=False,
        num_threads=1,
        **params,
    )
    return result.history["test_accuracy"].round(4).tolist(), float(
        result.history["seconds"].sum()
    )


def learning_curves(scale: float, quick: bool) -> list[str]:
    lines = [
        "| data | train images | params | test accuracy per epoch | train s |",
        "|---|---|---|---|---|",
    ]
    images, labels = load_mnist()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))
    test, pool = order[:2000], order[2000:]
    mnist = CNNConfig(architecture="mnist")
    for n_train, epochs in ((800, 20), (8000, 5)):
        n = max(int(n_train * scale), 64)
        epochs = 2 if quick else epochs
        params = {
            "epochs": epochs,
            "batch_size": 64,
            "learning_rate": 7e-3,
            "optimizer": "adamax",
            "weight_decay": 1e-7,
        }
        accs, secs = curve(
            images[pool[:n]],
            labels[pool[:n]],
            images[test],
            labels[test],
            mnist,
            params,
        )
        lines.append(
            f"| MNIST | {n} | adamax lr 7e-3 batch 64 CE | {accs} | {secs:.0f} |"
        )
        print(lines[-1], flush=True)

    from lqknn.data.synthetic_hits import render_hits

    n = max(int(1400 * scale), 100)
    hits, table = render_hits(n, n_subjects=10, seed=0)
    names = sorted(table["label_name"].unique())
    y = table["label_name"].map({k: i for i, k in enumerate(names)}).to_numpy()
    subjects = sorted(table["subject_id"].unique())
    is_test = table["subject_id"].isin(subjects[-3:]).to_numpy()
    y_train = np.where(is_test, -1, y)
    config = CNNConfig(architecture="spectrogram", channels=(8, 16, 32))
    for loss, lr in (
        ("ce", 1e-3),
        ("ce", 5e-3),
        ("ce", 2e-2),
        ("gce", 1e-3),
        ("gce", 5e-3),
    ):
        params = {
            "epochs": 2 if quick else 12,
            "batch_size": 32,
            "learning_rate": lr,
            "optimizer": "adamax",
            "weight_decay": 1e-7,
            "loss": loss,
            "loss_params": {"q": 0.7} if loss == "gce" else None,
        }
        accs, secs = curve(hits, y_train, hits[is_test], y[is_test], config, params)
        lines.append(
            f"| synthetic HITS 64x64 ({names}) | {int((~is_test).sum())} "
            f"| channels (8, 16, 32), adamax lr {lr:g} batch 32 {loss.upper()} "
            f"| {accs} | {secs:.0f} |"
        )
        print(lines[-1], flush=True)

    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    order = np.random.default_rng(0).permutation(len(digits.target))
    test, pool = order[:400], order[400:]
    for n_train in (140, 1397):
        n = max(int(n_train * scale), 50)
        params = {
            "epochs": 2 if quick else 30,
            "batch_size": 32,
            "learning_rate": 7e-3,
            "optimizer": "adamax",
            "weight_decay": 1e-7,
        }
        accs, secs = curve(
            x[pool[:n]],
            digits.target[pool[:n]],
            x[test],
            digits.target[test],
            CNNConfig(),
            params,
        )
        lines.append(
            f"| digits 8x8 | {n} | default spectrogram net, adamax lr 7e-3 batch 32 "
            f"CE | {accs} | {secs:.0f} |"
        )
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes / 10, 2 epochs")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    start = time.perf_counter()
    load = os.getloadavg()
    timing = timing_table(scale, epochs=1)
    curves = learning_curves(scale, args.quick)
    total = time.perf_counter() - start
    text = "\n".join(
        [
            "# Classification: seconds per epoch and learning curves",
            "",
            f"Command: `python benchmarks/bench_classification.py"
            f"{' --quick' if args.quick else ''}`",
            "",
            f"Machine: {os.cpu_count()} cores, {platform.processor() or 'cpu'}, "
            f"torch {torch.__version__}, Python {sys.version.split()[0]}. The "
            "machine was SHARED with other processes while measuring (load average "
            f"{load[0]:.1f} at the start and {os.getloadavg()[0]:.1f} at the end on "
            "2 cores), so the absolute numbers are pessimistic.",
            "",
            "## Seconds per epoch (random images, 3 classes, last-epoch model)",
            "",
            *timing,
            "",
            "## Test accuracy per epoch",
            "",
            *curves,
            "",
            "Notes: the 2-thread rows are measured on 1/16 of the images and scaled; "
            "with other processes on the 2 cores, 2 torch threads are 10-30 times "
            "slower per image than 1 (OpenMP threads wait for each other's time "
            "slices), so train with `num_threads=1` and parallelise folds with "
            "joblib instead. The recommended CPU settings derived from these "
            "curves are `lqknn.classification.TRAINING_DEFAULTS`.",
            "",
            f"Total wall time: {total:.0f} s.",
            "",
        ]
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
