"""`edge-liveness evaluate`: ISO/IEC 30107-3 metrics of a liveness model on a labelled folder.

Labels come from the nearest folder in each file's path named live/real (bona fide) or
spoof/fake/attack; an attack type from a path part naming print, replay or screen. Every file is
accounted for: unreadable images, non-image files, images without a face and files without a label
are counted and listed, never silently dropped.

Each image goes through the device's own detector + face mesh + aligned crop (``--no-detect``: the
images already are crops, resized to the model's input when needed). ``.tflite`` models run through
the device runtime; ``.keras`` models through Keras (TensorFlow imported only then).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import pad_metrics
from .dataset import DEFAULT_MARGIN, IMAGE_EXT, DatasetError, attack_type_from_path, label_from_path


class EvaluateError(ValueError):
    """Bad evaluate input (one line)."""


@dataclass
class Scorer:
    """P(live) for one BGR uint8 crop of ``size`` pixels, plus what the crop must look like."""

    predict_bgr: Callable[..., float]  # (tight crop) or, with context_scale, (tight crop, context crop)
    size: int
    margin: float
    threshold: float | None
    name: str
    context_scale: float | None = None  # a two-view model: it also needs align.context_crop at this scale


def load_scorer(path: Path, num_threads: int = 2) -> Scorer:
    path = Path(path)
    if not path.exists():
        raise EvaluateError(f"{path}: no such model (give a .tflite or .keras file)")
    if path.suffix.lower() == ".tflite":
        from edge_liveness.liveness import LivenessModel, manifest_path

        if manifest_path(path).is_file():
            m = LivenessModel(path, num_threads=num_threads)
            if m.views == 2:
                return Scorer(m.predict_views, m.input_size, m.crop_margin, m.threshold, m.name, m.context_scale)
            return Scorer(m.predict, m.input_size, m.crop_margin, m.threshold, m.name)
        from edge_liveness.runtime import TFLiteModel

        t = TFLiteModel(path, num_threads=num_threads)
        size = t.input_size[0]

        def pred(crop_bgr: np.ndarray) -> float:
            return float(t.run(crop_bgr[None, :, :, ::-1].astype(np.float32))[0].reshape(-1)[0])

        return Scorer(pred, size, DEFAULT_MARGIN, None, path.stem)
    if path.suffix.lower() in (".keras", ".h5"):
        from .convert import _model_metrics_json, load_keras

        model = load_keras(path)
        meta = _model_metrics_json(path)
        size = int(model.input_shape[1])

        def pred_k(crop_bgr: np.ndarray) -> float:
            x = crop_bgr[None, :, :, ::-1].astype(np.float32)
            return float(np.asarray(model(x, training=False)).reshape(-1)[0])

        margin = (meta.get("crop") or {}).get("margin")
        return Scorer(pred_k, size, DEFAULT_MARGIN if margin is None else float(margin), meta.get("threshold"), path.stem)
    raise EvaluateError(f"{path}: unknown model type (give a .tflite or .keras file)")


@dataclass
class EvalResult:
    labels: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    attack_types: list[str] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    non_image: list[str] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)


def score_folder(scorer: Scorer, data_dir: Path, detect: bool = True, progress: bool = True) -> EvalResult:
    import cv2

    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise EvaluateError(f"{data_dir}: no such folder")
    files = [data_dir] if data_dir.is_file() else sorted(p for p in data_dir.rglob("*") if p.is_file())
    cropper = None
    if scorer.context_scale is not None and not detect:
        raise EvaluateError(f"{scorer.name} is a two-view model: it needs the frames around the faces, not crops (drop --no-detect)")
    if detect:
        from .dataset import FaceCropper

        cropper = FaceCropper(scorer.size, scorer.margin, context_scale=scorer.context_scale)
    res = EvalResult()
    for n, p in enumerate(files, 1):
        if p.suffix.lower() not in IMAGE_EXT:
            if p.name not in ("index.csv", "dataset.json"):
                res.non_image.append(str(p))
            continue
        label = label_from_path(p.relative_to(data_dir.parent) if data_dir.is_dir() else p)
        if label is None:
            res.unlabelled.append(str(p))
            continue
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            res.unreadable.append(str(p))
            continue
        ctx = None
        if cropper is not None:
            try:
                crop, ctx, _ = cropper.crop_views(img)
            except ValueError:
                crop = None
            if crop is None:
                res.no_face.append(str(p))
                continue
        else:
            crop = img if img.shape[:2] == (scorer.size, scorer.size) else cv2.resize(img, (scorer.size, scorer.size), interpolation=cv2.INTER_AREA)
        res.labels.append(1 if label == "live" else 0)
        views = (crop,) if ctx is None else (crop, ctx)
        res.scores.append(scorer.predict_bgr(*(np.ascontiguousarray(v) for v in views)))
        res.files.append(str(p))
        res.attack_types.append((attack_type_from_path(p.relative_to(data_dir)) or "") if label == "spoof" and data_dir.is_dir() else "")
        if progress and n % 100 == 0:
            print(f"\r{n}/{len(files)} files", end="", file=sys.stderr, flush=True)
    if progress and len(files) >= 100:
        print(file=sys.stderr)
    return res


def summarise(res: EvalResult, threshold: float, model_name: str) -> dict:
    y, s = np.asarray(res.labels, np.int64), np.asarray(res.scores, np.float64)
    r = pad_metrics.rates(y, s, threshold)
    return {
        "model": model_name,
        "n_images": len(res.labels),
        "n_live": r.n_live,
        "n_spoof": r.n_spoof,
        "no_face": len(res.no_face),
        "unreadable": len(res.unreadable),
        "non_image": len(res.non_image),
        "unlabelled": len(res.unlabelled),
        "apcer": r.apcer,
        "bpcer": r.bpcer,
        "acer": r.acer,
        "auc": r.auc,
        "accuracy": r.accuracy,
        "threshold": threshold,
        "apcer_per_attack": pad_metrics.apcer_per_attack(y, s, res.attack_types, threshold) if len(y) else {},
        "skipped_files": {"no_face": res.no_face, "unreadable": res.unreadable, "non_image": res.non_image,
                          "unlabelled": res.unlabelled},
    }


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help=".tflite (manifest beside it) or .keras")
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder whose paths name live/real or spoof/fake/attack")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-detect", action="store_true", help="images are already aligned crops")
    parser.add_argument("--threshold", type=float, help="P(live) threshold (default: the manifest's, else 0.5)")


def main(args) -> int:
    from edge_liveness.runtime import ModelError

    try:
        scorer = load_scorer(Path(args.model))
        res = score_folder(scorer, Path(args.data_dir), detect=not args.no_detect, progress=not args.json)
    except (EvaluateError, DatasetError, ModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    thr = args.threshold if args.threshold is not None else scorer.threshold if scorer.threshold is not None else 0.5
    out = summarise(res, float(thr), scorer.name)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k in ("model", "n_images", "n_live", "n_spoof", "no_face", "unreadable", "non_image", "unlabelled", "apcer", "bpcer",
                  "acer", "auc", "threshold"):
            print(f"{k:>11}: {_fmt(out[k])}")
        for t, v in out["apcer_per_attack"].items():
            print(f"{'apcer_' + t:>11}: {v:.4f}")
        for kind, lst in out["skipped_files"].items():
            for f in lst[:20]:
                print(f"skipped ({kind}): {f}", file=sys.stderr)
    if not res.labels:
        print("error: no labelled image with a face was scored (paths must name live/real or spoof/fake/attack)", file=sys.stderr)
        return 1
    return 0
