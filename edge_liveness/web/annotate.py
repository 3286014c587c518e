"""Draw what the pipeline saw on a downscaled copy of a frame: numbers and outlines, never stored.

``Overlay`` carries everything drawn, taken from a ``FrameResult``, the face finder's last view and
the engine's state, so the frame loop hands over references and the drawing happens elsewhere
(the preview encoder thread, or ``snapshot``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edge_liveness.vision.landmarks import LEFT_EYE_RING, RIGHT_EYE_RING

# BGR
GREEN, RED, AMBER, WHITE, GREY = (60, 200, 60), (40, 40, 230), (0, 190, 255), (255, 255, 255), (170, 170, 170)
STATE_COLOURS = {"collecting": AMBER, "cooldown": GREY, "idle": WHITE}


@dataclass(frozen=True)
class Overlay:
    box: tuple[float, float, float, float] | None = None  # chosen face, frame pixels
    eyes: tuple[np.ndarray, ...] = ()  # eye contours (N x 2, frame pixels)
    ear_left: float | None = None
    ear_right: float | None = None
    p_live: float | None = None
    state: str = ""
    prompt: tuple[str, ...] = ()
    verdict: str | None = None  # "pass" / "fail" just after a decision
    reason: str | None = None


def overlay_from(obs: Any, view: Any, state: str, prompt: tuple[str, ...] = (), verdict: str | None = None,
                 reason: str | None = None, p_live: float | None = None) -> Overlay:
    """``obs``: FrameObservation; ``view``: tracking.FaceView of the same frame or None; ``p_live``: the
    attempt's latest passive score when this frame carries none (the models score only some frames)."""
    box, eyes = None, ()
    if view is not None and view.face is not None:
        box = tuple(float(v) for v in view.face.box)
    if view is not None and view.landmarks is not None:
        p = view.landmarks.points
        eyes = (p[list(RIGHT_EYE_RING), :2].copy(), p[list(LEFT_EYE_RING), :2].copy())
    return Overlay(box=box, eyes=eyes, ear_left=_num(obs.ear_left), ear_right=_num(obs.ear_right),
                   p_live=_num(obs.p_live if obs.p_live is not None else p_live), state=state, prompt=tuple(prompt), verdict=verdict, reason=reason)


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _fmt(v: float | None, nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


FONT = cv2.FONT_HERSHEY_SIMPLEX
HALO = np.ones((3, 3), np.uint8)


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, colour: tuple[int, int, int]) -> None:
    """Text with a dark outline, so it reads on any background.

    The outline is the text's own strokes grown by a pixel, not a second, thicker putText: OpenCV
    advances each glyph by its stroke thickness, so a thicker copy runs ahead and its last glyph
    showed as a ghost after the text (issue 27). Hershey fonts draw ASCII only: anything else is dropped
    rather than drawn as '?'."""
    text = text.encode("ascii", "ignore").decode()
    th = max(1, round(scale * 2))
    (w, h), base = cv2.getTextSize(text, FONT, scale, th)
    x, y = org
    x0, y0 = max(0, x - 2), max(0, y - h - 2)
    x1, y1 = min(img.shape[1], x + w + 2), min(img.shape[0], y + base + 2)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.putText(mask, text, (x - x0, y - y0), FONT, scale, 255, th, cv2.LINE_AA)
    halo = cv2.dilate(mask, HALO)[..., None].astype(np.float32) / 255.0
    ink = mask[..., None].astype(np.float32) / 255.0
    roi = img[y0:y1, x0:x1].astype(np.float32) * (1.0 - halo)
    img[y0:y1, x0:x1] = (roi * (1.0 - ink) + np.array(colour, np.float32) * ink).astype(np.uint8)


def draw(image: np.ndarray, ov: Overlay, max_side: int = 480) -> np.ndarray:
    """A new, downscaled BGR image with the overlay; ``image`` is never written to."""
    h, w = image.shape[:2]
    s = min(1.0, max_side / max(h, w))
    out = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) if s < 1 \
        else image.copy()
    scale = max(0.8, min(out.shape[:2]) / 400)  # readable on a phone at 270-480 px wide
    colour = GREEN if ov.verdict == "pass" else RED if ov.verdict == "fail" else STATE_COLOURS.get(ov.state, WHITE)
    if ov.box is not None:
        x0, y0, x1, y1 = (round(v * s) for v in ov.box)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, max(1, round(2 * scale)), cv2.LINE_AA)
    for eye in ov.eyes:
        pts = np.round(eye * s).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [pts], True, (255, 220, 0), 1, cv2.LINE_AA)
    line = round(22 * scale)
    # a dark band behind the numbers: readable over any scene (and over a camera's own timestamp)
    band = out[: 2 * line + round(8 * scale)]
    band[:] = (band * 0.35).astype(np.uint8)
    _text(out, f"P(live) {_fmt(ov.p_live)}  EAR {_fmt(ov.ear_left)}/{_fmt(ov.ear_right)}", (6, line), 0.5 * scale, WHITE)
    status = ov.state or "-"
    if ov.verdict:
        status = f"{ov.verdict.upper()} ({ov.reason})" if ov.reason else ov.verdict.upper()
    _text(out, status, (6, 2 * line), 0.6 * scale, colour)
    if ov.prompt:
        bottom = out[out.shape[0] - line - round(14 * scale):]
        bottom[:] = (bottom * 0.35).astype(np.uint8)
        _text(out, "do: " + ", ".join(a.replace("_", " ") for a in ov.prompt), (6, out.shape[0] - round(10 * scale)),
              0.7 * scale, AMBER)
    return out


def encode_jpeg(img: np.ndarray, quality: int = 75) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR image
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
