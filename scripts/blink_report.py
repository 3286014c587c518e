"""Blinks found in the shared face videos, eye model vs mesh EAR, and what the eye model costs per frame.

Writes benchmarks/results/blink_videos.json. For each video: the frames where a blink completed
(the frame the eyes reopen on) with the eye model and with the mesh fallback, frames with visible
eyes, and the eye model's time per visible frame (two crops + two invokes). Also a still frame
repeated 90 times at 30 fps (must give no blink). Which of these blinks are real was judged by eye
on eye crops of the frames: see docs/vision.md.

    .venv/bin/python scripts/blink_report.py [--data ../shared/data/video] [--config F]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
VIDEOS = ("tranvanluyt_real.mp4", "apfol_real2.webm", "zubair_real.mov", "tranvanluyt_fake_screen_replay.mp4",
          "apfol_fake2.webm", "zubair_fake_phone_replay.mp4")


def frames(path: Path):
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    i = 0
    try:
        while True:
            ok, f = cap.read()
            if not ok:
                return
            yield i, i / fps, f
            i += 1
    finally:
        cap.release()


def run(finder, settings, refiner, seq) -> dict:
    from edge_liveness.blink import BlinkDetector

    finder.reset()
    eye, mesh = BlinkDetector(settings.blink, refiner), BlinkDetector(settings.blink)
    out = {"frames": 0, "visible": 0, "blinks_eye_model": [], "blinks_mesh": [], "closed_s_eye_model": []}
    ms = []
    for i, ts, f in seq:
        lm = finder.process(f).landmarks
        t = time.perf_counter()
        a = eye.update(ts, lm, f)
        dt = (time.perf_counter() - t) * 1e3
        b = mesh.update(ts, lm, f.shape)
        out["frames"] += 1
        if a.visible:
            out["visible"] += 1
            ms.append(dt)
        if a.blink:
            out["blinks_eye_model"].append(i)
            out["closed_s_eye_model"].append(round(a.closed_s, 3))
        if b.blink:
            out["blinks_mesh"].append(i)
    if ms:
        out["eyes_ms_p50"] = round(float(np.median(ms)), 3)
        out["eyes_ms_p95"] = round(float(np.percentile(ms, 95)), 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "video"))
    ap.add_argument("--config")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "blink_videos.json"))
    args = ap.parse_args()

    from edge_liveness.config import load_settings
    from edge_liveness.eyes import EyeRefiner
    from edge_liveness.modelstore import ModelStore
    from edge_liveness.tracking import FaceFinder

    settings = load_settings(args.config)
    finder = FaceFinder.from_settings(settings)
    refiner = EyeRefiner(ModelStore.from_settings(settings).locate("eyes"), settings.models.num_threads)
    data = Path(args.data)
    videos = {}
    for name in VIDEOS:
        if (data / name).is_file():
            videos[name] = run(finder, settings, refiner, frames(data / name))
            print(name, json.dumps(videos[name]), flush=True)
    still = next(f for i, _, f in frames(data / VIDEOS[0]) if i == 10)
    videos["still_photo (tranvanluyt_real.mp4 frame 10 x 90 at 30 fps)"] = run(
        finder, settings, refiner, ((i, i / 30.0, still) for i in range(90)))
    b = settings.blink
    result = {"videos": videos,
              "settings": {"eye_model_relative_closed": b.eye_model_relative_closed, "relative_closed": b.relative_closed,
                           "min_closed_s": b.min_closed_s, "max_closed_s": b.max_closed_s, "threads": settings.models.num_threads},
              "eyes_ms": "BlinkDetector.update with the eye model per visible frame (both eyes: 2 warps + 2 invokes + EAR); "
                         "this x86 CPU, shared with other jobs",
              "command": "python scripts/blink_report.py"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
