"""Held-out report for the default model: unseen NUAA subjects, unseen people's screen replays, and
the daemon's test videos judged as the daemon would (median P(live) over the attempt vs threshold).

``python -m converters.reports.report MODEL --crops DIR --out JSON [--video FILE:live|spoof ...]``
where DIR holds the ``dataset extract`` folders made by scripts/train_default_model.sh.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from converters.measure import pad_metrics
from converters.data.crop_folders import load_crops
from converters.reports.evaluate import Scorer, load_scorer

# (report name, dataset folders under --crops, subjects) of the held-out groups
TEST_GROUPS = (
    ("nuaa_unseen_subjects", ("nuaa",), {"0008", "0009", "0010"}),
    ("replay_tranvanluyt_crops", ("selfie_tranvanluyt",), {"tranvanluyt"}),
    ("replay_tranvanluyt_video_frames", ("video_tranvanluyt",), {"tranvanluyt"}),
    ("replay_jtboing", ("more_jtboing",), {"jtboing"}),
    ("replay_wolfhuo", ("more_wolfhuo",), {"wolfhuo"}),
    ("replay_vishal", ("more_vishal",), {"vishal"}),
)


def score_crops(scorer: Scorer, images_rgb: np.ndarray) -> np.ndarray:
    return np.array([scorer.predict_bgr(np.ascontiguousarray(img[:, :, ::-1])) for img in images_rgb], np.float64)


def group_metrics(scorer: Scorer, crops: Path, threshold: float, curves: dict | None = None) -> dict:
    out = {}
    for name, folders, subjects in TEST_GROUPS:
        dirs = [crops / f for f in folders if (crops / f).is_dir()]
        if not dirs:
            continue
        data = load_crops(dirs, size=scorer.size, only_subjects=subjects)
        s = score_crops(scorer, data.images)
        out[name] = pad_metrics.rates(data.labels, s, threshold).to_dict()
        if curves is not None and out[name]["auc"] is not None:
            fpr, tpr, _ = pad_metrics.roc_curve(data.labels, s)
            curves[name] = (fpr, tpr, out[name]["auc"])
    return out


def video_median(scorer: Scorer, video: Path, every: int = 1) -> dict:
    """Median P(live) over the frames of a video where a face is found (the daemon's per-attempt view)."""
    import cv2

    from converters.data.dataset import FaceCropper

    cropper = FaceCropper(scorer.size, scorer.margin)
    cap = cv2.VideoCapture(str(video))
    scores, frames, i = [], 0, 0
    t_model = 0.0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % every == 0:
            frames += 1
            crop, _ = cropper.crop(frame)
            if crop is not None:
                t = time.perf_counter()
                scores.append(scorer.predict_bgr(crop))
                t_model += time.perf_counter() - t
        i += 1
    cap.release()
    s = np.asarray(scores)
    return {"frames": frames, "with_face": int(s.size), "median_p_live": float(np.median(s)) if s.size else None,
            "share_above_threshold": None, "p10": float(np.percentile(s, 10)) if s.size else None,
            "p90": float(np.percentile(s, 90)) if s.size else None,
            "ms_per_crop": round(1e3 * t_model / max(1, s.size), 2), "_scores": s}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.reports.report")
    ap.add_argument("model")
    ap.add_argument("--crops", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--video", action="append", default=[], help="FILE:live|spoof, judged by median P(live)")
    ap.add_argument("--threshold", type=float)
    ap.add_argument("--plot", help="write the held-out ROC curves to this PNG")
    a = ap.parse_args(argv)
    scorer = load_scorer(Path(a.model), num_threads=1)
    thr = a.threshold if a.threshold is not None else scorer.threshold if scorer.threshold is not None else 0.5
    curves: dict = {}
    rep = {"model": a.model, "threshold": thr, "groups": group_metrics(scorer, Path(a.crops), thr, curves), "videos": {}}
    if a.plot:
        from converters.measure import plots

        plots.roc(curves, Path(a.plot), f"{Path(a.model).name}: held-out people")
    for spec in a.video:
        path, label = spec.rsplit(":", 1)
        v = video_median(scorer, Path(path))
        s = v.pop("_scores")
        v["share_above_threshold"] = float((s >= thr).mean()) if s.size else None
        v["expected"] = label
        v["judged"] = None if v["median_p_live"] is None else ("live" if v["median_p_live"] >= thr else "spoof")
        v["correct"] = v["judged"] == label
        rep["videos"][Path(path).name] = v
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rep, indent=2) + "\n")
    print(json.dumps(rep, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
