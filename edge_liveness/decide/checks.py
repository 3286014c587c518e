"""Active liveness checks: what the person in front of the door must *do* during an attempt.

Each mode is one small class. The attempt state machine (``decide/decision.py``) creates one check per
attempt with ``make_check`` and only ever asks it four things: what to prompt (``begin``), what a
frame changes (``observe``), why it failed if the attempt runs out of time (``timeout_reason``) and
what to put in the evidence (``evidence``). No mode-specific branch lives in the state machine.

Action vocabulary (the names ``blink/detector.py`` and ``vision/headpose.py`` emit on ``FrameObservation``):
``blink`` (``obs.blink``) and the head motions ``turn_left``, ``turn_right``, ``nod``
(``obs.motions``).
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Sequence, TypeVar

if TYPE_CHECKING:
    from edge_liveness.config import ActiveConfig
    from edge_liveness.decide.observation import FrameObservation

MODES: tuple[str, ...] = ("off", "blink", "turn", "blink_and_turn", "challenge")
ACTIONS: tuple[str, ...] = ("blink", "turn_left", "turn_right", "nod")
HEAD_MOTIONS: frozenset[str] = frozenset({"turn_left", "turn_right", "nod"})

PENDING, PASSED, FAILED = "pending", "passed", "failed"

T = TypeVar("T")


class Chooser(Protocol):
    """What the challenge needs from a random source: ``secrets.SystemRandom()`` in production,
    a seeded ``random.Random(seed)`` in tests (same method)."""

    def choice(self, seq: Sequence[T]) -> T: ...


class ActiveModeError(ValueError):
    """An unknown active-check mode (message is one line)."""


def validate_mode(mode: str) -> str:
    if mode not in MODES:
        raise ActiveModeError(f"active mode {mode!r} is unknown: use one of {', '.join(MODES)}")
    return mode


@dataclass(frozen=True)
class Verdict:
    state: str                 # PENDING | PASSED | FAILED
    reason: str | None = None  # the Decision reason when FAILED


_PENDING = Verdict(PENDING)
_PASSED = Verdict(PASSED)


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def _actions_in(obs: FrameObservation) -> list[str]:
    """Actions completed on this frame, blink first (a frame rarely has both)."""
    out = ["blink"] if obs.blink else []
    out.extend(m for m in obs.motions if m in HEAD_MOTIONS)
    return out


class ActiveCheck(ABC):
    mode: ClassVar[str]

    def begin(self, ts: float) -> tuple[str, ...]:
        """The attempt starts at ``ts``; return the actions to prompt (empty: no prompt)."""
        self.t0 = ts
        return ()

    @abstractmethod
    def observe(self, obs: FrameObservation) -> Verdict: ...

    def timeout_reason(self) -> str:
        """Reason to give when the attempt times out while this check is still pending."""
        return "timeout"

    def time_needed_s(self) -> float:
        """Longest the check may legitimately take; the attempt timeout is stretched to cover it."""
        return 0.0

    def evidence(self) -> dict[str, Any] | None:
        """Extra evidence (challenge only); never images."""
        return None

    def wants_blink(self) -> bool:
        """Whether a blink could still change this check (the pipeline runs the eye model only then)."""
        return False

    def sign_of_life(self) -> str | None:
        """Blink mode: the action that passed the check ("blink" or a head motion); None elsewhere."""
        return None


class OffCheck(ActiveCheck):
    """Passive score only."""

    mode = "off"

    def observe(self, obs: FrameObservation) -> Verdict:
        return _PASSED


class BlinkCheck(ActiveCheck):
    """A sign of life within ``blink_timeout`` seconds of the attempt start: a completed blink, or
    one of ``alternatives`` (head motions, ``active.blink_alternatives``).

    Why a head turn may stand in for the blink: many people do not blink within six seconds (measured
    on the shared recordings, docs/decision.md), and a turn past ``active.turn_deg`` is depth a flat
    picture cannot show. Head pose comes from the face mesh, which places the nose where the
    picture shows it, so a photo rotated +-30 degrees in 3D reads as about 10 degrees of yaw spread and
    never as a turn (tests/test_checks_alternatives.py). A nod is not a default alternative: tilting a
    photo reads as up to 10 degrees of pitch, too close to ``nod_deg``.
    """

    mode = "blink"

    def __init__(self, timeout_s: float, alternatives: Sequence[str] = ()):
        self.timeout_s = timeout_s
        self.alternatives = frozenset(alternatives)
        self.seen_at: float | None = None
        self.seen: str | None = None  # "blink" or the head motion that stood in for it

    def observe(self, obs: FrameObservation) -> Verdict:
        if self.seen_at is not None:
            return _PASSED
        if obs.ts - self.t0 <= self.timeout_s:
            # a head motion counts from the frame it passes the threshold (a departure), not when
            # the head is back: the depth is proven by then, and the person is let in sooner
            for act in _actions_in(obs) + list(obs.departures):
                if act == "blink" or act in self.alternatives:
                    self.seen_at, self.seen = obs.ts, act
                    return _PASSED
        if obs.ts - self.t0 >= self.timeout_s:
            return Verdict(FAILED, "no_blink")
        return _PENDING

    def timeout_reason(self) -> str:
        return "no_blink"

    def wants_blink(self) -> bool:
        return self.seen_at is None

    def sign_of_life(self) -> str | None:
        return self.seen


class TurnCheck(ActiveCheck):
    """A completed head turn to either side; it has no own timer (the attempt timeout bounds it)."""

    mode = "turn"

    def __init__(self) -> None:
        self.seen: str | None = None

    def observe(self, obs: FrameObservation) -> Verdict:
        if self.seen is None:
            for m in obs.motions:
                if m in ("turn_left", "turn_right"):
                    self.seen = m
                    break
        return _PASSED if self.seen else _PENDING

    def timeout_reason(self) -> str:
        return "no_turn"


class BlinkAndTurnCheck(ActiveCheck):
    """Both, in any order: the blink within ``blink_timeout``, the turn within the attempt."""

    mode = "blink_and_turn"

    def __init__(self, blink_timeout_s: float):
        self.blink = BlinkCheck(blink_timeout_s)
        self.turn = TurnCheck()

    def begin(self, ts: float) -> tuple[str, ...]:
        super().begin(ts)
        self.blink.begin(ts)
        self.turn.begin(ts)
        return ()

    def observe(self, obs: FrameObservation) -> Verdict:
        b = self.blink.observe(obs)
        t = self.turn.observe(obs)
        if b.state == FAILED:
            return b
        return _PASSED if b.state == t.state == PASSED else _PENDING

    def timeout_reason(self) -> str:
        return self.blink.timeout_reason() if self.blink.seen_at is None else self.turn.timeout_reason()

    def wants_blink(self) -> bool:
        return self.blink.wants_blink()


def draw_challenge(chooser: Chooser, min_steps: int, max_steps: int) -> tuple[str, ...]:
    """1..3 actions; no action twice in a row, so 'the same action again' is never the answer
    to a step that was just answered (and an out-of-order answer is always visible)."""
    lo, hi = min(min_steps, max_steps), max(min_steps, max_steps)
    n = chooser.choice(range(lo, hi + 1))
    out: list[str] = []
    for _ in range(n):
        out.append(chooser.choice([a for a in ACTIONS if not out or a != out[-1]]))
    return tuple(out)


class ChallengeCheck(ActiveCheck):
    """Random actions, answered in order, each within ``step_timeout_s`` of the previous one
    (the first within ``step_timeout_s`` of the prompt), with the passive score holding.

    Wrong answers: a head motion other than the expected one fails at once. A blink while a head
    motion is expected is ignored: people blink involuntarily every few seconds, and failing them
    for it would make the challenge unusable. A blink *is* the answer when ``blink`` is expected.

    Passive hold: the state machine checks the attempt's median; this check adds the "no long run
    below the threshold" rule (``max_low_s`` of consecutive scored frames under the threshold), which
    catches an attacker who swaps a live face in for the movements and a replay for the rest.
    That failure is a passive one, so its reason is ``spoof_suspected``.
    """

    mode = "challenge"

    def __init__(self, actions: Sequence[str], step_timeout_s: float, threshold: float, max_low_s: float):
        if not actions or any(a not in ACTIONS for a in actions):
            raise ActiveModeError(f"challenge actions {list(actions)!r} invalid: use 1-3 of {', '.join(ACTIONS)}")
        self.actions = tuple(actions)
        self.step_timeout_s = step_timeout_s
        self.threshold = threshold
        self.max_low_s = max_low_s
        self.steps: list[dict[str, Any]] = []
        self.failure: dict[str, Any] | None = None
        self.low_since: float | None = None
        self.longest_low_s = 0.0
        self.verdict = _PENDING

    def begin(self, ts: float) -> tuple[str, ...]:
        super().begin(ts)
        self.last_at = ts
        return self.actions

    def time_needed_s(self) -> float:
        return len(self.actions) * self.step_timeout_s

    def _fail(self, reason: str, why: str, obs: FrameObservation, **extra: Any) -> Verdict:
        self.failure = {"step": len(self.steps), "why": why, "t": _r(obs.ts - self.t0), **extra}
        self.verdict = Verdict(FAILED, reason)
        return self.verdict

    def _passive_hold(self, obs: FrameObservation) -> bool:
        if obs.p_live is None or obs.n_large_faces == 0:
            return True  # unscored frames neither start nor end a low run
        if obs.p_live >= self.threshold:
            self.low_since = None
            return True
        if self.low_since is None:
            self.low_since = obs.ts
        self.longest_low_s = max(self.longest_low_s, obs.ts - self.low_since)
        return obs.ts - self.low_since <= self.max_low_s

    def observe(self, obs: FrameObservation) -> Verdict:
        if self.verdict.state == FAILED:
            return self.verdict
        if not self._passive_hold(obs):
            return self._fail("spoof_suspected", "passive_low_run", obs, low_run_s=_r(self.longest_low_s))
        if self.verdict.state == PASSED:
            return self.verdict  # keeps watching the passive score until the engine decides
        expected = self.actions[len(self.steps)]
        for act in _actions_in(obs):
            if act == expected:
                if obs.ts - self.last_at > self.step_timeout_s:
                    return self._fail("challenge_failed", "too_late", obs, expected=expected)
                self.steps.append({"action": act, "t": _r(obs.ts - self.t0),
                                   "yaw": _r(obs.yaw, 1), "pitch": _r(obs.pitch, 1)})
                self.last_at = obs.ts
                if len(self.steps) == len(self.actions):
                    self.verdict = _PASSED
                    return self.verdict
                expected = self.actions[len(self.steps)]
            elif act in HEAD_MOTIONS:
                return self._fail("challenge_failed", "wrong_action", obs, expected=expected, got=act,
                                  yaw=_r(obs.yaw, 1), pitch=_r(obs.pitch, 1))
        if obs.ts - self.last_at > self.step_timeout_s:
            return self._fail("challenge_failed", "missing_action", obs, expected=expected)
        return _PENDING

    def timeout_reason(self) -> str:
        return "challenge_failed"

    def wants_blink(self) -> bool:
        # a blink answers a step only when it is the expected action: while one is still to come
        return self.verdict.state == PENDING and "blink" in self.actions[len(self.steps):]

    def evidence(self) -> dict[str, Any]:
        return {"actions": list(self.actions), "step_timeout_s": self.step_timeout_s,
                "observed": list(self.steps), "failure": self.failure,
                "longest_low_run_s": _r(self.longest_low_s)}


def make_check(mode: str, active: ActiveConfig, threshold: float, chooser: Chooser | None = None) -> ActiveCheck:
    """A fresh check for one attempt. ``chooser`` defaults to ``secrets.SystemRandom()`` (the OS
    CSPRNG): a predictable challenge could be pre-recorded."""
    validate_mode(mode)
    if mode == "off":
        return OffCheck()
    if mode == "blink":
        return BlinkCheck(active.blink_timeout, active.blink_alternatives)
    if mode == "turn":
        return TurnCheck()
    if mode == "blink_and_turn":
        return BlinkAndTurnCheck(active.blink_timeout)
    actions = draw_challenge(chooser or secrets.SystemRandom(), active.challenge_min_steps, active.challenge_max_steps)
    return ChallengeCheck(actions, active.challenge_step_timeout_s, threshold, active.challenge_max_low_s)
