"""Tests of the synthetic HITS generator: determinism, safety, class statistics."""

import hashlib
import json

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import uniform_filter

from lqknn.data.hits import load_hits_folder
from lqknn.data.plots import plot_examples
from lqknn.data.schema import validate_dataset
from lqknn.data.synthetic_hits import (
    HITS_CLASSES,
    MARKER_NAME,
    frequency_axis_hz,
    generate_hits_folder,
    render_hits,
)

SMALL = {"n_samples": 120, "n_subjects": 4, "image_size": (32, 32)}


def folder_hash(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = generate_hits_folder(tmp_path / "a", seed=3, **SMALL)
    b = generate_hits_folder(tmp_path / "b", seed=3, **SMALL)
    c = generate_hits_folder(tmp_path / "c", seed=4, **SMALL)
    assert folder_hash(a) == folder_hash(b)
    assert folder_hash(a) != folder_hash(c)


def test_folder_loads_into_the_schema(tmp_path):
    folder = generate_hits_folder(tmp_path / "h", seed=0, **SMALL)
    ds = validate_dataset(load_hits_folder(folder, image_size=(32, 32), resize="error"))
    assert ds.images.shape == (120, 1, 32, 32) and ds.report.empty
    ids = ds.samples["sample_id"]
    assert ids.str.fullmatch(r"S0[1-4]_\d{4}").all()
    assert (ids.str[:3] == ds.samples["subject_id"]).all()
    assert ds.samples["subject_id"].nunique() == 4
    for col in ("hospital", "recording", "device", "contrast_agent"):
        assert col in ds.samples
    assert not any(c.startswith("sim_") for c in ds.samples.columns)
    # 16-bit PNG: the loaded pixels equal the simulation up to quantisation
    images, table = render_hits(120, n_subjects=4, image_size=(32, 32), seed=0)
    order = pd.Index(table["sample_id"]).get_indexer(ids)
    np.testing.assert_allclose(ds.images, images[order], atol=0.5 / 65535 + 1e-7)


def test_class_mix_unknown_and_subject_sizes(tmp_path):
    folder = generate_hits_folder(
        tmp_path / "h",
        n_samples=400,
        n_subjects=5,
        image_size=(16, 16),
        unknown_fraction=0.05,
    )
    m = pd.read_csv(folder / "manifest.csv", keep_default_na=False)
    counts = m["label"].value_counts()
    assert counts["unknown"] == 20
    # exact largest-remainder counts of 380 labelled: 0.26, 0.37, 0.37
    assert (counts["artifact"], counts["gaseous"], counts["solid"]) == (
        99,
        140,
        141,
    ) or (counts["artifact"], counts["gaseous"], counts["solid"]) == (99, 141, 140)
    sizes = m["subject_id"].value_counts()
    assert len(sizes) == 5 and sizes.min() >= 1 and sizes.max() > sizes.min()
    sim = pd.read_csv(folder / "simulation.csv")
    unk = sim.set_index("sample_id").loc[m["sample_id"][m["label"] == "unknown"]]
    assert (
        unk["sim_label"].isin(["solid", "gaseous"]).all() and unk["sim_ambiguous"].all()
    )


def test_unlabelled_fraction_and_extra_samples_write_ground_truth(tmp_path):
    folder = generate_hits_folder(
        tmp_path / "h",
        n_samples=200,
        n_subjects=4,
        image_size=(16, 16),
        unknown_fraction=0.0,
        unlabelled_fraction=0.5,
        n_extra_unlabelled=50,
    )
    m = pd.read_csv(folder / "manifest.csv", keep_default_na=False)
    gt = pd.read_csv(folder / "ground_truth.csv")
    assert len(m) == 250 and (m["label"] == "").sum() == 150 == len(gt)
    assert set(gt["sample_id"]) == set(m["sample_id"][m["label"] == ""])
    sim = pd.read_csv(folder / "simulation.csv").set_index("sample_id")
    assert (sim.loc[gt["sample_id"], "sim_label"].to_numpy() == gt["label"]).all()
    ds = validate_dataset(load_hits_folder(folder, image_size=(16, 16)))
    assert len(ds.ground_truth) == 150 and (ds.samples["label"] >= 0).sum() == 100
    # no ground truth file when every label is visible
    other = generate_hits_folder(tmp_path / "o", **SMALL)
    assert not (other / "ground_truth.csv").exists()


def test_refuses_a_foreign_non_empty_folder(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("my own data")
    with pytest.raises(ValueError, match="refusing to write.*no .lqknn_synthetic"):
        generate_hits_folder(user, **SMALL)
    with pytest.raises(ValueError, match="refusing"):
        generate_hits_folder(user, overwrite=True, **SMALL)
    assert [p.name for p in user.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        generate_hits_folder(tmp_path / "file", **SMALL)


def test_marker_skip_regenerate_and_foreign_files(tmp_path):
    folder = generate_hits_folder(tmp_path / "h", seed=1, **SMALL)
    marker = json.loads((folder / MARKER_NAME).read_text())
    assert marker["complete"] and marker["parameters"]["seed"] == 1
    manifest = folder / "manifest.csv"
    before = manifest.stat().st_mtime_ns
    generate_hits_folder(folder, seed=1, **SMALL)  # identical: left alone
    assert manifest.stat().st_mtime_ns == before
    generate_hits_folder(folder, seed=2, **SMALL)  # different: regenerated
    fresh = generate_hits_folder(tmp_path / "fresh", seed=2, **SMALL)
    assert folder_hash(folder) == folder_hash(fresh)
    (folder / "images" / "mine.txt").write_text("user file")
    with pytest.raises(ValueError, match="did not write"):
        generate_hits_folder(folder, seed=5, **SMALL)
    assert (folder / "images" / "mine.txt").exists()


def test_bad_parameters(tmp_path):
    cases = [
        ({"n_samples": 0}, "n_samples"),
        ({"n_subjects": 200}, "n_subjects"),
        ({"image_size": (31, 32)}, "even height"),
        ({"class_fractions": {"solid": 0.5, "gaseous": 0.6}}, "sum to 1"),
        ({"class_fractions": {"bubble": 1.0}}, "unknown class"),
        ({"unknown_fraction": 1.0}, "unknown_fraction"),
        ({"unlabelled_fraction": -0.1}, "unlabelled_fraction"),
        ({"image_format": "jpg"}, "image_format"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg):
            generate_hits_folder(tmp_path / "x", **{**SMALL, **kwargs})
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("fmt", ["png8", "npy"])
def test_other_formats_load(tmp_path, fmt):
    folder = generate_hits_folder(tmp_path / "h", image_format=fmt, **SMALL)
    ds = load_hits_folder(folder, image_size=(32, 32), resize="error")
    images, _ = render_hits(120, n_subjects=4, image_size=(32, 32), seed=0)
    tol = 0.5 / 255 + 1e-7 if fmt == "png8" else 1e-7
    assert np.abs(np.sort(ds.images.ravel()) - np.sort(images.ravel())).max() <= tol


# ---- class statistics measured on the IMAGES --------------------------------------


def transient_stats(img):
    """(duration ms, peak excess dB, up/down correlation) of the brightest transient."""
    h, w = img.shape
    excess = uniform_filter(img - np.quantile(img, 0.2, axis=1, keepdims=True), 3)
    colmax = excess.max(axis=0)
    c = int(colmax.argmax())
    med = np.median(excess)
    thr = max(colmax[c] / 2, med + 6 * 1.4826 * np.median(np.abs(excess - med)))
    lo, hi = c, c
    while lo > 0 and colmax[lo - 1] > thr:
        lo -= 1
    while hi < w - 1 and colmax[hi + 1] > thr:
        hi += 1
    part = np.clip(excess[:, lo : hi + 1], 0, None)
    up, down = part[: h // 2], part[h // 2 :][::-1]  # row r <-> row h-1-r
    corr = np.corrcoef(up.ravel(), down.ravel())[0, 1]
    return (hi - lo + 1) * 256.0 / w, colmax[c] * 60.0, corr


@pytest.fixture(scope="module")
def rendered():
    images, table = render_hits(800, n_subjects=20, seed=11)
    stats = np.array([transient_stats(i[0]) for i in images])
    table = table.assign(dur=stats[:, 0], peak=stats[:, 1], corr=stats[:, 2])
    return images, table


def test_frequency_axis_is_symmetric():
    f = frequency_axis_hz(64)
    np.testing.assert_allclose(f, -f[::-1])
    assert f[0] > 0 > f[-1] and abs(f[0]) < 3100


def test_gaseous_louder_and_longer_than_solid(rendered):
    _, t = rendered
    g = t.groupby("label_name")[["dur", "peak", "sim_duration_ms", "sim_intensity_db"]]
    mean, med = g.mean(), g.median()
    assert mean.loc["gaseous", "peak"] > mean.loc["solid", "peak"] + 10.0
    assert med.loc["gaseous", "dur"] > 1.4 * med.loc["solid", "dur"]
    assert (
        mean.loc["gaseous", "sim_intensity_db"] > mean.loc["solid", "sim_intensity_db"]
    )
    assert (
        mean.loc["artifact", "sim_duration_ms"] > mean.loc["gaseous", "sim_duration_ms"]
    )
    typical = t[~t["sim_ambiguous"]]
    solid = typical[typical["label_name"] == "solid"]
    # typical solid emboli span roughly 10-40 ms (x subject factor 0.6-1.65)
    assert solid["sim_duration_ms"].between(6, 66).all()


def test_artifacts_are_symmetric_about_zero_frequency(rendered):
    _, t = rendered
    corr = t.groupby("label_name")["corr"].mean()
    assert corr["artifact"] > 0.75
    assert corr["artifact"] > corr["solid"] + 0.5
    assert corr["artifact"] > corr["gaseous"]


def test_solid_emboli_stay_on_the_flow_side(rendered):
    images, t = rendered
    solid = (t["label_name"] == "solid").to_numpy() & ~t["sim_ambiguous"].to_numpy()
    sign = np.sign(t["sim_frequency_hz"].to_numpy())
    assert (sign[solid] == t["sim_flow_sign"].to_numpy()[solid]).all()


def test_plot_examples(rendered):
    images, t = rendered
    t = t.assign(label=t["label_name"].map({c: i for i, c in enumerate(HITS_CLASSES)}))
    fig = plot_examples(images, t, HITS_CLASSES, n_per_class=3, seed=0)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len([a for a in fig.axes if a.images]) == 9
    assert "frequency (kHz)" in fig.axes[0].get_ylabel()
    with pytest.raises(ValueError, match="rows"):
        plot_examples(images[:5], t, HITS_CLASSES)
