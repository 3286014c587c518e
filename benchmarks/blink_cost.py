#!/usr/bin/env python3
"""What the learned blink stage costs per frame, on top of the eye-contour model (1 thread).

    python benchmarks/blink_cost.py [VIDEO] [--out benchmarks/results/blink_cost.json]

Frames of a real video go through the face finder once; then, per frame, the eye model alone
(``EyeRefiner.run``) and the whole ``BlinkDetector.update`` (eye model + signals + window + MLP +
rules) are timed; the difference is the blink stage's own cost. Medians and p95 over the frames.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from edge_liveness.blink.detector import BlinkDetector, load_blink_model
from edge_liveness.config import load_settings
from edge_liveness.vision.eyes import EyeRefiner
from edge_liveness.vision.tracking import FaceFinder

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", nargs="?", default=str(REPO.parent / "shared" / "data" / "video" / "tranvanluyt_real.mp4"))
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "blink_cost.json"))
    args = ap.parse_args()
    settings = load_settings()
    finder = FaceFinder.from_settings(settings)
    refiner = EyeRefiner.from_settings(settings)
    if refiner is None:
        print("error: the eye model is missing: run `edge-liveness models fetch`", file=sys.stderr)
        return 2
    det = BlinkDetector(settings.blink, refiner, load_blink_model(settings))
    cap = cv2.VideoCapture(args.video)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while len(frames) < args.frames:
        ok, img = cap.read()
        if not ok:
            break
        lm = finder.process(img).landmarks
        if lm is not None:
            frames.append((img, lm))
    eye_ms, all_ms = [], []
    for rep in range(2):  # the first pass warms caches; the second is measured
        det.reset()
        for i, (img, lm) in enumerate(frames):
            t0 = time.perf_counter()
            refiner.run(img, lm.points)
            t1 = time.perf_counter()
            det.update(i / fps, lm, img)
            t2 = time.perf_counter()
            if rep:
                eye_ms.append((t1 - t0) * 1e3)
                all_ms.append((t2 - t1) * 1e3)
    stage = np.array(all_ms) - np.array(eye_ms)
    res = {"video": Path(args.video).name, "frames": len(frames), "threads": settings.models.num_threads,
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
           "eye_model_ms_p50": round(float(np.median(eye_ms)), 3), "eye_model_ms_p95": round(float(np.percentile(eye_ms, 95)), 3),
           "blink_detector_ms_p50": round(float(np.median(all_ms)), 3), "blink_detector_ms_p95": round(float(np.percentile(all_ms, 95)), 3),
           "blink_stage_over_eye_model_ms_p50": round(float(np.median(stage)), 3),
           "blink_stage_over_eye_model_ms_p95": round(float(np.percentile(stage, 95)), 3),
           "target_ms": 1.5, "command": "python benchmarks/blink_cost.py"}
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
