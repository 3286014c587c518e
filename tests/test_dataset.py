"""`dataset extract` (daemon's own detector + mesh + crop), reading crops back, the subject split."""

from __future__ import annotations

import argparse
import csv
import json
import shutil

import numpy as np
import pytest

from converters.data.crop_folders import copy_subset, load_crops
from converters.data.dataset import DatasetError, extract, label_from_path
from converters.passive.train import split_by_subject


@pytest.fixture()
def nuaa_folder(shared_data, tmp_path):
    """A copy of 4 NUAA frames of subject 0002 with NUAA's own index.csv rows, plus a stray text file."""
    src = shared_data / "liveness" / "nuaa"
    root = tmp_path / "nuaa"
    rows = list(csv.DictReader(open(src / "index.csv", newline="")))
    keep = [r for r in rows if r["subject"] == "0002" and r["label"] == "live"][:4]
    for r in keep:
        (root / r["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / r["file"], root / r["file"])
    with open(root / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    (root / "live" / "README.txt").write_text("not media")
    return root


def test_extract_images_writes_crops_and_index(nuaa_folder, face_models, tmp_path):
    import cv2

    out = tmp_path / "ds"
    stats = extract(nuaa_folder / "live", "live", out, size=96, margin=0.25, progress=False)
    assert stats.frames == 4 and stats.faces == 4 and stats.no_face == 0
    assert len(stats.skipped_non_media) == 1
    rows = list(csv.DictReader(open(out / "index.csv", newline="")))
    assert len(rows) == 4
    assert {r["label"] for r in rows} == {"live"} and {r["subject"] for r in rows} == {"0002"}
    for r in rows:
        img = cv2.imread(str(out / r["file"]))
        assert img.shape == (96, 96, 3)
        assert (out / r["file"]).resolve().is_relative_to(out.resolve())  # writes only under --out
    assert json.loads((out / "dataset.json").read_text())["crop"] == {"size": 96, "margin": 0.25}
    # the same source cut again into the same folder replaces its rows (here with a new subject name),
    # so a re-run of a data script does not count every face twice
    again = extract(nuaa_folder / "live", "live", out, size=96, margin=0.25, subject="renamed", progress=False)
    assert again.faces == 4
    rows = list(csv.DictReader(open(out / "index.csv", newline="")))
    assert len(rows) == 4 and {r["subject"] for r in rows} == {"renamed"} and len(load_crops(out)) == 4
    # a second extract into the same folder must use the same crop settings
    with pytest.raises(DatasetError, match="crops made with"):
        extract(nuaa_folder / "live", "live", out, size=128, margin=0.25, progress=False)


def test_extract_video_every_nth_frame(shared_data, face_models, tmp_path):
    import cv2

    # a short real video: the first 12 frames of a shared recording
    src = cv2.VideoCapture(str(shared_data / "video" / "tranvanluyt_real.mp4"))
    frames = [src.read()[1] for _ in range(12)]
    src.release()
    vid = tmp_path / "clip.avi"
    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(vid), cv2.VideoWriter_fourcc(*"MJPG"), 30, (w, h))
    for f in frames:
        wr.write(f)
    wr.release()
    out = tmp_path / "ds"
    stats = extract(vid, "spoof", out, every=4, size=64, subject="someone", attack_type="replay", progress=False)
    assert stats.frames == 3 and stats.faces == 3
    rows = list(csv.DictReader(open(out / "index.csv", newline="")))
    assert [int(r["frame"]) for r in rows] == [0, 4, 8]
    assert {r["recording"] for r in rows} == {"clip"} and {r["attack_type"] for r in rows} == {"replay"}
    data = load_crops(out)
    assert data.images.shape == (3, 64, 64, 3) and list(data.labels) == [0, 0, 0]


def test_extract_refuses_bad_input_in_one_line(tmp_path, capsys):
    from converters.data import dataset

    args = argparse.Namespace(dataset_command="extract", src=str(tmp_path / "missing"), label="live", out=str(tmp_path / "o"),
                              every=1, margin=0.25, size=64, subject=None, attack_type=None)
    assert dataset.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no such file" in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_label_from_nearest_folder(tmp_path):
    from pathlib import Path

    assert label_from_path(Path("a/real/x.png")) == "live"
    assert label_from_path(Path("live/attack/x.png")) == "spoof"  # nearest folder wins
    assert label_from_path(Path("a/b/x.png")) is None


def _synthetic_set(tmp_path):
    """A dataset folder in extract's format: 4 subjects x 2 classes x 3 crops (real pixels not needed)."""
    import cv2

    d = tmp_path / "set"
    for subj in ("s1", "s2", "s3", "s4"):
        for label in ("live", "spoof"):
            for i in range(3):
                (d / label).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(d / label / f"{subj}_{i}.png"), np.full((32, 32, 3), 40 * i, np.uint8))
    with open(d / "index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "source", "frame", "subject", "recording", "attack_type"])
        for p in sorted(d.rglob("*.png")):
            w.writerow([p.relative_to(d).as_posix(), p.parent.name, "", 0, p.stem.split("_")[0], "", ""])
    (d / "dataset.json").write_text(json.dumps({"crop": {"size": 32, "margin": 0.25}}))
    return d


def test_split_keeps_each_subject_on_one_side(tmp_path):
    data = load_crops(_synthetic_set(tmp_path))
    for seed in range(5):
        mask, val = split_by_subject(data, None, 0.25, seed)
        train_subjects = {s for s, m in zip(data.subjects, mask) if not m}
        val_subjects = {s for s, m in zip(data.subjects, mask) if m}
        assert val_subjects == val and not (train_subjects & val_subjects)
        assert set(data.labels[mask]) == {0, 1}
    mask, val = split_by_subject(data, {"s2"}, 0.25, 0)
    assert val == {"s2"} and mask.sum() == 6
    with pytest.raises(DatasetError, match="not in the data"):
        split_by_subject(data, {"nobody"}, 0.25, 0)


def test_copy_subset_and_subject_filters(tmp_path):
    d = _synthetic_set(tmp_path)
    n = copy_subset([d], tmp_path / "sub", only_subjects={"s1", "s3"})
    assert n == 12
    sub = load_crops(tmp_path / "sub")
    assert set(sub.subjects) == {"s1", "s3"} and sub.crop == {"size": 32, "margin": 0.25}
    assert copy_subset([d], tmp_path / "sub", only_subjects={"s1", "s3"}) == 12  # copied again: rows replaced
    assert len(load_crops(tmp_path / "sub")) == 12
    rest = load_crops(d, exclude_subjects={"s1"})
    assert "s1" not in set(rest.subjects) and len(rest) == 18


def test_extract_writes_context_view_beside_the_tight_crop(nuaa_folder, face_models, tmp_path):
    import cv2

    out = tmp_path / "ds"
    stats = extract(nuaa_folder / "live", "live", out, size=64, margin=0.25, progress=False, context_scale=2.7)
    assert stats.faces == 4
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["context"] == {"size": 64, "scale": 2.7} and meta["crop"] == {"size": 64, "margin": 0.25}
    rows = list(csv.DictReader(open(out / "index.csv", newline="")))
    assert len(rows) == 4  # one row per face: both views share its subject and split
    for r in rows:
        tight, ctx = cv2.imread(str(out / r["file"])), cv2.imread(str(out / "context" / r["file"]))
        assert tight.shape == ctx.shape == (64, 64, 3)
        # two different views of the same face, not one image written twice
        assert np.abs(tight.astype(int) - ctx.astype(int)).mean() > 5
    # the context view is not mistaken for more crops of the dataset
    assert len(load_crops(out)) == 4
    with pytest.raises(DatasetError, match="context crops"):
        extract(nuaa_folder / "live", "live", out, size=64, margin=0.25, progress=False)
    with pytest.raises(DatasetError, match="--context-scale must be >= 1"):
        extract(nuaa_folder / "live", "live", tmp_path / "ds2", size=64, progress=False, context_scale=0.5)
