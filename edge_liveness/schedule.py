"""Which of the costly per-frame stages run on this frame: each at the rate the decision needs it.

The face mesh runs on every frame (tracking and head pose need it). The other models feed
consumers that look at time, not at frames: the passive verdict is the median of ~2 s of scores,
the blink model resamples the eyelids to 30 Hz (blink/window.py). So each of them is a *scheduled
stage* with a rate (runs per second, on the frames' own timestamps, so a replay at any speed and a
camera at any frame rate behave the same) and a wish per frame (does the attempt want it now?).

Rules, per frame:
- a stage not wanted on this frame forgets its timing: the first frame that wants it again runs it;
- a wanted stage is *due* once its next run time has come (up to a quarter period early, so the
  jitter of a camera's timestamps does not push a run to the frame after);
- at most one due stage runs on a frame (``share_frames=False``): the one whose run time came first,
  ties in the order the stages were added. The others wait for the next frame, so no frame carries
  two models and a frame's cost stays bounded by the mesh plus one model. The one exception is a
  stage *starting* (its first wanted frame): it runs there whatever else does, so an attempt's first
  frame gives both its first passive score (the evidence clock starts) and its first eye reading (the
  blink window starts); measured on the ZJU blink clips, a blink window that starts a frame or two late
  misjudges blinks at the very start (benchmarks/README.md);
- after a run the next one is one period later, counted from when it was due (the average rate is
  the configured one on any frame rate); a run more than a period late counts from itself instead
  (a stage that waited, a camera that stalled, does not catch up in a burst).

``every_frame=True`` runs every wanted stage on every frame (the path before scheduling, kept for
the bench's side-by-side comparison). ``share_frames=True`` lets several due stages share a frame
(the pipeline then runs them side by side in threads: ``schedule.parallel``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

EARLY = 0.25  # a stage may run this fraction of its period before it is due


@dataclass
class _Stage:
    name: str
    period_s: float  # 0: every frame
    order: int
    next_s: float | None = None  # when it is next due; None: at once
    runs: int = 0


@dataclass
class Schedule:
    every_frame: bool = False
    share_frames: bool = False
    _stages: dict[str, _Stage] = field(default_factory=dict)

    def add(self, name: str, per_s: float) -> None:
        """A stage that runs ``per_s`` times a second while wanted (0 or less: on every frame it is wanted)."""
        if name in self._stages:
            raise ValueError(f"scheduled stage {name!r} added twice")
        self._stages[name] = _Stage(name, 1.0 / per_s if per_s > 0 else 0.0, len(self._stages))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._stages)

    def runs(self, name: str) -> int:
        return self._stages[name].runs

    def reset(self) -> None:
        for s in self._stages.values():
            s.next_s, s.runs = None, 0

    def plan(self, ts: float, wanted: Iterable[str]) -> frozenset[str]:
        """The stages to run on the frame at ``ts`` among those ``wanted`` on it."""
        want = set(wanted)
        unknown = want - set(self._stages)
        if unknown:
            raise KeyError(f"not scheduled: {sorted(unknown)}")
        due: list[_Stage] = []
        for s in self._stages.values():
            if s.name not in want:
                s.next_s = None
            elif self.every_frame or s.next_s is None or ts >= s.next_s - EARLY * s.period_s:
                due.append(s)
        if not self.every_frame and not self.share_frames and len(due) > 1:
            # a stage starting (wanted again) shares its first frame; the others take turns
            starting = [s for s in due if s.next_s is None]
            waiting = [s for s in due if s.next_s is not None]
            due = starting + ([min(waiting, key=lambda s: (s.next_s, s.order))] if waiting else [])
        for s in due:
            s.runs += 1
            late = s.next_s is None or s.next_s < ts - s.period_s
            s.next_s = (ts if late else s.next_s) + s.period_s
        return frozenset(s.name for s in due)
