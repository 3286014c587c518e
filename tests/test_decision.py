"""The attempt state machine on synthetic observation sequences: every path and reason."""

from __future__ import annotations

import gzip
import json
import random

import pytest

from edge_liveness.config import ActiveConfig, DecisionConfig, DetectionConfig
from edge_liveness.decide.decision import (REASONS, ActiveModeError, Decision, DecisionEngine, FrameObservation, ModelInfo,
                                    Prompt, TraceError, load_trace)

FPS = 10.0
MODEL = ModelInfo(name="liveness-test", sha256="ab" * 32, threshold=0.5)


def face(ts: float, p: float | None = 0.9, **kw) -> FrameObservation:
    base = dict(ts=ts, n_faces=1, n_large_faces=1, face_frac=0.3, yaw=0.0, pitch=0.0, roll=0.0, p_live=p,
                ear_left=0.3, ear_right=0.3, eyes_visible=True)
    base.update(kw)
    return FrameObservation(**base)


def empty(ts: float) -> FrameObservation:
    return FrameObservation(ts=ts, n_faces=0, n_large_faces=0, face_frac=0.0)


def engine(mode="blink", rng=None, detection=None, **dec) -> DecisionEngine:
    # the state machine's paths on a frame count; the time-based policy has its own tests below
    d = dict(min_frames=5, attempt_timeout_s=10.0, face_lost_s=1.0, cooldown_s=3.0, min_evidence_s=0.0,
             score_window_s=0.0, early_fail=True)
    d.update(dec)
    return DecisionEngine(DecisionConfig(**d), ActiveConfig(mode=mode, blink_timeout=4.0), detection or DetectionConfig(),
                          MODEL, rng=rng)


def run(eng: DecisionEngine, frames) -> list:
    out = []
    for f in frames:
        out.extend(eng.update(f))
    return out


def decisions(outs) -> list[Decision]:
    return [o for o in outs if isinstance(o, Decision)]


def t(i: int, t0: float = 0.0) -> float:
    return t0 + i / FPS


def test_pass_with_blink_and_body_shape():
    eng = engine()
    frames = [face(t(i), p=0.8 + 0.01 * (i % 5), blink=(i == 12), ear_left=0.1 if i == 11 else 0.3) for i in range(30)]
    outs = run(eng, frames)
    ds = decisions(outs)
    assert len(ds) == 1
    d = ds[0]
    assert (d.result, d.reason) == ("pass", "live")
    assert d.duration_s == pytest.approx(1.2)  # decided on the blink frame, not later
    body = d.body()
    assert set(body) == {"result", "reason", "attempt_id", "started_at", "duration_s", "evidence"}
    ev = body["evidence"]
    assert set(ev) == {"frames", "passive_median", "passive_recent_median", "evidence_s", "passive_min", "threshold",
                       "pass_margin", "blinks", "ear_baseline", "ear_min", "active_mode", "active_passed", "model", "sign_of_life",
                       "passive_scores", "attempt_frames"}
    assert ev["sign_of_life"] == "blink"
    assert ev["frames"] == 13 and ev["blinks"] == 1 and ev["active_passed"] is True
    assert ev["threshold"] == 0.5 and ev["model"] == {"name": MODEL.name, "sha256": MODEL.sha256}
    assert ev["passive_min"] == pytest.approx(0.8) and 0.8 <= ev["passive_median"] <= 0.84
    assert ev["ear_baseline"] == pytest.approx(0.3) and ev["ear_min"] == pytest.approx(0.2)
    assert json.loads(json.dumps(body)) == body  # plain JSON, no arrays or images
    assert eng.state == "cooldown"


def test_config_threshold_overrides_model():
    eng = engine(threshold=0.95)
    d = decisions(run(eng, [face(t(i), p=0.9, blink=(i == 2)) for i in range(20)]))[0]
    assert (d.result, d.reason) == ("fail", "spoof_suspected")
    assert d.body()["evidence"]["threshold"] == 0.95


def test_a_blink_at_the_thresholds_edge_does_not_pass():
    # issue 26: a replay's median cleared the threshold by 0.0013 and its recorded blink opened the door
    blink_at = {12}
    edge = [face(t(i), p=0.5013, blink=(i in blink_at)) for i in range(120)]
    assert decisions(run(engine(pass_margin=0.0), edge))[0].result == "pass"
    d = decisions(run(engine(pass_margin=0.5, early_fail=False), edge))[0]
    assert (d.result, d.reason) == ("fail", "spoof_suspected")
    assert d.duration_s == pytest.approx(10.0)  # kept looking to the deadline: never let in at the edge
    assert d.body()["evidence"]["pass_margin"] == 0.5
    # clearly live (logit margin 1.39 > 0.5): the same blink passes at once
    clear = [face(t(i), p=0.8, blink=(i in blink_at)) for i in range(40)]
    d = decisions(run(engine(pass_margin=0.5), clear))[0]
    assert (d.result, d.reason) == ("pass", "live") and d.duration_s == pytest.approx(1.2)


def test_passive_margin_is_in_logit_units():
    from edge_liveness.decide.decision import passive_margin

    assert passive_margin(0.5, 0.5) == pytest.approx(0.0)
    assert passive_margin(0.8, 0.5) == pytest.approx(1.3863, abs=1e-4)
    assert passive_margin(0.17, 0.5) < 0 < passive_margin(0.3, 0.17)


def test_spoof_fails_early_without_waiting_for_blink():
    eng = engine()
    d = decisions(run(eng, [face(t(i), p=0.1) for i in range(60)]))[0]
    assert (d.result, d.reason) == ("fail", "spoof_suspected")
    assert d.body()["evidence"]["frames"] == 5  # min_frames, long before blink_timeout (4 s)


def test_spoof_late_fail_when_early_fail_off():
    eng = engine(early_fail=False)
    ds = decisions(run(eng, [face(t(i), p=0.1) for i in range(60)]))
    assert (ds[0].result, ds[0].reason) == ("fail", "spoof_suspected")
    assert ds[0].duration_s == pytest.approx(4.0)  # waited for the blink window, reason still passive


def test_no_blink():
    eng = engine()
    d = decisions(run(eng, [face(t(i)) for i in range(80)]))[0]
    assert (d.result, d.reason) == ("fail", "no_blink")
    assert d.duration_s == pytest.approx(4.0)
    assert d.evidence["active_passed"] is False


def test_blink_after_window_does_not_count():
    eng = engine()
    frames = [face(t(i), blink=(i == 45)) for i in range(50)]
    d = decisions(run(eng, frames))[0]
    assert d.reason == "no_blink"


def test_face_lost():
    eng = engine()
    frames = [face(t(i)) for i in range(5)] + [empty(t(i)) for i in range(5, 30)]
    d = decisions(run(eng, frames))[0]
    assert (d.result, d.reason) == ("fail", "face_lost")
    assert d.duration_s == pytest.approx(1.5)  # absent since 0.5 s, face_lost_s = 1


def test_brief_dropout_is_not_face_lost():
    eng = engine()
    frames = [face(t(i)) if not 5 <= i < 10 else empty(t(i)) for i in range(20)]
    frames += [face(t(i), blink=(i == 20)) for i in range(20, 25)]
    d = decisions(run(eng, frames))[0]
    assert (d.result, d.reason) == ("pass", "live")


def test_multiple_faces_reject():
    eng = engine()
    frames = [face(t(i)) for i in range(5)] + [face(t(5), n_faces=2, n_large_faces=2)]
    d = decisions(run(eng, frames))[0]
    assert (d.result, d.reason) == ("fail", "multiple_faces")


def test_multiple_faces_largest_policy_keeps_going():
    eng = engine(detection=DetectionConfig(multiple_faces="largest"))
    frames = [face(t(i), n_faces=2, n_large_faces=2, blink=(i == 8)) for i in range(20)]
    d = decisions(run(eng, frames))[0]
    assert (d.result, d.reason) == ("pass", "live")


def test_two_faces_never_start_under_reject():
    eng = engine()
    assert run(eng, [face(t(i), n_faces=2, n_large_faces=2) for i in range(50)]) == []
    assert eng.state == "idle"


def test_small_or_turned_face_does_not_start():
    eng = engine()
    frames = [face(t(i), face_frac=0.1, n_large_faces=0) for i in range(10)]
    frames += [face(t(i), yaw=45.0) for i in range(10, 20)]
    frames += [face(t(i), yaw=None) for i in range(20, 30)]
    assert run(eng, frames) == [] and eng.state == "idle"
    run(eng, [face(t(30), yaw=10.0)])
    assert eng.state == "collecting"


def test_timeout_when_passive_never_scored():
    eng = engine(mode="off")
    d = decisions(run(eng, [face(t(i), p=None) for i in range(150)]))[0]
    assert (d.result, d.reason) == ("fail", "timeout")
    assert d.duration_s == pytest.approx(10.0)
    assert d.evidence["passive_median"] is None and d.evidence["frames"] == 0


def test_off_mode_passes_on_passive_alone():
    eng = engine(mode="off")
    d = decisions(run(eng, [face(t(i)) for i in range(20)]))[0]
    assert (d.result, d.reason, d.evidence["frames"]) == ("pass", "live", 5)


def test_turn_mode_pass_and_no_turn():
    eng = engine(mode="turn")
    frames = [face(t(i), motions=("turn_right",) if i == 15 else (), blink=(i == 3)) for i in range(30)]
    d = decisions(run(eng, frames))[0]
    assert (d.result, d.reason) == ("pass", "live")
    eng = engine(mode="turn")
    d = decisions(run(eng, [face(t(i), motions=("nod",) if i == 5 else ()) for i in range(150)]))[0]
    assert (d.result, d.reason) == ("fail", "no_turn")


def test_blink_and_turn_needs_both():
    eng = engine(mode="blink_and_turn")
    frames = [face(t(i), blink=(i == 3), motions=("turn_left",) if i == 20 else ()) for i in range(30)]
    d = decisions(run(eng, frames))[0]
    assert (d.result, d.reason, d.duration_s) == ("pass", "live", pytest.approx(2.0))
    eng = engine(mode="blink_and_turn")
    d = decisions(run(eng, [face(t(i), motions=("turn_left",) if i == 2 else ()) for i in range(80)]))[0]
    assert d.reason == "no_blink"


def test_cooldown_and_face_must_leave():
    eng = engine(cooldown_s=2.0)
    frames = [face(t(i), blink=(i == 6)) for i in range(100)]  # the same person stays 10 s
    ds = decisions(run(eng, frames))
    assert len(ds) == 1  # no attempt after attempt while the face stays
    assert eng.state == "idle" and not eng.armed and not eng.wants_liveness
    # Leaves for a second, comes back: a new attempt.
    run(eng, [empty(t(i)) for i in range(100, 112)])
    assert eng.armed
    ds = decisions(run(eng, [face(t(i), blink=(i == 115)) for i in range(112, 130)]))
    assert len(ds) == 1 and ds[0].reason == "live"


def test_leaving_during_cooldown_still_waits_for_cooldown():
    eng = engine(cooldown_s=5.0)
    run(eng, [face(t(i), blink=(i == 6)) for i in range(7)])
    assert eng.state == "cooldown"
    run(eng, [empty(t(i)) for i in range(7, 20)])
    outs = run(eng, [face(t(i)) for i in range(20, 40)])  # back at 2.0 s; cooldown ends at 5.6 s
    assert outs == [] and eng.state == "cooldown"
    run(eng, [face(t(i)) for i in range(40, 57)])
    assert eng.state == "collecting" and eng.attempt_id is not None


def test_rearm_cooldown_policy_retries_present_face():
    eng = engine(cooldown_s=1.0, rearm="cooldown")
    ds = decisions(run(eng, [face(t(i), p=0.1) for i in range(60)]))
    assert len(ds) >= 3 and all(d.reason == "spoof_suspected" for d in ds)
    gaps = [b.started_at - (a.started_at + a.duration_s) for a, b in zip(ds, ds[1:])]
    assert all(g >= 1.0 - 1e-9 for g in gaps)  # never faster than the cooldown


def test_start_attempt_overrides_leave_rule_and_frontal_gate():
    eng = engine(cooldown_s=100.0)
    run(eng, [face(t(i), blink=(i == 6)) for i in range(10)])
    assert eng.state == "cooldown"
    eng.start_attempt()
    assert eng.wants_liveness
    run(eng, [face(t(10), yaw=50.0)])
    assert eng.state == "collecting"
    d = decisions(run(eng, [face(t(i), blink=(i == 14)) for i in range(11, 20)]))[0]
    assert d.reason == "live"


def test_start_attempt_without_face_answers_face_lost():
    eng = engine()
    eng.start_attempt()
    d = decisions(run(eng, [empty(t(i)) for i in range(20)]))[0]
    assert (d.result, d.reason) == ("fail", "face_lost")


def test_start_attempt_while_collecting_keeps_attempt():
    eng = engine()
    run(eng, [face(t(0))])
    aid = eng.attempt_id
    eng.start_attempt()
    run(eng, [face(t(1))])
    assert eng.attempt_id == aid


def test_mode_switch_applies_to_next_attempt():
    eng = engine(mode="blink", cooldown_s=0.5)
    run(eng, [face(t(0))])
    eng.active_mode = "off"
    d = decisions(run(eng, [face(t(i)) for i in range(1, 60)]))[0]
    assert (d.reason, d.evidence["active_mode"]) == ("no_blink", "blink")
    run(eng, [empty(t(i)) for i in range(60, 80)])
    d = decisions(run(eng, [face(t(i)) for i in range(80, 100)]))[0]
    assert (d.reason, d.evidence["active_mode"]) == ("live", "off")


def test_bad_mode_is_one_clear_line():
    eng = engine()
    with pytest.raises(ActiveModeError) as e:
        eng.active_mode = "wink"
    assert "wink" in str(e.value) and "challenge" in str(e.value) and "\n" not in str(e.value)
    assert eng.active_mode == "blink"


def test_abort():
    eng = engine()
    assert eng.abort() is None
    run(eng, [face(t(i)) for i in range(7)])
    d = eng.abort()
    assert (d.result, d.reason) == ("fail", "shutdown")
    assert d.duration_s == pytest.approx(0.6) and d.evidence["frames"] == 7
    assert eng.state == "cooldown" and eng.abort() is None


def test_wants_liveness():
    eng = engine()
    assert not eng.wants_liveness
    run(eng, [face(t(0), yaw=60.0)])
    assert eng.wants_liveness  # idle, armed, a face that could start one
    run(eng, [face(t(1))])
    assert eng.state == "collecting" and eng.wants_liveness
    run(eng, [face(t(i), blink=True) for i in range(2, 8)])
    assert eng.state == "cooldown" and not eng.wants_liveness


def test_challenge_prompt_at_start():
    eng = engine(mode="challenge", rng=random.Random(3))
    outs = run(eng, [face(t(0))])
    assert len(outs) == 1 and isinstance(outs[0], Prompt)
    body = outs[0].body()
    assert set(body) == {"attempt_id", "actions", "step_timeout_s"}
    assert body["attempt_id"] == eng.attempt_id and 1 <= len(body["actions"]) <= 3
    assert body["step_timeout_s"] == 5.0


def test_challenge_pass_and_evidence():
    class Fixed:  # draws 2 steps, then turn_left, then nod
        def __init__(self):
            self.picks = iter([2, "turn_left", "nod"])

        def choice(self, seq):
            v = next(self.picks)
            assert v in seq
            return v

    eng = engine(mode="challenge", rng=Fixed())
    frames = [face(t(i), blink=(i == 5), yaw=-25.0 if i == 10 else 0.0,
                   motions=("turn_left",) if i == 10 else ("nod",) if i == 25 else ()) for i in range(40)]
    outs = run(eng, frames)
    assert isinstance(outs[0], Prompt) and outs[0].actions == ("turn_left", "nod")
    d = decisions(outs)[0]
    assert (d.result, d.reason) == ("pass", "live")
    ch = d.body()["evidence"]["challenge"]
    assert ch["actions"] == ["turn_left", "nod"]
    assert [s["action"] for s in ch["observed"]] == ["turn_left", "nod"]
    assert ch["observed"][0]["t"] == pytest.approx(1.0) and ch["observed"][0]["yaw"] == -25.0
    assert ch["failure"] is None


def test_reasons_are_listed():
    assert {"spoof_suspected", "no_blink", "face_lost", "multiple_faces", "timeout", "challenge_failed"} <= set(REASONS)


def test_from_trace_and_load_trace(tmp_path):
    line = {"type": "frame", "t": 1.5, "face": True, "n_faces": 1, "n_large_faces": 1, "face_frac": 0.31,
            "yaw": -3.2, "pitch": 4.0, "roll": 0.5, "p_live": 0.77, "ear_left": 0.29, "ear_right": 0.31,
            "blink": True, "motions": ["nod"]}
    o = FrameObservation.from_trace(line)
    assert (o.ts, o.n_large_faces, o.yaw, o.p_live, o.blink, o.motions, o.eyes_visible) == \
        (1.5, 1, -3.2, 0.77, True, ("nod",), True)
    none = FrameObservation.from_trace({"type": "frame", "t": 2.0, "n_faces": 0, "n_large_faces": 0,
                                        "face_frac": 0.0, "yaw": None, "ear_left": None, "motions": []})
    assert none.eyes_visible is False and none.yaw is None and none.p_live is None
    p = tmp_path / "t.jsonl.gz"
    with gzip.open(p, "wt") as f:
        f.write(json.dumps({"type": "summary", "frames": 2}) + "\n")
        f.write(json.dumps(line) + "\n\n")
    assert load_trace(p) == [o]


@pytest.mark.parametrize("bad, needle", [
    ({"n_faces": 1}, "'t'"),
    ({"t": "x"}, "'t'"),
    ({"t": 1.0, "n_faces": -1}, "n_faces"),
    ({"t": 1.0, "p_live": float("nan")}, "p_live"),
    ({"t": 1.0, "motions": "nod"}, "motions"),
    ({"t": 1.0, "departures": [1]}, "departures"),
    ({"type": "summary", "t": 1.0}, "type"),
])
def test_from_trace_bad_lines(bad, needle):
    with pytest.raises(TraceError) as e:
        FrameObservation.from_trace(bad)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_load_trace_errors_name_the_file(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"type":"frame","t":0}\n{oops\n')
    with pytest.raises(TraceError, match=r"bad.jsonl:2: not JSON"):
        load_trace(p)
    with pytest.raises(TraceError, match="cannot read trace"):
        load_trace(tmp_path / "missing.jsonl")


def test_prompt_subscriber_verifies_and_drives_the_panel(capsys):
    import importlib.util
    import time
    from pathlib import Path

    from edge_liveness.events import signing
    from edge_liveness.events.verify import Verifier

    spec = importlib.util.spec_from_file_location("prompt_subscriber",
                                                  Path(__file__).parents[1] / "scripts" / "prompt_subscriber.py")
    sub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sub)
    key = b"door-key"
    door = sub.Door(sub.Panel())
    ver = Verifier(key)
    eng = engine(mode="challenge", rng=random.Random(1))
    prompt = run(eng, [face(t(0))])[0]
    env = {"type": "prompt", "device_id": "door1", "event_id": "e1", "seq": 1, "ts": time.time(), **prompt.body()}
    wire = signing.dumps(signing.sign(env, key)).encode()
    assert sub.handle(door, ver, "edge-liveness/door1/prompt", wire) == "prompt"
    assert door.attempt == prompt.attempt_id
    out = capsys.readouterr().out
    assert "[display] Please: " + sub.WORDS[prompt.actions[0]] in out and "[led] on" in out
    # the same payload again is a replay; a forged one has a bad signature: the panel ignores both
    assert sub.handle(door, ver, "edge-liveness/door1/prompt", wire).startswith("ignored (replay")
    forged = signing.dumps({**env, "seq": 2, "actions": ["nod"], "sig": "0" * 64}).encode()
    assert sub.handle(door, ver, "edge-liveness/door1/prompt", forged) == "ignored (bad signature)"
    d = eng.abort()
    env = {"type": "decision", "device_id": "door1", "event_id": "e2", "seq": 3, "ts": time.time(), **d.body()}
    wire = signing.dumps(signing.sign(env, key)).encode()
    assert sub.handle(door, ver, "edge-liveness/door1/events", wire) == "decision"
    out = capsys.readouterr().out
    assert "Not verified" in out and "2 beep(s)" in out and door.attempt is None


# -- the default policy: a fair look in time, a recent verdict, keep looking (docs/decision.md) -------

def default_engine(mode="blink", **dec) -> DecisionEngine:
    return DecisionEngine(DecisionConfig(**dec), ActiveConfig(mode=mode), DetectionConfig(), MODEL)


def test_default_policy_gives_a_real_person_a_fair_look_in_time_not_frames():
    # at 30 fps, 8 frames are a quarter of a second: a bad quarter second must not refuse anyone
    eng = default_engine()
    low_start = [face(i / 30, p=0.2) for i in range(9)]
    then_live = [face(i / 30, p=0.9, blink=(i == 60)) for i in range(9, 90)]
    ds = decisions(run(eng, low_start + then_live))
    assert [(d.result, d.reason) for d in ds] == [("pass", "live")]
    assert ds[0].evidence["evidence_s"] >= 1.0


def test_default_policy_waits_for_the_passive_score_after_a_blink_then_refuses_a_low_one():
    eng = default_engine(attempt_timeout_s=4.0)
    frames = [face(i / 30, p=0.2, blink=(i == 40)) for i in range(150)]
    ds = decisions(run(eng, frames))
    assert [(d.result, d.reason) for d in ds] == [("fail", "spoof_suspected")]
    assert ds[0].duration_s == pytest.approx(4.0, abs=0.05)  # kept looking until the deadline
    assert ds[0].evidence["active_passed"] is True


def test_default_policy_recent_window_lets_a_score_that_recovers_pass():
    eng = default_engine()
    frames = [face(i / 30, p=0.2 if i < 45 else 0.9, blink=(i == 50)) for i in range(200)]
    ds = decisions(run(eng, frames))
    assert [(d.result, d.reason) for d in ds] == [("pass", "live")]
    # the 2 s window must be mostly live before the pass: not on the blink frame itself
    assert ds[0].duration_s > 50 / 30


def test_early_fail_true_refuses_as_soon_as_the_verdict_is_low():
    eng = default_engine(early_fail=True)
    ds = decisions(run(eng, [face(i / 30, p=0.2) for i in range(90)]))
    assert [(d.result, d.reason) for d in ds] == [("fail", "spoof_suspected")]
    assert ds[0].duration_s == pytest.approx(1.0, abs=0.05)
