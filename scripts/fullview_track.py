"""Where the replayed picture is in a replay video, frame by frame, and the crop taken from it.

The table (scripts/fullview_screens.json) holds, per video, keyframe quadrilaterals placed by
looking at the frames; here they are interpolated, each side is snapped to the picture's edge in
every frame, and the crop is the largest upright rectangle of the output's aspect ratio inside the
tracked quad shrunk by the margin. scripts/fullview_replays.py writes the videos.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

TABLE = Path(__file__).resolve().parent / "fullview_screens.json"


@dataclass(frozen=True)
class Screen:
    """One table entry: where the replayed picture is in one video."""

    file: str  # under <shared>/video
    person: str
    size: tuple[int, int]  # output (width, height)
    frames: tuple[int, int]  # [start, stop) frame indices kept (the rest shows no usable screen)
    margin: tuple[float, float, float, float]  # px (source) each side (top, right, bottom, left) moves inward after tracking
    search: tuple[int, int, int, int]  # px each side (top, right, bottom, left) may move from the keyframe prior; 0 = keyframes only
    keyframes: dict[int, np.ndarray]  # frame -> 4x2 corners TL, TR, BR, BL (source px)
    track: bool = False  # prior = the previous frame's snapped quad moved as the keyframes move
    note: str = ""
    sha256: str = ""  # the source bytes the keyframes were placed on

    @property
    def stem(self) -> str:
        return Path(self.file).stem


def _quad(v: list) -> np.ndarray:
    a = np.asarray(v, np.float64)
    if a.shape == (4,):  # [x0, y0, x1, y1] shorthand for an upright rectangle
        x0, y0, x1, y1 = a
        a = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
    if a.shape != (4, 2):
        raise ValueError(f"a keyframe needs 4 corners or [x0, y0, x1, y1], got {v}")
    return a


def load_table(path: Path = TABLE) -> dict[str, Screen]:
    raw = json.loads(path.read_text())
    out = {}
    for name, e in raw["videos"].items():
        kf = {int(k): _quad(v) for k, v in e["keyframes"].items()}
        search = e["search"] if isinstance(e["search"], list) else [e["search"]] * 4
        margin = e["margin"] if isinstance(e["margin"], list) else [e["margin"]] * 4
        out[name] = Screen(name, e["person"], tuple(e["size"]), tuple(e["frames"]), tuple(float(v) for v in margin),
                           tuple(int(v) for v in search), dict(sorted(kf.items())), bool(e.get("track", False)),
                           e.get("note", ""), e.get("sha256", ""))
    return out


# --- tracking --------------------------------------------------------------------------------------

def prior_quad(screen: Screen, i: int) -> np.ndarray:
    """The keyframes linearly interpolated at frame ``i`` (held beyond the first and last)."""
    keys = list(screen.keyframes)
    if i <= keys[0]:
        return screen.keyframes[keys[0]].copy()
    if i >= keys[-1]:
        return screen.keyframes[keys[-1]].copy()
    j = int(np.searchsorted(keys, i, side="right"))
    a, b = keys[j - 1], keys[j]
    t = (i - a) / (b - a)
    return (1 - t) * screen.keyframes[a] + t * screen.keyframes[b]


def _line_through(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return np.cross(np.append(p, 1.0), np.append(q, 1.0))


def _corners(sides: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Corners TL, TR, BR, BL where consecutive side lines (top, right, bottom, left) meet."""
    lines = [_line_through(a, b) for a, b in sides]
    pts = []
    for k in range(4):
        x = np.cross(lines[k - 1], lines[k])  # left & top -> TL, top & right -> TR, ...
        pts.append(x[:2] / x[2])
    return np.array(pts)


def snap_quad(gray: np.ndarray, prior: np.ndarray, search: tuple[int, int, int, int], min_step: float = 6.0) -> np.ndarray:
    """Move each side of ``prior`` to the picture's edge within ``search[side]`` px: along 17 normals per
    side, the strongest dark-outside -> bright-inside step (the bezel, the player's panels and the
    display's black border are all darker than the picture's edge), then a line fitted through the
    steps with outliers dropped. A side with too few clear steps (off the frame, a hand over it)
    keeps its prior."""
    h, w = gray.shape
    sides = []
    for k in range(4):
        a, b = prior[k], prior[(k + 1) % 4]
        if search[k] <= 0:
            sides.append((a, b))
            continue
        u = (b - a) / max(np.linalg.norm(b - a), 1e-6)
        n = np.array([-u[1], u[0]])  # inward for corners in clockwise (image) order
        ts = np.linspace(0.12, 0.88, 17)
        ds = np.arange(-search[k] - 1, search[k] + 2, dtype=np.float64)
        pts = a[None, None] + ts[:, None, None] * (b - a)[None, None] + ds[None, :, None] * n[None, None]
        mx, my = pts[..., 0].astype(np.float32), pts[..., 1].astype(np.float32)
        prof = cv2.remap(gray, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0)
        inside = (mx >= 1) & (mx <= w - 2) & (my >= 1) & (my <= h - 2)
        step = prof[:, 2:] - prof[:, :-2]  # at offsets ds[1:-1]
        step[~(inside[:, 2:] & inside[:, :-2])] = -np.inf
        best = np.argmax(step, axis=1)
        ok = step[np.arange(len(ts)), best] >= min_step
        tt, dd = ts[ok], ds[1:-1][best[ok]]
        d0 = d1 = 0.0
        if len(tt) >= 6:
            keep = np.ones(len(tt), bool)
            for _ in range(3):
                c = np.polyfit(tt[keep], dd[keep], 1)
                r = np.abs(np.polyval(c, tt) - dd)
                keep = r <= max(2.0, 2.5 * float(np.median(r[keep])))
                if keep.sum() < 6:
                    break
            if keep.sum() >= 6:
                c = np.polyfit(tt[keep], dd[keep], 1)
                d0, d1 = float(np.polyval(c, 0.0)), float(np.polyval(c, 1.0))
        sides.append((a + d0 * n, b + d1 * n))
    quad = _corners(sides)
    # a fitted side that tilted wildly (two edges mixed) is not the screen: keep the prior there
    if np.max(np.abs(quad - prior)) > 2 * max(search) + 2:
        return prior.copy()
    return quad


def _shrink(quad: np.ndarray, margin: tuple[float, float, float, float]) -> np.ndarray:
    sides = []
    for k in range(4):
        a, b = quad[k], quad[(k + 1) % 4]
        u = (b - a) / max(np.linalg.norm(b - a), 1e-6)
        n = np.array([-u[1], u[0]])
        sides.append((a + margin[k] * n, b + margin[k] * n))
    return _corners(sides)


def crop_rect(quad: np.ndarray, margin: tuple[float, float, float, float], size: tuple[int, int], frame_wh: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest upright rectangle of the output's exact aspect ratio inside ``quad`` shrunk by
    ``margin`` and inside the frame, nearest the quad's centre among the largest: (x, y, w, h)."""
    q = _shrink(quad, margin)
    ow, oh = size
    g = math.gcd(ow, oh)
    uw, uh = ow // g, oh // g  # w = k*uw, h = k*uh: one scale for both axes, exactly
    ar = oh / ow
    # half-planes a.p <= b: the four sides (outward normals) and the frame
    planes = []
    for k in range(4):
        a, b = q[k], q[(k + 1) % 4]
        u = (b - a) / max(np.linalg.norm(b - a), 1e-6)
        out_n = np.array([u[1], -u[0]])
        planes.append((out_n, float(out_n @ a)))
    fw, fh = frame_wh
    planes += [(np.array([-1.0, 0]), 0.0), (np.array([0, -1.0]), 0.0), (np.array([1.0, 0]), float(fw)), (np.array([0, 1.0]), float(fh))]
    # centres on a 2 px grid: the best one is within a pixel of the true optimum, and the slack
    # below absorbs that
    lo, hi = q.min(0), q.max(0)
    xs, ys = np.arange(lo[0], hi[0] + 1, 2.0), np.arange(lo[1], hi[1] + 1, 2.0)
    cx, cy = np.meshgrid(xs, ys)
    half = np.full(cx.shape, np.inf)
    for n, b in planes:
        half = np.minimum(half, (b - n[0] * cx - n[1] * cy) / (abs(n[0]) + abs(n[1]) * ar))
    best = float(half.max())
    if best < 8:
        raise ValueError(f"no usable screen area in quad {quad.round(1).tolist()}")
    centre = q.mean(0)
    near = half >= best - 1.0
    d = (cx - centre[0]) ** 2 + (cy - centre[1]) ** 2
    d[~near] = np.inf
    j = np.unravel_index(int(np.argmin(d)), d.shape)
    x_c, y_c, hw = float(cx[j]), float(cy[j]), float(half[j])
    k = int(min((2 * hw - 2) / uw, (2 * hw * ar - 2) / uh))  # 1 px of slack each side for rounding the origin
    w, h = k * uw, k * uh
    x0 = int(math.ceil(x_c - w / 2))
    y0 = int(math.ceil(y_c - h / 2))
    return max(0, min(x0, fw - w)), max(0, min(y0, fh - h)), w, h


def screen_quads(frames: Iterable[np.ndarray], screen: Screen, start: int) -> list[np.ndarray]:
    """The tracked screen quad of each frame (the frames are ``start``, ``start + 1``, ...): snapped per
    frame, then each corner replaced by the median of itself and its neighbours in time (a median
    keeps steady motion, drops a one-frame snap onto the wrong edge). With ``screen.track`` each
    frame starts from the previous one's quad (a phone that wanders between keyframes), and falls
    back to the keyframes when that drifts further from them than twice the search."""
    raw: list[np.ndarray] = []
    for j, img in enumerate(frames):
        i = start + j
        prior = prior_quad(screen, i)
        if screen.track and raw:
            moved = raw[-1] + prior - prior_quad(screen, i - 1)
            if np.max(np.abs(moved - prior)) <= 2 * max(screen.search):
                prior = moved
        if max(screen.search) > 0:
            gray = cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32), (5, 5), 0)
            raw.append(snap_quad(gray, prior, screen.search))
        else:
            raw.append(prior)
    arr = np.array(raw)
    if max(screen.search) > 0 and len(arr) >= 3:
        padded = np.concatenate([arr[:1], arr, arr[-1:]])
        arr = np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)
    return list(arr)
