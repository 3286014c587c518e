"""`edge-liveness replay`: the daemon's pipeline on a recording, as fast as possible.

Prints one JSON line per payload the daemon would publish (decisions, challenge prompts), and with
``--trace`` one line per frame first. What users and tests use to see what a door would decide.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading

from edge_liveness.camera.supervisor import Camera, CameraError, ReplaySource
from edge_liveness.config import ConfigError, load_settings
from edge_liveness.service.logs import setup_logging
from edge_liveness.vision.runtime import ModelError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a video file, an image, or a folder of images")
    p.add_argument("--config", "-c", help="TOML config (default /etc/edge-liveness/edge-liveness.toml when it exists)")
    p.add_argument("--secrets-dir", help="directory of secret files (the signing key signs the printed payloads)")
    p.add_argument("--trace", action="store_true", help="also print one JSON line per frame")
    p.add_argument("--realtime", action="store_true", help="pace frames at the file's rate instead of as fast as possible")
    p.add_argument("--loop", action="store_true", help="start again at the end (stop with Ctrl-C)")
    p.add_argument("--active", choices=["off", "blink", "turn", "blink_and_turn", "challenge"], help="override active.mode")


def _dump(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")


def main(args: argparse.Namespace) -> int:
    from edge_liveness.pipeline import build_pipeline
    from edge_liveness.events.publisher import Publisher

    setup_logging("WARNING")
    overrides = {"active": {"mode": args.active}} if args.active else {}
    try:
        settings = load_settings(args.config, secrets_dir=args.secrets_dir, **overrides)
    except ConfigError as e:
        for p in e.problems:
            print(f"config error: {p}", file=sys.stderr)
        return 2
    setup_logging(max(settings.logging.level, "WARNING", key=["DEBUG", "INFO", "WARNING", "ERROR"].index),
                  settings.logging.format)
    source = ReplaySource(args.source, fps=settings.camera.fps, realtime=args.realtime, loop=args.loop)
    try:
        source.open()  # fail fast with one line on an unreadable file, before loading models
        source.close()
        pipeline = build_pipeline(settings)
    except (CameraError, ModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    key = settings.security.signing_key.get_secret_value().encode() or None
    publisher = Publisher(None, None, settings.device.id, key)
    camera = Camera(source, settings.camera, threaded=False)
    engine = pipeline.engine
    pipeline.always_classify = args.trace
    frames = 0
    try:
        for frame in camera.frames(threading.Event()):
            if frame is None:
                continue
            frames += 1
            result = pipeline.process(frame)
            if args.trace:
                _dump(result.trace(engine.state))
            for out in result.outputs:
                _dump(publisher.submit(out.kind, out.body()))
    except CameraError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    sys.stdout.flush()
    _say_what_was_left(engine, frames)
    # The end of a recording is where the daemon stops (`run --exit-at-end`): an attempt still
    # collecting ends there as it does in the daemon, with a signed fail/shutdown, so both commands
    # print the same payloads and a door never waits on an attempt that nothing will finish.
    out = engine.abort("shutdown")
    if out is not None:
        _dump(publisher.submit(out.kind, out.body()))
    return 0


def _say_what_was_left(engine, frames: int) -> None:
    """Never end in silence: an attempt still collecting, or a recording that never started one."""
    pending = engine.pending()
    if pending is not None:
        print(f"incomplete: attempt {pending['attempt_id']} was still collecting when the recording ended "
              f"({pending['frames']} frames scored over {pending['duration_s']:.2f} s, {pending['blinks']} blinks): "
              f"it ends fail/shutdown, as the daemon publishes when it stops mid-attempt; a longer recording "
              f"gives it a real decision", file=sys.stderr)
    elif not engine.decided:
        print(f"no attempt: none of the {frames} frames showed a face that could start one (one large, frontal "
              f"face: detection.min_face_frac, detection.max_yaw_deg)", file=sys.stderr)
