"""storage.save_images (issue 18, item 7): opt-in crops of each attempt, filed by its decision,
kept on the device with retention, readable by the training side as they are.

The daemon tests run the real `edge-liveness run` on the shared recordings with the real models.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import shared_file
from fault_helpers import DaemonProc, base_env
from edge_liveness.service.attempt_images import DIRNAME, AttemptImages, label_folder


def _run_once(tmp_path: Path, video: Path, name: str, **extra) -> tuple[DaemonProc, list[dict], Path]:
    state = tmp_path / f"{name}-state"
    env = base_env(state, video, None, camera__loop=False, camera__realtime=False, **extra)
    d = DaemonProc(tmp_path, env, args=["--exit-at-end"], name=name)
    try:
        code = d.wait_exit(timeout=300)
        assert code == 0, d.log()[-3000:]
        return d, d.decisions(), state
    finally:
        d.close()


def test_daemon_keeps_the_crops_of_a_live_attempt_under_live_and_training_reads_them(tmp_path, face_models):
    video = shared_file("video", "tranvanluyt_real.mp4")
    _, decisions, state = _run_once(tmp_path, video, "live", storage__save_images=True, storage__images_per_attempt=5)
    assert decisions, "the recording made no decision"
    root = state / DIRNAME
    datasets = [p for p in root.iterdir() if p.is_dir()]
    assert len(datasets) == 1 and (datasets[0] / "dataset.json").is_file()
    meta = json.loads((datasets[0] / "dataset.json").read_text())["crop"]
    kept = sorted(datasets[0].rglob("attempt.json"))
    # every attempt the loop decided; one the stop cut short ("shutdown") has nothing worth keeping
    assert len(kept) == len([x for x in decisions if x["reason"] != "shutdown"]) >= 1
    for m in kept:
        info = json.loads(m.read_text())
        d = next(x for x in decisions if x["attempt_id"] == info["attempt_id"])
        assert (info["result"], info["reason"]) == (d["result"], d["reason"])
        assert m.parent.relative_to(datasets[0]).parent == label_folder(d["result"], d["reason"])
        pngs = sorted(m.parent.glob("*.png"))
        assert 1 <= len(pngs) <= 5
        img = cv2.imread(str(pngs[0]))
        assert img.shape == (meta["size"], meta["size"], 3)
        assert oct(pngs[0].stat().st_mode & 0o777) == oct(0o600)  # faces: readable by the daemon's user only
    # The training side reads the folder as it is: labels from the folders, one subject per attempt.
    pytest.importorskip("tensorflow")  # converters/ is the workstation side
    from converters.data.crop_folders import load_crops

    crops = load_crops(root / datasets[0].name)
    passed = [x for x in decisions if x["result"] == "pass"]
    assert int(crops.labels.sum()) == sum(len(list(m.parent.glob("*.png"))) for m in kept
                                          if json.loads(m.read_text())["result"] == "pass")
    assert len(set(crops.subjects)) == len([m for m in kept if label_folder(**{k: json.loads(m.read_text())[k]
                                                                             for k in ("result", "reason")}).parts[0] != "unsure"])
    assert passed, decisions


def test_by_default_no_face_image_lands_on_disk(tmp_path, face_models):
    video = shared_file("video", "tranvanluyt_fake_screen_replay.mp4")
    _, decisions, state = _run_once(tmp_path, video, "default")
    assert decisions
    assert not (state / DIRNAME).exists()
    images = [p for p in state.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp")]
    assert images == []


def _real_face(face_finder):
    img = cv2.imread(str(shared_file("faces", "coral_test_data", "face.jpg")))
    face_finder.reset()
    face_finder.process(img)
    anchors = face_finder.last_anchors
    assert anchors is not None, "no face found in face.jpg"
    return img, anchors


def test_retention_by_count_and_by_age(tmp_path, face_finder):
    img, anchors = _real_face(face_finder)
    keep = AttemptImages(tmp_path, per_attempt=3, keep_attempts=2, keep_days=1.0)
    folders = []
    for i, (result, reason) in enumerate([("pass", "live"), ("fail", "spoof_suspected"), ("fail", "face_lost")]):
        for _ in range(10):
            keep.add(img, anchors, f"a{i}", 128, 0.25)
        folders.append(keep.finish(f"a{i}", result, reason, 128, 0.25))
        os.utime(folders[-1], (time.time() - 10 + i, time.time() - 10 + i))
    assert [f.relative_to(keep.dataset_dir(128, 0.25)).parent for f in folders] == \
        [Path("live"), Path("spoof/spoof_suspected"), Path("unsure/face_lost")]
    left = keep.attempts()
    assert len(left) == 2 and not folders[0].exists(), "the oldest attempt goes first"
    assert all(len(list(f.glob("*.png"))) == 3 for f in left)
    old = time.time() - 2 * 86400
    os.utime(left[0], (old, old))
    assert keep.prune() == 1 and keep.attempts() == [left[1]]


def test_memory_stays_bounded_on_a_long_attempt(tmp_path, face_finder):
    img, anchors = _real_face(face_finder)
    keep = AttemptImages(tmp_path, per_attempt=4)
    for _ in range(500):
        keep.add(img, anchors, "long", 96, 0.25)
    assert keep._buf is not None and len(keep._buf.crops) < 8
    folder = keep.finish("long", "pass", "live", 96, 0.25)
    assert len(list(folder.glob("*.png"))) == 4
    assert np.array_equal(cv2.imread(str(folder / "000.png")).shape, (96, 96, 3))


def test_a_finish_for_another_attempt_keeps_nothing(tmp_path, face_finder):
    img, anchors = _real_face(face_finder)
    keep = AttemptImages(tmp_path)
    keep.add(img, anchors, "a", 96, 0.25)
    assert keep.finish("b", "pass", "live", 96, 0.25) is None
    assert keep.attempts() == []
