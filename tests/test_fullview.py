"""Full-view replays (issue 26 item 3): replay videos cut to the screen's picture, rescaled to a camera size.

scripts/fullview_replays.py on the first frames of a real replay video: every frame has the promised
size, is made of the pixels inside its rectangle only, the rectangle lies inside the tracked screen
shrunk by the margin with the output's exact aspect ratio, the manifest describes what was written,
and a second run gives the same frames. scripts/fullview_scores.py scores such a video through the
daemon's pipeline.
"""

from __future__ import annotations

import json
import math
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO, shared_file

sys.path.insert(0, str(REPO / "scripts"))
import fullview_replays as fv  # noqa: E402
import fullview_track as ft  # noqa: E402

# zubair's phone moves fast and is tilted: the tracking and the crop rule are both exercised
SOURCE = "zubair_fake_phone_replay.mp4"
FRAMES = 16


def _inside(quad: np.ndarray, pts: np.ndarray) -> bool:
    """Every point on the inner side of every edge of the clockwise quad (0.01 px tolerance)."""
    for k in range(4):
        a, b = quad[k], quad[(k + 1) % 4]
        cross = (b[0] - a[0]) * (pts[:, 1] - a[1]) - (b[1] - a[1]) * (pts[:, 0] - a[0])
        if np.any(cross < -0.01 * np.linalg.norm(b - a)):
            return False
    return True


def _corners(rect: list[int]) -> np.ndarray:
    x, y, w, h = rect
    return np.array([[x, y], [x + w - 1, y], [x + w - 1, y + h - 1], [x, y + h - 1]], float)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    src = shared_file("video", SOURCE)
    out = tmp_path_factory.mktemp("fullview")
    assert fv.main(["--shared", str(src.parent.parent), "--out", str(out), "--only", SOURCE, "--max-frames", str(FRAMES)]) == 0
    return src, out


def test_frames_have_the_promised_size_and_only_the_rectangles_pixels(made):
    src, out = made
    screen = ft.load_table()[SOURCE]
    man, frames = fv.fullview_frames(src, screen, FRAMES)
    sources = list(fv.iter_frames(src, screen.frames[0], screen.frames[0] + FRAMES))
    assert len(frames) == len(sources) == FRAMES
    for img, frame, rect in zip(sources, frames, man.rects):
        assert frame.shape == (screen.size[1], screen.size[0], 3)
        x, y, w, h = rect[1:]
        # the same output from the source with everything outside the rectangle blacked out
        masked = np.zeros_like(img)
        masked[y:y + h, x:x + w] = img[y:y + h, x:x + w]
        assert np.array_equal(fv.cut(masked, (x, y, w, h), screen.size), frame)
    # the written video holds those frames (lossy codec: close, not equal)
    cap = cv2.VideoCapture(str(out / f"{screen.stem}_fullview.mp4"))
    decoded = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        decoded.append(f)
    assert len(decoded) == FRAMES
    assert all(d.shape == f.shape for d, f in zip(decoded, frames))
    assert min(cv2.PSNR(d, f) for d, f in zip(decoded, frames)) > 30


def test_rectangles_lie_inside_the_tracked_screen_with_the_exact_aspect(made):
    src, _ = made
    screen = ft.load_table()[SOURCE]
    man = fv.plan(src, screen, FRAMES)
    h_img, w_img = next(fv.iter_frames(src, 0, 1)).shape[:2]
    for (i, x, y, w, h), quad in zip(man.rects, man.quads):
        assert w * screen.size[1] == h * screen.size[0]  # one scale for both axes: never stretched
        assert 0 <= x and x + w <= w_img and 0 <= y and y + h <= h_img
        inner = ft._shrink(np.array(quad), screen.margin)
        assert _inside(inner, _corners([x, y, w, h])), f"frame {i}: {[x, y, w, h]} leaves the screen shrunk by the margin"
        # and it uses the room: a rectangle two aspect units larger on each side would not fit
        g = math.gcd(*screen.size)
        uw, uh = screen.size[0] // g, screen.size[1] // g
        bigger = [x - 2 * uw, y - 2 * uh, w + 4 * uw, h + 4 * uh]
        assert not _inside(inner, _corners(bigger))
        # the tracked screen stays near the hand-placed keyframes
        assert np.max(np.abs(np.array(quad) - ft.prior_quad(screen, i))) <= 2 * max(screen.search) + 2


def test_manifest_says_what_was_written_and_a_second_run_is_identical(made):
    src, out = made
    screen = ft.load_table()[SOURCE]
    per_video = json.loads((out / f"{screen.stem}_fullview.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["videos"][f"{screen.stem}_fullview.mp4"]
    assert entry["source_sha256"] == per_video["source_sha256"] == fv.sha256(src)
    assert entry["video_sha256"] == fv.sha256(out / f"{screen.stem}_fullview.mp4")
    assert entry["frames"] == per_video["frames"] == len(per_video["rects"]) == FRAMES
    assert entry["size"] == list(screen.size) and entry["person"] == screen.person
    assert [r[0] for r in per_video["rects"]] == list(range(screen.frames[0], screen.frames[0] + FRAMES))
    again, frames = fv.fullview_frames(src, screen, FRAMES)
    assert again.rects == per_video["rects"]
    first, frames0 = fv.fullview_frames(src, screen, FRAMES)
    assert all(np.array_equal(a, b) for a, b in zip(frames, frames0))


def test_the_table_is_well_formed():
    for name, s in ft.load_table().items():
        assert s.frames[0] < s.frames[1] and s.keyframes, name
        assert all(s.frames[0] <= k < s.frames[1] for k in s.keyframes), f"{name}: a keyframe outside the kept frames"
        for k, q in s.keyframes.items():
            # clockwise in image coordinates (TL, TR, BR, BL): the side normals point inward
            area = sum(q[i][0] * q[(i + 1) % 4][1] - q[(i + 1) % 4][0] * q[i][1] for i in range(4)) / 2
            assert area > 0, f"{name} keyframe {k}: corners not TL, TR, BR, BL"


def test_unknown_video_is_one_line_and_exit_2(capsys, tmp_path):
    assert fv.main(["--out", str(tmp_path), "--only", "nope.mp4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.mp4 not in" in err[0]


def test_scores_come_from_the_daemons_pipeline(made, face_models):
    import fullview_scores

    from edge_liveness.config import load_settings
    from edge_liveness.pipeline import load_models

    _, out = made
    settings = load_settings(None, active={"mode": "blink"})
    row = fullview_scores.score_video(settings, load_models(settings), out / "zubair_fake_phone_replay_fullview.mp4")
    assert row["frames"] == FRAMES and row["error"] is None
    assert 0 < row["frames_scored"] <= row["frames_with_face"] <= FRAMES
    assert 0.0 <= row["frac_live"] <= 1.0 and 0.0 <= row["median_p_live"] <= 1.0
    assert row["any_pass"] == ("pass" in row["results"]) and len(row["attempts"]) == len(row["results"])
