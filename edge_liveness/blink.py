"""Eye aspect ratio (EAR) from the face mesh, the subject's open-eye baseline, and blink events.

EAR = (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|) with p1/p4 the eye corners, p2/p3 upper-lid points and
p6/p5 the lower-lid points facing them. Mesh indices (subject's sides; checked by drawing them on
real faces: 33-group on the image's left in an unmirrored photo):
- subject's RIGHT eye: p1..p6 = 33 (outer corner), 160, 158, 133 (inner corner), 153, 144
- subject's LEFT eye:  p1..p6 = 362 (inner corner), 385, 387, 263 (outer corner), 373, 380

Closed: an eye's EAR below ``relative_closed`` x its own open-eye baseline (running median over
the last ``baseline_s`` seconds of open samples, once it has at least ``MIN_BASELINE_SAMPLES``),
before that below ``absolute_closed``. Both eyes closed = the eyes are closed. Reopening needs
EAR above the threshold x ``REOPEN_HYSTERESIS`` so noise at the threshold does not flicker.
A blink is closed -> reopened with the closed time, measured from frame timestamps, within
[``min_closed_s``, ``max_closed_s``]; ``blink`` is True on the frame where the eyes reopen. A closure
that began before both baselines existed never counts (it may just be a face whose open EAR is low).

What it cannot see (``visible`` False, no EAR, any closure in progress is dropped): no mesh; eye
width below ``min_eye_px`` (face too small for the lids to be resolved); an eye's points outside
the frame when ``frame_shape`` is given. A still photo gives a steady EAR, so never a blink.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

RIGHT_EYE_EAR = (33, 160, 158, 133, 153, 144)
LEFT_EYE_EAR = (362, 385, 387, 263, 373, 380)
MIN_BASELINE_SAMPLES = 5
REOPEN_HYSTERESIS = 1.05
# A closure during which the eyes move faster than this (eye widths per second) is not trusted: a
# jerk of the head blurs the eyes and can throw the mesh off them (tranvanluyt_real.mp4 frames
# 378-382: the mesh slid onto the cheek, 27-90 widths/s, EAR 0.13 with the eyes open), while a real
# blink during a brisk head turn moved 11-12 widths/s (apfol_real2.webm frames 39-44).
MAX_EYE_SPEED = 18.0


def ear_from_points(p: np.ndarray) -> float:
    """EAR of one eye from its six points (6, >=2) in the order p1..p6."""
    p = np.asarray(p, np.float64)[:, :2]
    width = np.linalg.norm(p[0] - p[3])
    if width < 1e-9:
        return float("nan")
    return float((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2.0 * width))


def eye_ears(points: np.ndarray) -> tuple[float, float]:
    """(EAR of the subject's left eye, EAR of the subject's right eye) from mesh points (468, >=2)."""
    return ear_from_points(points[list(LEFT_EYE_EAR)]), ear_from_points(points[list(RIGHT_EYE_EAR)])


def eye_widths(points: np.ndarray) -> tuple[float, float]:
    p = points[:, :2]
    return (float(np.linalg.norm(p[LEFT_EYE_EAR[0]] - p[LEFT_EYE_EAR[3]])),
            float(np.linalg.norm(p[RIGHT_EYE_EAR[0]] - p[RIGHT_EYE_EAR[3]])))


@dataclass(frozen=True)
class EyeSample:
    ear_left: float  # subject's left eye; NaN when not visible
    ear_right: float
    baseline: float  # mean of the two eyes' open-eye baselines; NaN until one exists
    closed: bool
    blink: bool  # a blink completed on this frame
    visible: bool
    closed_s: float = 0.0  # duration of the blink that completed (0 otherwise)


class _Baseline:
    """Running median of open-eye EAR over the last ``window_s`` seconds."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.samples: deque[tuple[float, float]] = deque()

    def add(self, ts: float, ear: float) -> None:
        self.samples.append((ts, ear))
        while self.samples and self.samples[0][0] < ts - self.window_s:
            self.samples.popleft()

    def value(self) -> float | None:
        if len(self.samples) < MIN_BASELINE_SAMPLES:
            return None
        return float(np.median([e for _, e in self.samples]))


class BlinkDetector:
    def __init__(self, cfg):
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self._base = (_Baseline(self.cfg.baseline_s), _Baseline(self.cfg.baseline_s))
        self._closed_since: float | None = None
        self._closed_trusted = False
        self._prev_mid: np.ndarray | None = None
        self._last_ts: float | None = None

    def _threshold(self, i: int) -> float:
        b = self._base[i].value()
        return self.cfg.absolute_closed if b is None else self.cfg.relative_closed * b

    def update(self, ts: float, landmarks=None, frame_shape: tuple[int, ...] | None = None) -> EyeSample:
        nan = float("nan")
        if landmarks is None or not self._visible(landmarks.points, frame_shape):
            self._closed_since = None
            self._prev_mid = None
            return EyeSample(nan, nan, self._baseline_mean(), False, False, False)
        ears = eye_ears(landmarks.points)
        if any(math.isnan(e) for e in ears):
            self._closed_since = None
            return EyeSample(nan, nan, self._baseline_mean(), False, False, False)
        p = landmarks.points
        mid = (p[LEFT_EYE_EAR[0], :2] + p[RIGHT_EYE_EAR[0], :2]) / 2
        jump = 0.0
        if self._prev_mid is not None and self._last_ts is not None:
            dt = max(ts - self._last_ts, 1e-3)
            jump = float(np.linalg.norm(mid - self._prev_mid)) / max(min(eye_widths(p)), 1e-6) / dt
        self._prev_mid = mid
        thr = [self._threshold(0), self._threshold(1)]
        has_baseline = all(b.value() is not None for b in self._base)
        if self._closed_since is None:
            closed = all(e < t for e, t in zip(ears, thr))
        else:  # stay closed until at least one eye is clearly open again
            closed = all(e < t * REOPEN_HYSTERESIS for e, t in zip(ears, thr))
        blink, closed_s = False, 0.0
        if closed and self._closed_since is None:
            self._closed_since = ts
            self._closed_trusted = has_baseline and jump <= MAX_EYE_SPEED
        elif closed and jump > MAX_EYE_SPEED:
            self._closed_trusted = False
        elif not closed and self._closed_since is not None:
            closed_s = ts - self._closed_since
            # a closure that began on the absolute fallback may just be a low-EAR face, and one with
            # the eyes jumping may be the mesh losing the face: neither is a blink
            blink = self._closed_trusted and jump <= MAX_EYE_SPEED and self.cfg.min_closed_s <= closed_s <= self.cfg.max_closed_s
            self._closed_since = None
        for i, e in enumerate(ears):
            # A half-closed eye would drag the open-eye baseline down; but until a baseline exists take
            # every sample, or a subject whose open EAR is below absolute_closed would never get one.
            if self._base[i].value() is None or (not closed and e >= thr[i]):
                self._base[i].add(ts, e)
        self._last_ts = ts
        return EyeSample(ears[0], ears[1], self._baseline_mean(), closed, blink, True, closed_s if blink else 0.0)

    def _baseline_mean(self) -> float:
        vals = [b.value() for b in self._base]
        return float(np.mean(vals)) if all(v is not None for v in vals) else float("nan")

    def _visible(self, points: np.ndarray, frame_shape) -> bool:
        if min(eye_widths(points)) < self.cfg.min_eye_px:
            return False
        if frame_shape is not None:
            h, w = frame_shape[:2]
            eye = points[list(LEFT_EYE_EAR + RIGHT_EYE_EAR), :2]
            if (eye < 0).any() or (eye[:, 0] >= w).any() or (eye[:, 1] >= h).any():
                return False
        return True
