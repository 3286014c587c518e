import csv

import numpy as np
import pytest

from conftest import shared_file
from edge_liveness.blink import BlinkDetector, ear_from_points
from edge_liveness.config import load_settings
from edge_liveness.ear_cli import measure, read_image
from fixtures_models import video_frame, video_frames


def test_ear_formula():
    # p1..p6 of an eye 4 wide and 1 open: EAR = (1 + 1) / (2 * 4)
    pts = np.array([[0, 0], [1, -0.5], [3, -0.5], [4, 0], [3, 0.5], [1, 0.5]], float)
    assert ear_from_points(pts) == pytest.approx(0.25)


def _auc(pos, neg):
    pos, neg = np.asarray(pos), np.asarray(neg)
    return ((pos[:, None] < neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))


def test_ear_separates_closed_from_open_on_yale(face_finder, shared_data):
    d = shared_file("eyes", "yalefaces")
    closed, opened = [], []
    with open(d / "index.csv", newline="") as f:
        for r in csv.DictReader(f):
            state = r["eye_state_from_condition"]
            if state not in ("closed_both", "open"):
                continue  # winks: one eye closed, reported separately by scripts/ear_report.py
            m = measure(face_finder, read_image(d / r["file"]))
            assert m["face"], r["file"]
            (closed if state == "closed_both" else opened).append(min(m["ear_left"], m["ear_right"]))
    assert len(closed) >= 10 and len(opened) >= 80
    assert _auc(closed, opened) >= 0.95


def _blinks(finder, frames):
    finder.reset()
    bd = BlinkDetector(load_settings().blink)
    out, visible = [], 0
    for i, ts, f in frames:
        s = bd.update(ts, finder.process(f).landmarks, f.shape)
        visible += s.visible
        if s.blink:
            out.append(i)
    return out, visible


def test_blinks_found_where_seen_in_real_video(face_finder, shared_data):
    # Checked by eye on eye crops of every frame: the eyes are shut in frames 39-43 (during a brisk
    # head turn) and 197-198, open around them. Two partial closures (67, 204-205) stay under the
    # relative threshold and are not counted.
    path = shared_file("video", "apfol_real2.webm")
    blinks, visible = _blinks(face_finder, video_frames(path))
    assert visible >= 200
    assert blinks == [44, 199]


def test_mesh_glitch_during_head_jerk_is_not_a_blink(face_finder, shared_data):
    # tranvanluyt_real.mp4 frames 378-382: a fast head jerk; the mesh slides onto the cheek and EAR
    # drops to 0.13 although the eyes are open (checked by eye).
    path = shared_file("video", "tranvanluyt_real.mp4")
    blinks, visible = _blinks(face_finder, video_frames(path, 330, 420))
    assert visible == 90 and blinks == []


def test_no_blink_on_a_still_photo_video(face_finder, shared_data):
    frame = video_frame(shared_file("video", "tranvanluyt_real.mp4"), 10)
    blinks, visible = _blinks(face_finder, ((i, i / 30.0, frame) for i in range(90)))
    assert visible == 90 and blinks == []


def test_not_visible_without_face_or_when_small(face_finder, shared_data):
    cfg = load_settings().blink
    bd = BlinkDetector(cfg)
    s = bd.update(0.0, None)
    assert not s.visible and np.isnan(s.ear_left) and not s.blink
    import cv2

    img = cv2.imread(str(shared_file("faces", "face_recognition_examples", "obama.jpg")))
    face_finder.reset()
    lm = face_finder.process(img).landmarks
    assert bd.update(0.1, lm, img.shape).visible
    cfg2 = cfg.model_copy(update={"min_eye_px": 1000.0})
    assert not BlinkDetector(cfg2).update(0.0, lm).visible
    # eyes outside a (smaller) frame: not visible
    assert not bd.update(0.2, lm, (100, 100, 3)).visible
