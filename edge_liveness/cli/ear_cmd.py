"""`edge-liveness ear IMAGE_OR_DIR`: eye aspect ratio of the largest face, one JSON line per image.

Output: ``{"file": ..., "face": true, "ear_left": ..., "ear_right": ..., "source": "eye_model",
"mesh_ear_left": ..., "mesh_ear_right": ..., "presence": ...}`` (subject's left/right; ``ear_*`` from the
eye model when its file is present, else from the mesh with ``source`` "mesh"), or
``{"file": ..., "face": false}`` when no face (or no mesh) is found. GIFs are read
through ``cv2.VideoCapture`` (``cv2.imread`` cannot decode GIF); greyscale becomes 3 channels.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}


def read_image(path: str | Path) -> np.ndarray | None:
    """BGR uint8 HxWx3, or None when the file cannot be decoded."""
    path = Path(path)
    img = None
    if path.suffix.lower() != ".gif":
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:  # GIF (and anything imread refuses): first frame through the video reader
        cap = cv2.VideoCapture(str(path))
        ok, frame = cap.read()
        cap.release()
        img = frame if ok else None
    if img is None:
        return None
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(img)


def list_images(target: Path) -> list[Path]:
    if target.is_dir():
        return sorted(p for p in target.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    return [target]


def measure(finder, img: np.ndarray, refiner=None) -> dict:
    """EARs of the largest face; ``refiner`` (an ``eyes.EyeRefiner``) gives the eye model's EAR."""
    from edge_liveness.vision.eye_signals import ear_from_points, mesh_ears as eye_ears

    finder.reset()  # each image stands alone: no tracking across files
    view = finder.process(img)
    if view.landmarks is None:
        return {"face": False}
    mesh_left, mesh_right = eye_ears(view.landmarks.points)
    left, right, source = mesh_left, mesh_right, "mesh"
    if refiner is not None:
        pair = refiner.run(img, view.landmarks.points)
        left, right, source = ear_from_points(pair.left.ear_points), ear_from_points(pair.right.ear_points), "eye_model"
    return {"face": True, "ear_left": round(left, 4), "ear_right": round(right, 4), "source": source,
            "mesh_ear_left": round(mesh_left, 4), "mesh_ear_right": round(mesh_right, 4),
            "presence": round(view.landmarks.presence, 4)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="IMAGE_OR_DIR", help="an image file or a folder of images")
    parser.add_argument("--config", help="TOML config file")


def main(args) -> int:
    from edge_liveness.config import ConfigError, load_settings
    from edge_liveness.vision.eyes import EyeRefiner
    from edge_liveness.vision.runtime import ModelError
    from edge_liveness.vision.tracking import FaceFinder

    target = Path(args.target)
    if not target.exists():
        print(f"edge-liveness ear: {target} does not exist: give an image file or a folder of images", file=sys.stderr)
        return 2
    if not (target.is_dir() or target.is_file()):  # /dev/zero, a FIFO: no image, and a read that may not end
        print(f"edge-liveness ear: {target} is not a regular file: give an image file or a folder of images",
              file=sys.stderr)
        return 2
    try:
        settings = load_settings(args.config)
        finder = FaceFinder.from_settings(settings)
        refiner = EyeRefiner.from_settings(settings)
    except (ConfigError, ModelError) as e:
        print(f"edge-liveness ear: {e}", file=sys.stderr)
        return 2
    bad = 0
    for p in list_images(target):
        img = read_image(p)
        if img is None and not target.is_dir():
            print(f"edge-liveness ear: {p}: not a readable image: give an image file or a folder of images",
                  file=sys.stderr)
            return 2
        if img is None:
            bad += 1
            print(f"edge-liveness ear: {p}: not a readable image, skipped", file=sys.stderr)
            continue
        print(json.dumps({"file": str(p), **measure(finder, img, refiner)}), flush=True)
    return 1 if bad else 0
