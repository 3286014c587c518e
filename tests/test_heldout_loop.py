"""scripts/heldout_attempts.py's attack loop and its summary over folds.

An attack clip shorter than an attempt is played back and forth (no jump cut) to the attempt's length,
losslessly: every frame of the copy is a decoded frame of the source, in bounce order. A real recording
is never looped (a loop of a person is not a person). The pooled summary counts decided attempts and
passes over every fold.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import heldout_attempts as ha  # noqa: E402


def _write(path, frames, fps=10.0):
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (w, h))
    for f in frames:
        out.write(f)
    out.release()


def _read(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            return frames
        frames.append(img)


def test_a_short_attack_is_played_back_and_forth_losslessly(tmp_path):
    rng = np.random.default_rng(0)
    src_frames = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(5)]
    _write(tmp_path / "clip.avi", src_frames)
    folder = tmp_path / "eval"
    folder.mkdir()
    name = ha.place(tmp_path / "clip.avi", folder, "clip.avi", loop=True, seconds=1.5)
    assert name == "clip_looped.avi"
    got = _read(folder / name)
    assert len(got) == 15  # 1.5 s at 10 fps
    order = [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3, 4, 3, 2]
    assert all(np.array_equal(g, src_frames[i]) for g, i in zip(got, order))


def test_a_real_recording_and_a_long_attack_are_linked_as_they_are(tmp_path):
    frames = [np.full((24, 32, 3), v, np.uint8) for v in (10, 20, 30)]
    _write(tmp_path / "clip.avi", frames)
    for loop, seconds in ((False, 60.0), (True, 0.2)):
        folder = tmp_path / f"eval_{loop}"
        folder.mkdir()
        assert ha.place(tmp_path / "clip.avi", folder, "clip.avi", loop=loop, seconds=seconds) == "clip.avi"
        assert (folder / "clip.avi").is_symlink()


def test_the_summary_pools_every_fold():
    def ev(*files):
        return {"videos": {"per_file": [{"label": lab, "attempts": [{"result": r, "time_to_decision_s": t}]}
                                        for lab, r, t in files]}}
    s = ha.pooled([ev(("live", "pass", 1.0), ("live", "incomplete", None), ("spoof", "fail", 10.0)),
                   ev(("live", "pass", 3.0), ("live", "fail", 10.0), ("spoof", "fail", 6.0))])
    assert s["bona_fide"] == {"attempts": 4, "decided": 3, "passed": 2, "pass_rate": 0.6667,
                              "time_to_pass_p50_s": 2.0, "time_to_pass_p95_s": 2.9}
    assert s["attacks"]["decided"] == 2 and s["attacks"]["passed"] == 0 and s["attacks"]["time_to_pass_p50_s"] is None
