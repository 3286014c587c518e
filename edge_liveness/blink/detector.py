"""Blink events from a learned temporal model over per-eye signals.

    landmarks + eye contours -> EyeSignals -> BlinkWindow (0.6 s, resampled, normalised)
        -> BlinkModel P(in a blink) for the moment 0.2 s ago -> runs of P >= threshold -> blinks

A run of judged moments the model marks as "in a blink" is a blink (``BlinkRuns``) when
- the face stayed visible through it (a face leaving the frame, or eyes the camera cannot resolve,
  ends the run without a blink);
- it lasted at least ``blink.min_closed_s`` and at most ``blink.max_closed_s``;
- both lids came down: each eye's EAR fell to <= ``BOTH_CLOSED`` x its open level. A one-eye wink is
  not a blink;
- it was a dip: within ``max_closed_s`` before it and soon after it the lids were higher by
  ``MIN_DIP`` x the open level. Eyes kept shut, a closure already under way when the eyes came into
  view, and lids that follow the gaze down and stay there are not blinks we saw;
- no frame in it had the eyes moving faster than ``MAX_EYE_SPEED`` eye widths per second (a jerk of
  the head blurs the eyes and throws the landmarks off them; tranvanluyt_real.mp4 frames 378-382 slid
  the mesh onto the cheek at 27-90 widths/s, while a real blink during a brisk head turn moved 11-12
  widths/s, apfol_real2.webm frames 39-44). The training clips hold no jerks, so this measured rule
  stays outside the model.

``blink`` is True on the frame where the run ends; ``blink_start_ts``/``blink_end_ts`` give the run
on the camera's timeline. Without the eye-contour model the mesh's eyelids feed the same model; the
mesh's lids barely move when eyes shut, so most blinks are then missed (a warning says so at start).
See docs/blinks.md.

``eyes_per_run = 1`` (``schedule.eyes_per_run``, the default) reads one eye a run, the one read longer
ago (one invoke instead of two); the rules above see each eye's readings interpolated over the frames
that did not read it. Plain turn-taking lost blinks on the ZJU clips (F1 0.961 against 0.9775): a blink
of two or three frames was seen by one eye only, which the model and the both-lids rule take for a
wink. So both eyes are read until each eye's open level exists (an attempt's first runs), whenever
either has no reading within ``MAX_GAP_S`` (the face was away), and on a frame whose eye reads lowered
(under ``LOWERED_READ_BOTH`` x its open level: the other eye is read on the same frame); while the head
is turned the near eye alone stands in for both. Measured: 1.25 invokes a run, F1 0.974 (held-out
people 0.987, unchanged; docs/blinks.md).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from edge_liveness.blink.model import BlinkModel, default_blink_model_path
from edge_liveness.blink.window import DT, LAG_SAMPLES, MAX_GAP_S, BlinkWindow
from edge_liveness.vision.eye_signals import EyeReads, EyeSignals, SignalExtractor, ear_from_points, far_eye
from edge_liveness.vision.eyes import EyePair, EyeRefiner

__all__ = ["BlinkDetector", "EyeSample", "ear_from_points", "MAX_EYE_SPEED", "load_blink_model"]

MAX_EYE_SPEED = 18.0
BOTH_CLOSED = 0.8  # during a blink each eye's EAR falls to <= this x its open level
MIN_DIP = 0.15  # ... and the lids are higher, by this x the open level, before and after it
REOPEN_WITHIN_S = 0.25  # "after": this soon after the run
HISTORY_MARGIN_S = 1.0
MERGE_GAP_S = 0.1  # below-threshold moments shorter than this inside a run do not end it
FLUSH_SAMPLES = 2 * LAG_SAMPLES + 3
# one eye a run: an eye read with its EAR under this x its open level has the other eye read on the same frame
LOWERED_READ_BOTH = 0.85


@dataclass(frozen=True)
class EyeSample:
    ear_left: float  # subject's left eye; NaN when not visible
    ear_right: float
    baseline: float  # mean of the two eyes' open EAR level; NaN until one exists
    closed: bool  # the judged moment (0.2 s ago) is inside a blink
    blink: bool  # a blink completed on this frame
    visible: bool
    closed_s: float = 0.0  # duration of the blink that completed (0 otherwise)
    source: str = ""  # "eye_model" or "mesh": where the EAR came from; "" when not visible
    p_blink: float = math.nan  # the model's P(in a blink) for the judged moment
    blink_start_ts: float = math.nan
    blink_end_ts: float = math.nan


class BlinkRuns:
    """Turns the model's per-moment verdicts into blink events (the rules in the module docstring).

    ``step(judged_ts, p, signals, level) -> (blink, closed_s, start_ts, end_ts)``; shared by the
    detector and the trainer's evaluation so both count blinks the same way."""

    def __init__(self, threshold: float, min_closed_s: float, max_closed_s: float):
        self.threshold, self.min_closed_s, self.max_closed_s = threshold, min_closed_s, max_closed_s
        self.reset()

    def reset(self) -> None:
        self._run: list[float] | None = None  # [start_ts, end_ts] of the judged moments
        # recent frames (ts, ear_left, ear_right, eye speed): the run's moments lag the newest frame,
        # so the rules look them up here, judged against the open level known when the run ends
        self._hist: deque[tuple[float, float, float, float]] = deque()

    def step(self, judged: float, p: float, s: EyeSignals, level: np.ndarray | None) -> tuple[bool, float, float, float]:
        nan = math.nan
        if not s.visible:
            self._run = None  # the face left or the eyes cannot be resolved: no blink from this run
            self._hist.clear()
            return False, 0.0, nan, nan
        self._hist.append((s.ts, s.ear_left, s.ear_right, s.speed))
        while self._hist and self._hist[0][0] < s.ts - (self.max_closed_s + HISTORY_MARGIN_S):
            self._hist.popleft()
        if not math.isnan(p) and p >= self.threshold:
            if self._run is None:
                self._run = [judged, judged]
            else:
                self._run[1] = judged
            return False, 0.0, nan, nan
        # a long blink can dip under the threshold for a moment: the run ends only after MERGE_GAP_S
        if self._run is None or judged - self._run[1] < MERGE_GAP_S:
            return False, 0.0, nan, nan
        start, end = self._run
        self._run = None
        closed_s = end - start + DT
        if self.min_closed_s <= closed_s <= self.max_closed_s and level is not None and self._looks_like_a_blink(start, end, level):
            return True, closed_s, start, end
        return False, 0.0, nan, nan

    def _looks_like_a_blink(self, start: float, end: float, level: np.ndarray) -> bool:
        rows = [(t, el / level[0], er / level[1], v) for t, el, er, v in _each_eye_filled(self._hist)]
        # at 5-8 fps (webcam clips here) the judged moments fall between frames: "during" and "soon
        # after" must still hold a frame or two
        gaps = np.diff([r[0] for r in rows])
        gap = float(np.median(gaps)) if len(gaps) else DT
        pad = max(2 * DT, 1.5 * gap)
        soon = max(REOPEN_WITHIN_S, 2.5 * gap)
        during = [r for r in rows if start - pad <= r[0] <= end + pad]
        before = [(r[1] + r[2]) / 2 for r in rows if start - self.max_closed_s <= r[0] < start]
        after = [(r[1] + r[2]) / 2 for r in rows if end < r[0] <= end + soon]
        if not during or not before or not after:
            return False
        # both lids came down (a one-eye wink is not a blink)
        both_closed = max(min(r[1] for r in during), min(r[2] for r in during)) <= BOTH_CLOSED
        # a dip: the lids were higher within max_closed_s before the run and are higher again soon after
        # it. A closure already under way when the eyes came into view, eyes kept shut, or lids that
        # follow the gaze down and stay there, are not blinks we saw.
        low = min((r[1] + r[2]) / 2 for r in during)
        dip = max(before) - low >= MIN_DIP and max(after) - low >= MIN_DIP
        # a jerk of the head blurs the eyes and throws the landmarks off them
        steady = max(r[3] for r in during) <= MAX_EYE_SPEED
        return both_closed and dip and steady


def _each_eye_filled(hist) -> list[tuple[float, float, float, float]]:
    """The frames with an eye not read on them (one eye a run) given that eye's value interpolated
    from its own readings; frames that read both eyes unchanged."""
    h = np.array(hist, np.float64).reshape(-1, 4)
    for c in (1, 2):
        miss = np.isnan(h[:, c])
        if miss.any() and not miss.all():
            h[miss, c] = np.interp(h[miss, 0], h[~miss, 0], h[~miss, c])
    return [tuple(r) for r in h]


def read_eyes(refiner: EyeRefiner, image: np.ndarray, points: np.ndarray, left: bool, right: bool) -> EyePair | EyeReads:
    """The eye model on the eyes asked for: both (``EyeRefiner.run``, two invokes) or one (one invoke)."""
    if left and right:
        return refiner.run(image, points)
    contour = refiner.run_one(image, points, "left" if left else "right")
    return EyeReads(left=contour if left else None, right=contour if right else None)


def load_blink_model(settings) -> BlinkModel:
    path = settings.blink.model or default_blink_model_path()
    return BlinkModel(path, settings.models.num_threads)


class BlinkDetector:
    """``update(ts, landmarks, frame)`` once per frame; ``frame`` = the BGR image (eye model used
    when a refiner is set) or just its shape (mesh eyelids) or None (no frame-bounds check)."""

    def __init__(self, cfg, refiner: EyeRefiner | None, model: BlinkModel | None, eyes_per_run: int = 2):
        self.cfg = cfg
        self.refiner = refiner
        self.model = model  # None: signals only (what `blinks train` extracts before a model exists)
        self.eyes_per_run = eyes_per_run  # schedule.eyes_per_run: 1 = one eye a run, taking turns
        self.threshold = cfg.threshold if cfg.threshold is not None else (model.threshold if model else 0.5)
        self.extractor = SignalExtractor(cfg.min_eye_px)
        self.window = BlinkWindow(cfg.baseline_s)
        self.runs = BlinkRuns(self.threshold, cfg.min_closed_s, cfg.max_closed_s)
        self._source = ""
        self.reset()

    @classmethod
    def from_settings(cls, settings, refiner: EyeRefiner | None = None) -> "BlinkDetector":
        """With ``refiner`` None, loads the eye model itself (None when off or absent: mesh eyelids)."""
        return cls(settings.blink, refiner if refiner is not None else EyeRefiner.from_settings(settings),
                   load_blink_model(settings))

    def reset(self) -> None:
        self.extractor.reset()
        self.window.reset()
        self.runs.reset()
        self.last_signals: EyeSignals | None = None

    def update(self, ts: float, landmarks=None, frame: np.ndarray | tuple[int, ...] | None = None) -> EyeSample:
        image = frame if isinstance(frame, np.ndarray) and frame.ndim == 3 else None
        shape = image.shape if image is not None else frame
        points = landmarks.points if landmarks is not None else None
        eyes = None
        if points is not None and self.refiner is not None and image is not None \
                and self.extractor.visible(points, shape):
            eyes = self._read(ts, image, points)
        s = self.extractor.update(ts, points, eyes, shape)
        if s.visible and s.source != self._source:
            # the two sources' openness are on different scales: start the open level again
            self.window.reset()
            self.runs.reset()
            self._source = s.source
        self.window.add(s)
        self.last_signals = s
        if not s.visible:
            self.runs.step(ts, math.nan, s, None)
            return EyeSample(math.nan, math.nan, self._baseline(), False, False, False)
        feats = self.window.features()
        p = self.model.predict(feats) if feats is not None and self.model is not None else math.nan
        blink, closed_s, start, end = self.runs.step(self.window.judged_ts, p, s, self.window.open_level())
        in_blink = not math.isnan(p) and p >= self.threshold
        return EyeSample(s.ear_left, s.ear_right, self._baseline(), in_blink, blink, True, closed_s, s.source,
                         p, start, end)

    def _read(self, ts: float, image: np.ndarray, points: np.ndarray) -> EyePair | EyeReads:
        left, right = self._eyes_to_read(ts, points)
        eyes = read_eyes(self.refiner, image, points, left, right)
        if left == right or far_eye(points) is not None or not self._lowered(eyes):
            return eyes  # (a turned head: the near eye reports both, lowered or not)
        # a lid down on the eye read: read the other on this same frame, so that a blink of two or
        # three frames is seen by both eyes (one eye alone is a wink to the model and the rules)
        other = read_eyes(self.refiner, image, points, not left, not right)
        return EyeReads(left=eyes.left or other.left, right=eyes.right or other.right)

    def _lowered(self, eyes: EyeReads) -> bool:
        level = self.window.open_level()
        if level is None or np.isnan(level).any():
            return False
        col, eye = (0, eyes.left) if eyes.left is not None else (1, eyes.right)
        return ear_from_points(eye.ear_points) < LOWERED_READ_BOTH * level[col]

    def _eyes_to_read(self, ts: float, points: np.ndarray) -> tuple[bool, bool]:
        """(read the subject's left eye, read the right eye) on this eye-model run."""
        if self.eyes_per_run >= 2 or self._source != "eye_model":
            return True, True  # (a window on the mesh's eyelids starts again on both eyes)
        far = far_eye(points)
        if far is not None:
            return far == "right", far == "left"  # the near eye reports both
        if self.window.open_level() is None:
            return True, True  # the first runs (an attempt's, the face back) set the open level on both eyes
        left, right = self.window.last_read()
        if left is None or right is None or ts - min(left, right) > MAX_GAP_S:
            return True, True  # an eye with no recent reading would leave the window's points unusable
        return left < right, right <= left  # the eye read longer ago; right first on a tie

    def flush(self) -> list[tuple[float, float]]:
        """At the end of a recording: judge the last moments too, holding the last frame's signals for
        ``FLUSH_SAMPLES`` more samples, as if the eyes stayed as last seen (a live camera never ends, so
        the daemon never calls this). Returns the blinks (start_ts, end_ts) this completes."""
        last = self.last_signals
        out: list[tuple[float, float]] = []
        if last is None or not last.visible or self.model is None:
            return out
        last = self.window.with_both_eyes(last)  # one eye a run: hold each eye as last read
        for k in range(1, FLUSH_SAMPLES + 1):
            s = replace(last, ts=last.ts + k * DT, speed=0.0)
            self.window.add(s)
            feats = self.window.features()
            p = self.model.predict(feats) if feats is not None else math.nan
            blink, _, start, end = self.runs.step(self.window.judged_ts, p, s, self.window.open_level())
            if blink:
                out.append((start, end))
        return out

    def _baseline(self) -> float:
        lvl = self.window.open_level()
        return float(np.mean(lvl[:2])) if lvl is not None else math.nan
