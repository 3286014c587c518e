"""`edge-liveness evaluate`: ISO/IEC 30107-3 metrics of a liveness model on a labelled folder.

Labels come from the nearest folder in each file's path named live/real (bona fide) or
spoof/fake/attack; an attack type from a path part naming print, replay or screen. Every file is
accounted for: unreadable images, non-image files, images without a face and files without a label
are counted and listed, never silently dropped.

Each image goes through the device's own detector + face mesh + aligned crop (``--no-detect``: the
images already are crops, resized to the model's input when needed). ``.tflite`` models run through
the device runtime; ``.keras`` models through Keras (TensorFlow imported only then).

Images are judged as the daemon judges a frame: the liveness model's P(live) and, while the config
keeps ``models.texture`` on (the default), the texture pair's veto on the same face
(``edge_liveness.liveness.fusion``). ``--no-texture`` judges the model alone; the JSON's ``texture``
block always reports the model alone beside the fused verdict, so one run shows both.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from converters.measure import pad_metrics
from converters.data.dataset import DEFAULT_MARGIN, IMAGE_EXT, DatasetError
from converters.reports.evaluate_videos import VIDEO_EXT, evaluate_videos, per_file_line, print_summary, summarise_videos
from converters.data.labels import label_for
from edge_liveness.cli.progress import progress_line


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
    texture: Any = None  # edge_liveness.liveness.minifasnet.MiniFASNetPair: the daemon's veto (models.texture), or None
    texture_threshold: float = 0.2  # decision.texture_threshold
    view_logits: Callable[..., tuple[float, float]] | None = None  # a two-view model's outputs (the learned fusion reads them)
    fusion: Any = None  # edge_liveness.liveness.fusion.LearnedFusion (decision.fusion = "learned"), or None: the veto
    model: Any = None  # the LivenessModel behind a .tflite with a manifest (the learned fusion checks its sha256)


def load_scorer(path: Path, num_threads: int = 2) -> Scorer:
    path = Path(path)
    if not path.exists():
        raise EvaluateError(f"{path}: no such model (give a .tflite or .keras file)")
    if path.suffix.lower() == ".tflite":
        from edge_liveness.liveness.model import LivenessModel, manifest_path

        if manifest_path(path).is_file():
            m = LivenessModel(path, num_threads=num_threads)
            if m.views == 2:
                return Scorer(m.predict_views, m.input_size, m.crop_margin, m.threshold, m.name, m.context_scale,
                              view_logits=m.view_logits, model=m)
            return Scorer(m.predict, m.input_size, m.crop_margin, m.threshold, m.name)
        from edge_liveness.vision.runtime import TFLiteModel

        t = TFLiteModel(path, num_threads=num_threads)
        size = t.input_size[0]

        def pred(crop_bgr: np.ndarray) -> float:
            return float(t.run(crop_bgr[None, :, :, ::-1].astype(np.float32))[0].reshape(-1)[0])

        return Scorer(pred, size, DEFAULT_MARGIN, None, path.stem)
    if path.suffix.lower() in (".keras", ".h5"):
        from converters.passive.convert import _model_metrics_json, load_keras

        model = load_keras(path)
        meta = _model_metrics_json(path)
        size = int(model.input_shape[1])

        def pred_k(crop_bgr: np.ndarray) -> float:
            x = crop_bgr[None, :, :, ::-1].astype(np.float32)
            return float(np.asarray(model(x, training=False)).reshape(-1)[0])

        margin = (meta.get("crop") or {}).get("margin")
        return Scorer(pred_k, size, DEFAULT_MARGIN if margin is None else float(margin), meta.get("threshold"), path.stem)
    raise EvaluateError(f"{path}: unknown model type (give a .tflite or .keras file)")


# a context view with less than this share inside the image shows too little around the face to judge by
LITTLE_SURROUNDINGS = 0.3  # tight face crops measure 0.10-0.15, NUAA frames 0.45-1.0


@dataclass
class EvalResult:
    labels: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    attack_types: list[str] = field(default_factory=list)
    texture_scores: list[float | None] = field(default_factory=list)  # the pair's P(real); None: no mesh, no vote
    texture_models: list[tuple[float, ...] | None] = field(default_factory=list)  # each MiniFASNet's P(real)
    view_logits: list[tuple[float, float] | None] = field(default_factory=list)  # a two-view model's two outputs
    context_inside: list[float | None] = field(default_factory=list)  # share of the context view inside the image
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
        from converters.data.dataset import FaceCropper

        cropper = FaceCropper(scorer.size, scorer.margin, context_scale=scorer.context_scale)
    res = EvalResult()
    for n, p in enumerate(files, 1):
        if p.suffix.lower() not in IMAGE_EXT:
            if p.name not in ("index.csv", "dataset.json") and p.suffix.lower() not in VIDEO_EXT:
                res.non_image.append(str(p))
            continue
        lab = label_for(p, data_dir if data_dir.is_dir() else p.parent)
        if lab is None:
            res.unlabelled.append(str(p))
            continue
        label = lab.label
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            res.unreadable.append(str(p))
            continue
        ctx, tex = None, None
        if cropper is not None:
            try:
                v = cropper.views(img)
            except ValueError:
                v = None
            if v is None or v.tight is None:
                res.no_face.append(str(p))
                continue
            crop, ctx = v.tight, v.context
            res.context_inside.append(v.context_inside)
            if scorer.texture is not None and v.landmarks is not None:
                tex = scorer.texture.score_landmarks(img, v.landmarks)
        else:
            res.context_inside.append(None)
            crop = img if img.shape[:2] == (scorer.size, scorer.size) else cv2.resize(img, (scorer.size, scorer.size), interpolation=cv2.INTER_AREA)
            if scorer.texture is not None:  # a crop is all face: the pair's window is the whole image
                h, w = img.shape[:2]
                tex = scorer.texture.score(img, (0.0, 0.0, float(w - 1), float(h - 1)))
        res.texture_scores.append(None if tex is None else tex.p_real)
        res.texture_models.append(None if tex is None else tex.per_model)
        res.labels.append(1 if label == "live" else 0)
        views = tuple(np.ascontiguousarray(v) for v in ((crop,) if ctx is None else (crop, ctx)))
        if ctx is not None and scorer.view_logits is not None:
            from edge_liveness.liveness.model import p_live_of

            vl = scorer.view_logits(*views)
            res.view_logits.append(vl)
            res.scores.append(p_live_of(vl))
        else:
            res.view_logits.append(None)
            res.scores.append(scorer.predict_bgr(*views))
        res.files.append(str(p))
        res.attack_types.append(lab.attack_type if label == "spoof" else "")
        if progress and n % 100 == 0:
            progress_line(f"{n}/{len(files)} files")
    if progress and len(files) >= 100 and sys.stderr.isatty():
        print(file=sys.stderr)
    return res


def verdicts(res: EvalResult, threshold: float, texture_threshold: float, fusion=None, centre: float | None = None) -> np.ndarray:
    """Each image's P(live) as the daemon decides it: the learned fusion (``fusion``) where both models scored,
    centred on ``centre`` (the model manifest's threshold, as the daemon does, so a ``threshold`` of the
    caller's is a bar on it; default ``threshold``), else the model's, vetoed by the texture pair where it scored."""
    from edge_liveness.liveness.fusion import fuse, fuse_learned

    out = []
    for p, t, vl, tm in zip(res.scores, res.texture_scores, res.view_logits, res.texture_models):
        if fusion is not None and vl is not None and tm is not None:
            out.append(fuse_learned(fusion, vl, tm, threshold if centre is None else centre, texture_threshold))
        else:
            out.append(fuse(p, threshold, t, texture_threshold))
    return np.asarray(out, np.float64)


def _texture_block(res: EvalResult, y: np.ndarray, threshold: float, texture_threshold: float | None) -> dict:
    """What the texture pair changed: the model alone beside the fused verdict (one run shows both)."""
    if texture_threshold is None:
        return {"on": False}
    alone = pad_metrics.rates(y, np.asarray(res.scores, np.float64), threshold)
    t = np.asarray([np.nan if v is None else v for v in res.texture_scores], np.float64)
    vetoed = (t < texture_threshold) & (np.asarray(res.scores, np.float64) >= threshold)
    return {"on": True, "threshold": texture_threshold, "unscored_no_mesh": int(np.isnan(t).sum()),
            "vetoed_live": int((vetoed & (y == 1)).sum()), "vetoed_spoof": int((vetoed & (y == 0)).sum()),
            "model_alone": {"apcer": alone.apcer, "bpcer": alone.bpcer, "acer": alone.acer, "auc": alone.auc}}


def summarise(res: EvalResult, threshold: float, model_name: str, texture_threshold: float | None = None, fusion=None,
              centre: float | None = None) -> dict:
    """Metrics of the images' verdicts; ``texture_threshold`` (models.texture on) fuses the pair in: learned
    (``fusion``) or as a veto."""
    y = np.asarray(res.labels, np.int64)
    s = verdicts(res, threshold, texture_threshold, fusion, centre) if texture_threshold is not None else np.asarray(res.scores, np.float64)
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
        "texture": {**_texture_block(res, y, threshold, texture_threshold),
                    **({"fusion": "learned"} if fusion is not None and texture_threshold is not None else
                       {"fusion": "veto"} if texture_threshold is not None else {})},
        "apcer_per_attack": pad_metrics.apcer_per_attack(y, s, res.attack_types, threshold) if len(y) else {},
        "little_surroundings": _little_surroundings(res, y),
        "skipped_files": {"no_face": res.no_face, "unreadable": res.unreadable, "non_image": res.non_image,
                          "unlabelled": res.unlabelled},
    }


def _little_surroundings(res: EvalResult, y: np.ndarray) -> dict:
    """The images whose face leaves little of the context view inside the image (a tight face crop, a face
    filling the picture): the passive verdict is not calibrated for them (docs/training.md section 9)."""
    share = np.asarray([np.nan if v is None else v for v in res.context_inside], np.float64)
    little = share < LITTLE_SURROUNDINGS
    return {"inside_share_under": LITTLE_SURROUNDINGS, "n_images": int(little.sum()),
            "n_live": int((little & (y == 1)).sum()), "n_spoof": int((little & (y == 0)).sum())}


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help=".tflite (manifest beside it) or .keras")
    parser.add_argument("data_dir", metavar="DATA_DIR",
                        help="images and/or videos; labels from folder names (live/real or spoof/fake/attack) or an index.csv")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--per-file", action="store_true", help="one line per video: its attempts and their outcomes")
    parser.add_argument("--no-detect", action="store_true", help="images are already aligned crops")
    parser.add_argument("--no-texture", action="store_true",
                        help="images: judge the liveness model alone, without the texture pair's veto (models.texture)")
    parser.add_argument("--threshold", type=float, help="P(live) threshold (default: the manifest's, else 0.5)")
    parser.add_argument("--config", "-c", help="videos: the daemon config whose policy is judged (default: built-in)")
    parser.add_argument("--active", choices=["off", "blink", "turn", "blink_and_turn", "challenge"],
                        help="videos: override active.mode")


def _media(data_dir: Path) -> tuple[list[Path], bool]:
    files = [data_dir] if data_dir.is_file() else sorted(p for p in data_dir.rglob("*") if p.is_file())
    videos = [p for p in files if p.suffix.lower() in VIDEO_EXT]
    return videos, any(p.suffix.lower() in IMAGE_EXT for p in files)


def _videos(args, videos: list[Path], root: Path) -> dict:
    from edge_liveness.config import load_settings
    from edge_liveness.pipeline import build_pipeline

    model = Path(args.model)
    if model.suffix.lower() != ".tflite":
        raise EvaluateError(f"{model}: videos run through the daemon's pipeline, which needs the .tflite model "
                            f"(convert it with `edge-liveness convert`)")
    overrides: dict = {"models": {"liveness": str(model.resolve())}}
    if getattr(args, "no_texture", False):
        overrides["models"]["texture"] = False
    if args.active:
        overrides["active"] = {"mode": args.active}
    if args.threshold is not None:
        overrides["decision"] = {"threshold": args.threshold}
    settings = load_settings(args.config, **overrides)
    pipeline = build_pipeline(settings)
    ev = evaluate_videos(pipeline, videos, root, progress=not args.json)
    return summarise_videos(ev, settings)


def _attach_texture(scorer: Scorer, args) -> float | None:
    """The daemon's texture veto for images, as the config (``--config``, else built-in) sets it; None when off."""
    from edge_liveness.config import load_settings

    if getattr(args, "no_texture", False):
        return None
    settings = load_settings(getattr(args, "config", None))
    if not settings.models.texture:
        return None
    from edge_liveness.liveness.minifasnet import MiniFASNetPair

    scorer.texture, scorer.texture_threshold = MiniFASNetPair(num_threads=1), settings.decision.texture_threshold
    model = scorer.model
    if settings.decision.fusion == "learned" and model is not None and model.views == 2:
        from edge_liveness.liveness.fusion import load_for

        scorer.fusion = load_for(model.path, model.sha256, {m.path.name: m.sha256 for m in scorer.texture.models},
                                 model.manifest["view_weights"])
        scorer.texture_threshold = settings.decision.learned_veto_threshold
    return scorer.texture_threshold


def main(args) -> int:
    from edge_liveness.config import ConfigError
    from edge_liveness.vision.runtime import ModelError

    data_dir = Path(args.data_dir)
    if not data_dir.exists():
        print(f"error: {data_dir}: no such folder", file=sys.stderr)
        return 2
    videos, has_images = _media(data_dir)
    out: dict = {}
    try:
        if has_images or not videos:
            scorer = load_scorer(Path(args.model))
            texture_threshold = _attach_texture(scorer, args)
            res = score_folder(scorer, data_dir, detect=not args.no_detect, progress=not args.json)
            thr = args.threshold if args.threshold is not None else scorer.threshold if scorer.threshold is not None else 0.5
            out = summarise(res, float(thr), scorer.name, texture_threshold, scorer.fusion, centre=scorer.threshold)
        if videos:
            out["videos"] = _videos(args, videos, data_dir if data_dir.is_dir() else data_dir.parent)
    except ConfigError as e:
        for p in e.problems:
            print(f"config error: {p}", file=sys.stderr)
        return 2
    except (EvaluateError, DatasetError, ModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        if "n_images" in out and (out["n_images"] or not videos):
            for k in ("model", "n_images", "n_live", "n_spoof", "no_face", "unreadable", "non_image", "unlabelled",
                      "apcer", "bpcer", "acer", "auc", "threshold"):
                print(f"{k:>11}: {_fmt(out[k])}")
            tx = out["texture"]
            if tx["on"]:
                a = tx["model_alone"]
                print(f"{'texture':>11}: veto on (P(real) < {tx['threshold']}): {tx['vetoed_spoof']} attacks and "
                      f"{tx['vetoed_live']} live images vetoed; model alone APCER {_fmt(a['apcer'])} BPCER {_fmt(a['bpcer'])}")
            else:
                print(f"{'texture':>11}: off (the liveness model alone)")
            for t, v in out["apcer_per_attack"].items():
                print(f"{'apcer_' + t:>11}: {v:.4f}")
            ls = out["little_surroundings"]
            if ls["n_images"]:
                print(f"warning: {ls['n_images']} of {out['n_images']} images show little around the face (under "
                      f"{ls['inside_share_under']:.0%} of the context view inside the image, e.g. tight face crops): the "
                      "passive verdict is not calibrated for them; judge full camera frames (docs/training.md section 9)",
                      file=sys.stderr)
        for kind, lst in out.get("skipped_files", {}).items():
            for f in lst[:20]:
                print(f"skipped ({kind}): {f}", file=sys.stderr)
        if videos:
            if args.per_file:
                for f in out["videos"]["per_file"]:
                    print(per_file_line(f))
            print_summary(out["videos"])
    scored_images = bool(out.get("n_images"))
    scored_videos = bool(out.get("videos", {}).get("per_file"))
    if not scored_images and not scored_videos:
        print("error: nothing labelled was scored (paths must name live/real or spoof/fake/attack, or an index.csv "
              "must label the files)", file=sys.stderr)
        return 1
    return 0
