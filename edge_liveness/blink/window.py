"""The blink model's input: the last ~0.6 s of eye signals, resampled to a fixed rate and normalised.

Why resample: cameras run at 5-60 fps (some webcam selfie clips here are 5-8 fps), and a blink lasts
0.1-0.4 s, so a window of N frames would mean a different time span on every camera. The window is
``N_SAMPLES`` points ``DT`` apart ending now, linearly interpolated between the frames around each
point; a point with no visible frame within ``MAX_GAP_S`` on both sides is marked not visible.

Why normalise: open-eye EAR differs by person, camera angle and glasses (0.2-0.35 here). Each eye's
openness is divided by that eye's own open level: a high percentile over the last ``baseline_s`` of
visible frames (a percentile, not a median, so that frequent blinkers do not drag it down).

The model judges the point ``LAG_SAMPLES`` before the end of the window ("is that moment inside a
blink?"), seeing 0.37 s before it and 0.2 s after: enough to see the lids come back up, which is what
separates a blink from looking down or a slow droop. The decision therefore comes 0.2 s late.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from edge_liveness.vision.eye_signals import EyeSignals

DT = 1.0 / 30.0
N_SAMPLES = 18
LAG_SAMPLES = 6
MAX_GAP_S = 0.25
BASELINE_PERCENTILE = 80
MIN_BASELINE_SAMPLES = 5
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

    def open_level(self) -> np.ndarray | None:
        """Each eye's open level (ear_l, ear_r, lid_l, lid_r), or None before enough frames."""
        if len(self._open) < MIN_BASELINE_SAMPLES:
            return None
        return np.percentile(np.array([v for _, v in self._open]), BASELINE_PERCENTILE, axis=0)

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
        # a grid point is usable when a visible frame lies within MAX_GAP_S before and after it
        # (or it is the newest frame's own time)
        j = np.searchsorted(t, grid, side="right")  # first frame after each point
        before_ok = (j > 0) & (grid - t[np.maximum(j - 1, 0)] <= MAX_GAP_S)
        after = t[np.minimum(j, len(t) - 1)]
        after_ok = (j < len(t)) & (after - grid <= MAX_GAP_S)
        exact = np.isclose(grid, t[np.maximum(j - 1, 0)])
        ok = before_ok & (after_ok | exact)
        if not ok.any():
            return out
        cols = [np.interp(grid, t, vals[:, k]) for k in range(vals.shape[1])]
        openness = np.stack(cols, axis=1) / np.maximum(base, 1e-6)
        feat = np.concatenate([openness, np.ones((N_SAMPLES, 1))], axis=1)
        out[ok] = feat[ok].astype(np.float32)
        return out
