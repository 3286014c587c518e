"""`edge-liveness blinks`: measure the blink check on annotated video, and train its model.

    blinks score DIR [--json] [--tolerance N] [--out FILE]
    blinks train DATA --out DIR [--holdout PERSON ...]   (workstation: needs TensorFlow)

``score`` finds every video under DIR with an annotation beside it (a ZJU/eyeblink8 ``.tag`` with an
optional ``.framemap.csv``, or ``<video>.blinks.csv``), replays it through the daemon's pipeline and
prints per clip and in total: annotated, found, missed, false, precision, recall, F1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_liveness.camera.supervisor import CameraError
from edge_liveness.config import ConfigError, load_settings
from edge_liveness.service.logs import setup_logging
from edge_liveness.cli.progress import progress_line
from edge_liveness.vision.runtime import ModelError


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="blinks_command", metavar="{score,train}")
    s = sub.add_parser("score", help="score the blink check on annotated videos")
    s.add_argument("dir", help="a folder (searched recursively) or one video with its annotation beside it")
    s.add_argument("--config", "-c", help="TOML config (default /etc/edge-liveness/edge-liveness.toml when it exists)")
    s.add_argument("--videos", help="folder holding the videos of <relpath>.blinks.csv annotations kept under DIR "
                                    "(e.g. tests/data/blinks with --videos ../shared/data)")
    s.add_argument("--json", action="store_true", help="print the whole report as JSON")
    s.add_argument("--tolerance", type=int, default=None,
                   help="frames a detection may lie outside the annotated blink and still match (default 2)")
    s.add_argument("--out", help="also write the JSON report to this file")
    t = sub.add_parser("train", help="workstation: train the blink model on annotated clips (needs TensorFlow)")
    t.add_argument("data", help="folder of annotated clips (e.g. ../shared/data/blink/zju)")
    t.add_argument("--out", required=True, help="output folder: blink_mlp.tflite, its .json manifest, signal cache")
    t.add_argument("--holdout", nargs="*", default=[], help="people (clip-name prefix before '_') never trained or tuned on")
    t.add_argument("--folds", type=int, default=4, help="leave-people-out folds over the training people")
    t.add_argument("--epochs", type=int, default=60)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--config", "-c", help="TOML config for the pipeline (default: built-in)")


def _progress(i: int, n: int, name: str) -> None:
    progress_line(f"[{i}/{n}] {name}")


def score(args: argparse.Namespace) -> int:
    from edge_liveness.recordings.blink_annotations import AnnotationError, find_annotated
    from edge_liveness.recordings.blink_score import DEFAULT_TOLERANCE, grouped, score_all, totals
    from edge_liveness.pipeline import build_pipeline

    root = Path(args.dir)
    if not root.exists():
        print(f"error: {root} does not exist: give a folder of videos with annotations beside them", file=sys.stderr)
        return 2
    tol = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if tol < 0:
        print(f"error: --tolerance must be >= 0 (got {tol})", file=sys.stderr)
        return 2
    try:
        settings = load_settings(args.config)
        annotations = find_annotated(root, Path(args.videos) if args.videos else None)
        if not annotations:
            print(f"error: no video under {root} has an annotation beside it (<clip>.tag or <video>.blinks.csv)",
                  file=sys.stderr)
            return 2
        pipeline = build_pipeline(settings)
    except ConfigError as e:
        for p in e.problems:
            print(f"config error: {p}", file=sys.stderr)
        return 2
    except (AnnotationError, ModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        scores, _ = score_all(pipeline, annotations, root, tol, _progress)
    except CameraError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if sys.stderr.isatty():
        print(file=sys.stderr)  # end the in-place progress line
    report = {"dir": str(root), "model": {"name": pipeline.models.blink.name, "sha256": pipeline.models.blink.sha256,
                                          "threshold": pipeline.blink.threshold},
              "total": totals(scores, tol), **grouped(scores, tol), "clips": [s.as_dict() for s in scores]}
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.json:
        print(text)
        return 0
    print(f"{'clip':40s} {'annot':>5s} {'found':>5s} {'miss':>5s} {'false':>5s} {'P':>6s} {'R':>6s} {'F1':>6s}")

    def row(name: str, d: dict) -> None:
        f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{name[-40:]:40s} {d['annotated']:5d} {d['found']:5d} {d['missed']:5d} {d['false']:5d} "
              f"{f(d['precision']):>6s} {f(d['recall']):>6s} {f(d['f1']):>6s}")

    for c in report["clips"]:
        row(c["clip"], c)
    row("TOTAL", report["total"])
    print(f"(a detection matches an annotated blink when their frames overlap, {tol} frame(s) of tolerance)")
    return 0


def main(args: argparse.Namespace) -> int:
    setup_logging("WARNING")
    if args.blinks_command == "score":
        return score(args)
    if args.blinks_command == "train":
        from converters.blink.train import main as train_main

        return train_main(args)
    print("usage: edge-liveness blinks {score,train} ... (see --help)", file=sys.stderr)
    return 2
