"""Synthetic HITS: Doppler spectrograms of high-intensity transient signals.

:func:`generate_hits_folder` writes a folder in exactly the HITS format that
:func:`lqknn.data.hits.load_hits_folder` reads (``manifest.csv`` + images), so that
the whole project runs on realistic data with no download.

The simulation
--------------
Each image is the log-power spectrogram of a transcranial Doppler (TCD) signal,
``time_span_ms`` = 256 ms wide and ``PRF_HZ`` = 6.2 kHz tall (frequencies from -3.1 to
+3.1 kHz, the paper's pulse repetition frequency):

- row 0 is the highest positive frequency and the last row the most negative one;
  zero frequency lies between rows ``H/2 - 1`` and ``H/2`` (rows ``r`` and
  ``H - 1 - r`` hold opposite frequencies); column 0 is the earliest time;
- background: pulsatile blood flow. The maximum Doppler shift follows a cardiac
  waveform (systolic upstroke, exponential decay, dicrotic notch) whose heart rate,
  peak systolic and end-diastolic velocities, spectral shape and broadening are drawn
  per subject; the flow lies on one side of zero (per-subject sign), with a weak
  mirror on the other side, a 150 Hz wall filter, a per-hospital transducer frequency
  tilt, a noise floor, and multiplicative speckle (gamma distributed power);
- pixel value = (power in dB + 60) / 60, clipped to [0, 1] (a fixed 60 dB dynamic
  range, so strong transients saturate);
- one transient per image, centred near the middle of the window:

  * ``solid`` emboli: short (10-40 ms), +9 to +20 dB over the flow level, a narrow
    frequency band that follows the flow envelope on the flow side only;
  * ``gaseous`` emboli: longer (30-110 ms), +20 to +40 dB (often saturating),
    broadband, 'v'-shaped (the frequency dips towards, and sometimes across, zero),
    with a broadband skirt that reaches the other side;
  * ``artifact``: bidirectional, symmetric about zero frequency, low frequency
    (exponential spectrum of 120-450 Hz scale), 40-200 ms, one to three bumps;
  * a fraction ``overlap_fraction`` of the emboli (and every ``unknown`` sample) is
    drawn from one shared, ambiguous region (25-45 ms, +16 to +25 dB, narrow-ish
    band, shallow 'v') so that solid and gaseous emboli overlap as in the paper.

Subjects differ strongly (heart rate, velocities, flow side, gain, noise floor,
speckle, contrast agent), so leave-one-subject-out evaluation is harder than a
random split.

Files written
-------------
``manifest.csv``
    ``sample_id`` (``S03_0042``), ``subject_id`` (``S03``), ``file``
    (``images/S03/S03_0042.png``), ``label`` (``solid`` | ``gaseous`` | ``artifact``
    | ``unknown`` | empty), ``hospital``, ``recording``, ``device``,
    ``contrast_agent``.
``images/<subject>/<sample_id>.png``
    16-bit grayscale PNG (``image_format="png8"``: 8-bit; ``"npy"``: float32 NPY).
``ground_truth.csv``
    ``sample_id``, ``label`` of the samples left unlabelled (only when
    ``unlabelled_fraction > 0`` or ``n_extra_unlabelled > 0``); only scoring reads it.
``simulation.csv``
    The true generating parameters (``sim_label``, ``sim_ambiguous``,
    ``sim_duration_ms``, ``sim_intensity_db``, ``sim_frequency_hz``, ...), for tests
    and diagnostics; the loader ignores it.
``.lqknn_synthetic.json``
    The marker: generator parameters and the list of files written.

Safety
------
The generator never writes into a folder that holds a user's data: a non-empty folder
without the marker is refused. A marked folder with identical parameters and all its
files present is left alone (the call returns at once) unless ``overwrite=True``; a
marked folder with different parameters (or an interrupted generation) is
regenerated, but only when every file in it is one the marker lists: the listed files
are deleted and written again, and any other file makes the call fail.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from lqknn._validation import check_float, check_int

logger = logging.getLogger(__name__)

#: the three HITS classes, in the order of the default ``classes`` of the loader.
HITS_CLASSES = ("solid", "gaseous", "artifact")
#: name of the marker file that identifies a folder written by this generator.
MARKER_NAME = ".lqknn_synthetic.json"
#: pulse repetition frequency: the frequency axis spans [-PRF/2, +PRF/2] Hz.
PRF_HZ = 6200.0
#: width of one image in milliseconds.
TIME_SPAN_MS = 256.0
#: displayed dynamic range: 0 dB maps to 1, -DYNAMIC_RANGE_DB to 0.
DYNAMIC_RANGE_DB = 60.0
#: cut-off of the wall (high-pass) filter, Hz.
HIGH_PASS_HZ = 150.0
_FORMAT_VERSION = 1
_BATCH = 256
_SUPERSAMPLE = 4
_IMAGE_FORMATS = ("png16", "png8", "npy")


def frequency_axis_hz(height: int) -> np.ndarray:
    """Centre frequency (Hz) of every row, shape (height,): row 0 is the highest."""
    df = PRF_HZ / height
    return (height / 2.0 - np.arange(height) - 0.5) * df


def time_axis_ms(width: int) -> np.ndarray:
    """Centre time (ms) of every column, shape (width,)."""
    return (np.arange(width) + 0.5) * (TIME_SPAN_MS / width)


# ----------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------


def _check_params(
    n_samples,
    n_subjects,
    image_size,
    class_fractions,
    unknown_fraction,
    unlabelled_fraction,
    n_extra_unlabelled,
    overlap_fraction,
    seed,
    image_format,
) -> dict:
    n_samples = check_int(n_samples, "n_samples", low=1)
    n_subjects = check_int(n_subjects, "n_subjects", low=1)
    if n_subjects > n_samples:
        raise ValueError(
            f"n_subjects must be <= n_samples ({n_samples}), got {n_subjects}."
        )
    if (
        not isinstance(image_size, list | tuple)
        or len(image_size) != 2
        or not all(isinstance(s, numbers.Integral) for s in image_size)
    ):
        raise ValueError(
            f"image_size must be a pair of integers (height, width), got {image_size!r}."
        )
    h, w = (int(s) for s in image_size)
    if h < 8 or w < 8 or h % 2 or h > 1024 or w > 1024:
        raise ValueError(
            "image_size must be (height, width) with an even height (zero frequency "
            f"in the middle) and both in [8, 1024], got {tuple(image_size)}."
        )
    if not isinstance(class_fractions, dict) or not class_fractions:
        raise ValueError(
            f"class_fractions must be a non-empty dict over {HITS_CLASSES}, "
            f"got {class_fractions!r}."
        )
    bad = sorted(set(class_fractions) - set(HITS_CLASSES))
    if bad:
        raise ValueError(
            f"class_fractions has unknown class(es) {bad}; allowed: {HITS_CLASSES}."
        )
    fractions = {
        c: check_float(class_fractions.get(c, 0.0), f"class_fractions[{c!r}]", low=0)
        for c in HITS_CLASSES
    }
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ValueError(
            f"class_fractions must sum to 1, got {sum(fractions.values()):.6g} "
            f"({class_fractions!r})."
        )
    unknown_fraction = check_float(
        unknown_fraction, "unknown_fraction", low=0, high=1, high_inclusive=False
    )
    unlabelled_fraction = check_float(
        unlabelled_fraction, "unlabelled_fraction", low=0, high=1
    )
    n_extra_unlabelled = check_int(n_extra_unlabelled, "n_extra_unlabelled", low=0)
    overlap_fraction = check_float(overlap_fraction, "overlap_fraction", low=0, high=1)
    seed = check_int(seed, "seed", low=0)
    if image_format not in _IMAGE_FORMATS:
        raise ValueError(
            f"image_format must be one of {_IMAGE_FORMATS}, got {image_format!r}."
        )
    return {
        "n_samples": n_samples,
        "n_subjects": n_subjects,
        "image_size": [h, w],
        "class_fractions": fractions,
        "unknown_fraction": unknown_fraction,
        "unlabelled_fraction": unlabelled_fraction,
        "n_extra_unlabelled": n_extra_unlabelled,
        "overlap_fraction": overlap_fraction,
        "seed": seed,
        "image_format": image_format,
    }


def _largest_remainder(total: int, fractions: np.ndarray) -> np.ndarray:
    """Integer counts summing to ``total``, proportional to ``fractions``."""
    raw = fractions * total
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def _draw_design(p: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Draw subjects and per-sample parameters; return (per-sample, per-subject)."""
    rng = np.random.default_rng([p["seed"], 0])
    n_main, n_extra, n_sub = p["n_samples"], p["n_extra_unlabelled"], p["n_subjects"]
    frac = np.array([p["class_fractions"][c] for c in HITS_CLASSES])

    # --- classes: exact counts, unknowns first, then extras ---------------------
    n_unknown = int(round(p["unknown_fraction"] * n_main))
    known = _largest_remainder(n_main - n_unknown, frac)
    extra = _largest_remainder(n_extra, frac)
    cls = np.concatenate(
        [
            np.repeat(np.arange(3), known),
            rng.choice([0, 1], size=n_unknown),  # an unknown is a solid or gaseous
            np.repeat(np.arange(3), extra),
        ]
    )
    kind = np.concatenate(
        [
            np.zeros(known.sum(), np.int8),
            np.ones(n_unknown, np.int8),
            np.full(extra.sum(), 2, np.int8),
        ]
    )  # 0 = labelled, 1 = unknown, 2 = extra unlabelled
    n = cls.size
    perm = rng.permutation(n)
    cls, kind = cls[perm], kind[perm]

    # --- subjects: unequal sizes, class mixes tilted per subject ----------------
    size_w = rng.dirichlet(np.full(n_sub, 1.5))
    tilt = rng.gamma(1.5, 1.0 / 1.5, size=(n_sub, 3))
    p_sub = size_w[:, None] * tilt
    p_sub /= p_sub.sum(axis=0, keepdims=True)
    cum = np.cumsum(p_sub, axis=0)[:, cls].T  # (n, n_sub)
    subj = (rng.random(n)[:, None] > cum).sum(axis=1)
    subj = np.minimum(subj, n_sub - 1)
    subj[rng.permutation(n)[:n_sub]] = np.arange(n_sub)  # nobody is empty

    # --- subjects, hospitals ----------------------------------------------------
    n_hosp = min(5, max(1, math.ceil(n_sub / 4)))
    hosp_of = rng.permutation(np.arange(n_sub) % n_hosp)
    h_tilt = rng.uniform(-6.0, 6.0, n_hosp)  # transducer response, dB at PRF/2
    h_mirror = rng.uniform(-38.0, -28.0, n_hosp)  # quadrature mirror, dB
    h_device = np.where(rng.random(n_hosp) < 0.5, "TCD-X", "WAKIe")
    contrast = rng.random(n_sub) < 0.25
    width = max(2, len(str(n_sub)))
    subjects = pd.DataFrame(
        {
            "subject_id": [f"S{i + 1:0{width}d}" for i in range(n_sub)],
            "hospital": [f"H{h + 1}" for h in hosp_of],
            "device": h_device[hosp_of],
            "contrast_agent": np.where(contrast, "sonovue", "none"),
            "heart_rate_bpm": rng.uniform(52.0, 105.0, n_sub),
            "psv_hz": rng.uniform(1100.0, 2500.0, n_sub),
            "edv_ratio": rng.uniform(0.3, 0.55, n_sub),
            "rise": rng.uniform(0.07, 0.13, n_sub),
            "decay": rng.uniform(0.2, 0.45, n_sub),
            "flow_sign": np.where(rng.random(n_sub) < 0.2, -1.0, 1.0),
            "profile_gamma": rng.uniform(0.4, 2.5, n_sub),
            "broadening_hz": rng.uniform(50.0, 220.0, n_sub),
            "flow_db": rng.uniform(-34.0, -20.0, n_sub) + 7.0 * contrast,
            "noise_db": rng.uniform(-56.0, -40.0, n_sub),
            "speckle_k": rng.uniform(1.2, 4.0, n_sub),
            "tilt_db": h_tilt[hosp_of],
            "mirror_db": h_mirror[hosp_of],
            "n_recordings": 1 + rng.binomial(2, 0.4, n_sub),
            # embolus sources differ between patients (surgery, stenosis, PFO):
            # shifts of the emboli's intensity and duration per subject
            "emb_db": np.clip(rng.normal(0.0, 4.0, n_sub), -7.0, 7.0),
            "emb_dur": np.exp(np.clip(rng.normal(0.0, 0.3, n_sub), -0.5, 0.5)),
        }
    )

    # --- per-sample transient parameters ----------------------------------------
    amb = (kind == 1) | ((cls < 2) & (rng.random(n) < p["overlap_fraction"]))
    u = rng.random((n, 8))

    def lerp(lo, hi, col):
        return lo + (hi - lo) * u[:, col]

    solid, gas, art = cls == 0, cls == 1, cls == 2
    emb = cls < 2
    dur = np.select(
        [amb, solid, gas],
        [lerp(25, 45, 0), lerp(10, 40, 0), lerp(30, 110, 0)],
        lerp(40, 200, 0),
    )
    dur = np.where(emb, dur * subjects["emb_dur"].to_numpy()[subj], dur)
    inten = np.select(
        [amb, solid, gas],
        [lerp(16, 25, 1), lerp(9, 20, 1), lerp(20, 40, 1)],
        lerp(12, 36, 1),
    )
    inten = np.where(emb, inten + subjects["emb_db"].to_numpy()[subj], inten)
    sigma_f = np.select(
        [amb, solid, gas],
        [lerp(70, 170, 2), lerp(50, 110, 2), lerp(100, 300, 2)],
        lerp(100, 400, 2),
    )  # artifacts: frequency scale of the spectrum
    depth = np.select([amb, gas], [lerp(0.0, 0.35, 3), lerp(0.3, 1.3, 3)], 0.0)
    skirt = np.select([amb, gas], [lerp(-45, -35, 4), lerp(-36, -24, 4)], -np.inf)
    rho = lerp(0.45, 0.95, 5)
    n_bumps = np.where(art, 1 + (u[:, 6] * 3).astype(np.int64), 1)
    asym = np.where(art, rng.normal(0.0, 0.08, n), 0.0)
    centre = TIME_SPAN_MS / 2 + np.clip(rng.normal(0.0, 10.0, n), -30, 30)
    phase0 = rng.random(n)
    rec = (rng.random(n) * subjects["n_recordings"].to_numpy()[subj]).astype(int)
    rec_gain = rng.normal(0.0, 1.5, (n_sub, 3))[subj, rec]
    bump_pos = rng.random((n, 3))
    bump_w = rng.uniform(0.25, 0.6, (n, 3))

    # --- unlabelled among the labelled main samples -----------------------------
    hidden = np.zeros(n, bool)
    main_known = np.flatnonzero(kind == 0)
    n_hide = int(round(p["unlabelled_fraction"] * main_known.size))
    hide_rng = np.random.default_rng([p["seed"], 2])  # images do not depend on it
    hidden[hide_rng.choice(main_known, size=n_hide, replace=False)] = True
    hidden |= kind == 2

    # --- ids: ordered by subject, numbered within subject -----------------------
    order = np.lexsort((rng.random(n), subj))
    within = np.empty(n, np.int64)
    counts = np.bincount(subj, minlength=n_sub)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    within[order] = np.arange(n) - np.repeat(starts, counts)
    idw = max(4, len(str(counts.max())))
    sid = subjects["subject_id"].to_numpy()
    sample_id = np.array(
        [f"{sid[s]}_{k:0{idw}d}" for s, k in zip(subj, within, strict=True)]
    )
    table = pd.DataFrame(
        {
            "sample_id": sample_id,
            "subject": subj,
            "cls": cls,
            "kind": kind,
            "hidden": hidden,
            "ambiguous": amb,
            "recording": rec,
            "rec_gain_db": rec_gain,
            "duration_ms": dur,
            "intensity_db": inten,
            "sigma_f_hz": sigma_f,
            "v_depth": depth,
            "skirt_db": skirt,
            "rho": rho,
            "n_bumps": n_bumps,
            "asym": asym,
            "centre_ms": centre,
            "phase0": phase0,
        }
    )
    for k in range(3):
        table[f"bump_pos{k}"] = bump_pos[:, k]
        table[f"bump_w{k}"] = bump_w[:, k]
    table = table.iloc[order].reset_index(drop=True)
    return table, subjects


# ----------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------


def _waveform(phase, rise, decay):
    """Cardiac waveform in [0, 1] at ``phase`` in [0, 1): upstroke, decay, notch."""
    up = np.sin(0.5 * np.pi * np.clip(phase / rise, 0, 1)) ** 2
    after = phase - rise
    down = np.exp(-np.maximum(after, 0) / decay) + 0.12 * np.exp(
        -(((after - 0.22) / 0.05) ** 2)
    )
    return np.where(phase < rise, up, np.minimum(down, 1.0))


def _render(t: pd.DataFrame, s: pd.DataFrame, height, width, rng) -> np.ndarray:
    """Render a batch of spectrograms, float64 of shape (B, height, width) in [0, 1]."""
    b = len(t)
    f = frequency_axis_hz(height)[None, :, None]  # (1, H, 1)
    ts = (np.arange(width * _SUPERSAMPLE) + 0.5) * (
        TIME_SPAN_MS / (width * _SUPERSAMPLE)
    )  # (Ws,)
    subj = t["subject"].to_numpy()

    def sv(name):  # subject value per sample, shape (B, 1)
        return s[name].to_numpy()[subj][:, None]

    def tv(name):
        return t[name].to_numpy()[:, None]

    # flow envelope (maximum Doppler shift) on the fine time grid, (B, Ws)
    period = 60000.0 / sv("heart_rate_bpm")
    phase = (tv("phase0") + ts[None, :] / period) % 1.0
    wave = _waveform(phase, sv("rise"), sv("decay"))
    psv, edv = sv("psv_hz"), sv("psv_hz") * sv("edv_ratio")
    env_fine = edv + (psv - edv) * wave
    env = env_fine.reshape(b, width, _SUPERSAMPLE).mean(axis=2)[:, None, :]

    sign = sv("flow_sign")[:, :, None]  # (B, 1, 1)
    fa = np.abs(f)
    ratio = np.clip(fa / env, 0.0, 1.0)
    gam = sv("profile_gamma")[:, :, None]
    bw = sv("broadening_hz")[:, :, None]
    profile = (0.08 + 0.92 * ratio**gam) / (1.0 + np.exp((fa - env) / bw))
    on_side = (sign * f) > 0
    mirror = 10.0 ** (sv("mirror_db")[:, :, None] / 10.0)
    flow_level = 10.0 ** (sv("flow_db")[:, :, None] / 10.0)
    tilt = 10.0 ** (sv("tilt_db")[:, :, None] * (fa / (PRF_HZ / 2)) / 10.0)
    power = flow_level * tilt * profile * np.where(on_side, 1.0, mirror)

    # the transient's time profile, (B, Ws): raised cosine(s) of total length D
    dur, centre = tv("duration_ms"), tv("centre_ms")
    start = centre - dur / 2
    uu = (ts[None, :] - start) / dur  # position inside the transient, 0..1
    inside = (uu >= 0) & (uu <= 1)
    nb = tv("n_bumps")
    g = np.zeros((b, ts.size))
    for k in range(3):
        pos, wk = tv(f"bump_pos{k}"), tv(f"bump_w{k}")
        single = nb == 1
        c_k = np.where(single, 0.5, wk / 2 + pos * (1 - wk))
        w_k = np.where(single, 1.0, wk)
        x = (uu - c_k) / w_k
        bump = np.where(np.abs(x) <= 0.5, np.cos(np.pi * x) ** 2, 0.0)
        g = np.maximum(g, np.where(k < nb, bump, 0.0))
    g *= inside
    amp = 10.0 ** ((tv("intensity_db") + sv("flow_db")) / 10.0)  # (B, 1)

    emb = t["cls"].to_numpy() < 2
    trans = np.zeros((b, height, width))
    ie, ia = np.flatnonzero(emb), np.flatnonzero(~emb)
    if ie.size:
        # embolus: narrow band following the envelope, optionally 'v'-shaped
        uu_e = np.clip(uu[ie], 0.0, 1.0)
        vshape = 1.0 - tv("v_depth")[ie] * (1.0 - np.abs(2.0 * uu_e - 1.0))
        fe = sign[ie, :, 0] * tv("rho")[ie] * env_fine[ie] * vshape  # (Be, Ws)
        d = f - fe[:, None, :]  # (Be, H, Ws)
        sig = tv("sigma_f_hz")[ie][:, :, None]
        core = np.exp(-0.5 * (d / sig) ** 2)
        skirt = 10.0 ** (tv("skirt_db")[ie][:, :, None] / 10.0)
        core += skirt / (1.0 + (d / 600.0) ** 2)
        core *= (amp[ie] * g[ie])[:, None, :]
        trans[ie] = core.reshape(ie.size, height, width, _SUPERSAMPLE).mean(axis=3)
    if ia.size:
        # artifact: symmetric low-frequency burst on both sides of zero
        ga = g[ia].reshape(ia.size, width, _SUPERSAMPLE).mean(axis=2)[:, None, :]
        scale = tv("sigma_f_hz")[ia][:, :, None]
        spec = np.exp(-((fa / scale) ** 1.5)) * (
            1.0 + tv("asym")[ia][:, :, None] * np.sign(f)
        )
        trans[ia] = amp[ia][:, :, None] * spec * ga
    power += trans

    # wall filter, noise floor, speckle, gain, dB, fixed dynamic range
    wall = 1.0 / (1.0 + (HIGH_PASS_HZ / np.maximum(fa, 1e-9)) ** 4)
    noise = 10.0 ** (sv("noise_db")[:, :, None] / 10.0)
    k = np.broadcast_to(sv("speckle_k")[:, :, None], power.shape)
    speckle = rng.standard_gamma(k) / k
    total = (power * wall + noise) * speckle
    db = 10.0 * np.log10(total) + tv("rec_gain_db")[:, :, None]
    return np.clip((db + DYNAMIC_RANGE_DB) / DYNAMIC_RANGE_DB, 0.0, 1.0)


def render_hits(
    n_samples: int = 16,
    *,
    n_subjects: int = 4,
    image_size=(64, 64),
    class_fractions=None,
    unknown_fraction: float = 0.02,
    n_extra_unlabelled: int = 0,
    overlap_fraction: float = 0.15,
    seed: int = 0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Simulate spectrograms in memory, without writing any file.

    Parameters are those of :func:`generate_hits_folder`; with the same values the
    images are those the folder holds (before quantisation), whatever
    ``unlabelled_fraction`` is.

    Returns
    -------
    images : ndarray of shape (n_samples + n_extra_unlabelled, 1, height, width)
        float32 in [0, 1], before any quantisation to 8 or 16 bits.
    table : DataFrame
        ``sample_id``, ``subject_id``, ``label_name`` (the TRUE class, also for
        ``unknown`` samples) and the ``sim_*`` generating parameters, in the order
        of ``images``.

    Notes
    -----
    Time O(N * H * W), memory O(256 * H * W) while rendering plus the output.
    """
    p = _check_params(
        n_samples,
        n_subjects,
        image_size,
        class_fractions or {"artifact": 0.26, "gaseous": 0.37, "solid": 0.37},
        unknown_fraction,
        0.0,
        n_extra_unlabelled,
        overlap_fraction,
        seed,
        "npy",
    )
    table, subjects = _draw_design(p)
    images = _render_all(table, subjects, p, progress=False)
    sim = _simulation_table(table, subjects)
    sim.insert(2, "label_name", sim.pop("sim_label"))
    return images, sim


def _render_all(table, subjects, p, progress) -> np.ndarray:
    h, w = p["image_size"]
    out = np.empty((len(table), 1, h, w), np.float32)
    starts = range(0, len(table), _BATCH)
    for bi, lo in enumerate(tqdm(starts, desc="synthetic HITS", disable=not progress)):
        rng = np.random.default_rng([p["seed"], 1, bi])
        chunk = table.iloc[lo : lo + _BATCH]
        out[lo : lo + len(chunk), 0] = _render(chunk, subjects, h, w, rng)
    return out


def _simulation_table(table, subjects) -> pd.DataFrame:
    subj = table["subject"].to_numpy()
    sub = subjects.iloc[subj].reset_index(drop=True)
    period = 60000.0 / sub["heart_rate_bpm"].to_numpy()
    phase = (table["phase0"].to_numpy() + table["centre_ms"].to_numpy() / period) % 1
    wave = _waveform(phase, sub["rise"].to_numpy(), sub["decay"].to_numpy())
    psv = sub["psv_hz"].to_numpy()
    env = psv * sub["edv_ratio"].to_numpy() + psv * (1 - sub["edv_ratio"]) * wave
    emb = table["cls"].to_numpy() < 2
    return pd.DataFrame(
        {
            "sample_id": table["sample_id"],
            "subject_id": sub["subject_id"],
            "sim_label": np.asarray(HITS_CLASSES)[table["cls"].to_numpy()],
            "sim_ambiguous": table["ambiguous"],
            "sim_duration_ms": table["duration_ms"],
            "sim_intensity_db": table["intensity_db"],
            "sim_centre_ms": table["centre_ms"],
            "sim_frequency_hz": np.where(
                emb, sub["flow_sign"] * table["rho"] * env, 0.0
            ),
            "sim_flow_sign": sub["flow_sign"].astype(int),
            "sim_flow_db": sub["flow_db"] + table["rec_gain_db"],
            "sim_noise_db": sub["noise_db"] + table["rec_gain_db"],
            "sim_heart_rate_bpm": sub["heart_rate_bpm"],
        }
    )


# ----------------------------------------------------------------------------------
# Folder writing, with the safety rules
# ----------------------------------------------------------------------------------


def _read_marker(folder: Path) -> dict | None:
    path = folder / MARKER_NAME
    if not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{path} exists but cannot be read as JSON ({exc}); it is not a marker "
            "this generator wrote. Refusing to write into this folder."
        ) from None
    if not isinstance(marker, dict) or marker.get("generator") != __name__:
        raise ValueError(
            f"{path} is not a marker written by {__name__}; refusing to write into "
            f"{folder}."
        )
    return marker


def _existing_files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() or p.is_symlink()
    )


def _write_png(path: Path, img: np.ndarray, bits: int) -> None:
    if bits == 16:
        arr = np.round(img * 65535.0).astype(np.uint16)
    else:
        arr = np.round(img * 255.0).astype(np.uint8)
    Image.fromarray(arr).save(path, format="PNG", optimize=False, compress_level=6)


def generate_hits_folder(
    folder,
    *,
    n_samples: int = 1500,
    n_subjects: int = 20,
    image_size=(64, 64),
    class_fractions=None,
    unknown_fraction: float = 0.02,
    unlabelled_fraction: float = 0.0,
    n_extra_unlabelled: int = 0,
    overlap_fraction: float = 0.15,
    seed: int = 0,
    image_format: str = "png16",
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write a synthetic HITS folder (manifest + spectrogram images).

    Parameters
    ----------
    folder : str or Path
        Target folder; created if missing. Must be missing, empty, or a folder this
        generator wrote (it holds ``.lqknn_synthetic.json``).
    n_samples : int, default=1500
        Number of samples that carry an expert label (or ``unknown``).
    n_subjects : int, default=20
        Number of subjects (patients); sizes are unequal (Dirichlet), each has at
        least one sample.
    image_size : (int, int), default=(64, 64)
        (height = frequency bins, width = time columns); the height must be even.
    class_fractions : dict, default={"artifact": 0.26, "gaseous": 0.37, "solid": 0.37}
        Class mix of the labelled samples (sums to 1); counts are exact (largest
        remainder rounding).
    unknown_fraction : float in [0, 1), default=0.02
        Fraction of the ``n_samples`` labelled ``unknown`` (ambiguous emboli).
    unlabelled_fraction : float in [0, 1], default=0.0
        Fraction of the labelled samples whose label is left empty in the manifest
        and written to ``ground_truth.csv`` instead.
    n_extra_unlabelled : int, default=0
        Additional samples (same class mix) with empty labels, true labels in
        ``ground_truth.csv`` (like the paper's large HITS set).
    overlap_fraction : float in [0, 1], default=0.15
        Fraction of the solid and gaseous emboli drawn from the shared, ambiguous
        region of duration / intensity / shape.
    seed : int, default=0
        Same seed and parameters -> byte-identical files.
    image_format : {"png16", "png8", "npy"}, default="png16"
        16-bit or 8-bit grayscale PNG, or float32 NPY.
    overwrite : bool, default=False
        Regenerate a marked folder even when its parameters are identical. Never
        allows writing into an unmarked, non-empty folder.
    progress : bool, default=False
        Show a progress bar.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    ValueError
        On bad parameters; when ``folder`` is a non-empty folder without the marker
        (a user's own data), or a marked folder that also holds files the generator
        did not write; when ``folder`` is a file.

    Notes
    -----
    Time O(N * H * W) (about 2 s per 1,000 images of 64 x 64 on one core, PNG
    writing included), memory O(256 * H * W) while rendering plus O(N) for the
    tables. Files are written in a fixed order with fixed compression settings.
    """
    if class_fractions is None:
        class_fractions = {"artifact": 0.26, "gaseous": 0.37, "solid": 0.37}
    p = _check_params(
        n_samples,
        n_subjects,
        image_size,
        class_fractions,
        unknown_fraction,
        unlabelled_fraction,
        n_extra_unlabelled,
        overlap_fraction,
        seed,
        image_format,
    )
    p["format_version"] = _FORMAT_VERSION
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"folder {folder} exists and is not a directory.")

    marker = _read_marker(folder) if folder.is_dir() else None
    existing = _existing_files(folder) if folder.is_dir() else []
    if existing and marker is None:
        raise ValueError(
            f"refusing to write synthetic HITS into {folder}: it already holds "
            f"{len(existing)} file(s) (e.g. {existing[:3]}) and no {MARKER_NAME} "
            "marker, so it may be your own data. Point the generator at an empty or "
            "new folder."
        )
    if marker is not None:
        listed = set(marker.get("files", []))
        foreign = [f for f in existing if f not in listed and f != MARKER_NAME]
        same = marker.get("parameters") == p and marker.get("complete") is True
        if same and not overwrite and not foreign and listed <= set(existing):
            logger.info("synthetic HITS in %s is up to date; not regenerated", folder)
            return folder
        if foreign:
            raise ValueError(
                f"refusing to regenerate synthetic HITS in {folder}: it holds "
                f"{len(foreign)} file(s) the generator did not write "
                f"(e.g. {foreign[:3]}). Move them away or use another folder."
            )
        for rel in sorted(listed):
            (folder / rel).unlink(missing_ok=True)
        if (folder / "images").is_dir():
            shutil.rmtree(folder / "images")  # now holds empty directories only

    table, subjects = _draw_design(p)
    ext = "npy" if image_format == "npy" else "png"
    sub_ids = subjects["subject_id"].to_numpy()[table["subject"].to_numpy()]
    files = [
        f"images/{s}/{i}.{ext}"
        for s, i in zip(sub_ids, table["sample_id"], strict=True)
    ]
    hidden = table["hidden"].to_numpy()
    written = ["manifest.csv", "simulation.csv"] + files
    if hidden.any():
        written.append("ground_truth.csv")
    folder.mkdir(parents=True, exist_ok=True)
    marker = {
        "generator": __name__,
        "complete": False,
        "parameters": p,
        "files": sorted(written),
    }
    (folder / MARKER_NAME).write_text(json.dumps(marker, indent=1, sort_keys=True))

    h, w = p["image_size"]
    for s in np.unique(sub_ids):
        (folder / "images" / s).mkdir(parents=True, exist_ok=True)
    starts = range(0, len(table), _BATCH)
    for bi, lo in enumerate(tqdm(starts, desc="synthetic HITS", disable=not progress)):
        rng = np.random.default_rng([p["seed"], 1, bi])
        chunk = table.iloc[lo : lo + _BATCH]
        imgs = _render(chunk, subjects, h, w, rng)
        for img, rel in zip(imgs, files[lo : lo + len(chunk)], strict=True):
            path = folder / rel
            if image_format == "npy":
                np.save(path, img.astype(np.float32), allow_pickle=False)
            else:
                _write_png(path, img, 16 if image_format == "png16" else 8)

    names = np.asarray(HITS_CLASSES, dtype=object)[table["cls"].to_numpy()]
    label = np.where(table["kind"].to_numpy() == 1, "unknown", names)
    label = np.where(hidden, "", label)
    sub = subjects.iloc[table["subject"].to_numpy()].reset_index(drop=True)
    manifest = pd.DataFrame(
        {
            "sample_id": table["sample_id"],
            "subject_id": sub["subject_id"],
            "file": files,
            "label": label,
            "hospital": sub["hospital"],
            "recording": [
                f"{s}_R{r + 1}"
                for s, r in zip(sub["subject_id"], table["recording"], strict=True)
            ],
            "device": sub["device"],
            "contrast_agent": sub["contrast_agent"],
        }
    )
    manifest.to_csv(folder / "manifest.csv", index=False, lineterminator="\n")
    _simulation_table(table, subjects).to_csv(
        folder / "simulation.csv", index=False, float_format="%.3f", lineterminator="\n"
    )
    if hidden.any():
        pd.DataFrame(
            {"sample_id": table["sample_id"][hidden], "label": names[hidden]}
        ).to_csv(folder / "ground_truth.csv", index=False, lineterminator="\n")
    marker["complete"] = True
    (folder / MARKER_NAME).write_text(json.dumps(marker, indent=1, sort_keys=True))
    logger.info(
        "synthetic HITS: wrote %d images (%d subjects, %d unlabelled) to %s",
        len(table),
        n_subjects,
        int(hidden.sum()),
        folder,
    )
    return folder
