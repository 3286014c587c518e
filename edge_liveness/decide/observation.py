"""What one frame tells the decision engine (``FrameObservation``), and ``replay --trace`` files of them.

Its own module so that ``decide/decision.py`` (the attempt state machine) and ``decide/checks.py`` (the active checks
it runs) both import it without importing each other.
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class TraceError(ValueError):
    """A frame-trace line that cannot become a FrameObservation (message is one line)."""


def _opt_float(d: dict[str, Any], key: str) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise TraceError(f"trace field {key!r} must be a finite number or null (got {v!r})")
    return float(v)


@dataclass(frozen=True)
class FrameObservation:
    ts: float                  # seconds, camera timeline (monotonic)
    n_faces: int               # faces the detector/tracker sees
    n_large_faces: int         # faces large enough to count (detection.min_face_frac)
    face_frac: float           # chosen face side / frame short side, 0.0 when none
    yaw: float | None = None   # degrees, None when no landmarks
    pitch: float | None = None
    roll: float | None = None
    p_live: float | None = None        # passive P(live) of this frame; None when not computed
    ear_left: float | None = None
    ear_right: float | None = None
    eyes_visible: bool = False
    blink: bool = False                # a blink completed on this frame (blink/detector.py)
    motions: tuple[str, ...] = ()      # head motions completed on this frame: "turn_left","turn_right","nod"
    departures: tuple[str, ...] = ()   # head motions begun on this frame (past turn_deg / nod_deg), same names

    @classmethod
    def from_trace(cls, d: dict[str, Any]) -> FrameObservation:
        """One ``replay --trace`` JSON line (``{"type":"frame","t":..., ...}``) as an observation.

        ``eyes_visible`` is taken from the line when present, else true when both EARs are.
        """
        if not isinstance(d, dict):
            raise TraceError(f"trace line must be a JSON object (got {type(d).__name__})")
        if d.get("type", "frame") != "frame":
            raise TraceError(f"trace line type {d.get('type')!r} is not 'frame': filter lines with type == 'frame' first")
        ts = _opt_float(d, "t")
        if ts is None:
            raise TraceError("trace line has no 't' (frame time in seconds): record it with `replay --trace`")
        counts = {}
        for k in ("n_faces", "n_large_faces"):
            v = d.get(k, 0)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise TraceError(f"trace field {k!r} must be a non-negative integer (got {v!r})")
            counts[k] = v
        motions = d.get("motions") or ()
        if not isinstance(motions, (list, tuple)) or not all(isinstance(m, str) for m in motions):
            raise TraceError(f"trace field 'motions' must be a list of names (got {motions!r})")
        departures = d.get("departures") or ()
        if not isinstance(departures, (list, tuple)) or not all(isinstance(m, str) for m in departures):
            raise TraceError(f"trace field 'departures' must be a list of names (got {departures!r})")
        ear_l, ear_r = _opt_float(d, "ear_left"), _opt_float(d, "ear_right")
        eyes = d.get("eyes_visible")
        return cls(ts=ts, n_faces=counts["n_faces"], n_large_faces=counts["n_large_faces"],
                   face_frac=_opt_float(d, "face_frac") or 0.0,
                   yaw=_opt_float(d, "yaw"), pitch=_opt_float(d, "pitch"), roll=_opt_float(d, "roll"),
                   p_live=_opt_float(d, "p_live"), ear_left=ear_l, ear_right=ear_r,
                   eyes_visible=bool(eyes) if eyes is not None else (ear_l is not None and ear_r is not None),
                   blink=bool(d.get("blink", False)), motions=tuple(motions),
                   departures=tuple(departures))


def load_trace(path: str | Path) -> list[FrameObservation]:
    """The frame lines of a ``replay --trace`` JSON-lines file (``.gz`` allowed); other line types skipped."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    out: list[FrameObservation] = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError as e:
                    raise TraceError(f"{path}:{n}: not JSON ({e.msg}): a trace is one JSON object per line") from None
                if isinstance(d, dict) and d.get("type", "frame") != "frame":
                    continue
                try:
                    out.append(FrameObservation.from_trace(d))
                except TraceError as e:
                    raise TraceError(f"{path}:{n}: {e}") from None
    except OSError as e:
        raise TraceError(f"{path}: cannot read trace ({e.strerror or e}): give an existing JSON-lines file") from None
    return out
