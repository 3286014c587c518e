"""`edge-liveness calibrate`: the passive bar for this door's camera, from recordings of its own real people.

    edge-liveness calibrate door/alice.mp4 door/bob.mp4 ... [--frames-lost 0.02] [--allow-lower] [--json]

Each recording: one real person at this door, filmed by this camera (a few seconds, face large and
frontal). The daemon's pipeline scores every frame with a face as the decision would read it; the bar is
where ``--frames-lost`` of those frames fall under (decide/calibration.py), never below the bar in force
unless ``--allow-lower``. Prints the ``[decision]`` lines to put in the config (stdout; a summary on
stderr); the config is the operator's to change, nothing is written. Reads the recordings only: no image
is written anywhere. Why and what it was measured to do: docs/decision.md ("Site calibration").
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from edge_liveness.camera.supervisor import Camera, CameraError, ReplaySource
from edge_liveness.config import ConfigError, load_settings
from edge_liveness.decide.calibration import MIN_RECORDINGS, CalibrationError, calibrate
from edge_liveness.service.logs import setup_logging
from edge_liveness.vision.runtime import ModelError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recordings", nargs="+", help="videos or image folders, one real person each, filmed by this door's camera")
    p.add_argument("--config", "-c", help="TOML config (default /etc/edge-liveness/edge-liveness.toml when it exists)")
    p.add_argument("--frames-lost", type=float, default=0.02,
                   help="share of these real people's frames the bar may put under it (default 0.02)")
    p.add_argument("--allow-lower", action="store_true",
                   help="allow a bar below the one in force (a dim camera: fewer real people refused, more attacks through)")
    p.add_argument("--min-recordings", type=int, default=MIN_RECORDINGS, help=f"fewest people to calibrate on (default {MIN_RECORDINGS})")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of config lines")


def score_recording(pipeline, path: Path, fps: float) -> list[float]:
    """Every frame's P(live) with one large face, as the decision reads it (the schedule aside: all are scored)."""
    pipeline.reset()
    camera = Camera(ReplaySource(path, fps=fps), pipeline.settings.camera, threaded=False)
    out = []
    for frame in camera.frames(threading.Event()):
        if frame is None:
            continue
        r = pipeline.process(frame)
        v = r.view
        if v is None or not v.large or v.n_large_faces > 1:
            continue
        p = pipeline.frame_verdict(r.scores)
        if p is not None:
            out.append(p)
    return out


def main(args: argparse.Namespace) -> int:
    from edge_liveness.pipeline import build_pipeline

    setup_logging("WARNING")
    try:
        settings = load_settings(args.config)
    except ConfigError as e:
        for p in e.problems:
            print(f"config error: {p}", file=sys.stderr)
        return 2
    if not 0.0 <= args.frames_lost < 0.5 or args.min_recordings < 1:
        print(f"error: --frames-lost {args.frames_lost} / --min-recordings {args.min_recordings}: give a share of frames in "
              f"[0, 0.5) (e.g. 0.02) and at least 1 recording", file=sys.stderr)
        return 2
    paths = [Path(r) for r in args.recordings]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"error: no such recording: {', '.join(missing)}: give video files or folders of images", file=sys.stderr)
        return 2
    try:
        pipeline = build_pipeline(settings)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    pipeline.always_classify = True
    current = pipeline.engine.threshold
    scores: dict[str, list[float]] = {}
    t0 = time.monotonic()
    for i, path in enumerate(paths, 1):
        try:
            scores[str(path)] = score_recording(pipeline, path, settings.camera.fps)
        except CameraError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        n = len(scores[str(path)])
        note = "" if n else " (no large frontal face: is this a real person at this camera?)"
        print(f"calibrate: {i}/{len(paths)} {path}: {n} frames scored{note} ({time.monotonic() - t0:.0f} s)",
              file=sys.stderr, flush=True)
    pipeline.close()
    try:
        cal = calibrate(scores, current, args.frames_lost, args.allow_lower, args.min_recordings)
    except CalibrationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(cal.as_dict()))
        return 0
    if cal.site_bar < cal.current and not cal.lowered:
        why = (f"this camera's real people sit lower ({cal.site_bar:.4f}); the bar stays at the one in force "
               f"(--allow-lower would lower it, letting more attacks through)")
    else:
        why = f"{cal.frames_lost:.0%} of these frames under it"
    print(f"calibrate: {cal.recordings} recordings, {cal.frames} frames: threshold {cal.bar:.4f} (now {cal.current:.4f}): {why}; "
          f"at it {cal.frames_refused:.1%} of frames and {len(cal.recordings_refused)} of {cal.recordings} recordings "
          f"(median) fall under", file=sys.stderr)
    for r in cal.recordings_refused:
        print(f"calibrate: under the bar on its median: {r}", file=sys.stderr)
    print(f"# edge-liveness calibrate: {cal.recordings} recordings, {cal.frames} frames, {cal.frames_lost:g} of frames lost "
          f"(site bar {cal.site_bar:.4f}, before {cal.current:.4f})")
    print("[decision]")
    print(f"threshold = {cal.bar:.4f}")
    return 0
