"""Tests of the HITS folder loader: schema, conversions and every bad-input case."""

import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lqknn.data.hits import load_hits_folder
from lqknn.data.schema import validate_dataset

SIZE = (8, 6)


def write_folder(root, rows, images=None, gt=None):
    """rows: list of (sample_id, subject_id, file, label); images: {file: array}."""
    root.mkdir(parents=True, exist_ok=True)
    for file, arr in (images or {}).items():
        path = root / file
        path.parent.mkdir(parents=True, exist_ok=True)
        if file.endswith(".npy"):
            np.save(path, arr)
        else:
            Image.fromarray(arr).save(path)
    df = pd.DataFrame(rows, columns=["sample_id", "subject_id", "file", "label"])
    df["hospital"] = "H1"
    df.to_csv(root / "manifest.csv", index=False)
    if gt is not None:
        pd.DataFrame(gt, columns=["sample_id", "label"]).to_csv(
            root / "ground_truth.csv", index=False
        )
    return root


def good(tmp_path, n=6):
    rng = np.random.default_rng(0)
    labels = ["solid", "gaseous", "artifact", "", "unknown", "Solid"]
    rows, images = [], {}
    for i in range(n):
        f = f"img/x{i}.npy"
        images[f] = rng.random(SIZE).astype(np.float32)
        rows.append((f"id{i}", f"S{i % 2}", f, labels[i % len(labels)]))
    return rows, images


def test_good_folder_schema(tmp_path):
    rows, images = good(tmp_path)
    ds = load_hits_folder(write_folder(tmp_path / "h", rows, images), image_size=SIZE)
    validate_dataset(ds)
    assert ds.images.shape == (6, 1, *SIZE) and ds.images.dtype == np.float32
    np.testing.assert_allclose(ds.images[2, 0], images["img/x2.npy"], rtol=1e-6)
    assert ds.samples["label"].tolist() == [0, 1, 2, -1, -1, 0]
    assert ds.samples["label_name"].tolist() == [
        "solid",
        "gaseous",
        "artifact",
        "",
        "unknown",
        "solid",
    ]
    assert (ds.samples["split"] == "pool").all()
    assert ds.samples["hospital"].eq("H1").all() and "file" in ds.samples
    assert ds.report.empty and ds.ground_truth.empty
    assert ds.info["n_unknown"] == 1 and ds.info["n_labelled"] == 4


def test_png_8_and_16_bit_scaling(tmp_path):
    a8 = np.arange(48, dtype=np.uint8).reshape(SIZE) * 5
    a16 = np.arange(48, dtype=np.uint16).reshape(SIZE) * 1000
    rows = [("p8", "S", "p8.png", "solid"), ("p16", "S", "p16.png", "gaseous")]
    folder = write_folder(tmp_path / "h", rows, {"p8.png": a8, "p16.png": a16})
    ds = load_hits_folder(folder, image_size=SIZE)
    np.testing.assert_allclose(ds.images[0, 0], a8 / 255.0, atol=1e-7)
    np.testing.assert_allclose(ds.images[1, 0], a16 / 65535.0, atol=1e-7)


def test_integer_npy_and_channel_axis(tmp_path):
    u8 = np.full((1, *SIZE), 51, np.uint8)  # leading singleton channel accepted
    rows = [("a", "S", "a.npy", "solid")]
    ds = load_hits_folder(
        write_folder(tmp_path / "h", rows, {"a.npy": u8}), image_size=SIZE
    )
    np.testing.assert_allclose(ds.images[0, 0], 0.2, atol=1e-7)


def test_resize_and_crop_are_counted_and_logged(tmp_path, caplog):
    big = np.zeros((16, 12), np.float32)
    big[4:12, 3:9] = 1.0  # the centre 8 x 6 block
    rows = [("a", "S", "a.npy", "solid")]
    folder = write_folder(tmp_path / "h", rows, {"a.npy": big})
    with caplog.at_level(logging.WARNING):
        ds = load_hits_folder(folder, image_size=SIZE, resize="crop")
    np.testing.assert_array_equal(ds.images[0, 0], 1.0)
    assert ds.info["n_resized"] == 1 and "cropped 1 of 1" in caplog.text
    ds = load_hits_folder(folder, image_size=SIZE, resize="resize")
    assert ds.images.shape == (1, 1, *SIZE) and ds.info["n_resized"] == 1
    # a 2x down-sampling of a block image keeps its mean
    assert abs(ds.images.mean() - big.mean()) < 0.05


@pytest.mark.parametrize(
    "bad, kind",
    [
        ("missing", "missing file"),
        ("unreadable", "unreadable file"),
        ("3d", "wrong shape"),
        ("size", "wrong shape"),
        ("nan", "NaN pixels"),
        ("range", "values out of range"),
        ("label", "unknown label"),
        ("duplicate", "duplicate sample_id"),
        ("empty_id", "missing value"),
        ("colour", "wrong shape"),
        ("small_crop", "wrong shape"),
    ],
)
def test_bad_row_is_skipped_reported_or_raised(tmp_path, caplog, bad, kind):
    rows, images = good(tmp_path)
    resize = "error"
    if bad == "missing":
        del images["img/x1.npy"]
    elif bad == "unreadable":
        images.pop("img/x1.npy")
        (tmp_path / "h" / "img").mkdir(parents=True)
        (tmp_path / "h" / "img" / "x1.npy").write_bytes(b"not an array")
    elif bad == "3d":
        images["img/x1.npy"] = np.zeros((3, *SIZE), np.float32)
    elif bad == "size":
        images["img/x1.npy"] = np.zeros((9, 6), np.float32)
    elif bad == "small_crop":
        images["img/x1.npy"] = np.zeros((4, 6), np.float32)
        resize = "crop"
    elif bad == "nan":
        images["img/x1.npy"][2, 3] = np.nan
    elif bad == "range":
        images["img/x1.npy"] = images["img/x1.npy"] * 40.0 - 20.0
    elif bad == "label":
        rows[1] = (*rows[1][:3], "embolus")
    elif bad == "duplicate":
        rows[1] = ("id0", *rows[1][1:])
    elif bad == "empty_id":
        rows[1] = ("", *rows[1][1:])
    elif bad == "colour":
        rows[1] = (*rows[1][:2], "c.png", rows[1][3])
        rgb = np.zeros((*SIZE, 3), np.uint8)
        rgb[..., 0] = 200
        images["c.png"] = rgb
    folder = write_folder(tmp_path / "h", rows, images)
    with caplog.at_level(logging.WARNING):
        ds = load_hits_folder(folder, image_size=SIZE, resize=resize)
    assert len(ds.samples) == 5 and ds.images.shape[0] == 5
    assert ds.report["kind"].tolist() == [kind]
    assert ds.report["line"].tolist() == [3]  # header is line 1, row 1 is line 3
    assert (
        f"ingest: skipped 1 of 6 rows (1 {kind}); see ingestion report" in caplog.text
    )
    validate_dataset(ds)
    with pytest.raises(ValueError, match=r"strict.*1 bad row.*line 3"):
        load_hits_folder(folder, image_size=SIZE, resize=resize, strict=True)


def test_all_rows_bad_is_an_error(tmp_path):
    rows = [("a", "S", "nothere.npy", "solid")]
    with pytest.raises(ValueError, match="none of the 1 rows"):
        load_hits_folder(write_folder(tmp_path / "h", rows), image_size=SIZE)


def test_missing_column_is_named(tmp_path):
    folder = tmp_path / "h"
    folder.mkdir()
    pd.DataFrame({"sample_id": ["a"], "file": ["a.npy"], "label": ["solid"]}).to_csv(
        folder / "manifest.csv", index=False
    )
    with pytest.raises(
        ValueError, match=r"lacks required column\(s\) \['subject_id'\]"
    ):
        load_hits_folder(folder)


def test_empty_manifest(tmp_path):
    folder = tmp_path / "h"
    folder.mkdir()
    (folder / "manifest.csv").write_text("sample_id,subject_id,file,label\n")
    with pytest.raises(ValueError, match="no rows"):
        load_hits_folder(folder)
    (folder / "manifest.csv").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_hits_folder(folder)


def test_missing_folder_or_manifest_says_what_to_put(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.csv with columns"):
        load_hits_folder(tmp_path / "nowhere")
    (tmp_path / "h").mkdir()
    with pytest.raises(FileNotFoundError, match="needs a manifest.csv"):
        load_hits_folder(tmp_path / "h")


def test_bad_arguments(tmp_path):
    rows, images = good(tmp_path)
    folder = write_folder(tmp_path / "h", rows, images)
    with pytest.raises(ValueError, match="resize"):
        load_hits_folder(folder, resize="stretch")
    with pytest.raises(ValueError, match="image_size"):
        load_hits_folder(folder, image_size=(8,))
    with pytest.raises(ValueError, match="classes"):
        load_hits_folder(folder, classes=("solid", "unknown"))


def test_ground_truth_file(tmp_path):
    rows, images = good(tmp_path)
    gt = [("id3", "gaseous"), ("ghost", "solid")]  # ghost: not in the manifest
    folder = write_folder(tmp_path / "h", rows, images, gt=gt)
    ds = validate_dataset(load_hits_folder(folder, image_size=SIZE))
    assert ds.ground_truth.to_dict("records") == [
        {"sample_id": "id3", "label": 1, "label_name": "gaseous"}
    ]
    write_folder(tmp_path / "h", rows, images, gt=[("id0", "gaseous")])
    with pytest.raises(ValueError, match="labelled in manifest"):
        load_hits_folder(folder, image_size=SIZE)
    write_folder(tmp_path / "h", rows, images, gt=[("id3", "bubble")])
    with pytest.raises(ValueError, match="outside the classes"):
        load_hits_folder(folder, image_size=SIZE)
