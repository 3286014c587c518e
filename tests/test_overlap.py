"""`schedule.overlap`: the next frame's face found while this frame is judged gives the same results.

A real recording (tranvanluyt's real video, ../shared/data/video) through the real models, once frame
by frame and once overlapped: every frame's observation, scores and decisions must match exactly,
because each half of the pipeline sees every frame in order and the same state either way.
"""

from __future__ import annotations

import math
from collections import deque

import pytest

from conftest import shared_file
from edge_liveness.camera.supervisor import Frame
from edge_liveness.config import load_settings
from edge_liveness.overlap import FrameRunner
from edge_liveness.pipeline import TEXTURE, build_pipeline, load_models


def _frames(n: int) -> list[Frame]:
    import cv2

    cap = cv2.VideoCapture(str(shared_file("video", "tranvanluyt_real.mp4")))
    out = []
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            break
        out.append(Frame(img, len(out) / 30.0, len(out)))
    cap.release()
    if len(out) < n:
        pytest.skip(f"tranvanluyt_real.mp4 gave {len(out)} frames, not {n}")
    return out


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or a == b


def _run(overlap: bool, frames: list[Frame], models, ahead: int = 3) -> list:
    settings = load_settings(None, schedule={"overlap": overlap, "find_ahead": ahead})
    from edge_liveness.pipeline import Pipeline

    runner = FrameRunner(Pipeline(settings, models))
    assert runner.overlap is overlap
    out = []
    for f in frames:
        out += runner.push(f)
    out += runner.flush()
    runner.close()
    return out


def test_overlapped_frames_give_the_same_results(face_models):
    frames = _frames(150)  # his first blink is at frames 161-166: a head turn decides the attempt in this span
    models = load_models(load_settings(None))
    seq, ovl = _run(False, frames, models), _run(True, frames, models)
    assert [r.frame.index for r in seq] == [r.frame.index for r in ovl] == list(range(len(frames)))
    for a, b in zip(seq, ovl):
        oa, ob = a.obs, b.obs
        assert (oa.n_faces, oa.yaw, oa.motions, oa.departures, oa.blink) == (ob.n_faces, ob.yaw, ob.motions, ob.departures, ob.blink)
        assert _same(oa.p_live, ob.p_live) and _same(oa.ear_left, ob.ear_left) and _same(oa.ear_right, ob.ear_right)
        assert a.scores == b.scores and a.attempt == b.attempt
        # each result carries its own frame's face (the page draws it), not the finder's next one
        la, lb = a.view.landmarks, b.view.landmarks
        assert (la is None) == (lb is None) and (la is None or (la.points == lb.points).all())
        assert [o.kind for o in a.outputs] == [o.kind for o in b.outputs]
    decided = [(r.frame.index, o.body()["result"]) for r in seq for o in r.outputs if o.kind == "decision"]
    assert decided and decided == [(r.frame.index, o.body()["result"]) for r in ovl for o in r.outputs if o.kind == "decision"]
    assert sum(r.scored for r in seq) > 10  # the passive model did score frames of the attempt


def test_held_frames_come_out_after_find_ahead_frames_and_on_flush(face_models):
    """A push judges the frames more than schedule.find_ahead behind it; flush judges the rest, oldest first."""
    frames = _frames(5)
    runner = FrameRunner(build_pipeline(load_settings(None, schedule={"overlap": True, "find_ahead": 3})))
    assert runner.ahead == 3
    assert [runner.push(f) for f in frames[:3]] == [[], [], []] and runner.held == 3
    assert [r.frame.index for r in runner.push(frames[3])] == [0]
    assert [r.frame.index for r in runner.push(frames[4])] == [1]
    assert [r.frame.index for r in runner.flush(1)] == [2]
    assert [r.frame.index for r in runner.flush()] == [3, 4]
    assert runner.flush() == [] and runner.held == 0
    runner.close()


@pytest.mark.parametrize("ahead", [1, 2, 6])
def test_any_find_ahead_gives_the_one_thread_results(face_models, ahead):
    """However far the faces are found ahead, each half sees every frame in order: the same scores,
    observations and decisions as one frame at a time."""
    frames = _frames(90)
    models = load_models(load_settings(None))
    seq, ahd = _run(False, frames, models), _run(True, frames, models, ahead)
    assert [r.frame.index for r in ahd] == list(range(len(frames)))
    assert [r.scores for r in seq] == [r.scores for r in ahd] and any(r.scores for r in ahd)
    assert [(r.obs.yaw, r.obs.motions, r.obs.blink) for r in seq] == [(r.obs.yaw, r.obs.motions, r.obs.blink) for r in ahd]
    assert [[o.kind for o in r.outputs] for r in seq] == [[o.kind for o in r.outputs] for r in ahd]


def test_drop_leaves_no_find_running(face_models):
    """A reload drops the held frames: the queued finds are cancelled, the running one finishes, and the
    pipeline's finder is idle when drop returns (the new runner may reset it)."""
    frames = _frames(8)
    runner = FrameRunner(build_pipeline(load_settings(None, schedule={"overlap": True, "find_ahead": 8})))
    for f in frames:
        assert runner.push(f) == []
    runner.drop()
    assert runner.held == 0 and runner.flush() == []
    assert runner._worker._finds == deque() and not runner._worker._lent
    runner.close()


def test_the_daemon_runs_overlapped_and_lets_the_real_person_in(tmp_path, face_models):
    """The real daemon on a real recording with schedule.overlap on: he passes every attempt it decides,
    and with attempt images on, his crops are cut from each result's own anchors. (The daemon's capture
    thread keeps only the newest frame, so two daemon runs need not see the same frames: exact equality
    is the pipeline-level test above.)"""
    from fault_helpers import DaemonProc, base_env

    video = shared_file("video", "tranvanluyt_real.mp4")
    state = tmp_path / "state"
    env = base_env(state, video, None, camera__loop=False, camera__realtime=False, schedule__overlap=True,
                   storage__save_images=True, storage__images_per_attempt=3)
    d = DaemonProc(tmp_path, env, args=["--exit-at-end"], name="overlap")
    try:
        assert d.wait_exit(timeout=300) == 0, d.log()[-3000:]
        decided = [(x["result"], x["reason"]) for x in d.decisions() if x["reason"] != "shutdown"]
    finally:
        d.close()
    assert decided and set(decided) == {("pass", "live")}, decided
    pngs = sorted(state.rglob("*.png"))
    assert pngs, "no attempt image kept"
    import cv2

    crop = cv2.imread(str(pngs[0]))
    assert crop is not None and crop.std() > 10  # a face crop, not a blank one from missing anchors


def _spy(obj, name: str, log: list) -> None:
    """Record the thread of every call of ``obj.name`` (an instance attribute shadows the method)."""
    import threading

    real = getattr(obj, name)

    def spy(*a, **k):
        log.append((threading.current_thread().name, a, k))
        return real(*a, **k)

    setattr(obj, name, spy)


def test_the_worker_runs_the_tight_view_and_the_caller_the_context_view_and_the_pair(face_models):
    """A frame that carries the passive models is split between the threads: the two-view model's tight
    view on the worker (its twin interpreter, after the next frame's face), the context view and the
    second MiniFASNet on the caller's; the first MiniFASNet, lent after the tight view, runs once, on
    whichever thread reaches it first; the scores are those of the one-thread path (test above)."""
    import threading

    frames = _frames(60)
    models = load_models(load_settings(None))
    if models.texture is None or models.liveness.views != 2:
        pytest.skip("the default settings have no texture pair or a one-view model")
    views, pair0, pair1 = [], [], []
    _spy(models.liveness, "view_logit", views)
    _spy(models.texture.models[0], "p_real", pair0)
    _spy(models.texture.models[1], "p_real", pair1)
    out = _run(True, frames, models)
    scored = sum(TEXTURE in r.scores for r in out)
    tight = [t for t, a, k in views if a[0] == 0]
    context = [t for t, a, k in views if a[0] == 1]
    assert scored > 5 and len(tight) == len(context) == len(pair0) == len(pair1) == scored
    assert all(t.startswith("find") for t in tight) and all(k.get("twin") for _, a, k in views if a[0] == 0)
    main = threading.main_thread().name
    assert all(t == main for t in context + [t for t, *_ in pair1])
    assert {t for t, *_ in pair0} <= {main, "find"}
    assert models.liveness.has_twin


@pytest.mark.parametrize("case", ["one-view model", "split_views off"])
def test_without_split_views_the_worker_runs_the_pairs_first_model(face_models, case):
    """A one-view model has one invoke to share, and `schedule.split_views = false` keeps the second
    interpreter out of memory: the worker takes the first MiniFASNet instead (the caller takes it back
    when the worker, busy finding faces ahead, has not started it), no twin is loaded, and the results
    still match the one-thread path."""
    import threading

    from edge_liveness.liveness.model import bundled_model_path

    over = ({"models": {"liveness": str(bundled_model_path("liveness_mnv2_int8.tflite"))}} if case == "one-view model"
            else {"schedule": {"split_views": False}})
    models = load_models(load_settings(None, **over))
    if models.texture is None:
        pytest.skip("the texture pair is off in the default settings")
    frames = _frames(60)
    first, second = [], []
    _spy(models.texture.models[0], "p_real", first)
    _spy(models.texture.models[1], "p_real", second)

    def run(overlap: bool) -> list:
        from edge_liveness.pipeline import Pipeline

        sched = {**over.get("schedule", {}), "overlap": overlap}
        runner = FrameRunner(Pipeline(load_settings(None, **{**over, "schedule": sched}), models))
        out = [r for f in frames for r in runner.push(f)] + runner.flush()
        runner.close()
        return out

    seq = run(False)
    first.clear(), second.clear()
    ovl = run(True)
    assert [r.scores for r in seq] == [r.scores for r in ovl] and any(TEXTURE in r.scores for r in ovl)
    assert first and len(first) == len(second) == sum(TEXTURE in r.scores for r in ovl)
    main = threading.main_thread().name
    assert {t for t, *_ in first} <= {main, "find"} and any(t == "find" for t, *_ in first)
    assert all(t == main for t, *_ in second)
    assert not models.liveness.has_twin


def test_a_lent_model_the_busy_worker_has_not_started_is_run_by_the_caller(face_models):
    """The first MiniFASNet is lent to the worker; while the worker is busy (here: held by a job until the
    frame is judged) the caller runs it itself once done with the rest, instead of waiting, and the worker
    skips the cancelled job: each model still runs once a frame, on one thread at a time."""
    import threading

    from edge_liveness.overlap import FindWorker
    from edge_liveness.pipeline import Pipeline

    settings = load_settings(None, schedule={"overlap": True, "split_views": False})
    models = load_models(settings)
    if models.texture is None:
        pytest.skip("the texture pair is off in the default settings")
    frames = _frames(3)
    pipe = Pipeline(settings, models)
    seen = [pipe.find(f) for f in frames]
    first: list = []
    _spy(models.texture.models[0], "p_real", first)
    worker, release = FindWorker(pipe.find), threading.Event()
    pipe.lend_worker(worker)
    try:
        held = worker.submit(release.wait)
        out = pipe.judge(seen[0])  # an attempt's first frame carries the passive models
        assert TEXTURE in out.scores and [t for t, *_ in first] == [threading.main_thread().name]
        release.set()
        held.result(timeout=10)
        worker.submit(lambda: None).result(timeout=10)  # the worker has passed the lent job's place in its queue
        assert len(first) == 1  # taken back: the worker skipped it, each model ran once
    finally:
        release.set()
        pipe.lend_worker(None)
        worker.shutdown()
    assert out.scores == Pipeline(settings, models).process(frames[0]).scores  # the one-thread path's scores
