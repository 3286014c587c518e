"""Blink mode's stand-ins for a blink (``active.blink_alternatives``): a head turn counts, a flat
picture swung in 3D never reads as one (real photo, the daemon's own face mesh and head-pose code)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import REPO, shared_file
from edge_liveness.decide.checks import FAILED, PASSED, PENDING, BlinkCheck, make_check
from edge_liveness.config import ActiveConfig, ConfigError, DecisionConfig, DetectionConfig, load_settings
from edge_liveness.decide.decision import DecisionEngine, FrameObservation, ModelInfo
from edge_liveness.vision.headpose import HeadMotion, estimate_pose

sys.path.insert(0, str(REPO / "scripts"))
from make_still_videos import tilted_picture  # noqa: E402


def _obs(ts: float, motions: tuple[str, ...] = (), blink: bool = False,
         departures: tuple[str, ...] = ()) -> FrameObservation:
    return FrameObservation(ts=ts, n_faces=1, n_large_faces=1, face_frac=0.4, yaw=0.0, pitch=0.0, p_live=0.9,
                            blink=blink, motions=motions, departures=departures)


def test_turn_stands_in_for_the_blink_by_default_and_nod_does_not():
    c = make_check("blink", ActiveConfig(), 0.5)
    c.begin(0.0)
    assert c.observe(_obs(0.5, ("nod",))).state == PENDING
    assert c.observe(_obs(1.2, ("turn_right",))).state == PASSED
    assert c.sign_of_life() == "turn_right"


def test_turn_counts_from_the_frame_the_head_is_past_the_threshold():
    c = make_check("blink", ActiveConfig(), 0.5)
    c.begin(0.0)
    assert c.observe(_obs(0.5, departures=("nod",))).state == PENDING
    assert c.observe(_obs(0.9, departures=("turn_left",))).state == PASSED
    assert c.sign_of_life() == "turn_left"


def test_empty_alternatives_is_the_strict_blink_check():
    c = make_check("blink", ActiveConfig(blink_alternatives=[]), 0.5)
    c.begin(0.0)
    assert c.observe(_obs(0.5, ("turn_left",), departures=("turn_left",))).state == PENDING
    v = c.observe(_obs(6.0))
    assert (v.state, v.reason) == (FAILED, "no_blink")
    assert c.sign_of_life() is None


def test_alternative_after_the_blink_window_does_not_count():
    c = BlinkCheck(2.0, ["turn_left"])
    c.begin(0.0)
    assert c.observe(_obs(2.5, ("turn_left",))).state == FAILED


def test_unknown_alternative_is_one_clear_config_error(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[active]\nblink_alternatives = ["smile"]\n')
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    msg = str(e.value)
    assert "blink_alternatives" in msg and "\n" not in msg.strip()


def test_decision_evidence_names_the_sign_of_life():
    eng = DecisionEngine(DecisionConfig(min_evidence_s=0.5, min_frames=4), ActiveConfig(), DetectionConfig(),
                         ModelInfo("m", "0", 0.5))
    outs = []
    for i in range(40):
        t = i / 10
        outs += eng.update(_obs(t, ("turn_left",) if i == 12 else ()))
    d = [o for o in outs if o.kind == "decision"]
    assert d and d[0].result == "pass" and d[0].evidence["sign_of_life"] == "turn_left"
    assert d[0].evidence["blinks"] == 0


def test_photo_swung_in_3d_never_reads_as_a_head_turn(face_finder, shared_data):
    """A selfie as a flat picture swung +-30 degrees about the vertical axis (and 20 about the
    horizontal): the face mesh puts the nose where the picture has it, so the pose moves far less than
    the picture does and never past ``active.turn_deg``. A real head turning as far reads 60-90 degrees
    (tests/test_headpose.py)."""
    import cv2

    photo = cv2.imread(str(shared_file("liveness", "real_people", "td_real", "0001e96803--621ea6b1e2c5d221d5131267",
                                       "live_selfie.jpg")))
    s = 640 / max(photo.shape[:2])
    photo = cv2.resize(photo, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    active = load_settings().active
    hm = HeadMotion(active)
    face_finder.reset()
    yaws, events, departures = [], [], []
    for i in range(180):  # 6 s at 30 fps: two full swings
        frame = tilted_picture(photo, i / 30)
        pose = estimate_pose(face_finder.process(frame).landmarks, frame.shape)
        if pose is not None:
            yaws.append(pose.yaw)
        events += hm.update(i / 30, pose)
        departures += hm.departures
    assert len(yaws) > 150, "the face must stay found while the picture swings"
    spread = float(np.percentile(yaws, 95) - np.percentile(yaws, 5))
    print(f"swung photo: yaw spread {spread:.1f} degrees over {len(yaws)} frames")
    assert spread < active.turn_deg, f"a swung photo read as {spread:.1f} degrees of yaw"
    assert not {"turn_left", "turn_right"} & set(events + departures)
    assert load_settings().active.blink_alternatives == ["turn_left", "turn_right"]


def test_alternatives_from_the_environment_must_be_a_json_list(monkeypatch):
    """Found by the fuzz test: a bare word in the variable used to give pydantic's section-level error."""
    monkeypatch.setenv("EDGE_LIVENESS_ACTIVE__MODE", "blink")  # a plain (non-JSON) scalar beside it is fine
    monkeypatch.setenv("EDGE_LIVENESS_ACTIVE__BLINK_ALTERNATIVES", "turn_left")
    with pytest.raises(ConfigError) as e:
        load_settings()
    msg = str(e.value).strip()
    assert msg.startswith("EDGE_LIVENESS_ACTIVE__BLINK_ALTERNATIVES: active.blink_alternatives must be a JSON list")
    assert "\n" not in msg
    monkeypatch.setenv("EDGE_LIVENESS_ACTIVE__BLINK_ALTERNATIVES", "[]")
    assert load_settings().active.blink_alternatives == []
