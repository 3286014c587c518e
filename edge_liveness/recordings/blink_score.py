"""Score the blink detector on annotated recordings, through the daemon's own pipeline.

Each clip is replayed frame by frame through ``Pipeline.process`` (face, pose, eye model, blink
model: what the daemon runs) with the eyes read on every frame. A detected blink matches an
annotated one when their frame spans overlap, allowing ``tolerance`` frames either side (the
detector reports the run of moments it judged "in a blink", which can start or end a frame or two
off the annotator's closing/opening frames); each annotated blink matches at most one detection.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge_liveness.recordings.attempts import replay_attempts
from edge_liveness.recordings.blink_annotations import Annotation, Blink
from edge_liveness.camera.supervisor import CameraError
from edge_liveness.vision.eye_signals import EyeSignals

DEFAULT_TOLERANCE = 2


@dataclass
class ClipRun:
    """One recording through the pipeline: per decoded frame its index, time and eye signals."""

    path: Path
    index: list[int] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    signals: list[EyeSignals] = field(default_factory=list)
    p_blink: list[float] = field(default_factory=list)
    detections: list[Blink] = field(default_factory=list)

    def frame_at(self, ts: float) -> int:
        """The decoded frame nearest to ``ts``."""
        i = bisect.bisect_left(self.ts, ts)
        cands = [j for j in (i - 1, i) if 0 <= j < len(self.ts)]
        j = min(cands, key=lambda k: abs(self.ts[k] - ts))
        return self.index[j]


def run_clip(pipeline, path: Path) -> ClipRun:
    """Replay ``path`` through ``pipeline`` (``attempts.replay_attempts``), eyes read on every frame."""
    pipeline.always_eyes = True
    run = ClipRun(Path(path))
    spans: list[tuple[float, float]] = []

    def collect(r) -> None:
        run.index.append(r.frame.index)
        run.ts.append(r.frame.ts)
        run.signals.append(pipeline.blink.last_signals)
        run.p_blink.append(r.eyes.p_blink if r.eyes is not None else math.nan)
        if r.eyes is not None and r.eyes.blink:
            spans.append((r.eyes.blink_start_ts, r.eyes.blink_end_ts))

    rec = replay_attempts(pipeline, path, on_frame=collect)
    if rec.error is not None:
        raise CameraError(rec.error)
    spans.extend(pipeline.blink.flush())  # a blink in the recording's last 0.2 s
    run.detections = [Blink(run.frame_at(a), run.frame_at(b)) for a, b in spans]
    return run


@dataclass
class ClipScore:
    name: str
    annotated: int
    found: int
    missed: int
    false: int
    missed_frames: list[tuple[int, int]]
    false_frames: list[tuple[int, int]]

    def as_dict(self) -> dict[str, Any]:
        d = {"clip": self.name, "annotated": self.annotated, "found": self.found, "missed": self.missed,
             "false": self.false}
        d.update(prf(self.found, self.missed, self.false))
        d["missed_frames"] = [list(x) for x in self.missed_frames]
        d["false_frames"] = [list(x) for x in self.false_frames]
        return d


def prf(found: int, missed: int, false: int) -> dict[str, float | None]:
    p = found / (found + false) if found + false else None
    r = found / (found + missed) if found + missed else None
    f1 = 2 * found / (2 * found + missed + false) if found + missed + false else None
    return {"precision": None if p is None else round(p, 4), "recall": None if r is None else round(r, 4),
            "f1": None if f1 is None else round(f1, 4)}


def match(truth: list[Blink], found: list[Blink], tolerance: int = DEFAULT_TOLERANCE) -> tuple[int, list[Blink], list[Blink]]:
    """(matched, missed annotated blinks, false detections); greedy in time order, one-to-one."""
    used: set[int] = set()
    hits = 0
    missed: list[Blink] = []
    for b in truth:
        j = next((k for k, d in enumerate(found) if k not in used and b.overlaps(d.start, d.end, tolerance)), None)
        if j is None:
            missed.append(b)
        else:
            used.add(j)
            hits += 1
    return hits, missed, [d for k, d in enumerate(found) if k not in used]


def score_clip(name: str, annotation: Annotation, detections: list[Blink], tolerance: int = DEFAULT_TOLERANCE) -> ClipScore:
    hits, missed, false = match(annotation.blinks, detections, tolerance)
    return ClipScore(name, len(annotation.blinks), hits, len(missed), len(false),
                     [(b.start, b.end) for b in missed], [(d.start, d.end) for d in false])


def totals(scores: list[ClipScore], tolerance: int) -> dict[str, Any]:
    found = sum(s.found for s in scores)
    missed = sum(s.missed for s in scores)
    false = sum(s.false for s in scores)
    out: dict[str, Any] = {"clips": len(scores), "annotated": sum(s.annotated for s in scores), "found": found,
                           "missed": missed, "false": false, "tolerance_frames": tolerance}
    out.update(prf(found, missed, false))
    return out


def grouped(scores: list[ClipScore], tolerance: int) -> dict[str, dict[str, Any]]:
    """Totals by person and by condition for clips named ``<person>_<condition>`` (the ZJU layout)."""
    groups: dict[str, dict[str, list[ClipScore]]] = {"by_person": {}, "by_condition": {}}
    for sc in scores:
        stem = Path(sc.name).stem
        if "_" not in stem:
            continue
        person, condition = stem.split("_", 1)
        groups["by_person"].setdefault(person, []).append(sc)
        groups["by_condition"].setdefault(condition, []).append(sc)
    return {k: {g: totals(v, tolerance) for g, v in sorted(d.items())} for k, d in groups.items() if d}


def score_all(pipeline, annotations: list[Annotation], root: Path, tolerance: int = DEFAULT_TOLERANCE,
              progress: Callable[[int, int, str], None] | None = None) -> tuple[list[ClipScore], list[ClipRun]]:
    scores, runs = [], []
    for i, a in enumerate(annotations, 1):
        try:
            name = str(a.video.relative_to(root))
        except ValueError:  # a video found through --videos
            name = str(a.source.relative_to(root))[: -len(".blinks.csv")] if root.is_dir() else a.video.name
        if progress:
            progress(i, len(annotations), name)
        run = run_clip(pipeline, a.video)
        runs.append(run)
        scores.append(score_clip(name, a, run.detections, tolerance))
    return scores, runs
