"""A recording through the daemon's pipeline and decision engine, as attempts a door would see.

What ``replay`` prints and ``evaluate`` scores on videos: every decision the engine makes, plus the
attempt still collecting when the recording ends (``result`` "incomplete": a door would have kept
looking), each with the time from the first face the attempt could use to its decision.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge_liveness.camera.supervisor import Camera, CameraError, ReplaySource


@dataclass
class Attempt:
    result: str  # "pass" | "fail" | "incomplete"
    reason: str | None
    started_at: float  # camera timeline
    duration_s: float
    frames: int  # frames scored by the passive model
    first_face_at: float | None  # first frame with a large face since the previous decision
    time_to_decision_s: float | None  # first_face_at -> decision (None when incomplete)
    blinks: int = 0
    mode: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class Recording:
    path: Path
    frames: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    error: str | None = None  # the file could not be read at all
    ended_early: str | None = None  # truncated / corrupt: decided on the frames that could be read


def attempt_from_decision(d, first_face_at: float | None) -> Attempt:
    ev = d.evidence
    end = d.started_at + d.duration_s
    ttd = end - first_face_at if first_face_at is not None else d.duration_s
    return Attempt(d.result, d.reason, d.started_at, d.duration_s, int(ev.get("frames", 0)), first_face_at,
                   max(0.0, ttd), int(ev.get("blinks", 0)), str(ev.get("active_mode", "")))


def replay_attempts(pipeline, path: str | Path, on_frame: Callable[[Any], None] | None = None) -> Recording:
    """Run ``path`` through ``pipeline`` (reset first) as fast as possible; ``on_frame(result)`` sees
    every processed frame (``blinks score`` and the trace recorder read them)."""
    rec = Recording(Path(path))
    pipeline.reset()
    pipeline.engine.reset()
    source = ReplaySource(path, fps=pipeline.settings.camera.fps, realtime=False)
    camera = Camera(source, pipeline.settings.camera, threaded=False)
    first_face: float | None = None
    try:
        for frame in camera.frames(threading.Event()):
            if frame is None:
                continue
            r = pipeline.process(frame)
            rec.frames += 1
            if first_face is None and r.obs.n_large_faces >= 1:
                first_face = r.obs.ts
            if on_frame is not None:
                on_frame(r)
            for out in r.outputs:
                if out.kind == "decision":
                    rec.attempts.append(attempt_from_decision(out, first_face))
                    first_face = None
    except CameraError as e:
        rec.error = str(e)
        return rec
    rec.ended_early = getattr(source, "ended_early", None)
    pending = pipeline.engine.pending()
    if pending is not None:
        rec.attempts.append(Attempt("incomplete", None, pending["started_at"], pending["duration_s"], pending["frames"],
                                    first_face, None, pending["blinks"], pending["mode"]))
    return rec
