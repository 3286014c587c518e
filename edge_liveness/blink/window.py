"""The blink model's input: the last ~0.6 s of eye signals, resampled to a fixed rate and normalised.

Why resample: cameras run at 5-60 fps (some webcam selfie clips here are 5-8 fps), and a blink lasts
0.1-0.4 s, so a window of N frames would mean a different time span on every camera. The window is
``N_SAMPLES`` points ``DT`` apart ending now, linearly interpolated between the frames around each
point; a point with no visible frame within ``MAX_GAP_S`` on both sides is marked not visible.

Why normalise: open-eye EAR differs by person, camera angle and glasses (0.2-0.35 here). Each eye's
openness is divided by that eye's own open level: a high percentile over the last ``baseline_s`` of
visible frames (a percentile, not a median, so that frequent blinkers do not drag it down).

One eye a run (``schedule.eyes_per_run = 1``): a sample then holds one eye's values, the other's NaN
(missing, neither open nor closed). Each eye's series is interpolated on its own over the frames
that read it, and a point is usable when both eyes' are; an eye read one run before the newest frame
holds its last value up to it. Each eye's open level comes from its own readings.

The model judges the point ``LAG_SAMPLES`` before the end of the window ("is that moment inside a
blink?"), seeing 0.37 s before it and 0.2 s after: enough to see the lids come back up, which is what
separates a blink from looking down or a slow droop. The decision therefore comes 0.2 s late.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import numpy as np

from edge_liveness.vision.eye_signals import EyeSignals

DT = 1.0 / 30.0
N_SAMPLES = 18
LAG_SAMPLES = 6
MAX_GAP_S = 0.25
BASELINE_PERCENTILE = 80
MIN_BASELINE_SAMPLES = 5
MIN_BASELINE_PER_EYE = 3  # one eye a run: of those samples, each eye's own readings (both eyes: all 5)
# features per sample: left/right EAR and lid gap over their open level, visible. Head pitch and eye
# speed were inputs once: trained on still ZJU faces the model learned "the landmarks move = a blink"
# (the corners shift a little as lids close) and fired on every head turn of a real selfie video, so
# they stay out of the model (eye speed gates blinks in blink/detector.py instead).
FEATURES = ("ear_left", "ear_right", "lid_left", "lid_right", "visible")
N_FEATURES = len(FEATURES)
_CLOSED_FILL = (1.0, 1.0, 1.0, 1.0, 0.0)  # an invisible point looks open


class BlinkWindow:
    """Feed ``add(signals)`` every frame; ``features()`` is the model input for the latest frame."""

    def __init__(self, baseline_s: float):
        self.baseline_s = baseline_s
        self.reset()

    def reset(self) -> None:
        self._hist: deque[EyeSignals] = deque()
        self._open: deque[tuple[float, tuple[float, float, float, float]]] = deque()
        self._level: np.ndarray | None = None
        self._level_stale = True  # open_level() is asked several times a frame: computed once per add

    @property
    def judged_ts(self) -> float | None:
        """The time the latest ``features()`` judges (LAG_SAMPLES before the newest frame)."""
        return self._hist[-1].ts - LAG_SAMPLES * DT if self._hist else None

    def add(self, s: EyeSignals) -> None:
        self._hist.append(s)
        horizon = s.ts - max(N_SAMPLES * DT + MAX_GAP_S, 0.0)
        while len(self._hist) > 2 and self._hist[1].ts < horizon:
            self._hist.popleft()
        if s.visible:
            self._open.append((s.ts, (s.ear_left, s.ear_right, s.lid_left, s.lid_right)))
        while self._open and self._open[0][0] < s.ts - self.baseline_s:
            self._open.popleft()
        self._level_stale = True

    def last_read(self) -> tuple[float | None, float | None]:
        """When each eye (subject's left, right) was last read in the window; None: not in it."""
        left = right = None
        for s in reversed(self._hist):
            if s.visible:
                left = s.ts if left is None and not np.isnan(s.ear_left) else left
                right = s.ts if right is None and not np.isnan(s.ear_right) else right
                if left is not None and right is not None:
                    break
        return left, right

    def with_both_eyes(self, s: EyeSignals) -> EyeSignals:
        """``s`` with an eye it did not read (one eye a run) at that eye's last reading in the window."""
        for prev in reversed(self._hist):
            if not (np.isnan(s.ear_left) or np.isnan(s.ear_right)):
                break
            if prev.visible and np.isnan(s.ear_left) and not np.isnan(prev.ear_left):
                s = replace(s, ear_left=prev.ear_left, lid_left=prev.lid_left)
            if prev.visible and np.isnan(s.ear_right) and not np.isnan(prev.ear_right):
                s = replace(s, ear_right=prev.ear_right, lid_right=prev.lid_right)
        return s

    def open_level(self) -> np.ndarray | None:
        """Each eye's open level (ear_l, ear_r, lid_l, lid_r), or None before enough frames."""
        if self._level_stale:
            self._level, self._level_stale = self._open_level(), False
        return self._level

    def _open_level(self) -> np.ndarray | None:
        if len(self._open) < MIN_BASELINE_SAMPLES:
            return None
        v = np.array([v for _, v in self._open]).T
        # one eye a run: each eye's level from its own readings (NaN: that eye was not read)
        cols = [np.sort(c[~np.isnan(c)]) for c in v]
        if min(len(c) for c in cols) < MIN_BASELINE_PER_EYE:
            return None
        return np.array([percentile(c, BASELINE_PERCENTILE) for c in cols])

    def features(self) -> np.ndarray | None:
        """(N_SAMPLES, N_FEATURES) float32, or None before an open level exists."""
        base = self.open_level()
        if base is None or not self._hist:
            return None
        vis = [s for s in self._hist if s.visible]
        out = np.tile(np.array(_CLOSED_FILL, np.float32), (N_SAMPLES, 1))
        if not vis:
            return out
        now = self._hist[-1].ts
        grid = now - DT * np.arange(N_SAMPLES - 1, -1, -1)
        t = np.array([s.ts for s in vis])
        vals = np.array([(s.ear_left, s.ear_right, s.lid_left, s.lid_right) for s in vis])
        missing = np.isnan(vals)
        # columns interpolated together over the same frames: all four when every frame read both
        # eyes, else each eye (EAR, lid gap) over the frames that read it
        groups = [(0, 1, 2, 3)] if not missing.any() else [(0, 2), (1, 3)]
        ok = np.ones(N_SAMPLES, bool)
        cols = np.empty((N_SAMPLES, vals.shape[1]))
        for g in groups:
            have = ~missing[:, g[0]]
            if not have.any():
                return out
            te = t[have]
            ok &= _usable(grid, te, self._hist[-1].visible)
            for k in g:
                cols[:, k] = np.interp(grid, te, vals[have, k])
        if not ok.any():
            return out
        openness = cols / np.maximum(base, 1e-6)
        feat = np.concatenate([openness, np.ones((N_SAMPLES, 1))], axis=1)
        out[ok] = feat[ok].astype(np.float32)
        return out


def percentile(s: np.ndarray, q: float) -> float:
    """``np.percentile(s, q)`` of a sorted 1-D array, bit for bit (numpy's default linear rule and its
    ``_lerp`` arithmetic, numpy 1.22 to 2.x), without its per-call overhead: the open level takes four
    on every eye run, and numpy's own call cost more than the rest of the window's work."""
    g = (len(s) - 1) * (q / 100)
    i = int(g)  # g >= 0: floor
    if i >= len(s) - 1:
        return float(s[-1])
    a, b, t = s[i], s[i + 1], g - i
    d = b - a
    return float(b - d * (1 - t)) if t >= 0.5 else float(a + d * t)


def _usable(grid: np.ndarray, t: np.ndarray, newest_visible: bool) -> np.ndarray:
    """Grid points an eye's readings at times ``t`` cover: a reading within MAX_GAP_S before and
    after the point (or the point is the reading's own time). Past the eye's newest reading, while
    the newest frame is visible, the eye was read a run ago and the other eye since: it holds its
    last reading up to now (missing on those frames, not gone). Both eyes read on every frame: the
    newest reading is the newest frame, so no point lies past it."""
    j = np.searchsorted(t, grid, side="right")  # first reading after each point
    prev = t[np.maximum(j - 1, 0)]
    before_ok = (j > 0) & (grid - prev <= MAX_GAP_S)
    after_ok = (j < len(t)) & (t[np.minimum(j, len(t) - 1)] - grid <= MAX_GAP_S)
    exact = np.abs(grid - prev) <= 1e-8 + 1e-5 * np.abs(prev)  # np.isclose's own test, without its overhead
    held = (grid > t[-1]) & newest_visible
    return before_ok & (after_ok | exact | held)
