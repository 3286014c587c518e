"""A passive bar for one door's camera, from that camera's own real people (``edge-liveness calibrate``).

Each capture chain (camera, lens, light, compression) moves the passive scores' level more than it moves
the gap between a live face and a screen or print shown to the same camera (docs/training.md sections 9
and 13). The shipped bar is set on other people's cameras. Where this camera makes real faces score high,
a bar set on its own real people sits higher, and a replay that fills its view, read as lukewarm, falls
under it. The bar is the level under which ``frames_lost`` of the real people's scored frames fall; it never
goes below the current bar unless the operator allows it (a dim camera would otherwise lower the door's
guard for everyone). Pure arithmetic here; the command runs the pipeline (cli/calibrate_cmd.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median

MIN_RECORDINGS = 5  # people: a bar from one or two faces says more about them than about the camera
MIN_FRAMES = 100  # scored frames in all: the 2 % point of fewer is the lowest frame


class CalibrationError(ValueError):
    """Too little to calibrate on (the message names what to record)."""


@dataclass(frozen=True)
class Calibration:
    bar: float  # the threshold to set (decision.threshold)
    site_bar: float  # where frames_lost of these frames fall under, before the floor
    current: float  # the bar in force now (the config's or the model manifest's)
    lowered: bool  # site_bar < current and the operator allowed a lower bar
    frames_lost: float
    recordings: int
    frames: int
    frames_refused: float  # share of these frames under ``bar``
    recordings_refused: list[str]  # recordings whose median score is under ``bar`` (one attempt each)

    def as_dict(self) -> dict:
        return {"threshold": round(self.bar, 4), "site_bar": round(self.site_bar, 4), "current_threshold": round(self.current, 4),
                "lowered": self.lowered, "frames_lost": self.frames_lost, "recordings": self.recordings, "frames": self.frames,
                "frames_refused_at_threshold": round(self.frames_refused, 4), "recordings_refused_at_threshold": self.recordings_refused}


def quantile_bar(scores: list[float], frames_lost: float) -> float:
    """The lowest bar that at most ``frames_lost`` of ``scores`` fall under (the LOPO rule, converters/lopo/data.py)."""
    s = sorted(scores)
    return float(s[int(math.floor(frames_lost * len(s)))])


def calibrate(scores_by_recording: dict[str, list[float]], current: float, frames_lost: float = 0.02,
              allow_lower: bool = False, min_recordings: int = MIN_RECORDINGS, min_frames: int = MIN_FRAMES) -> Calibration:
    """The bar for this camera from its real people's per-frame P(live) (one list per recording, one person each)."""
    if not 0.0 <= frames_lost < 0.5:
        raise CalibrationError(f"--frames-lost {frames_lost}: give a share of frames in [0, 0.5), e.g. 0.02")
    used = {k: v for k, v in scores_by_recording.items() if v}
    n = sum(len(v) for v in used.values())
    if len(used) < min_recordings or n < min_frames:
        raise CalibrationError(f"{len(used)} recordings with a scored face ({n} frames): record at least {min_recordings} real "
                               f"people at this camera ({min_frames} scored frames in all; a few seconds each, face large and "
                               f"frontal), then run calibrate again")
    site = quantile_bar([x for v in used.values() for x in v], frames_lost)
    lowered = site < current and allow_lower
    bar = site if (site >= current or allow_lower) else current
    refused = sum(x < bar for v in used.values() for x in v) / n
    return Calibration(bar, site, current, lowered, frames_lost, len(used), n, refused,
                       sorted(k for k, v in used.items() if median(v) < bar))
