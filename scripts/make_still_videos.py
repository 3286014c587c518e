#!/usr/bin/env python3
"""Still photos made into videos: the print/photo attack the blink check must stop.

    python scripts/make_still_videos.py OUT_DIR [--seconds 10] [--tilted]

Each `live_selfie.jpg` of ../shared/data/liveness/real_people/td_real becomes OUT_DIR/still_<id>.mp4,
the same frame for --seconds at 30 fps, longest side 640 px, and OUT_DIR/index.csv labels them
`spoof` with attack type `print(still photo)` and the person. ``--tilted`` writes
OUT_DIR/tilted_<id>.mp4 instead: the photo as a flat picture swung in 3D in front of the camera (up to
30 degrees about the vertical axis, 20 about the horizontal, 8 in plane; attack type
`print(photo tilted in 3D)`), the attacker's answer to a head-turn check. Written only where asked
(they are faces): CI writes them to a temporary folder.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2
import numpy as np

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def tilted_picture(img: np.ndarray, t: float) -> np.ndarray:
    """``img`` as a flat picture rotated about its centre at time ``t`` (s), seen by a pinhole camera
    (focal length 1.2 x the longest side): the homography of a plane, background grey."""
    h, w = img.shape[:2]
    f = 1.2 * max(h, w)
    ay, ax, az = (np.deg2rad(a * np.sin(2 * np.pi * t / period)) for a, period in ((30, 3.0), (20, 2.3), (8, 4.1)))
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    r = rz @ ry @ rx
    k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    centre = np.array([0, 0, f])
    to_plane = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, f], [0, 0, 1.0]])  # pixel -> point on the plane z = f
    hom = k @ np.hstack([r, ((np.eye(3) - r) @ centre)[:, None]]) @ to_plane
    return cv2.warpPerspective(img, hom / hom[2, 2], (w, h), borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--shared", default=str(SHARED))
    ap.add_argument("--tilted", action="store_true", help="the photo swung in 3D instead of held still")
    args = ap.parse_args()
    src = Path(args.shared) / "liveness" / "real_people" / "td_real"
    photos = sorted(src.glob("*/live_selfie.jpg"))
    if not photos:
        print(f"error: no live_selfie.jpg under {src}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in photos:
        img = cv2.imread(str(p))
        if img is None:
            print(f"skipped (unreadable): {p}", file=sys.stderr)
            continue
        h, w = img.shape[:2]
        s = 640 / max(h, w)
        img = cv2.resize(img, (int(w * s) // 2 * 2, int(h * s) // 2 * 2), interpolation=cv2.INTER_AREA)
        name = f"{'tilted' if args.tilted else 'still'}_{p.parent.name[-8:]}.mp4"
        vw = cv2.VideoWriter(str(out / name), cv2.VideoWriter_fourcc(*"mp4v"), 30, (img.shape[1], img.shape[0]))
        for i in range(int(args.seconds * 30)):
            vw.write(tilted_picture(img, i / 30) if args.tilted else img)
        vw.release()
        attack = "print(photo tilted in 3D)" if args.tilted else "print(still photo)"
        rows.append({"file": name, "label": "spoof", "attack_type": attack, "person": p.parent.name})
    with open(out / "index.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["file", "label", "attack_type", "person"])
        wr.writeheader()
        wr.writerows(rows)
    print(f"{len(rows)} {'tilted' if args.tilted else 'still'} photo videos in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
