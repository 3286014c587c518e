"""The seed-style baseline the benchmark compares the device pipeline against (workstation side).

What a typical seed project does per frame: an OpenCV face detector on every frame (no tracking),
a box crop with a margin, then a Keras float32 MobileNetV2 called on that one crop, every frame
with a face, through ``model.predict(x)`` or ``model(x)``. Here:

- detector: ``cv2.dnn.readNetFromTFLite`` on the same BlazeFace short-range model the device uses,
  with OpenCV's classic DNN engine (OpenCV 5's new engine exposes only one of its two outputs) and
  OpenCV's default thread count. opencv-python-headless 5 has no Haar cascades and no YuNet model
  is at hand, so BlazeFace through cv2.dnn is the OpenCV face detector available.
- classifier: Keras MobileNetV2 alpha 1.0, 128 px, ``Rescaling(1/127.5, -1)`` inside, GAP, Dense 128,
  Dropout, Dense 1 sigmoid: the architecture and input size of the device model, float32, untrained
  weights (speed does not depend on the weights), TensorFlow's default threads.

Run by ``edge-liveness bench`` in a SUBPROCESS so TensorFlow's memory never shows in the device
numbers: ``python -m converters.reports.seed_baseline run --source FILE --frames N --detector PATH``
prints one JSON object on stdout; progress goes to stderr.

``python -m converters.reports.seed_baseline standin --out DIR`` writes a stand-in liveness model pair
(int8 with int8 I/O and float32, same Keras weights, with manifests the device accepts) for
benchmarking before the trained model ships. Its scores mean nothing; its speed is the real one.

TensorFlow is imported inside functions only.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DET_SIZE = 128
DET_MIN_SCORE = 0.6
DET_NMS_IOU = 0.3
BOX_MARGIN = 0.2  # seed projects pad the detector box a little before cropping


def _log(msg: str) -> None:
    print(f"seed-baseline: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the Keras model


def build_keras_model(size: int = 128, alpha: float = 1.0, head_units: int = 128, dropout: float = 0.5, seed: int = 0):
    """The device model's architecture in Keras, float32, untrained (``weights=None``)."""
    import keras

    keras.utils.set_random_seed(seed)
    backbone = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, include_top=False, weights=None)
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(head_units, activation="relu")(x)
    x = keras.layers.Dropout(dropout)(x)
    out = keras.layers.Dense(1, activation="sigmoid", name="p_live")(x)
    return keras.Model(inputs, out, name=f"seed_mnv2_{alpha:g}_{size}")


# ---------------------------------------------------------------- the OpenCV detector


def _anchor_centres(size: int = DET_SIZE) -> np.ndarray:
    # BlazeFace short-range anchors: a 16x16 grid with 2 anchors per cell, an 8x8 grid with 6.
    out = []
    for cells, n in ((size // 8, 2), (size // 16, 6)):
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        out.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], axis=1), n, axis=0))
    return np.concatenate(out).astype(np.float32) * size


class OpenCVFaceDetector:
    """BlazeFace through cv2.dnn, the seed way: squash the frame to 128x128 (no letterbox), NMSBoxes."""

    def __init__(self, model_path: str | Path):
        import cv2

        self.cv2 = cv2
        # OpenCV 5.0 calls the layer-by-layer engine ENGINE_CLASSIC, 5.1 renamed it ENGINE_OPENCV; 4.x
        # has neither (and only that engine)
        engine = getattr(cv2.dnn, "ENGINE_CLASSIC", getattr(cv2.dnn, "ENGINE_OPENCV", None))
        kw = {} if engine is None else {"engine": engine}
        self.net = cv2.dnn.readNetFromTFLite(str(model_path), **kw)
        self.names = list(self.net.getUnconnectedOutLayersNames())
        if sorted(self.names) != ["classificators", "regressors"]:
            raise RuntimeError(f"{model_path}: outputs {self.names}, expected BlazeFace's classificators/regressors")
        self.anchors = _anchor_centres()

    def detect(self, frame_bgr: np.ndarray) -> list[tuple[int, int, int, int]]:
        cv2 = self.cv2
        h, w = frame_bgr.shape[:2]
        blob = cv2.dnn.blobFromImage(frame_bgr, 1 / 127.5, (DET_SIZE, DET_SIZE), (127.5, 127.5, 127.5), swapRB=True)
        self.net.setInput(blob)
        outs = dict(zip(self.names, self.net.forward(self.names)))
        logits = outs["classificators"][0, :, 0]
        keep = np.flatnonzero(logits > np.log(DET_MIN_SCORE / (1 - DET_MIN_SCORE)))
        if keep.size == 0:
            return []
        reg = outs["regressors"][0, keep]
        cx = reg[:, 0] + self.anchors[keep, 0]
        cy = reg[:, 1] + self.anchors[keep, 1]
        sx, sy = w / DET_SIZE, h / DET_SIZE
        boxes = [[float((x - bw / 2) * sx), float((y - bh / 2) * sy), float(bw * sx), float(bh * sy)]
                 for x, y, bw, bh in zip(cx, cy, reg[:, 2], reg[:, 3])]
        scores = (1 / (1 + np.exp(-logits[keep]))).tolist()
        idx = cv2.dnn.NMSBoxes(boxes, scores, DET_MIN_SCORE, DET_NMS_IOU)
        return [tuple(int(round(v)) for v in boxes[i]) for i in np.array(idx).reshape(-1)]


def crop_face(frame_bgr: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Box plus margin, clipped to the frame, resized, RGB, float32 batch of one (seed style)."""
    import cv2

    x, y, bw, bh = box
    m = int(BOX_MARGIN * max(bw, bh))
    h, w = frame_bgr.shape[:2]
    x0, y0, x1, y1 = max(0, x - m), max(0, y - m), min(w, x + bw + m), min(h, y + bh + m)
    face = frame_bgr[y0:y1, x0:x1] if x1 > x0 and y1 > y0 else frame_bgr
    face = cv2.resize(face, (size, size))
    face = cv2.cvtColor(face, cv2.COLOR_BGR2RGB)
    return np.expand_dims(face.astype(np.float32), 0)


# ---------------------------------------------------------------- the loop


def _percentiles(xs: list[float]) -> dict:
    if not xs:
        return {"runs": 0, "p50": None, "p95": None, "mean": None}
    a = np.asarray(xs, np.float64)
    return {"runs": len(xs), "p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "mean": round(float(a.mean()), 3)}


def decode(source: str, n: int) -> list[np.ndarray]:
    from edge_liveness.camera.supervisor import ReplaySource, check_frame

    src = ReplaySource(source)
    src.open()
    frames = []
    try:
        while len(frames) < n:
            img, _ = src.read()
            if img is None:
                break
            img, _ = check_frame(img)
            if img is not None:
                frames.append(img)
    finally:
        src.close()
    return frames


def seed_loop(frames: list[np.ndarray], detector: OpenCVFaceDetector, classify, size: int, warmup: int = 3) -> dict:
    """Per frame: detect, crop the largest face, classify it. Times in ms; decode excluded."""
    for img in frames[:warmup]:
        boxes = detector.detect(img)
        if boxes:
            classify(crop_face(img, max(boxes, key=lambda b: b[2] * b[3]), size))
    det_ms, cls_ms, frame_ms, cpu_ms = [], [], [], []
    for img in frames:
        c0, t0 = time.process_time(), time.perf_counter()
        boxes = detector.detect(img)
        t1 = time.perf_counter()
        det_ms.append((t1 - t0) * 1e3)
        if boxes:
            x = crop_face(img, max(boxes, key=lambda b: b[2] * b[3]), size)
            t2 = time.perf_counter()
            classify(x)
            cls_ms.append((time.perf_counter() - t2) * 1e3)
        frame_ms.append((time.perf_counter() - t0) * 1e3)
        cpu_ms.append((time.process_time() - c0) * 1e3)
    total_s = sum(frame_ms) / 1e3
    return {"frames": len(frames), "fps": round(len(frames) / total_s, 2) if total_s > 0 else None,
            "frame_ms": _percentiles(frame_ms), "detect_ms": _percentiles(det_ms), "classify_ms": _percentiles(cls_ms),
            "cpu_ms_per_frame": round(float(np.mean(cpu_ms)), 3) if cpu_ms else None}


def run_baseline(source: str, frames: int, detector_path: str, size: int = 128, alpha: float = 1.0,
                 calls: tuple[str, ...] = ("predict", "call"), passes: int = 1) -> dict:
    """The seed loop over the frames, ``passes`` times each way, interleaved; each variant's figures are
    its median pass by fps (the statistic `bench` takes of the pipeline's passes), every pass's fps beside."""
    t0 = time.perf_counter()
    import tensorflow as tf

    import_s = time.perf_counter() - t0
    imgs = decode(source, frames)
    if not imgs:
        raise RuntimeError(f"{source}: no frames decoded")
    _log(f"{len(imgs)} frames of {imgs[0].shape[1]}x{imgs[0].shape[0]}; building Keras MobileNetV2 {alpha:g} at {size}px")
    t1 = time.perf_counter()
    model = build_keras_model(size, alpha)
    build_s = time.perf_counter() - t1
    det = OpenCVFaceDetector(detector_path)
    out = {"detector": "BlazeFace short-range via cv2.dnn.readNetFromTFLite (classic engine), squashed to 128x128, NMSBoxes",
           "classifier": f"Keras MobileNetV2 alpha {alpha:g}, {size}px, float32, GAP+Dense128+Dropout+Dense1 (untrained)",
           "tensorflow": tf.__version__, "keras": __import__("keras").__version__, "opencv": det.cv2.__version__,
           "opencv_threads": det.cv2.getNumThreads(), "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
           "tf_import_s": round(import_s, 2), "model_build_s": round(build_s, 2),
           "frame_size": [int(imgs[0].shape[1]), int(imgs[0].shape[0])], "variants": {}}
    variants = {"predict": lambda x: model.predict(x, verbose=0), "call": lambda x: model(x, training=False)}
    runs: dict[str, list[dict]] = {name: [] for name in calls}
    for p in range(passes):
        for name in calls:
            _log(f"seed loop with model.{'predict(x)' if name == 'predict' else '__call__(x)'} on {len(imgs)} frames"
                 + (f", pass {p + 1}/{passes}" if passes > 1 else ""))
            runs[name].append(seed_loop(imgs, det, variants[name], size))
            _log(f"  {runs[name][-1]['fps']} fps")
    for name, rs in runs.items():
        order = sorted(range(len(rs)), key=lambda i: (rs[i]["fps"] or 0.0, i))
        out["variants"][name] = {**rs[order[len(rs) // 2]], "fps_each_pass": [r["fps"] for r in rs]}
    from edge_liveness.bench.stats import peak_rss_mb

    out["peak_rss_mb"] = peak_rss_mb()
    return out


# ---------------------------------------------------------------- the stand-in model pair


def _face_crops(size: int, n: int) -> np.ndarray:
    """Real face crops for the int8 calibration (selfie crops from the shared data), else noise."""
    import cv2

    root = Path(os.environ.get("EDGE_LIVENESS_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    files = sorted((root / "liveness" / "selfie_replay_more").rglob("*.jpg"))[:: 3][:n]
    crops = [cv2.resize(cv2.imread(str(f)), (size, size))[:, :, ::-1] for f in files if cv2.imread(str(f)) is not None]
    if not crops:
        return np.random.default_rng(0).integers(0, 256, (n, size, size, 3)).astype(np.float32)
    return np.stack(crops).astype(np.float32)


def _manifest(path: Path, kind: str, size: int, alpha: float) -> dict:
    return {"name": path.stem, "input_size": size, "color_order": "RGB", "crop": {"size": size, "margin": 0.25},
            "output": "P(live), sigmoid", "threshold": 0.5, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "note": f"STAND-IN for benchmarking only: untrained MobileNetV2 {alpha:g} at {size}px, {kind}; scores mean nothing"}


def make_standin(out: Path, size: int = 128, alpha: float = 1.0) -> dict[str, Path]:
    import tensorflow as tf

    out.mkdir(parents=True, exist_ok=True)
    model = build_keras_model(size, alpha)
    calib = _face_crops(size, 64)

    def representative():
        for x in calib:
            yield [x[None]]

    paths = {}
    for kind in ("int8", "float32"):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        if kind == "int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        p = out / f"standin_mnv2_{kind}.tflite"
        p.write_bytes(conv.convert())
        p.with_suffix(".json").write_text(json.dumps(_manifest(p, kind, size, alpha), indent=2) + "\n")
        paths[kind] = p
        _log(f"wrote {p} ({p.stat().st_size / 1e6:.1f} MB)")
    return paths


# ---------------------------------------------------------------- CLI


def tensorflow_child(module: str, *args: str) -> subprocess.CompletedProcess | str:
    """``python -m module args`` in a child process (TensorFlow then never loads into the caller, nor shows in
    its numbers): the finished process, or one line saying why it did not run or failed."""
    if importlib.util.find_spec("tensorflow") is None:
        return "TensorFlow is not installed here (pip install 'edge-liveness[workstation]')"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", module, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, cwd=str(Path(__file__).resolve().parents[2]))
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return f"{module} failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}"
    return proc


def run_in_subprocess(source: Path, frames: int, detector_path: Path, size: int = 128, passes: int = 1) -> dict[str, Any]:
    """What `edge-liveness bench` calls: this module in a child process, so TensorFlow never shows in its numbers."""
    proc = tensorflow_child("converters.reports.seed_baseline", "run", "--source", str(source), "--frames", str(frames),
                            "--detector", str(detector_path), "--size", str(size), "--passes", str(passes))
    if isinstance(proc, str):
        return {"skipped": proc}
    for line in reversed(proc.stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return {"skipped": "baseline subprocess printed no result"}



def tensorflow_here() -> bool:
    """Whether TensorFlow imports (its C++ log quietened); else one line on stderr naming the extra to install."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        print("error: TensorFlow is not installed: pip install 'edge-liveness[workstation]'", file=sys.stderr)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.reports.seed_baseline", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="time the seed-style loop; one JSON object on stdout")
    r.add_argument("--source", required=True)
    r.add_argument("--frames", type=int, default=150)
    r.add_argument("--detector", required=True, help="face_detection_short_range.tflite")
    r.add_argument("--size", type=int, default=128)
    r.add_argument("--alpha", type=float, default=1.0)
    r.add_argument("--calls", default="predict,call", help="comma list of predict, call")
    r.add_argument("--passes", type=int, default=1, help="passes of each variant, interleaved; the median pass is reported")
    s = sub.add_parser("standin", help="write a stand-in int8 + float32 liveness model pair with manifests")
    s.add_argument("--out", required=True)
    s.add_argument("--size", type=int, default=128)
    s.add_argument("--alpha", type=float, default=1.0)
    args = ap.parse_args(argv)
    if not tensorflow_here():
        return 3
    try:
        if args.cmd == "run":
            calls = tuple(c.strip() for c in args.calls.split(",") if c.strip())
            bad = [c for c in calls if c not in ("predict", "call")]
            if bad:
                print(f"error: --calls {','.join(bad)}: use predict and/or call", file=sys.stderr)
                return 2
            if args.passes < 1:
                print("error: --passes must be >= 1", file=sys.stderr)
                return 2
            res = run_baseline(args.source, args.frames, args.detector, args.size, args.alpha, calls, args.passes)
            print(json.dumps(res))
        else:
            paths = make_standin(Path(args.out), args.size, args.alpha)
            print(json.dumps({k: str(v) for k, v in paths.items()}))
    except (RuntimeError, OSError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
