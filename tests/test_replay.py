"""`edge-liveness replay` and the daemon end to end on the shared recordings (real models, real broker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from conftest import REPO, shared_file
from edge_liveness.events.verify import Verifier
from fault_helpers import DEVICE_ID, SIGNING_KEY, DaemonProc, EventSink, base_env

pytestmark = pytest.mark.slow
VIDEO = ("video", "tranvanluyt_real.mp4")
FAKE = ("video", "tranvanluyt_fake_screen_replay.mp4")


BLINK_ONLY = {"EDGE_LIVENESS_ACTIVE__BLINK_ALTERNATIVES": "[]"}  # blink mode with no head turn standing in


def replay(*args: str, timeout: float = 300, env_extra: dict[str, str] | None = None) -> tuple[int, list[dict], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_LIVENESS_") or k == "EDGE_LIVENESS_SHARED_DATA"}
    env.update(env_extra or {})
    r = subprocess.run([sys.executable, "-m", "edge_liveness", "replay", *args], capture_output=True, text=True,
                       cwd=REPO, env=env, timeout=timeout)
    return r.returncode, [json.loads(line) for line in r.stdout.splitlines() if line.strip()], r.stderr


@pytest.fixture(scope="module")
def still_video(tmp_path_factory) -> Path:
    """A still photo of a live face made into a 10 s video (longer than active.blink_timeout)."""
    cap = cv2.VideoCapture(str(shared_file(*VIDEO)))
    for _ in range(10):
        ok, img = cap.read()
    cap.release()
    assert ok
    out = tmp_path_factory.mktemp("still") / "still.mp4"
    h, w = img.shape[:2]
    vw = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
    for _ in range(300):
        vw.write(img)
    vw.release()
    return out


def test_trace_has_a_line_per_frame_and_exits_0(face_models):
    # blink only: with a turn standing in, the attempt passes on his turn at 5.83 s, two frames before
    # the blink, and the eye model rests once the attempt is decided
    code, lines, err = replay(str(shared_file(*VIDEO)), "--trace", env_extra=BLINK_ONLY)
    assert code == 0, err
    frames = [x for x in lines if x["type"] == "frame"]
    assert len(frames) == 621
    for key in ("t", "face", "ear_left", "ear_right", "blink", "yaw", "pitch", "roll", "p_live", "motions"):
        assert key in frames[0]
    assert sum(f["face"] for f in frames) > 600
    assert any(f["blink"] for f in frames)  # the blinks a person sees (frames ~533, ~495)
    motions = [m for f in frames for m in f["motions"]]
    assert "turn_left" in motions and "turn_right" in motions


def test_unreadable_file_is_one_line_and_exit_2(tmp_path):
    junk = tmp_path / "clip.mp4"
    junk.write_bytes(b"\x00\x01 not a video" * 100)
    for path in (junk, tmp_path / "missing.mp4"):
        code, lines, err = replay(str(path))
        assert code == 2 and lines == []
        assert len(err.strip().splitlines()) == 1 and str(path) in err, err


def test_live_passes_screen_replay_and_still_photo_fail(face_models, still_video):
    def decisions(path, env_extra=None) -> list[dict]:
        code, lines, err = replay(str(path), env_extra=env_extra)
        assert code == 0, err
        return [x for x in lines if x["type"] == "decision"]

    live = decisions(shared_file(*VIDEO))
    assert [d["result"] for d in live] == ["pass"]
    assert live[0]["evidence"]["sign_of_life"] in ("blink", "turn_left", "turn_right")
    strict = decisions(shared_file(*VIDEO), BLINK_ONLY)
    assert [d["result"] for d in strict] == ["pass"]
    assert strict[0]["evidence"]["blinks"] >= 1 and strict[0]["evidence"]["sign_of_life"] == "blink"
    fake = decisions(shared_file(*FAKE))
    assert fake and all(d["result"] == "fail" for d in fake)
    assert fake[0]["reason"] == "spoof_suspected"
    still = decisions(still_video)
    assert still and all(d["result"] == "fail" for d in still)
    assert still[0]["reason"] in ("no_blink", "spoof_suspected")


def test_still_photo_has_no_blinks_and_no_head_motion(face_models, still_video):
    code, lines, err = replay(str(still_video), "--trace")
    assert code == 0, err
    frames = [x for x in lines if x["type"] == "frame"]
    assert len(frames) == 300 and all(f["face"] for f in frames)
    assert not any(f["blink"] for f in frames)
    assert not any(f["motions"] for f in frames)


def test_replay_prints_signed_payloads(face_models, tmp_path):
    (tmp_path / "signing_key").write_text("k" * 32)
    code, lines, err = replay(str(shared_file(*VIDEO)), "--secrets-dir", str(tmp_path))
    assert code == 0, err
    v = Verifier(b"k" * 32)
    assert lines and all(v.check(x).ok for x in lines)


def _prompts_and_decisions(sink: EventSink) -> list[dict]:
    return [m.json() for m in sink.collector.messages if m.topic.endswith(("/prompt", "/events"))]


def test_challenge_mode_end_to_end_prompt_precedes_each_decision(mosquitto_broker, tmp_path, face_models):
    base = f"edge-liveness/{DEVICE_ID}"
    sink = EventSink(mosquitto_broker.host, mosquitto_broker.port, base)
    sink.collector.client.subscribe(f"{base}/prompt", qos=1)
    env = base_env(tmp_path / "state", shared_file(*VIDEO), mosquitto_broker.port, active__mode="challenge",
                   active__challenge_step_timeout_s=1.5, decision__cooldown_s=0.2)
    d = DaemonProc(tmp_path, env)
    try:
        assert sink.wait_for(lambda s: sum(1 for m in _prompts_and_decisions(s) if m["type"] == "decision") >= 2,
                             timeout=120), d.log()[-2000:]
    finally:
        assert d.stop() == 0
        d.close()
    msgs = _prompts_and_decisions(sink)
    sink.close()
    v = Verifier(SIGNING_KEY.encode())
    assert all(v.check(m).ok for m in msgs), "every prompt and decision is signed, seq rising"
    decisions = [m for m in msgs if m["type"] == "decision"]
    for dec in decisions:
        i = msgs.index(dec)
        prompts = [m for m in msgs[:i] if m["type"] == "prompt" and m["attempt_id"] == dec["attempt_id"]]
        assert len(prompts) == 1, f"decision {dec['attempt_id']} without its prompt before it"
        assert dec["evidence"]["challenge"]["actions"] == prompts[0]["actions"]
        assert 1 <= len(prompts[0]["actions"]) <= 3


def test_daemon_killed_mid_backlog_loses_nothing(mosquitto_broker, tmp_path, face_models):
    """Broker away, decisions journaled, kill -9, broker back, restart: every decision once, in seq order."""
    mosquitto_broker.stop()
    state = tmp_path / "state"
    env = base_env(state, shared_file(*VIDEO), mosquitto_broker.port)
    d1 = DaemonProc(tmp_path / "d1", env)
    try:
        first = d1.wait_decisions(3, timeout=120)
        d1.signal(9)
        assert d1.wait_exit(10) != 0
    finally:
        d1.close()
    journaled = {x["event_id"] for x in first}
    mosquitto_broker.start()
    sink = EventSink(mosquitto_broker.host, mosquitto_broker.port, f"edge-liveness/{DEVICE_ID}")
    d2 = DaemonProc(tmp_path / "d2", env)
    try:
        assert sink.wait_for(lambda s: journaled <= set(s.decisions()), timeout=60), \
            f"missing after restart: {journaled - set(sink.decisions())}"
        time.sleep(1.0)
    finally:
        assert d2.stop() == 0
        d2.close()
    got = sink._decision_msgs()
    sink.close()
    old = [m for m in got if m["event_id"] in journaled]
    assert len({m["event_id"] for m in old}) == len(journaled)
    seqs = [m["seq"] for m in got]
    assert seqs == sorted(seqs), "delivered in seq order"


def test_trace_does_not_change_the_decision(face_models):
    # Issue 18 item 9: --trace scores every frame for study, but the decision must be the daemon's.
    rc1, plain, _ = replay(str(shared_file(*VIDEO)))
    rc2, traced, _ = replay(str(shared_file(*VIDEO)), "--trace")
    decided = [o for o in traced if o.get("type") == "decision"]
    assert rc1 == rc2 == 0 and len(plain) == len(decided) == 1
    keep = ("result", "reason", "duration_s")
    assert {k: plain[0][k] for k in keep} == {k: decided[0][k] for k in keep}
    assert plain[0]["evidence"]["frames"] == decided[0]["evidence"]["frames"]


def test_recording_that_ends_mid_attempt_says_so(face_models, tmp_path):
    # Issue 18 item 8: an attempt still collecting at the end is reported, never silence; issue 27: and
    # it ends as the daemon ends it when it stops there, with a fail/shutdown decision.
    cap = cv2.VideoCapture(str(shared_file(*VIDEO)))
    ok, img = cap.read()
    cap.release()
    still = tmp_path / "face.jpg"
    cv2.imwrite(str(still), img)
    rc, out, err = replay(str(still))
    assert rc == 0 and [(o["type"], o["result"], o["reason"]) for o in out] == [("decision", "fail", "shutdown")]
    lines = [line for line in err.splitlines() if line.startswith("incomplete:")]
    assert len(lines) == 1 and "still collecting when the recording ended" in lines[0] and "1 frames scored" in lines[0]
    assert "fail/shutdown" in lines[0] and out[0]["attempt_id"] in lines[0]
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), img * 0)
    rc, out, err = replay(str(blank))
    assert rc == 0 and out == [] and err.strip().startswith("no attempt: none of the 1 frames")


# ---------------------------------------------------------------- issue 27: one story for a clip that ends mid-attempt

@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    """The first 0.6 s of a real recording, lossless: a face, an attempt started, too short for any
    decision (decision.min_evidence_s is 1 s)."""
    cap = cv2.VideoCapture(str(shared_file(*VIDEO)))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    out = tmp_path_factory.mktemp("short") / "short.mkv"
    writer = None
    for _ in range(round(0.6 * fps)):
        ok, img = cap.read()
        assert ok
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"FFV1"), fps, (img.shape[1], img.shape[0]))
        writer.write(img)
    cap.release()
    writer.release()
    return out


def test_a_clip_that_ends_mid_attempt_tells_one_story_in_replay_and_run(short_clip, tmp_path, face_models):
    """`run --exit-at-end` stops where the clip ends and, as on any stop mid-attempt, publishes a signed
    fail/shutdown; `replay` prints the same decision (it used to print none)."""
    env = base_env(tmp_path / "state", short_clip, None, camera__loop=False, active__mode="blink")
    secrets = tmp_path / "k"
    secrets.mkdir()
    (secrets / "signing_key").write_text(SIGNING_KEY)
    rc, out, err = replay(str(short_clip), "--secrets-dir", str(secrets), env_extra=env)
    assert rc == 0, err
    replayed = [o for o in out if o.get("type") == "decision"]
    d = DaemonProc(tmp_path, env, args=["--exit-at-end"])
    try:
        assert d.wait_exit(timeout=180) == 0, d.log()[-2000:]
        ran = d.decisions()
    finally:
        d.close()
    assert [(o["result"], o["reason"]) for o in replayed] == [(o["result"], o["reason"]) for o in ran] \
        == [("fail", "shutdown")], (replayed, ran, err, d.log()[-2000:])
    for o in (replayed[0], ran[0]):  # a verifier each: both runs number their first payload seq 1
        assert Verifier(SIGNING_KEY.encode()).check(o).ok, o
    assert replayed[0]["evidence"]["active_mode"] == ran[0]["evidence"]["active_mode"] == "blink"
    assert "incomplete:" in err and "fail/shutdown" in err
