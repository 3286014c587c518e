"""Eye aspect ratio (EAR), the subject's open-eye baseline, and blink events.

EAR comes from the eye model's eyelid contour (``eyes.EyeRefiner``, contour indices 0, 11, 13, 8,
5, 3 as p1..p6) when a refiner is given and ``update`` gets the frame image, else from the mesh.
The mesh's lids hardly move when the eyes shut (tranvanluyt_real.mp4 frames 532-535: mesh EAR
0.28 -> 0.25, eye model 0.25 -> 0.07), so the mesh is only the fallback without the model file.

EAR = (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|) with p1/p4 the eye corners, p2/p3 upper-lid points and
p6/p5 the lower-lid points facing them. Mesh indices (subject's sides; checked by drawing them on
real faces: 33-group on the image's left in an unmirrored photo), used for the fallback EAR:
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
the frame when ``frame_shape`` is given. A still photo gives a steady EAR, so never a blink. When the EAR source changes (eye model <->
mesh: their scales differ) the baselines start again.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .eyes import EyeRefiner

RIGHT_EYE_EAR = (33, 160, 158, 133, 153, 144)
LEFT_EYE_EAR = (362, 385, 387, 263, 373, 380)
MIN_BASELINE_SAMPLES = 5
REOPEN_HYSTERESIS = 1.05
# A closure during which the eyes move faster than this (eye widths per second) is not trusted: a
# jerk of the head blurs the eyes and can throw the mesh off them (tranvanluyt_real.mp4 frames
# 378-382: the mesh slid onto the cheek, 27-90 widths/s, EAR 0.13 with the eyes open), while a real
# blink during a brisk head turn moved 11-12 widths/s (apfol_real2.webm frames 39-44).
MAX_EYE_SPEED = 18.0
# With the eye model, an eye narrower (corner to corner) than this x the other eye is the far eye of
# a turned head and is left out of the closed decision: its crop is mostly nose and cheek and the model
# reads it as open (apfol_real2.webm frames 39-43: the near eye shut, EAR 0.125; the far eye, 0.72-0.78
# of the near one's width, 0.29-0.38). The mesh's own lids move together, so the mesh needs both eyes.
FAR_EYE_RATIO = 0.8


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
    source: str = ""  # "eye_model" or "mesh": where the EAR came from; "" when not visible


class _Baseline:
    """Running median of open-eye EAR over the last ``window_s`` seconds."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.samples: deque[tuple[float, float]] = deque()
        self._median: float | None = None  # cached: value() is asked several times per frame

    def add(self, ts: float, ear: float) -> None:
        self.samples.append((ts, ear))
        while self.samples and self.samples[0][0] < ts - self.window_s:
            self.samples.popleft()
        self._median = None

    def value(self) -> float | None:
        if len(self.samples) < MIN_BASELINE_SAMPLES:
            return None
        if self._median is None:
            self._median = float(np.median([e for _, e in self.samples]))
        return self._median


class BlinkDetector:
    """``update(ts, landmarks, frame)`` once per frame; ``frame`` = the BGR image (eye model used when
    a refiner is set) or just its shape (mesh EAR) or None (no frame-bounds check, mesh EAR)."""

    def __init__(self, cfg, refiner: EyeRefiner | None = None):
        self.cfg = cfg
        self.refiner = refiner
        self._source = ""
        self.reset()

    @classmethod
    def from_settings(cls, settings, refiner: EyeRefiner | None = None) -> "BlinkDetector":
        """With ``refiner`` None, loads the eye model itself (None when off or absent: mesh EAR)."""
        return cls(settings.blink, refiner if refiner is not None else EyeRefiner.from_settings(settings))

    def reset(self) -> None:
        self._base = (_Baseline(self.cfg.baseline_s), _Baseline(self.cfg.baseline_s))
        self._closed_since: float | None = None
        self._closed_trusted = False
        self._prev_mid: np.ndarray | None = None
        self._last_ts: float | None = None

    def _threshold(self, i: int) -> float:
        b = self._base[i].value()
        if self._source == "eye_model":
            rel, absolute = self.cfg.eye_model_relative_closed, self.cfg.eye_model_absolute_closed
        else:
            rel, absolute = self.cfg.relative_closed, self.cfg.absolute_closed
        return absolute if b is None else rel * b

    def update(self, ts: float, landmarks=None, frame: np.ndarray | tuple[int, ...] | None = None) -> EyeSample:
        nan = float("nan")
        image = frame if isinstance(frame, np.ndarray) and frame.ndim == 3 else None
        frame_shape = image.shape if image is not None else frame
        if landmarks is None or not self._visible(landmarks.points, frame_shape):
            self._closed_since = None
            self._prev_mid = None
            return EyeSample(nan, nan, self._baseline_mean(), False, False, False)
        if self.refiner is not None and image is not None:
            pair = self.refiner.run(image, landmarks.points)
            ears, source = (ear_from_points(pair.left.ear_points), ear_from_points(pair.right.ear_points)), "eye_model"
        else:
            ears, source = eye_ears(landmarks.points), "mesh"
        if source != self._source:
            # the two sources' EARs are on different scales: a baseline of one is no threshold for the other
            self.reset()
            self._source = source
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
        judged = [0, 1]
        if source == "eye_model":
            w = eye_widths(p)
            judged = [i for i in (0, 1) if w[i] >= FAR_EYE_RATIO * max(w)]
        if self._closed_since is None:
            closed = all(ears[i] < thr[i] for i in judged)
        else:  # stay closed until at least one judged eye is clearly open again
            closed = all(ears[i] < thr[i] * REOPEN_HYSTERESIS for i in judged)
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
        return EyeSample(ears[0], ears[1], self._baseline_mean(), closed, blink, True, closed_s if blink else 0.0, source)

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
