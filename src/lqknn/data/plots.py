"""Figures of example images per class (spectrograms for HITS)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lqknn._validation import check_array, check_int, check_random_state


def plot_examples(
    images,
    samples: pd.DataFrame,
    classes,
    n_per_class: int = 4,
    seed: int = 0,
    *,
    spectrogram: bool = True,
    time_span_ms: float | None = 256.0,
    max_frequency_hz: float | None = 3100.0,
    cmap: str = "inferno",
) -> Figure:
    """Draw a grid of labelled examples: one row per class, ``n_per_class`` columns.

    Parameters
    ----------
    images : ndarray of shape (n_samples, n_channels, height, width)
        Values in [0, 1]; the first channel is shown (all three for RGB).
    samples : DataFrame
        The schema's sample table (``sample_id``, ``subject_id``, ``label``).
    classes : sequence of str
        Ordered class names; row ``i`` shows samples with ``label == i``.
    n_per_class : int, default=4
        Examples per class, drawn at random (seeded) among the labelled samples;
        fewer when a class has fewer.
    seed : int, default=0
        Seed of the draw.
    spectrogram : bool, default=True
        Label the axes as a Doppler spectrogram: time in ms on x, frequency in kHz on
        y with 0 in the middle (the HITS image convention of
        :mod:`lqknn.data.synthetic_hits`). ``False`` draws plain images.
    time_span_ms, max_frequency_hz : float, default=256.0, 3100.0
        Axis extents of a spectrogram.
    cmap : str, default="inferno"
        Colour map (for single-channel images).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (not shown; save it with ``fig.savefig``).

    Notes
    -----
    Time O(n_classes * n_per_class * H * W).
    """
    images = check_array(images, "images", ndim=4, dtype=np.float32)
    n_per_class = check_int(n_per_class, "n_per_class", low=1, high=50)
    classes = list(classes)
    if len(samples) != images.shape[0]:
        raise ValueError(
            f"samples has {len(samples)} rows but images has {images.shape[0]}."
        )
    rng = check_random_state(seed)
    labels = samples["label"].to_numpy(dtype=np.int64)
    subjects = samples["subject_id"].astype(str).to_numpy()
    ids = samples["sample_id"].astype(str).to_numpy()
    # a bare Figure (no pyplot): no GUI backend, nothing left open to close
    fig = Figure(
        figsize=(2.2 * n_per_class + 0.8, 2.3 * len(classes) + 0.4),
        layout="constrained",
    )
    axes = fig.subplots(len(classes), n_per_class, squeeze=False)
    extent = None
    if spectrogram:
        extent = (0.0, time_span_ms, -max_frequency_hz / 1000, max_frequency_hz / 1000)
    for ci, name in enumerate(classes):
        members = np.flatnonzero(labels == ci)
        chosen = rng.choice(members, size=min(n_per_class, members.size), replace=False)
        for j in range(n_per_class):
            ax = axes[ci, j]
            if j >= chosen.size:
                ax.axis("off")
                continue
            k = chosen[j]
            img = images[k]
            if img.shape[0] == 3:
                ax.imshow(np.moveaxis(img, 0, -1), extent=extent, aspect="auto")
            else:
                ax.imshow(
                    img[0], cmap=cmap, vmin=0, vmax=1, extent=extent, aspect="auto"
                )
            ax.set_title(f"{ids[k]} ({subjects[k]})", fontsize=8)
            if spectrogram:
                ax.axhline(0.0, color="white", lw=0.4, alpha=0.4)
                ax.tick_params(labelsize=7)
                if ci == len(classes) - 1:
                    ax.set_xlabel("time (ms)", fontsize=8)
                if j == 0:
                    ax.set_ylabel(f"{name}\nfrequency (kHz)", fontsize=9)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(name, fontsize=9)
    return fig
