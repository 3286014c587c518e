"""The schedule (edge_liveness/schedule.py): each model at the rate the decision needs, one per frame,
on the frames' own timestamps; and the pipeline that follows it on real recordings with real models."""

from __future__ import annotations

import pytest

from conftest import shared_file
from edge_liveness.schedule import Schedule


def _run(sched: Schedule, fps: float, seconds: float, wanted=("classify", "eyes")) -> list[frozenset[str]]:
    return [sched.plan(i / fps, wanted) for i in range(int(round(fps * seconds)))]


def _two(passive: float = 12.0, eyes: float = 15.0, **kw) -> Schedule:
    s = Schedule(**kw)
    s.add("classify", passive)
    s.add("eyes", eyes)
    return s


@pytest.mark.parametrize("fps", [30.0, 60.0, 29.97])
def test_rates_follow_the_timestamps_not_the_frame_count(fps):
    s = _two()
    plans = _run(s, fps, 10.0)
    assert s.runs("classify") == pytest.approx(120, abs=2)  # 12 a second for 10 s, whatever the frame rate
    assert s.runs("eyes") == pytest.approx(150, abs=2)
    assert plans[0] == {"classify", "eyes"}  # both start on the first frame: the evidence clock and the blink window
    assert all(len(p) <= 1 for p in plans[1:]), "no other frame carries two models"


def test_a_camera_slower_than_the_rates_shares_its_frames_out_and_never_doubles_up():
    s = _two(eyes=30.0)
    plans = _run(s, 15.0, 10.0)
    assert all(len(p) == 1 for p in plans[1:])  # every frame carries exactly one model: none wasted, none doubled
    assert s.runs("classify") == pytest.approx(s.runs("eyes"), abs=1) == 75  # neither starves the other


def test_every_frame_runs_every_wanted_stage_and_sharing_lets_due_stages_meet():
    s = _two(every_frame=True)
    assert all(p == {"classify", "eyes"} for p in _run(s, 30.0, 2.0))
    shared = _two(share_frames=True)
    plans = _run(shared, 30.0, 10.0)
    assert shared.runs("classify") == pytest.approx(120, abs=2) and shared.runs("eyes") == pytest.approx(150, abs=2)
    assert any(len(p) == 2 for p in plans)  # the two rates meet on some frames and both run there


def test_a_starting_stage_shares_its_first_frame_then_they_take_turns():
    s = _two(eyes=30.0)
    assert s.plan(0.0, ["eyes"]) == {"eyes"}
    assert s.plan(1 / 30, ["eyes", "classify"]) == {"eyes", "classify"}  # classify starts: it runs beside the due eyes
    assert all(len(s.plan(k / 30, ["eyes", "classify"])) == 1 for k in range(2, 60))


def test_a_stage_wanted_again_runs_at_once_and_a_wait_does_not_turn_into_a_burst():
    s = Schedule()
    s.add("classify", 10.0)
    assert s.plan(0.0, ["classify"]) == {"classify"}
    assert s.plan(0.05, ["classify"]) == frozenset()
    assert s.plan(0.06, []) == frozenset()  # not wanted: its timing is forgotten
    assert s.plan(0.07, ["classify"]) == {"classify"}  # the first frame that wants it again runs it
    # a 2 s gap in the frames (a stalled camera): one run, then the normal rate, not a catch-up burst
    assert s.plan(2.07, ["classify"]) == {"classify"}
    assert [bool(s.plan(2.07 + k / 30, ["classify"])) for k in range(1, 7)] == [False, False, True, False, False, True]


def test_a_stage_is_named_once_and_only_added_stages_can_be_planned():
    s = Schedule()
    s.add("classify", 10.0)
    with pytest.raises(ValueError, match="added twice"):
        s.add("classify", 5.0)
    with pytest.raises(KeyError, match="mesh"):
        s.plan(0.0, ["mesh"])


def test_the_engine_wants_the_eye_model_only_while_a_blink_can_count():
    from edge_liveness.config import ActiveConfig
    from edge_liveness.decide.checks import make_check
    from edge_liveness.decide.observation import FrameObservation

    def obs(ts: float, **kw) -> FrameObservation:
        return FrameObservation(ts=ts, n_faces=1, n_large_faces=1, face_frac=0.4, yaw=0.0, **kw)

    blink = make_check("blink", ActiveConfig(), 0.5)
    blink.begin(0.0)
    assert blink.wants_blink()
    blink.observe(obs(0.5, departures=("turn_left",)))  # a head turn stands in for the blink
    assert not blink.wants_blink()
    turn = make_check("turn", ActiveConfig(), 0.5)
    turn.begin(0.0)
    assert not turn.wants_blink()

    class Fixed:  # the challenge's chooser: a blink after a head turn
        def __init__(self):
            self.calls = iter([2, "turn_left", "blink"])

        def choice(self, seq):
            return next(self.calls)

    ch = make_check("challenge", ActiveConfig(), 0.5, Fixed())
    assert ch.begin(0.0) == ("turn_left", "blink")
    assert ch.wants_blink()  # the blink step is still to come
    ch.observe(obs(0.5, p_live=0.9, motions=("turn_left",)))
    assert ch.wants_blink()
    ch.observe(obs(1.0, p_live=0.9, blink=True))
    assert not ch.wants_blink()  # answered: no blink can change it any more


# -- the pipeline on real recordings --------------------------------------------------------------

def _frames(path, limit: int):
    from edge_liveness.bench.stages import decode_frames

    return decode_frames(path, limit)[0]


def _pipeline(**sections):
    from edge_liveness.config import load_settings
    from edge_liveness.pipeline import build_pipeline

    return build_pipeline(load_settings(None, **sections))


@pytest.fixture(scope="module")
def portrait(face_models):
    return _frames(shared_file("video", "tranvanluyt_real.mp4"), 80)


def test_the_pipeline_scores_at_the_rate_one_model_a_frame_and_decides_as_every_frame_did(portrait):
    results = {}
    for name, kw in (("every", {"schedule": {"every_frame": True}}), ("scheduled", {})):
        p = _pipeline(**kw)
        results[name] = [p.process(f) for f in portrait]
    rates = p.settings.schedule
    sched = results["scheduled"]
    att = [r for r in sched if r.attempt]
    assert att, "an attempt collects on this recording"
    models = [{"eyes", "classify"} & set(r.ms) for r in att]
    assert models[0] == {"eyes", "classify"}  # the attempt's first frame starts both
    assert all(len(m) <= 1 for m in models[1:]), "no other attempt frame carries two models"
    assert all("landmarks" in r.ms for r in sched), "the mesh runs on every frame"
    span = att[-1].frame.ts - att[0].frame.ts
    n_scored = sum(r.scored for r in att)
    assert n_scored == pytest.approx(rates.passive_scores_per_s * span, abs=2)
    assert sum("eyes" in r.ms for r in att) <= rates.eye_model_per_s * span + 2
    decided = {k: [o for r in v for o in r.outputs if o.kind == "decision"] for k, v in results.items()}
    assert [(d.result, d.reason) for d in decided["scheduled"]] == [(d.result, d.reason) for d in decided["every"]]
    ev, ev_every = decided["scheduled"][0].evidence, decided["every"][0].evidence
    # the evidence says how many scores the verdict rests on, of how many frames
    assert ev["passive_scores"] == ev["frames"] == n_scored < ev["attempt_frames"] == ev_every["attempt_frames"]
    assert ev_every["passive_scores"] == ev_every["attempt_frames"]
    # the trace shows which frames the decision scored
    lines = [r.trace("collecting") for r in att]
    assert sum(line["scored"] for line in lines) == n_scored and all(line["p_live"] is not None for line in lines if line["scored"])


def test_a_second_passive_model_is_one_registration(portrait):
    p = _pipeline()
    # a stand-in second passive model, measured on the real frame: the brightness of the face's box
    p.add_passive("brightness", lambda frame, lm, ms: float(frame.image.mean() / 255.0))
    res = [p.process(f) for f in portrait]
    att = [r for r in res if r.attempt]
    runs = [set(r.scores) for r in att]
    assert sum("brightness" in s for s in runs) == pytest.approx(sum("classify" in s for s in runs), abs=2)
    scheduled = set(p.schedule.names)  # (a model riding on another's frames, as the texture pair does, is no stage)
    assert all(len(scheduled & (set(r.ms) | set(r.scores))) <= 1 for r in att[1:]), "still one scheduled model a frame"
    assert all(0.0 <= r.scores["brightness"] <= 1.0 for r in att if "brightness" in r.scores)


def test_the_eye_model_stops_once_the_blink_check_has_passed(face_models):
    # a ZJU clip: a frontal face that blinks once in its first two seconds and keeps looking; the
    # attempt asks for 3 s of evidence, so it goes on collecting after the blink
    frames = _frames(shared_file("blink", "zju", "1", "000001M_FBN.avi"), 0)
    p = _pipeline(decision={"min_evidence_s": 3.0})
    res = [p.process(f) for f in frames]
    att = [r for r in res if r.attempt]
    blinks = [i for i, r in enumerate(res) if r.obs.blink and r.attempt]
    assert blinks, "the person blinks during the attempt"
    after = [r for r in res[blinks[0] + 1:] if r.attempt]
    assert after and all("eyes" not in r.ms for r in after), "no eye model (nor mesh eyelids) once a blink no longer counts"
    assert any("eyes" in r.ms for r in att[: blinks[0]])


def test_one_eye_a_run_in_the_pipeline_decides_as_both_eyes_did(portrait):
    # schedule.eyes_per_run = 1: the eye model's frames stay the same, each reads one eye in turn (one
    # invoke); the attempt's first reads both so the blink window starts on both eyes
    import math

    results = {}
    for epr in (2, 1):
        p = _pipeline(schedule={"eyes_per_run": epr})
        results[epr] = [p.process(f) for f in portrait]
    one, two = results[1], results[2]
    eye_frames = [k for k, r in enumerate(one) if r.attempt and "eyes" in r.ms]
    assert eye_frames == [k for k, r in enumerate(two) if r.attempt and "eyes" in r.ms]
    first, later = one[eye_frames[0]].obs, [one[k].obs for k in eye_frames[1:]]
    assert first.eyes_visible and not (math.isnan(first.ear_left) or math.isnan(first.ear_right))
    one_eye = [o for o in later if math.isnan(o.ear_left) != math.isnan(o.ear_right)]
    assert len(one_eye) >= len(later) // 2, "most runs read one eye"
    # a frame that read one eye counts as no EAR evidence (never a NaN in the attempt's evidence)
    assert not any(o.eyes_visible for o in one_eye)
    decided = {k: [o for r in v for o in r.outputs if o.kind == "decision"] for k, v in results.items()}
    assert [(d.result, d.reason) for d in decided[1]] == [(d.result, d.reason) for d in decided[2]]
    ev = decided[1][0].evidence
    assert ev["ear_baseline"] is not None and not math.isnan(ev["ear_baseline"])


def test_no_eyelids_are_read_after_a_decision_until_another_attempt_can_start(portrait):
    # tranvanluyt's real video: he passes and stays in view, so the rest of the clip waits for him to leave
    p = _pipeline()
    res = [p.process(f) for f in portrait]
    decided = [i for i, r in enumerate(res) if any(o.kind == "decision" for o in r.outputs)]
    assert decided, "a decision on this recording"
    after = res[decided[0] + 1:]
    assert after and all(r.view.landmarks is not None for r in after), "the face stays (the mesh still runs)"
    assert not any(r.attempt for r in after), "no new attempt until the face leaves"
    assert all(r.eyes is None and "eyes" not in r.ms for r in after), "nothing reads the eyelids there"
    assert any(r.eyes is not None for r in res[: decided[0] + 1])
