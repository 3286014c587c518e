"""`edge-liveness snapshot`: one annotated frame, for aiming the camera without a browser.

Reads a few frames (a live camera needs them to settle its exposure; the landmark tracker needs one
to lock on), runs the real pipeline on them, writes the last frame that showed a face (else the last
frame) with the face box and eye contours drawn, and prints one block: face size, yaw, pitch and
brightness, each against the ``detection.*`` limit that decides whether a face starts an attempt.
The image goes only where ``-o`` says: this command is the installer asking for it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

EXIT_OK, EXIT_USAGE = 0, 2
# Mean grey level (0-255) of the face region that the face models handle well; outside it the
# detector misses faces and P(live) drifts. A guide, not a config limit.
BRIGHTNESS_GUIDE = (60, 200)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="TOML config (default /etc/edge-liveness/edge-liveness.toml when it exists)")
    p.add_argument("--secrets-dir", help="directory of secret files (default $CREDENTIALS_DIRECTORY)")
    p.add_argument("--source", help="override camera.source (device index, /dev/videoN, picamera2, URL, file, folder)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.jpg", help="where to write the annotated frame")
    p.add_argument("--frames", type=int, default=15, help="frames to read before taking the shot (default 15)")


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    ok: bool | None  # None: no limit applies
    limit: str
    advice: bool = False  # a guide, not one of the limits that decide whether an attempt starts


def assess(result: Any, view: Any, settings: Any) -> list[Check]:
    """The numbers an installer aims by, each against its limit."""
    det = settings.detection
    o = result.obs
    img = result.frame.image
    checks = []
    many = det.multiple_faces == "reject" and o.n_large_faces > 1
    checks.append(Check("faces", str(o.n_faces), o.n_faces >= 1 and not many,
                        "exactly one large face (detection.multiple_faces = reject)" if det.multiple_faces == "reject"
                        else "at least one"))
    checks.append(Check("face size", f"{o.face_frac:.2f} of the frame's short side" if o.n_faces else "no face",
                        o.n_faces >= 1 and o.face_frac >= det.min_face_frac, f">= detection.min_face_frac {det.min_face_frac:g}"))
    # no landmarks on a detected face (a poor view, or not a face at all): an attempt waits for a pose
    yaw_ok = (None if not o.n_faces else False) if o.yaw is None else abs(o.yaw) <= det.max_yaw_deg
    checks.append(Check("yaw", ("no landmarks" if o.n_faces else "-") if o.yaw is None else f"{o.yaw:+.1f} deg",
                        yaw_ok, f"|yaw| <= detection.max_yaw_deg {det.max_yaw_deg:g}"))
    checks.append(Check("pitch", "-" if o.pitch is None else f"{o.pitch:+.1f} deg", None,
                        "no detection.* limit (a camera mounted high shows negative pitch)"))
    region = img
    if view is not None and view.face is not None:
        h, w = img.shape[:2]
        x0, y0, x1, y1 = view.face.box
        crop = img[max(0, int(y0)):min(h, int(y1)), max(0, int(x0)):min(w, int(x1))]
        region = crop if crop.size else img
    grey = float(np.mean(cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)))
    lo, hi = BRIGHTNESS_GUIDE
    where = "face" if region is not img else "whole frame"
    checks.append(Check("brightness", f"{grey:.0f} of 255 ({where})", lo <= grey <= hi,
                        f"guide {lo}-{hi}; no detection.* limit", advice=True))
    return checks


def render(checks: list[Check], out: Path, shape: tuple[int, ...], source: str, index: int) -> str:
    lines = [f"snapshot {out} ({shape[1]}x{shape[0]}, frame {index} of {source})"]
    for c in checks:
        mark = "-" if c.ok is None else "ok" if c.ok else "NO"
        lines.append(f"  {c.name:<11} {c.value:<36} {mark:<3} {c.limit}")
    bad = [c.name for c in checks if c.ok is False and not c.advice]
    warn = [c.name for c in checks if c.ok is False and c.advice]
    verdict = "  ready: a face like this starts an attempt" if not bad else f"  not ready: fix {', '.join(bad)}"
    lines.append(verdict + (f" (but check the {', '.join(warn)})" if warn else ""))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from edge_liveness.camera.supervisor import CameraError, check_frame, open_source
    from edge_liveness.config import ConfigError, load_settings
    from edge_liveness.pipeline import build_pipeline
    from edge_liveness.vision.runtime import ModelError
    from edge_liveness.web.annotate import draw, overlay_from
    from edge_liveness.web.hub import tap

    out = Path(args.output)
    if out.suffix.lower() not in (".jpg", ".jpeg"):
        print(f"snapshot: -o {out}: give a .jpg file name", file=sys.stderr)
        return EXIT_USAGE
    if not out.parent.is_dir():
        print(f"snapshot: -o {out}: folder {out.parent} does not exist: create it or write elsewhere", file=sys.stderr)
        return EXIT_USAGE
    if not 1 <= args.frames <= 1000:
        print(f"snapshot: --frames must be 1 to 1000 (got {args.frames})", file=sys.stderr)
        return EXIT_USAGE
    try:
        overrides = {"camera": {"source": args.source, "realtime": False, "loop": False}} if args.source \
            else {"camera": {"realtime": False, "loop": False}}
        settings = load_settings(args.config, secrets_dir=args.secrets_dir, **overrides)
        pipeline = build_pipeline(settings)
    except ConfigError as e:
        for p in e.problems:
            print(f"config error: {p}", file=sys.stderr)
        return EXIT_USAGE
    except ModelError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    finder = tap(pipeline)
    source = open_source(settings.camera.source, settings.camera)
    best = last = None
    try:
        source.open()
        for _ in range(args.frames):
            img, ts = source.read()
            if img is None:
                break
            img, _why = check_frame(img)
            if img is None:
                continue
            from edge_liveness.camera.supervisor import Frame

            result = pipeline.process(Frame(img, float(ts or 0.0), index=(last[0].frame.index + 1) if last else 0))
            last = (result, finder.last)
            if result.obs.n_faces:
                best = last
    except CameraError as e:
        print(f"snapshot: {e}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        source.close()
    if last is None:
        print(f"snapshot: no frame from {settings.camera.source}: check camera.source / --source", file=sys.stderr)
        return EXIT_USAGE
    result, view = best or last
    image = draw(result.frame.image, overlay_from(result.obs, view, "snapshot"), max(result.frame.image.shape[:2]))
    if not cv2.imwrite(str(out), image):
        print(f"snapshot: cannot write {out}: check the folder's permissions and free space", file=sys.stderr)
        return EXIT_USAGE
    print(render(assess(result, view, settings), out, result.frame.image.shape, source.name, result.frame.index))
    return EXIT_OK
