"""LOPO rows that come from a video are scored on their own frame, not the video's first one.

Until 2026-12-03 ``rows_of`` dropped index.csv's ``frame`` column, so the texture pair (and the native
patch) scored frame 0 of a video for every row cut from it. These tests pin the column's trip from
index.csv to the pair's score on a real recording.
"""

from __future__ import annotations

import csv
from types import SimpleNamespace

import cv2
import numpy as np

from conftest import shared_file
from converters.data.crop_folders import rows_of

FRAMES = (0, 45, 90)


def _folder(tmp_path, video) -> object:
    d = tmp_path / "frames_lestari"
    (d / "live").mkdir(parents=True)
    with open(d / "index.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "source", "frame", "subject", "recording", "attack_type"])
        for i in FRAMES:
            name = f"live/f{i:05d}.png"
            cv2.imwrite(str(d / name), np.zeros((8, 8, 3), np.uint8))
            w.writerow([name, "live", str(video), i, "lestari", "lestari_real", ""])
    return d


def test_rows_of_carries_each_rows_frame_index(tmp_path, shared_data):
    d = _folder(tmp_path, shared_file("video", "lestari_real.mp4"))
    assert [r["frame"] for r in rows_of(d)] == list(FRAMES)


def test_the_texture_pair_scores_each_row_on_its_own_frame(tmp_path, shared_data, face_finder):
    from converters.lopo.texture import texture_model_scores
    from edge_liveness.liveness import minifasnet as mf

    video = shared_file("video", "lestari_real.mp4")
    _folder(tmp_path, video)
    got = texture_model_scores(tmp_path, SimpleNamespace(labels=np.zeros(len(FRAMES))), cache=None)

    pair = mf.MiniFASNetPair(num_threads=1)
    cap = cv2.VideoCapture(str(video))
    want = []
    try:
        for i in range(max(FRAMES) + 1):
            ok, frame = cap.read()
            assert ok, f"lestari_real.mp4 has no frame {i}"
            if i in FRAMES:
                face_finder.reset()
                view = face_finder.process(frame)
                assert view.landmarks is not None, f"no face in frame {i}"
                want.append(pair.score_landmarks(frame, view.landmarks).per_model)
    finally:
        cap.release()
    np.testing.assert_allclose(got, np.array(want), atol=1e-6)
    # the frames differ, so do their scores: one score copied to every row would fail here
    assert len({tuple(np.round(r, 6)) for r in got}) == len(FRAMES)
