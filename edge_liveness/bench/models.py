"""Per-model costs for `edge-liveness bench`: each model alone at 1..n threads, and int8 vs float32 on the same crops."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_liveness.bench.stats import _r, summarize


def float_sibling(int8_path: Path) -> Path | None:
    stem = int8_path.stem
    names = [stem.replace("int8", k) for k in ("float32", "float", "fp32", "f32")] if "int8" in stem else []
    names += [stem + "_float32", stem + "_float"]
    for n in names:
        p = int8_path.with_name(n + ".tflite")
        if p.is_file() and p != int8_path:
            return p
    return None



class RawFloatLiveness:
    """A float32 .tflite without a manifest, fed like the int8 one (its colour order and threshold)."""

    def __init__(self, path: Path, like, num_threads: int):
        from edge_liveness.vision.runtime import TFLiteModel

        self.model = TFLiteModel(path, num_threads=num_threads, name=path.stem)
        self.path, self.name, self.threshold = path, path.stem, like.threshold
        self.crop_size, self.crop_margin, self.sha256 = like.crop_size, like.crop_margin, ""
        self._swap = getattr(like, "_swap", True)

    def predict(self, crop_bgr: np.ndarray) -> float:
        x = crop_bgr[:, :, ::-1] if self._swap else crop_bgr
        return float(self.model.run(x.astype(np.float32))[0].reshape(-1)[0])

    def predict_views(self, tight_bgr: np.ndarray, context_bgr: np.ndarray | None = None) -> float:
        return self.predict(tight_bgr)


class CropRecorder:
    """Wraps the liveness model in an UNTIMED pass to keep the crops it is given (memory only):
    (tight crop, context crop or None) per scored frame."""

    def __init__(self, inner):
        self.inner = inner
        self.crops: list[tuple[np.ndarray, np.ndarray | None]] = []
        self.scores: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def predict_views(self, tight: np.ndarray, context: np.ndarray | None = None) -> float:
        p = self.inner.predict_views(tight, context)
        self.crops.append((tight.copy(), None if context is None else context.copy()))
        self.scores.append(p)
        return p



def _time(fn, n: int, warm: int = 5) -> list[float]:
    for _ in range(warm):
        fn()
    ms = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t) * 1e3)
    return ms


@dataclass
class Sample:
    """One frame with a face, its detector anchors and its liveness crop: inputs for per-model timing."""

    image: np.ndarray
    anchors: Any  # the detector's, for the face mesh
    points: np.ndarray  # the face mesh's frame-pixel points (for the eye model)
    mesh_anchors: Any  # the mesh's, for liveness crops

    def crop_for(self, model) -> np.ndarray:
        """The aligned crop cut for this liveness model's own size and margin."""
        from edge_liveness.vision.align import align_crop

        return np.ascontiguousarray(align_crop(self.image, self.mesh_anchors, model.crop_size, model.crop_margin).image)

    def context_for(self, model) -> np.ndarray | None:
        """The context crop a two-view model also reads (None for a one-view model)."""
        from edge_liveness.vision.align import context_crop

        if getattr(model, "views", 1) != 2:
            return None
        return np.ascontiguousarray(context_crop(self.image, self.mesh_anchors, model.context_size, model.context_scale).image)


def find_sample(models, frames: list) -> Sample | None:
    for f in frames[:: max(1, len(frames) // 50)] + frames[:5]:
        faces = models.detector.detect(f.image)
        if faces:
            a = max(faces, key=lambda x: x.area).anchors()
            lm = models.landmarker.run(f.image, a)
            return Sample(f.image, a, lm.points, lm.anchors())
    return None


def sweep_models(settings, models, float_path: Path | None, sample: Sample, threads: list[int], n: int) -> dict[str, Any]:
    """Each model through its own wrapper (pre- and post-processing included) and invoke() alone."""
    from edge_liveness.vision.face import FaceDetector
    from edge_liveness.vision.landmarks import Landmarker
    from edge_liveness.liveness.model import LivenessModel

    d = settings.detection
    det_path, lm_path, lv_path = models.detector.model.path, models.landmarker.model.path, models.liveness.path
    out: dict[str, dict] = {"detector": {}, "landmarks": {}, "liveness_int8": {}}
    eyes_path = models.eyes.model.path if getattr(models, "eyes", None) is not None else None
    if eyes_path is not None:
        out["eyes_both"] = {}
    # the wheel's float eye model beside the int8 default, when `models fetch` brought it: the same run's cost of both
    eyes_float = _float_eye_model(settings) if eyes_path is not None else None
    if eyes_float is not None and Path(eyes_float) != Path(eyes_path):
        out["eyes_both_float32"] = {}
    else:
        eyes_float = None
    if float_path is not None:
        out["liveness_float32"] = {}
    for t in threads:
        det = FaceDetector(det_path, d.min_score, d.nms_iou, num_threads=t)
        lm = Landmarker(lm_path, num_threads=t)
        lv = LivenessModel(lv_path, num_threads=t)
        crop, ctx = sample.crop_for(lv), sample.context_for(lv)
        # a two-view model's call is both runs (tight + context): what one attempt frame costs
        todo = [("detector", lambda: det.detect(sample.image), det.model),
                ("landmarks", lambda: lm.run(sample.image, sample.anchors), lm.model),
                ("liveness_int8", lambda: lv.predict_views(crop, ctx), lv.model)]
        if eyes_path is not None:
            from edge_liveness.vision.eyes import EyeRefiner

            ey = EyeRefiner(eyes_path, num_threads=t)
            todo.append(("eyes_both", lambda: ey.run(sample.image, sample.points), ey.model))
        if eyes_float is not None:
            ef = EyeRefiner(eyes_float, num_threads=t)
            todo.append(("eyes_both_float32", lambda: ef.run(sample.image, sample.points), ef.model))
        if float_path is not None:
            fl = load_float(float_path, lv, t)
            fcrop, fctx = sample.crop_for(fl), sample.context_for(fl)
            todo.append(("liveness_float32", lambda: fl.predict_views(fcrop, fctx), fl.model))
        for name, call, tfl in todo:
            out[name][str(t)] = {"call": summarize(_time(call, n)), "invoke": summarize(_time(tfl.invoke, n))}
    return out


def _float_eye_model(settings) -> Path | None:
    """The wheel's float eye model in the models folder (``models.eyes = "iris_landmark.tflite"``), if present and verified."""
    from edge_liveness.vision.modelstore import ModelStore
    from edge_liveness.vision.runtime import ModelError

    try:
        return ModelStore(settings.models.dir).locate_optional("eyes")  # no names: the wheel's own files
    except ModelError:
        return None


def load_float(path: Path, like, threads: int):
    from edge_liveness.liveness.model import LivenessModel, manifest_path

    if manifest_path(path).is_file():
        return LivenessModel(path, num_threads=threads)
    return RawFloatLiveness(path, like, threads)


def compare_int8_float(int8, flt, crops: list[tuple[np.ndarray, np.ndarray | None]]) -> dict[str, Any]:
    """Both models on the same crops: latency each, and how often their live/spoof calls agree."""
    if not crops:
        return {"crops": 0, "note": "no crop was classified in this run (no attempt collected)"}
    for c in crops[:3]:
        int8.predict_views(*c), flt.predict_views(*c)
    pi, pf, ti, tf_ = [], [], [], []
    for c in crops:
        t = time.perf_counter()
        pi.append(int8.predict_views(*c))
        t1 = time.perf_counter()
        pf.append(flt.predict_views(*c))
        ti.append((t1 - t) * 1e3)
        tf_.append((time.perf_counter() - t1) * 1e3)
    a, b = np.asarray(pi), np.asarray(pf)
    di, df = a >= int8.threshold, b >= flt.threshold
    return {"crops": len(crops), "int8_classify": summarize(ti), "float32_classify": summarize(tf_),
            "threshold_int8": int8.threshold, "threshold_float32": flt.threshold,
            "call_agreement": _r(float(np.mean(di == df)), 4), "live_calls_int8": int(di.sum()),
            "live_calls_float32": int(df.sum()), "mean_abs_p_diff": _r(float(np.mean(np.abs(a - b))), 4),
            "max_abs_p_diff": _r(float(np.max(np.abs(a - b))), 4)}
