"""Head pose (yaw/pitch/roll, degrees) from the face mesh, and turn/nod events.

Estimate: geometric, from the mesh's own 3D output (x, y in pixels, z depth on the same scale, larger
= farther). Head axes: ``X`` = right outer eye corner (33) -> left outer eye corner (263) (subject's
sides), ``up`` = chin (152) -> forehead (10) made orthogonal to ``X``; ``Z`` = their cross product.
No camera model is needed (the mesh is already a weak-perspective 3D face), so it does not depend on a
focal-length guess, and it costs a few microseconds. ``PITCH_OFFSET_DEG`` removes the tilt of the
chin-forehead line on a frontal face (median over the Yale ``normal``/``noglasses`` frontal images).

Sign convention (the subject's point of view, unmirrored camera):
- yaw > 0: the person turns to THEIR left (their nose moves toward the image's right);
- pitch > 0: the person looks up (chin up);
- roll > 0: the head tilts toward the person's left shoulder (the eye line turns clockwise... as
  seen in the image: their left eye, on the image's right, goes down).
A mirrored image flips the signs of yaw and roll.

Events (``HeadMotion``): relative to the neutral pose (running median of calm frames, not 0), an
excursion past ``turn_deg`` in yaw that comes back within ``turn_window_s`` gives "turn_left" (yaw > 0
side) or "turn_right"; the same on pitch with ``nod_deg`` gives "nod" (either way, down is usual).
``HeadMotion.departures`` names the excursions that BEGAN on the last frame (same names): proof of
depth as soon as the head is past the threshold, for checks that need a sign of life rather than a
gesture (blink mode's ``active.blink_alternatives``).
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass

import numpy as np

RIGHT_EYE_OUTER, LEFT_EYE_OUTER, FOREHEAD, CHIN = 33, 263, 10, 152
PITCH_OFFSET_DEG = -3.2  # median raw pitch of the 20 Yale normal/noglasses frontal images (spread 5.4)
SMOOTH_TAU_S = 0.08  # EMA time constant: removes mesh jitter, keeps a 0.3 s turn
NEUTRAL_WINDOW_S = 3.0
RETURN_FRACTION = 0.5  # back "home" when within this fraction of the threshold of neutral


@dataclass(frozen=True)
class Pose:
    yaw: float
    pitch: float
    roll: float


def estimate_pose(landmarks, frame_shape: tuple[int, ...] | None = None) -> Pose | None:
    """Pose from a FaceLandmarks (or None -> None). ``frame_shape`` is accepted for API symmetry."""
    if landmarks is None:
        return None
    p = np.asarray(landmarks.points, np.float64)
    x = p[LEFT_EYE_OUTER] - p[RIGHT_EYE_OUTER]
    up = p[FOREHEAD] - p[CHIN]
    up[1] = -up[1]  # image y points down; make "up" positive
    x[1] = -x[1]
    nx = np.linalg.norm(x)
    if nx < 1e-9:
        return None
    x /= nx
    up = up - (up @ x) * x
    nu = np.linalg.norm(up)
    if nu < 1e-9:
        return None
    up /= nu
    # In (right, up, depth-away) coordinates: yaw from the eye axis' depth, pitch from the up axis' depth.
    yaw = math.degrees(math.atan2(x[2], math.hypot(x[0], x[1])))
    pitch = math.degrees(math.atan2(up[2], math.hypot(up[0], up[1]))) - PITCH_OFFSET_DEG
    roll = math.degrees(math.atan2(-x[1], x[0]))
    return Pose(yaw, pitch, roll)


def middle(ordered: list[float]) -> float:
    """The median of values already sorted: ``float(np.median(ordered))`` bit for bit ((a + b) / 2 of the
    middle pair), without numpy's per-call cost (the neutral pose reads one on every frame)."""
    k = len(ordered) // 2
    return float(ordered[k]) if len(ordered) % 2 else (ordered[k - 1] + ordered[k]) / 2


class _Axis:
    """One angle's excursion state: away past ``deg`` and back within ``window_s``."""

    def __init__(self, deg: float, window_s: float):
        self.deg, self.window_s = deg, window_s
        self.neutral: deque[tuple[float, float]] = deque()
        self._sorted: list[float] = []  # the neutral window's values, sorted (base() reads the median)
        self.away_since: float | None = None
        self.away_sign = 0
        self.departed = 0  # +1 / -1 when an excursion began on the last update

    def base(self) -> float | None:
        if len(self.neutral) < 3:
            return None
        return middle(self._sorted)

    def update(self, ts: float, v: float) -> int:
        """+1 / -1 when an excursion to that side completed on this frame, else 0."""
        self.departed = 0
        base = self.base()
        if base is None:
            self._calm(ts, v)
            return 0
        d = v - base
        if self.away_since is None:
            if abs(d) > self.deg:
                self.away_since, self.away_sign = ts, (1 if d > 0 else -1)
                self.departed = self.away_sign
            else:
                self._calm(ts, v)
            return 0
        if abs(d) < self.deg * RETURN_FRACTION:
            done = ts - self.away_since <= self.window_s
            sign, self.away_since = self.away_sign, None
            self._calm(ts, v)
            return sign if done else 0
        return 0

    def _calm(self, ts: float, v: float) -> None:
        # the window's values are also kept sorted (insort / remove in C): base() runs on every frame,
        # and re-sorting ~90 values there each time was 3 % of an attempt frame (py-spy, NUAA 0001)
        if v != v:
            return  # NaN has no place in a sorted window (and no meaning in a neutral pose)
        self.neutral.append((ts, v))
        insort(self._sorted, v)
        while self.neutral and self.neutral[0][0] < ts - NEUTRAL_WINDOW_S:
            _, old = self.neutral.popleft()
            del self._sorted[bisect_left(self._sorted, old)]

    def cancel(self) -> None:
        self.away_since = None


class HeadMotion:
    """``update(ts, pose_or_None) -> list of "turn_left" / "turn_right" / "nod"`` completed this frame;
    ``departures``: the ones begun this frame."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self._yaw = _Axis(self.cfg.turn_deg, self.cfg.turn_window_s)
        self._pitch = _Axis(self.cfg.nod_deg, self.cfg.turn_window_s)
        self._ema: Pose | None = None
        self._ts: float | None = None
        self.departures: list[str] = []

    @property
    def smoothed(self) -> Pose | None:
        return self._ema

    def neutral(self) -> Pose | None:
        y, p = self._yaw.base(), self._pitch.base()
        return None if y is None or p is None else Pose(y, p, 0.0)

    def update(self, ts: float, pose: Pose | None) -> list[str]:
        self.departures = []
        if pose is None:
            # face lost: an excursion cannot be followed across the gap
            self._yaw.cancel()
            self._pitch.cancel()
            self._ema = None
            return []
        if self._ema is None or self._ts is None:
            self._ema = pose
        else:
            a = 1.0 - math.exp(-max(ts - self._ts, 0.0) / SMOOTH_TAU_S)
            e = self._ema
            self._ema = Pose(e.yaw + a * (pose.yaw - e.yaw), e.pitch + a * (pose.pitch - e.pitch),
                             e.roll + a * (pose.roll - e.roll))
        self._ts = ts
        events = []
        s = self._yaw.update(ts, self._ema.yaw)
        if s:
            events.append("turn_left" if s > 0 else "turn_right")
        if self._yaw.departed:
            self.departures.append("turn_left" if self._yaw.departed > 0 else "turn_right")
        if self._pitch.update(ts, self._ema.pitch):
            events.append("nod")
        if self._pitch.departed:
            self.departures.append("nod")
        return events
