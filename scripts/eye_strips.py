#!/usr/bin/env python3
"""Contact sheets of a video's eye region, one tile per frame, to count blinks by eye.

    python scripts/eye_strips.py VIDEO --out DIR [--first N] [--last N] [--per-sheet 120]

Each tile is the band across both eyes (from the face mesh: the eye corners, widened), scaled to a
fixed size, labelled with its decoded frame number. Writing ``tests/data/<video>.blinks.csv`` by
looking at these sheets is how the committed counts were made (see tests/data/README.md). Face
images: the sheets are written only where --out says, for a person's own annotation work.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

import cv2
import numpy as np

from edge_liveness.camera.supervisor import Camera, ReplaySource
from edge_liveness.config import load_settings
from edge_liveness.vision.tracking import FaceFinder

TILE_W, TILE_H, COLS = 160, 48, 8


def eye_band(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    a, b = points[33, :2], points[263, :2]  # outer eye corners
    centre = (a + b) / 2
    width = float(np.linalg.norm(b - a)) * 1.5
    angle = float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, TILE_W / max(width, 1.0))
    m[:, 2] += (TILE_W / 2 - centre[0], TILE_H / 2 - centre[1])
    return cv2.warpAffine(frame, m, (TILE_W, TILE_H), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("--out", required=True)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--last", type=int, default=10**9)
    ap.add_argument("--per-sheet", type=int, default=120)
    args = ap.parse_args()
    settings = load_settings()
    finder = FaceFinder.from_settings(settings)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cam = Camera(ReplaySource(args.video, realtime=False), settings.camera, threaded=False)
    tiles: list[tuple[int, np.ndarray]] = []
    sheets = 0

    def flush() -> None:
        nonlocal sheets, tiles
        if not tiles:
            return
        rows = (len(tiles) + COLS - 1) // COLS
        sheet = np.zeros((rows * (TILE_H + 14), COLS * TILE_W, 3), np.uint8)
        for k, (i, t) in enumerate(tiles):
            y, x = (k // COLS) * (TILE_H + 14), (k % COLS) * TILE_W
            sheet[y + 14:y + 14 + TILE_H, x:x + TILE_W] = t
            cv2.putText(sheet, str(i), (x + 2, y + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
        name = out / f"{Path(args.video).stem}_{tiles[0][0]:05d}-{tiles[-1][0]:05d}.png"
        cv2.imwrite(str(name), sheet)
        print(name, file=sys.stderr)
        sheets += 1
        tiles = []

    for frame in cam.frames(threading.Event()):
        view = finder.process(frame.image)
        if not (args.first <= frame.index <= args.last):
            continue
        tile = np.zeros((TILE_H, TILE_W, 3), np.uint8)
        if view.landmarks is not None:
            tile = eye_band(frame.image, view.landmarks.points)
        tiles.append((frame.index, tile))
        if len(tiles) >= args.per_sheet:
            flush()
    flush()
    return 0 if sheets else 1


if __name__ == "__main__":
    sys.exit(main())
