"""Benchmark lqknn.features: auto-encoder cost and feature quality vs PCA / raw.

Usage: ``python benchmarks/bench_features.py [--quick] [--epochs E] [--threads T]
[--sweep] [--no-hits]``

1. MNIST (``../shared/data/mnist/t10k-*``, all 10,000 images; ``--quick``: the
   first 2,000, 2 epochs): the default auto-encoder (``AutoEncoderConfig.default_for``,
   ``TRAINING_DEFAULTS["mnist"]``) trained for ``--epochs`` epochs -- seconds per
   epoch, the loss per epoch, final reconstruction MSE (eval mode, all images) --
   against PCA-32 (``whiten=False``) and raw pixels; for each, the 5-fold stratified
   5-NN accuracy on all labels (``knn_feature_accuracy``).
2. Threads: seconds for 20 training batches (batch 32, 28 x 28) with 1 and 2 torch
   threads.
3. Synthetic HITS default (``generate_hits_folder`` defaults: 1,500 samples,
   64 x 64, written to a temporary folder): the same figures with
   ``TRAINING_DEFAULTS["hits"]``.
4. ``--sweep``: learning rate / weight decay grid (paper Table 1 values and
   neighbours) for a few epochs on MNIST and HITS -- final loss, reconstruction
   MSE and 5-NN accuracy per setting.

Results go to ``benchmarks/results/features.md`` (``features_quick.md`` with
``--quick``) and the loss curves to ``benchmarks/results/features_loss_*.png``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _machine import load_average, machine_line
from sklearn.decomposition import PCA

from lqknn.features import (
    TRAINING_DEFAULTS,
    AutoEncoderConfig,
    ConvAutoEncoder,
    encode,
    knn_feature_accuracy,
    plot_loss_curves,
    reconstruction_mse,
    train_autoencoder,
)

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"
RESULTS = ROOT / "benchmarks" / "results"
MACHINE_LINE_AT = "<machine>"  # filled in at the end, with the load average


def load_mnist(n: int) -> tuple[np.ndarray, np.ndarray]:
    """First ``n`` t10k images as (n, 1, 28, 28) float32 in [0, 1], and labels."""
    from lqknn.data.mnist import read_idx

    x = read_idx(MNIST / "t10k-images-idx3-ubyte.gz")[:n]
    y = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")[:n]
    return (x.astype(np.float32) / 255.0)[:, None], y.astype(np.int64)


def load_hits() -> tuple[np.ndarray, np.ndarray, str]:
    """Synthetic HITS default set, written to a temporary folder and read back."""
    from lqknn.data.hits import load_hits_folder
    from lqknn.data.synthetic_hits import generate_hits_folder

    with tempfile.TemporaryDirectory() as tmp:
        folder = generate_hits_folder(Path(tmp) / "hits", seed=0)
        ds = load_hits_folder(folder)
    y = ds.labels
    n_per = np.bincount(y[y >= 0], minlength=len(ds.classes))
    counts = dict(zip(ds.classes, n_per.tolist(), strict=True))
    return ds.images, y, f"{ds.n_samples} images {ds.images.shape[1:]}, {counts}"


def compare(name, x, y, params, epochs, threads, lines, curves):
    """AE vs PCA-32 vs raw on one data set; appends a markdown table to lines."""
    flat = x.reshape(x.shape[0], -1)
    cfg = AutoEncoderConfig.default_for(x.shape[1:])
    kw = {k: v for k, v in params.items() if k != "epochs"}
    print(f"[{name}] auto-encoder {cfg.channels} latent {cfg.latent_dim}, {kw}")
    t0 = time.perf_counter()
    model, hist = train_autoencoder(
        x, cfg, epochs=epochs, num_threads=threads, progress=True, **kw
    )
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    feats = encode(model, x)
    t_enc = time.perf_counter() - t0
    ae_mse = reconstruction_mse(model, x)
    ae_acc = knn_feature_accuracy(feats, y)

    t0 = time.perf_counter()
    pca = PCA(32, whiten=False, random_state=0).fit(flat)
    pf = pca.transform(flat)
    t_pca = time.perf_counter() - t0
    pca_mse = float(np.mean((pca.inverse_transform(pf) - flat) ** 2))
    pca_acc = knn_feature_accuracy(pf, y)
    raw_acc = knn_feature_accuracy(flat, y)

    fig = plot_loss_curves(hist)
    png = RESULTS / f"features_loss_{name.lower().split()[0]}.png"
    fig.savefig(png, dpi=90)
    curves.append(png.name)

    n_par = sum(p.numel() for p in model.parameters())
    lines += [
        f"## {name}",
        "",
        f"Auto-encoder: channels {cfg.channels}, latent {cfg.latent_dim}, "
        f"{n_par:,} parameters; {epochs} epochs, batch {kw['batch_size']}, "
        f"{kw['optimizer']} lr {kw['learning_rate']:g}, weight decay "
        f"{kw['weight_decay']:g}, {threads} thread(s).",
        "",
        "| features | dim | fit s | s / epoch | reconstruction MSE | 5-NN acc (5-fold) |",
        "|---|---|---|---|---|---|",
        f"| auto-encoder | {cfg.latent_dim} | {t_train:.1f} (+ encode {t_enc:.2f}) "
        f"| {hist['seconds'].mean():.2f} | {ae_mse:.5f} | {ae_acc:.4f} |",
        f"| PCA-32 | 32 | {t_pca:.2f} | - | {pca_mse:.5f} | {pca_acc:.4f} |",
        f"| raw pixels | {flat.shape[1]} | 0 | - | 0 | {raw_acc:.4f} |",
        "",
        "Training loss per epoch (train mode, mean batch MSE): "
        + ", ".join(f"{v:.5f}" for v in hist["train_loss"]),
        "",
        f"Loss curve: `{png.name}`.",
        "",
    ]
    print(
        f"[{name}] AE acc {ae_acc:.4f} mse {ae_mse:.5f}; PCA {pca_acc:.4f}; raw {raw_acc:.4f}"
    )


def thread_scaling(lines):
    """Seconds for 20 training steps with 1 and 2 torch threads."""
    x = torch.rand(640, 1, 28, 28)
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = ConvAutoEncoder(AutoEncoderConfig.default_for((1, 28, 28)))
        opt = torch.optim.Adamax(model.parameters(), lr=5e-3)
        t0 = time.perf_counter()
        for i in range(20):
            xb = x[32 * i : 32 * (i + 1)]
            opt.zero_grad()
            loss = torch.mean((model(xb) - xb) ** 2)
            loss.backward()
            opt.step()
        rows.append((threads, time.perf_counter() - t0))
    lines += [
        "## Threads (20 batches of 32, 28 x 28, default architecture)",
        "",
        "| torch threads | seconds |",
        "|---|---|",
        *[f"| {t} | {s:.2f} |" for t, s in rows],
        "",
    ]


def sweep(name, x, y, grid, epochs, threads, lines):
    """Learning rate / weight decay grid, a few epochs each."""
    lines += [
        f"## Sweep: {name}, {x.shape[0]} images, {epochs} epochs, batch 32, adamax",
        "",
        "| lr | weight decay | train loss per epoch | recon MSE | 5-NN acc |",
        "|---|---|---|---|---|",
    ]
    for lr, wd in grid:
        try:
            model, hist = train_autoencoder(
                x,
                epochs=epochs,
                learning_rate=lr,
                weight_decay=wd,
                num_threads=threads,
                progress=False,
            )
        except ValueError as exc:
            lines.append(f"| {lr:g} | {wd:g} | {exc} | - | - |")
            continue
        acc = knn_feature_accuracy(encode(model, x), y)
        losses = ", ".join(f"{v:.4f}" for v in hist["train_loss"])
        mse = reconstruction_mse(model, x)
        lines.append(f"| {lr:g} | {wd:g} | {losses} | {mse:.5f} | {acc:.4f} |")
        print(f"[sweep {name}] lr {lr:g} wd {wd:g}: mse {mse:.5f} acc {acc:.4f}")
    lines.append("")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 MNIST images, 2 epochs")
    ap.add_argument("--epochs", type=int, default=None, help="default 50 (quick: 2)")
    ap.add_argument("--threads", type=int, default=None, help="default: all cores")
    ap.add_argument("--sweep", action="store_true", help="add the lr / wd grid")
    ap.add_argument("--sweep-epochs", type=int, default=5)
    ap.add_argument("--no-hits", action="store_true", help="skip synthetic HITS")
    args = ap.parse_args()
    load_before = load_average()
    n = 2000 if args.quick else 10000
    epochs = args.epochs or (2 if args.quick else 50)
    threads = args.threads or torch.get_num_threads()
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Benchmark: features",
        "",
        f"Command: `python benchmarks/bench_features.py {' '.join(sys.argv[1:])}`",
        "",
        MACHINE_LINE_AT,
        "",
    ]
    curves: list[str] = []
    t_all = time.perf_counter()
    x, y = load_mnist(n)
    compare(f"MNIST t10k ({n} images)", x, y, TRAINING_DEFAULTS["mnist"], epochs,
            threads, lines, curves)  # fmt: skip
    thread_scaling(lines)
    hits = None
    if not args.no_hits:
        try:
            hits = load_hits()
        except ImportError as exc:
            lines += [f"Synthetic HITS skipped: {exc}", ""]
    if hits is not None:
        hx, hy, desc = hits
        lines += [f"Synthetic HITS: {desc}.", ""]
        compare("HITS synthetic default", hx, hy, TRAINING_DEFAULTS["hits"], epochs,
                threads, lines, curves)  # fmt: skip
    if args.sweep:
        grid = [(5e-2, 1e-5), (5e-3, 1e-5), (1e-3, 1e-5), (5e-3, 1e-2)]
        sweep("MNIST", x, y, grid, args.sweep_epochs, threads, lines)
        if hits is not None:
            grid = [(5e-3, 1e-2), (5e-3, 1e-5), (5e-2, 1e-5), (1e-3, 1e-5)]
            sweep("HITS", hx, hy, grid, args.sweep_epochs, threads, lines)
    lines.append(f"Total wall time: {time.perf_counter() - t_all:.0f} s.")
    versions = f"Python {platform.python_version()}, torch {torch.__version__}"
    lines[lines.index(MACHINE_LINE_AT)] = machine_line(load_before, versions)
    out = RESULTS / ("features_quick.md" if args.quick else "features.md")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
