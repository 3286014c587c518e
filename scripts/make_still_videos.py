#!/usr/bin/env python3
"""Still photos made into videos: the print/photo attack the blink check must stop.

    python scripts/make_still_videos.py OUT_DIR [--seconds 10]

Each `live_selfie.jpg` of ../shared/data/liveness/real_people/td_real (people the passive model never
saw) becomes OUT_DIR/still_<id>.mp4, the same frame for --seconds at 30 fps, longest side 640 px, and
OUT_DIR/index.csv labels them `spoof` with attack type `print(still photo)` and the person. Written
only where asked (they are faces): CI writes them to a temporary folder.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--shared", default=str(SHARED))
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
        name = f"still_{p.parent.name[-8:]}.mp4"
        vw = cv2.VideoWriter(str(out / name), cv2.VideoWriter_fourcc(*"mp4v"), 30, (img.shape[1], img.shape[0]))
        for _ in range(int(args.seconds * 30)):
            vw.write(img)
        vw.release()
        rows.append({"file": name, "label": "spoof", "attack_type": "print(still photo)", "person": p.parent.name})
    with open(out / "index.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["file", "label", "attack_type", "person"])
        wr.writeheader()
        wr.writerows(rows)
    print(f"{len(rows)} still videos in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
