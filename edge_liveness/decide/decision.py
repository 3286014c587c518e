"""The attempt state machine: per-frame observations in, ``Decision`` / ``Prompt`` outputs out.

idle --(one large, frontal face | start_attempt)--> collecting --(pass/fail)--> cooldown --> idle

Timestamps are the camera timeline (``FrameObservation.ts``, monotonic seconds, or the file's own
timeline on replay); ``Decision.started_at`` is on that timeline too, not wall-clock time (the
publisher's envelope carries wall-clock ``ts``). See docs/decision.md for the policy choices.
"""

from __future__ import annotations

import bisect
import logging
import math
import statistics
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Union

from edge_liveness.decide.checks import (FAILED, PASSED, ActiveCheck, ActiveModeError, Chooser, make_check,
                                  validate_mode)
from edge_liveness.config import ActiveConfig, DecisionConfig, DetectionConfig
from edge_liveness.decide.observation import FrameObservation, TraceError, load_trace

log = logging.getLogger("edge_liveness.decision")

IDLE, COLLECTING, COOLDOWN = "idle", "collecting", "cooldown"
# Every reason a Decision can carry ("shutdown" or a caller's own word comes only from abort()).
BLINK_TAKING_MODES = frozenset({"blink", "blink_and_turn", "challenge"})  # modes whose check can take a blink
REASONS: tuple[str, ...] = ("live", "spoof_suspected", "no_blink", "no_turn", "challenge_failed", "face_lost",
                            "multiple_faces", "timeout", "shutdown", "reload")

__all__ = ["FrameObservation", "ModelInfo", "Decision", "Prompt", "Output", "DecisionEngine", "TraceError",
           "load_trace", "REASONS", "ActiveModeError"]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    sha256: str
    threshold: float


@dataclass(frozen=True)
class Decision:
    kind: ClassVar[str] = "decision"  # the publisher's envelope type (and MQTT topic)
    result: str                # "pass" | "fail"
    reason: str                # "live" on pass; see REASONS
    attempt_id: str
    started_at: float          # camera timeline (monotonic seconds), not wall-clock
    duration_s: float
    evidence: dict[str, Any] = field(hash=False)

    def body(self) -> dict[str, Any]:
        return {"result": self.result, "reason": self.reason, "attempt_id": self.attempt_id,
                "started_at": round(self.started_at, 3), "duration_s": round(self.duration_s, 3),
                "evidence": self.evidence}


@dataclass(frozen=True)
class Prompt:
    kind: ClassVar[str] = "prompt"
    attempt_id: str
    actions: tuple[str, ...]
    step_timeout_s: float

    def body(self) -> dict[str, Any]:
        return {"attempt_id": self.attempt_id, "actions": list(self.actions), "step_timeout_s": self.step_timeout_s}


Output = Union[Decision, Prompt]


def passive_margin(p_live: float, threshold: float) -> float:
    """How far P(live) sits above the threshold, in logit units (negative below it)."""
    eps = 1e-6
    p = min(max(p_live, eps), 1 - eps)
    t = min(max(threshold, eps), 1 - eps)
    return math.log(p / (1 - p)) - math.log(t / (1 - t))


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


@dataclass
class _Attempt:
    id: str
    started_at: float
    mode: str
    check: ActiveCheck
    deadline_s: float
    last_ts: float
    scores: list[float] = field(default_factory=list)
    score_ts: list[float] = field(default_factory=list)  # the frame time of each score
    ears: list[float] = field(default_factory=list)
    blinks: int = 0
    absent_since: float | None = None
    active_passed: bool = False
    frames: int = 0  # frames seen while collecting (scored or not)

    def median(self) -> float | None:
        return statistics.median(self.scores) if self.scores else None

    def evidence_s(self) -> float:
        """How long the scored frames span (seconds)."""
        return self.score_ts[-1] - self.score_ts[0] if self.score_ts else 0.0

    def recent_median(self, window_s: float) -> float | None:
        """Median of the scores of the last ``window_s`` seconds (all of them when 0)."""
        if not self.scores:
            return None
        if window_s <= 0:
            return self.median()
        start = bisect.bisect_left(self.score_ts, self.score_ts[-1] - window_s)
        return statistics.median(self.scores[start:])


class DecisionEngine:
    """Feed ``update(obs)`` every frame; it returns the outputs to publish (usually none)."""

    def __init__(self, decision: DecisionConfig, active: ActiveConfig, detection: DetectionConfig,
                 model: ModelInfo, rng: Chooser | None = None):
        self.cfg = decision
        self.active = active
        self.detection = detection
        self.model = model
        self.rng = rng  # None: checks use secrets.SystemRandom()
        self._mode = validate_mode(active.mode)
        self.reset()

    def reset(self) -> None:
        """Forget any attempt and start idle and armed (a new recording, or a test)."""
        self.state = IDLE
        self.decided = 0  # decisions made since the last reset
        self._attempt: _Attempt | None = None
        self._cooldown_until = -math.inf
        self._armed = True           # False after a decision until the face has left (rearm="leave")
        self._absent_since: float | None = None
        self._start_requested = False
        self._face_now = False

    # -- runtime settings ------------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        return self.cfg.threshold if self.cfg.threshold is not None else self.model.threshold

    @property
    def active_mode(self) -> str:
        return self._mode

    @active_mode.setter
    def active_mode(self, mode: str) -> None:
        # Applies from the next attempt: an attempt keeps the check (and prompt) it started with.
        self._mode = validate_mode(mode)

    @property
    def armed(self) -> bool:
        """Whether the next suitable face may start an attempt by itself."""
        return self._armed

    @property
    def attempt_id(self) -> str | None:
        return self._attempt.id if self._attempt else None

    def see_face(self, n_large_faces: int) -> None:
        """Tell the engine, before the frame's expensive stages, whether this frame has a large face,
        so ``wants_liveness`` answers for this frame rather than the previous one."""
        self._face_now = n_large_faces >= 1

    @property
    def wants_liveness(self) -> bool:
        if self.state == COLLECTING:
            return True
        if self._start_requested or (self.state == IDLE and self._armed):
            return self._face_now
        return False

    @property
    def wants_blinks(self) -> bool:
        """Whether a blink seen on this frame could still count (the eye model is worth running):
        while the attempt's check may still take one, or on a frame that may start a blink-mode attempt."""
        if self._attempt is not None:
            return self._attempt.check.wants_blink()
        return self.wants_liveness and self._mode in BLINK_TAKING_MODES

    @property
    def attempt_mode(self) -> str | None:
        """The active mode of the attempt collecting now (None when none is)."""
        return self._attempt.mode if self._attempt is not None else None

    # -- commands ---------------------------------------------------------------------------------
    def start_attempt(self) -> None:
        """Start an attempt on the next frame, whatever it shows: skips the cooldown, the
        'face must leave' rule and the frontal gate (an operator or a door button asked). With no
        face the attempt ends ``face_lost`` after ``face_lost_s``, so the caller always gets an
        answer. Ignored while an attempt is collecting (that attempt will answer)."""
        if self.state == COLLECTING:
            log.info("start_attempt ignored: attempt %s is collecting", self._attempt.id if self._attempt else "?")
            return
        self._start_requested = True

    def pending(self) -> dict[str, Any] | None:
        """The attempt still collecting (a recording that ended mid-attempt), or None."""
        a = self._attempt
        if a is None:
            return None
        return {"attempt_id": a.id, "started_at": a.started_at, "duration_s": max(0.0, a.last_ts - a.started_at),
                "frames": len(a.scores), "blinks": a.blinks, "mode": a.mode}

    def abort(self, reason: str = "shutdown") -> Decision | None:
        """End a collecting attempt now with result ``fail`` (deny is the safe default for a door)
        and ``reason`` (``shutdown`` on SIGTERM); None when nothing is collecting."""
        if self._attempt is None:
            return None
        return self._finish("fail", reason, self._attempt.last_ts)

    # -- the frame loop ---------------------------------------------------------------------------
    def update(self, obs: FrameObservation) -> list[Output]:
        self._face_now = obs.n_large_faces >= 1
        self._track_absence(obs)
        out: list[Output] = []
        if self.state == COOLDOWN and obs.ts >= self._cooldown_until:
            self.state = IDLE
        if self.state != COLLECTING and self._should_start(obs):
            out.extend(self._start(obs))
        if self.state == COLLECTING:
            d = self._collect(obs)
            if d is not None:
                out.append(d)
        return out

    def _track_absence(self, obs: FrameObservation) -> None:
        if obs.n_large_faces >= 1:
            self._absent_since = None
            return
        if self._absent_since is None:
            self._absent_since = obs.ts
        if obs.ts - self._absent_since >= self.cfg.face_lost_s:
            self._armed = True

    def _single_face(self, obs: FrameObservation) -> bool:
        if self.detection.multiple_faces == "reject":
            return obs.n_large_faces == 1
        return obs.n_large_faces >= 1

    def _should_start(self, obs: FrameObservation) -> bool:
        if self._start_requested:
            return True
        if self.state != IDLE or not self._armed or not self._single_face(obs):
            return False
        if obs.face_frac < self.detection.min_face_frac:
            return False
        # No pose (no landmarks) = cannot tell it is frontal: wait for a frame that can.
        return obs.yaw is not None and abs(obs.yaw) <= self.detection.max_yaw_deg

    def _start(self, obs: FrameObservation) -> list[Output]:
        self._start_requested = False
        check = make_check(self._mode, self.active, self.threshold, self.rng)
        actions = check.begin(obs.ts)
        a = _Attempt(id=uuid.uuid4().hex, started_at=obs.ts, mode=self._mode, check=check,
                     deadline_s=max(self.cfg.attempt_timeout_s, check.time_needed_s()), last_ts=obs.ts)
        self._attempt = a
        self.state = COLLECTING
        log.info("attempt %s started (mode %s)", a.id, a.mode)
        if actions:
            return [Prompt(a.id, actions, self.active.challenge_step_timeout_s)]
        return []

    def _collect(self, obs: FrameObservation) -> Decision | None:
        a = self._attempt
        assert a is not None
        a.last_ts = obs.ts
        a.frames += 1
        # A second large face (a photo held up beside a live person) ends the attempt at once.
        if self.detection.multiple_faces == "reject" and obs.n_large_faces > 1:
            return self._finish("fail", "multiple_faces", obs.ts)
        if obs.n_large_faces == 0:
            if a.absent_since is None:
                a.absent_since = obs.ts
            if obs.ts - a.absent_since >= self.cfg.face_lost_s:
                return self._finish("fail", "face_lost", obs.ts)
        else:
            a.absent_since = None
            if obs.p_live is not None:
                a.scores.append(float(obs.p_live))
                a.score_ts.append(obs.ts)
            if obs.eyes_visible and obs.ear_left is not None and obs.ear_right is not None:
                a.ears.append((obs.ear_left + obs.ear_right) / 2.0)
        if obs.blink:
            a.blinks += 1

        verdict = a.check.observe(obs)
        if verdict.state == PASSED:
            a.active_passed = True
        # a fair look: enough frames AND enough time, whatever the camera's frame rate
        enough = len(a.scores) >= self.cfg.min_frames and a.evidence_s() >= self.cfg.min_evidence_s
        med = a.recent_median(self.cfg.score_window_s)
        passive_low = enough and med is not None and med < self.threshold
        if passive_low and (self.cfg.early_fail or verdict.state == FAILED):
            return self._finish("fail", "spoof_suspected", obs.ts)
        if verdict.state == FAILED:
            return self._finish("fail", verdict.reason or "timeout", obs.ts)
        # the active check is done but the passive score is low right now: keep looking (until the
        # attempt's deadline) rather than refuse a real person on a bad second; the score must hold
        # over decision.score_window_s to pass
        # A recording carries its blink or head turn with it, so a sign of life opens the door only
        # with a passive verdict clearly on the live side: decision.pass_margin above the threshold
        # (in logit units, the same for any model's threshold), never at its edge.
        clearly_live = med is not None and passive_margin(med, self.threshold) >= self.cfg.pass_margin
        if a.active_passed and enough and not passive_low and clearly_live:
            return self._finish("pass", "live", obs.ts)
        if obs.ts - a.started_at >= a.deadline_s:
            if not enough:
                reason = "timeout"
            elif passive_low or (a.active_passed and not clearly_live):
                reason = "spoof_suspected"
            else:
                reason = a.check.timeout_reason()
            return self._finish("fail", reason, obs.ts)
        return None

    def _finish(self, result: str, reason: str, ts: float) -> Decision:
        a = self._attempt
        assert a is not None
        ev: dict[str, Any] = {
            "frames": len(a.scores),
            # the schedule scores a few frames a second: how many scores the verdict rests on, of how many frames
            "passive_scores": len(a.scores),
            "attempt_frames": a.frames,
            "passive_median": _r(a.median()),
            "passive_recent_median": _r(a.recent_median(self.cfg.score_window_s)),
            "evidence_s": _r(a.evidence_s(), 3),
            "passive_min": _r(min(a.scores)) if a.scores else None,
            "threshold": _r(self.threshold),
            "pass_margin": _r(self.cfg.pass_margin, 3),
            "blinks": a.blinks,
            "ear_baseline": _r(statistics.median(a.ears)) if a.ears else None,
            "ear_min": _r(min(a.ears)) if a.ears else None,
            "active_mode": a.mode,
            "active_passed": a.active_passed,
            "model": {"name": self.model.name, "sha256": self.model.sha256},
        }
        if a.mode == "blink":
            ev["sign_of_life"] = a.check.sign_of_life()
        extra = a.check.evidence()
        if extra is not None:
            ev["challenge"] = extra
        d = Decision(result=result, reason=reason, attempt_id=a.id, started_at=a.started_at,
                     duration_s=max(0.0, ts - a.started_at), evidence=ev)
        log.info("attempt %s: %s (%s) after %.2f s, %d frames", a.id, result, reason, d.duration_s, len(a.scores))
        self._attempt = None
        self.decided += 1
        self.state = COOLDOWN
        self._cooldown_until = ts + self.cfg.cooldown_s
        self._armed = self.cfg.rearm == "cooldown" or self._absent_now(ts)
        return d

    def _absent_now(self, ts: float) -> bool:
        # An attempt that ended face_lost already saw the face leave.
        return self._absent_since is not None and ts - self._absent_since >= self.cfg.face_lost_s

    def iter_run(self, observations: Iterator[FrameObservation]) -> Iterator[tuple[FrameObservation, Output]]:
        """Convenience for replay/tests: every output paired with the frame that produced it."""
        for obs in observations:
            for o in self.update(obs):
                yield obs, o
