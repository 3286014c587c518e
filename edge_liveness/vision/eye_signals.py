"""Per-frame eye signals, the raw material of the blink detector.

One ``EyeSignals`` per frame: each eye's openness from the eye-contour model (EAR, and the mean gap
between the upper and lower lid over the whole contour divided by the eye's width: less noisy than
EAR's two point pairs), and how fast the eyes move across the frame (eye widths
per second: a jerk of the head blurs the eyes and throws the landmarks off them).

Without the eye model the mesh's six EAR points stand in for both openness measures; the mesh's lids
hardly move when eyes shut, so that is a degraded mode (logged when the model is missing).

With ``schedule.eyes_per_run = 1`` the eye model reads one eye a run (``EyeReads`` with the other
None): that eye's values are NaN on the frame while ``visible`` stays true. The eye is missing there,
neither open nor closed; the blink window interpolates each eye's series on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_liveness.vision.eyes import EyeContour, EyePair

# Mesh EAR points p1..p6 (subject's sides, unmirrored camera); see docs/vision.md.
RIGHT_EYE_EAR = (33, 160, 158, 133, 153, 144)
LEFT_EYE_EAR = (362, 385, 387, 263, 373, 380)
# Eye-contour model: 0 outer corner, 1..7 lower lid outer->inner, 8 inner corner, 9..15 upper lid.
LOWER_LID = tuple(range(1, 8))
UPPER_LID = tuple(range(9, 16))
FAR_EYE_RATIO = 0.8  # an eye narrower than this x the other is the far eye of a turned head


def ear_from_points(p: np.ndarray) -> float:
    """EAR of one eye from its six points (6, >=2) in the order p1..p6."""
    p = np.asarray(p, np.float64)[:, :2]
    width = np.linalg.norm(p[0] - p[3])
    if width < 1e-9:
        return float("nan")
    return float((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2.0 * width))


def lid_gap(contour: np.ndarray) -> float:
    """Mean distance between facing upper and lower lid points over the eye's width (71-point contour)."""
    c = np.asarray(contour, np.float64)[:, :2]
    width = np.linalg.norm(c[0] - c[8])
    if width < 1e-9:
        return float("nan")
    gaps = np.linalg.norm(c[list(UPPER_LID)] - c[list(LOWER_LID)], axis=1)
    return float(gaps.mean() / width)


def eye_widths(points: np.ndarray) -> tuple[float, float]:
    """(subject's left, subject's right) eye width in pixels from mesh points."""
    p = points[:, :2]
    return (float(np.linalg.norm(p[LEFT_EYE_EAR[0]] - p[LEFT_EYE_EAR[3]])),
            float(np.linalg.norm(p[RIGHT_EYE_EAR[0]] - p[RIGHT_EYE_EAR[3]])))


def mesh_ears(points: np.ndarray) -> tuple[float, float]:
    return ear_from_points(points[list(LEFT_EYE_EAR)]), ear_from_points(points[list(RIGHT_EYE_EAR)])


@dataclass(frozen=True)
class EyeReads:
    """The eye model's contours on one frame when it may read one eye a run: None = not read."""

    left: EyeContour | None  # the subject's left eye
    right: EyeContour | None


@dataclass(frozen=True)
class EyeSignals:
    ts: float
    visible: bool
    # NaN: not visible, or (visible) this eye was not read on this frame (schedule.eyes_per_run = 1)
    ear_left: float = math.nan  # subject's left eye
    ear_right: float = math.nan
    lid_left: float = math.nan
    lid_right: float = math.nan
    speed: float = 0.0  # eye midpoint speed, eye widths per second
    source: str = ""  # "eye_model" | "mesh" | "" (not visible)


class SignalExtractor:
    """Turns one frame's landmarks (+ eye contours) into ``EyeSignals``; keeps the last eye
    position to measure speed."""

    def __init__(self, min_eye_px: float):
        self.min_eye_px = min_eye_px
        self.reset()

    def reset(self) -> None:
        self._prev: tuple[float, np.ndarray] | None = None

    def visible(self, points: np.ndarray, frame_shape: tuple[int, ...] | None) -> bool:
        if min(eye_widths(points)) < self.min_eye_px:
            return False
        if frame_shape is not None:
            h, w = frame_shape[:2]
            eye = points[list(LEFT_EYE_EAR + RIGHT_EYE_EAR), :2]
            if (eye < 0).any() or (eye[:, 0] >= w).any() or (eye[:, 1] >= h).any():
                return False
        return True

    def update(self, ts: float, points: np.ndarray | None, eyes: EyePair | EyeReads | None,
               frame_shape: tuple[int, ...] | None) -> EyeSignals:
        if points is None or not self.visible(points, frame_shape):
            self._prev = None
            return EyeSignals(ts, False)
        mid = (points[LEFT_EYE_EAR[0], :2] + points[RIGHT_EYE_EAR[0], :2]) / 2
        speed = 0.0
        if self._prev is not None:
            dt = max(ts - self._prev[0], 1e-3)
            speed = float(np.linalg.norm(mid - self._prev[1])) / max(min(eye_widths(points)), 1e-6) / dt
        self._prev = (ts, mid)
        read = (True, True)
        if eyes is not None:
            read = (eyes.left is not None, eyes.right is not None)
            el, ll = _openness(eyes.left)
            er, lr = _openness(eyes.right)
            source = "eye_model"
        else:
            el, er = mesh_ears(points)
            ll, lr = el, er
            source = "mesh"
        if any(math.isnan(v) for v, r in zip((el, ll, er, lr), (read[0], read[0], read[1], read[1])) if r):
            return EyeSignals(ts, False)
        # A head turned aside shows the far eye foreshortened; its crop is mostly nose and cheek and
        # reads as open through a blink (apfol_real2.webm frames 39-43: near eye EAR 0.125, far eye,
        # 0.72-0.78 of the near one's width, 0.29-0.38). Both eyes then report the near eye (NaN
        # when only the far one was read: its reading is no eye's).
        far = far_eye(points)
        if far == "left":
            el, ll = er, lr
        elif far == "right":
            er, lr = el, ll
        if math.isnan(el) and math.isnan(er):
            return EyeSignals(ts, False)
        return EyeSignals(ts, True, el, er, ll, lr, speed, source)


def far_eye(points: np.ndarray) -> str | None:
    """The subject's eye ("left" or "right") a turned head foreshortens: its reading stands for
    neither eye (the near one reports both). None for a frontal face."""
    wl, wr = eye_widths(points)
    if wl < FAR_EYE_RATIO * wr:
        return "left"
    if wr < FAR_EYE_RATIO * wl:
        return "right"
    return None


def _openness(eye: EyeContour | None) -> tuple[float, float]:
    """(EAR, lid gap) of one eye's contour; NaN for an eye not read."""
    if eye is None:
        return math.nan, math.nan
    return ear_from_points(eye.ear_points), lid_gap(eye.contour)
