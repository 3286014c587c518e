"""One eye a run (``schedule.eyes_per_run = 1``, issue 28): the eye model reads each eye in turn (one
invoke a run), and the blink window interpolates each eye's series on its own (blink/window.py), on
real frames: an eye not read on a frame is missing there, neither open nor closed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import shared_file
from edge_liveness.blink.detector import BlinkDetector, load_blink_model
from edge_liveness.blink.window import FEATURES, MIN_BASELINE_SAMPLES, BlinkWindow
from edge_liveness.config import load_settings
from edge_liveness.recordings.blink_score import match
from edge_liveness.recordings.blink_annotations import Blink
from edge_liveness.vision.eye_signals import far_eye
from edge_liveness.vision.eyes import EyeRefiner
from fixtures_models import video_frames

VISIBLE = FEATURES.index("visible")


@pytest.fixture(scope="module")
def refiner(face_models):
    r = EyeRefiner.from_settings(load_settings())
    assert r is not None, "the face_models fixture fetches the eye model too"
    return r


@pytest.fixture(scope="module")
def portrait_faces(face_finder, shared_data):
    """tranvanluyt_real.mp4 frames 470-559: blinks at 492-497 and 531-536, counted by eye (tests/data/blinks)."""
    face_finder.reset()
    path = shared_file("video", "tranvanluyt_real.mp4")
    return [(i, ts, f, face_finder.process(f).landmarks) for i, ts, f in video_frames(path, 470, 560)]


def _detector(refiner, eyes_per_run: int) -> BlinkDetector:
    settings = load_settings()
    return BlinkDetector(settings.blink, refiner, load_blink_model(settings), eyes_per_run)


def _run(det: BlinkDetector, faces, monkeypatch):
    """(eye-model invokes per frame, per frame which eyes were read "B"/"L"/"R", signals, blinks as frame spans)."""
    calls = []
    real = det.refiner.model.invoke
    monkeypatch.setattr(det.refiner.model, "invoke", lambda: calls.append(1) or real())
    read, signals, spans, invokes = [], [], [], []
    for _, ts, f, lm in faces:
        n = len(calls)
        s = det.update(ts, lm, f)
        invokes.append(len(calls) - n)
        sig = det.last_signals
        signals.append(sig)
        left, right = not math.isnan(sig.ear_left), not math.isnan(sig.ear_right)
        read.append("B" if left and right else "L" if left else "R" if right else "-")
        if s.blink:
            spans.append((s.blink_start_ts, s.blink_end_ts))
    spans += det.flush()
    monkeypatch.undo()

    def frame(t: float) -> int:
        return min(faces, key=lambda x: abs(x[1] - t))[0]

    return invokes, "".join(read), signals, [Blink(frame(a), frame(b)) for a, b in spans]


def test_one_eye_a_run_takes_turns_at_one_invoke_and_still_finds_the_blinks(refiner, portrait_faces, monkeypatch):
    both = _run(_detector(refiner, 2), portrait_faces, monkeypatch)
    invokes, read, signals, blinks = _run(_detector(refiner, 1), portrait_faces, monkeypatch)
    n = len(portrait_faces)
    assert both[0] == [2] * n and both[1] == "B" * n
    # both eyes until each eye's open level exists (MIN_BASELINE_SAMPLES runs), then one eye a run
    assert read.startswith("B" * MIN_BASELINE_SAMPLES) and read[MIN_BASELINE_SAMPLES] == "R"
    assert invokes == [2 if r == "B" else 1 for r in read]
    assert all(s.visible for s in signals), "an eye not read does not make the frame invisible"
    # each one-eye run reads the eye read longer ago: no eye twice in a row without the other between
    assert all(a != b for a, b in zip(read, read[1:]) if a != "B" and b != "B")
    # a lid down on the eye read has the other eye read on the same frame: both eyes through each blink
    index = [i for i, *_ in portrait_faces]
    for lo, hi in ((492, 497), (531, 536)):
        during = read[index.index(lo):index.index(hi) + 1]
        assert "B" in during, f"a blink at {lo}-{hi} read by one eye only: {during}"
    assert read[MIN_BASELINE_SAMPLES:].count("B") < n // 3, "most runs still read one eye"
    by_eye = [Blink(492, 497), Blink(531, 536)]
    assert len(blinks) == 2 and match(by_eye, blinks)[0] == 2


def test_an_eye_not_read_is_missing_neither_open_nor_closed(refiner, portrait_faces, monkeypatch):
    # The same real frames' both-eye signals, then with one eye dropped on every frame but the first, in
    # turn: the window built from half the readings stays close to the full one and holds no NaN.
    _, _, signals, _ = _run(_detector(refiner, 2), portrait_faces, monkeypatch)
    from dataclasses import replace

    nan = math.nan
    half = [s if k == 0 else replace(s, ear_left=nan, lid_left=nan) if k % 2 else replace(s, ear_right=nan, lid_right=nan)
            for k, s in enumerate(signals)]
    full_w, half_w = BlinkWindow(3.0), BlinkWindow(3.0)
    diffs, compared = [], 0
    for k, (s, h) in enumerate(zip(signals, half)):
        full_w.add(s)
        half_w.add(h)
        f, g = full_w.features(), half_w.features()
        if f is None or g is None:
            assert k < MIN_BASELINE_SAMPLES + 1
            continue
        compared += 1
        assert not np.isnan(g).any()
        # every point both eyes' readings cover is usable: a missing eye does not blank the window
        assert (g[:, VISIBLE] >= f[:, VISIBLE]).all()
        both = (f[:, VISIBLE] == 1) & (g[:, VISIBLE] == 1)
        diffs.append(np.abs(g[both, :VISIBLE] - f[both, :VISIBLE]).mean())
    assert compared >= len(signals) - MIN_BASELINE_SAMPLES - 1
    # Interpolated from its own readings, a missing eye follows what it did (measured: 0.026 of the
    # open level on average over these 90 frames, two blinks in them, 0.06 at worst): filled as open
    # (1) or closed it would be off by the depth of each blink.
    assert float(np.mean(diffs)) < 0.04 and max(diffs) < 0.1
    lf, lh = full_w.open_level(), half_w.open_level()
    assert np.allclose(lf, lh, rtol=0.05), "each eye's open level from its own readings"


def test_an_eye_read_too_seldom_has_no_open_level_and_no_window(refiner, portrait_faces, monkeypatch):
    _, _, signals, _ = _run(_detector(refiner, 2), portrait_faces[:12], monkeypatch)
    from dataclasses import replace

    w = BlinkWindow(3.0)
    w.add(signals[0])  # both eyes once, then the right eye only
    for s in signals[1:]:
        w.add(replace(s, ear_left=math.nan, lid_left=math.nan))
    assert w.open_level() is None and w.features() is None
    assert w.last_read() == (signals[0].ts, signals[-1].ts)


def test_a_turned_head_reads_the_near_eye_for_both(face_finder, refiner, shared_data, monkeypatch):
    # apfol_real2.webm frames 36-48: the head turned aside; a real blink at 39-44 (blink/detector.py)
    face_finder.reset()
    faces = [(i, ts, f, face_finder.process(f).landmarks)
             for i, ts, f in video_frames(shared_file("video", "apfol_real2.webm"), 20, 75)]
    turned = [k for k, (_, _, _, lm) in enumerate(faces) if far_eye(lm.points) is not None]
    assert turned, "the head is turned on some of these frames"
    invokes, read, signals, blinks = _run(_detector(refiner, 1), faces, monkeypatch)
    assert all(read[k] == "B" and signals[k].ear_left == signals[k].ear_right for k in turned)
    # one invoke a run while the head is turned (the near eye), lowered or not, once the open level exists
    assert all(invokes[k] == 1 for k in turned if k >= MIN_BASELINE_SAMPLES)
    assert match([Blink(39, 44)], blinks)[0] == 1


def test_the_open_level_is_numpys_percentile_bit_for_bit():
    # window.percentile replaces np.percentile on every eye run (its call overhead, not its answer):
    # the same float64 for any length, ties and quantile, and the window's open level the same as before
    from edge_liveness.blink.window import BASELINE_PERCENTILE, percentile
    from edge_liveness.vision.eye_signals import EyeSignals

    rng = np.random.default_rng(0)
    for n in list(range(1, 40)) + [90, 91, 180]:
        for vals in (rng.uniform(0.1, 0.4, n), np.round(rng.uniform(0.1, 0.4, n), 2)):  # the second with ties
            for q in (BASELINE_PERCENTILE, 50, 0, 100, 33.3):
                assert percentile(np.sort(vals), q) == np.percentile(vals, q)
    w = BlinkWindow(baseline_s=3.0)
    readings = rng.uniform(0.15, 0.35, (120, 4))
    readings[::2, 0::2] = np.nan  # one eye a run: each eye read on alternate frames
    readings[1::2, 1::2] = np.nan
    for i, r in enumerate(readings):
        w.add(EyeSignals(ts=i / 30, visible=True, ear_left=r[0], ear_right=r[1], lid_left=r[2], lid_right=r[3]))
    kept = np.array([v for _, v in w._open])  # the readings of the last baseline_s the window holds
    assert 85 <= len(kept) <= 92
    expect = [np.percentile(c[~np.isnan(c)], BASELINE_PERCENTILE) for c in kept.T]
    assert w.open_level().tolist() == expect
