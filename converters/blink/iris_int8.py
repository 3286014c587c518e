"""MediaPipe's eye model (``iris_landmark.tflite``, float32) -> full-integer int8 TFLite + manifest,
checked on real eye crops; and ``blinks score`` with such a model.

    python -m converters.blink.iris_int8 convert --out models/ [--twice]
    python -m converters.blink.iris_int8 score DIR --eyes models/iris_landmark_int8.tflite [--out FILE]

1. Rebuild: the pinned float file's own graph as a Keras model (converters/blink/iris_rebuild.py).
2. The rebuilt float model must match the file on real eye crops (``REBUILD_TOLERANCE_PX``).
3. int8: int8 weights and activations, int8 input and outputs. Calibration crops are cut by the
   device's own crop (``EyeRefiner.crops``) from people the checks never see: the check holds the
   ZJU people the blink model keeps out (models/blink_mlp.json) and ``CHECK_VIDEOS``; calibration
   the other ZJU people and ``CALIBRATION_VIDEOS``. PReLU is rewritten first (iris_rebuild._prelu).
4. int8 vs float on the check crops: landmark error (crop pixels), EAR and lid-gap difference.
Deterministic: the same inputs give the same bytes (``--twice`` converts twice and compares).

``score`` exists because ``models.eyes`` cannot name this file: the model store pins the sha256 of
the wheel's eye model, so any other file is refused as altered. It replays like ``blinks score``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from converters.blink.iris_rebuild import KNOWN_OPS, IrisConvertError, interpreter, build_keras

REPO = Path(__file__).resolve().parents[2]
OUT_NAME = "iris_landmark_int8.tflite"
REBUILD_TOLERANCE_PX = 0.01  # rebuilt float vs the file, any landmark, crop pixels
N_CALIBRATION = 600  # eye crops given to the converter (300 faces' two eyes)
SEED = 0
# ZJU clips are ~4.5 s at 30 fps: every 3rd frame; the other videos are longer: every 6th
ZJU_STEP, VIDEO_STEP = 3, 6
CALIBRATION_VIDEOS = ("video/lestari_real.mp4", "video/zubair_real.mov", "video/saikan45_backlit_man_1.avi")
CHECK_VIDEOS = ("video/apfol_real2.webm", "video/tranvanluyt_real.mp4")


def shared_root() -> Path:
    return Path(os.environ.get("EDGE_LIVENESS_SHARED_DATA", REPO.parent / "shared" / "data"))


# ---------------------------------------------------------------- eye crops

def zju_clips(root: Path, people: set[str], keep: bool) -> list[Path]:
    """ZJU clips of ``people`` (keep=True) or of everyone else (keep=False)."""
    clips = sorted((root / "blink" / "zju").glob("*/*.avi"))
    return [c for c in clips if (c.name.split("_")[0] in people) == keep]


def cut_crops(videos: list[tuple[Path, int]], refiner, finder, min_eye_px: float) -> np.ndarray:
    """[N,64,64,3] float32 RGB in [0,1] (the model's input): both eye crops of every ``step``-th frame
    whose eyes are wide enough to be read (the finder sees every frame, as the daemon's does)."""
    from edge_liveness.vision.eye_signals import eye_widths

    crops = []
    for path, step in videos:
        cap = cv2.VideoCapture(str(path))
        finder.reset()
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            lm = finder.process(frame).landmarks
            if lm is not None and i % step == 0 and min(eye_widths(lm.points)) >= min_eye_px:
                crops.append(refiner.crops(frame, lm.points))
            i += 1
        cap.release()
    if not crops:
        raise IrisConvertError(f"no face found in {[str(p) for p, _ in videos]}")
    return np.concatenate(crops).astype(np.float32)


def crop_sets(root: Path, refiner) -> tuple[np.ndarray, np.ndarray, dict]:
    """(calibration, check) crops from disjoint people, and what each was made of."""
    from edge_liveness.config import load_settings
    from edge_liveness.vision.tracking import FaceFinder

    settings = load_settings()
    held = set(json.loads((REPO / "models" / "blink_mlp.json").read_text())["held_out_people"])
    finder = FaceFinder.from_settings(settings)
    calib_zju, check_zju = zju_clips(root, held, keep=False), zju_clips(root, held, keep=True)
    if not calib_zju or not check_zju:
        raise IrisConvertError(f"no ZJU clips under {root}/blink/zju: give --shared the shared data folder")
    calib = cut_crops([(c, ZJU_STEP) for c in calib_zju] + [(root / v, VIDEO_STEP) for v in CALIBRATION_VIDEOS],
                      refiner, finder, settings.blink.min_eye_px)
    check = cut_crops([(c, ZJU_STEP) for c in check_zju] + [(root / v, VIDEO_STEP) for v in CHECK_VIDEOS],
                      refiner, finder, settings.blink.min_eye_px)
    calib = calib[np.sort(np.random.default_rng(SEED).permutation(len(calib))[:N_CALIBRATION])]
    people = lambda clips: sorted({c.name.split("_")[0] for c in clips})  # noqa: E731
    info = {"calibration": {"crops": len(calib), "of": f"{N_CALIBRATION} drawn (seed {SEED}) from every "
                            f"{ZJU_STEP}rd ZJU frame / {VIDEO_STEP}th video frame, both eyes",
                            "zju_people": people(calib_zju), "videos": list(CALIBRATION_VIDEOS)},
            "check": {"crops": len(check), "zju_people": people(check_zju), "videos": list(CHECK_VIDEOS)}}
    return calib, check, info


# ---------------------------------------------------------------- convert and compare

def to_int8(keras_model, calib: np.ndarray) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with contextlib.redirect_stdout(sys.stderr):  # the converter prints its traced signature
        return conv.convert()


def tflite_points(data: bytes, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(contour [N,71,2], iris [N,5,2]) in crop pixels, through the device's wrapper (int8 quantised)."""
    from edge_liveness.vision.eyes import N_CONTOUR, N_IRIS
    from edge_liveness.vision.runtime import TFLiteModel

    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(data)
        f.flush()
        m = TFLiteModel(f.name, num_threads=1)
    ci = next(i for i, o in enumerate(m.outputs) if o.shape[-1] == N_CONTOUR * 3)
    outs = [m.run(c[None]) for c in crops]
    contour = np.stack([o[ci].reshape(N_CONTOUR, 3)[:, :2] for o in outs])
    iris = np.stack([o[1 - ci].reshape(N_IRIS, 3)[:, :2] for o in outs])
    return contour, iris


def keras_points(model, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # eager calls, not predict(): predict's graph optimiser fuses the 1x1 depthwise + ReLU into a oneDNN
    # kernel that crashes (segfault, TF 2.21 on x86) unless TF_ENABLE_ONEDNN_OPTS=0
    outs = [model(crops[i:i + 64], training=False) for i in range(0, len(crops), 64)]
    contour, iris = (np.concatenate([np.asarray(o[k]) for o in outs]) for k in (0, 1))
    return contour.reshape(len(crops), -1, 3)[..., :2], iris.reshape(len(crops), -1, 3)[..., :2]


def compare(ref: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray], digits: int = 3) -> dict:
    """Landmark error (crop pixels; 64 px = 2.3 eye widths) and openness differences."""
    from edge_liveness.vision.eye_signals import ear_from_points, lid_gap
    from edge_liveness.vision.eyes import CONTOUR_EAR

    def stats(a: np.ndarray, n: int = digits + 1) -> dict:
        return {"mean": round(float(a.mean()), n), "p95": round(float(np.percentile(a, 95)), n),
                "max": round(float(a.max()), n)}

    d_contour = np.linalg.norm(ref[0] - other[0], axis=-1)
    d_iris = np.linalg.norm(ref[1] - other[1], axis=-1)
    ear = lambda c: np.array([ear_from_points(x[list(CONTOUR_EAR)]) for x in c])  # noqa: E731
    gap = lambda c: np.array([lid_gap(x) for x in c])  # noqa: E731
    ear_ref = ear(ref[0])
    return {"n_crops": int(len(ref[0])), "contour_px": stats(d_contour, digits),
            "eyelid_px (points 0-15)": stats(d_contour[:, :16], digits), "iris_px": stats(d_iris, digits),
            "ear_abs_diff": stats(np.abs(ear(other[0]) - ear_ref)),
            "ear_range_of_reference": [round(float(ear_ref.min()), 3), round(float(ear_ref.max()), 3)],
            "lid_gap_abs_diff": stats(np.abs(gap(other[0]) - gap(ref[0])))}


def integer_only(data: bytes) -> list[str]:
    """Tensors that are float in a model that should be integer throughout (empty when it is)."""
    it = interpreter(data)
    return [d["name"] for d in it.get_tensor_details() if np.dtype(d["dtype"]) in (np.float32, np.float16)]


def convert(src: Path, out: Path, root: Path, twice: bool = False, log=print) -> dict:
    from edge_liveness.vision.eyes import EyeRefiner
    from edge_liveness.vision.modelstore import WHEEL_NAME, WHEEL_REQUIREMENT, WHEEL_SHA256, _by_key

    pinned = _by_key("eyes")
    data = src.read_bytes() if src.is_file() else b""
    if hashlib.sha256(data).hexdigest() != pinned.sha256:
        raise IrisConvertError(f"{src} is missing or not the pinned eye model (sha256 {pinned.sha256[:12]}...): "
                               f"run `edge-liveness models fetch` or give --src")
    log(f"cutting eye crops from {root}")
    calib, check, info = crop_sets(root, EyeRefiner(src, num_threads=1))
    model = build_keras(data)
    ref = tflite_points(data, check)
    rebuilt = compare(ref, keras_points(model, check), digits=6)
    log(f"rebuilt float vs file: contour max {rebuilt['contour_px']['max']} px")
    if rebuilt["contour_px"]["max"] > REBUILD_TOLERANCE_PX or rebuilt["iris_px"]["max"] > REBUILD_TOLERANCE_PX:
        raise IrisConvertError(f"the rebuilt float model differs from {src.name} by up to {rebuilt['contour_px']['max']} px "
                               f"(tolerance {REBUILD_TOLERANCE_PX}): the rebuild is wrong, not converting")
    q = to_int8(model, calib)
    if twice and to_int8(build_keras(data), calib) != q:
        raise IrisConvertError("two conversions of the same model and calibration gave different bytes")
    floats = integer_only(q)
    if floats:
        raise IrisConvertError(f"the int8 model still has float tensors ({floats[:3]}...): not full-integer")
    import tensorflow as tf

    qin = interpreter(q).get_input_details()[0]["quantization"]
    int8 = compare(ref, tflite_points(q, check))
    log(f"int8 vs float: contour mean {int8['contour_px']['mean']} px, EAR mean diff {int8['ear_abs_diff']['mean']}")
    manifest = {
        "name": Path(OUT_NAME).stem,
        "source": {"file": pinned.filename, "wheel_member": pinned.member, "sha256": pinned.sha256,
                   "wheel": WHEEL_REQUIREMENT, "wheel_file": WHEEL_NAME, "wheel_sha256": WHEEL_SHA256},
        "licence": "Apache-2.0 (MediaPipe)",
        "input": "[1,64,64,3] int8 RGB eye crop (edge_liveness.vision.eyes crop); q = pixel - 128 when the input "
                 "scale is 1/255 and zero point -128 (the float model's [0,1] input)",
        "input_quantization": [float(qin[0]), int(qin[1])],
        "outputs": "int8, dequantised: [1,213] = 71 x (x, y, z) eye contour and brow, [1,15] = 5 x (x, y, z) iris; "
                   "x/y in crop pixels, as the float model",
        "quantization": "full integer: int8 weights (per-channel), activations, input and outputs (int32 biases)",
        "rebuild": "Keras op for op from the float file's flatbuffer (ops " + ", ".join(KNOWN_OPS) + ")",
        **info, "check_rebuilt_float_vs_file": rebuilt, "check_int8_vs_float": int8,
        "converter": "python -m converters.blink.iris_int8 convert --out models/", "tensorflow": tf.__version__,
        "deterministic": "checked: two conversions gave the same bytes" if twice else "not checked in this run (--twice)",
        "sha256": hashlib.sha256(q).hexdigest(), "size_bytes": len(q),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / OUT_NAME).write_bytes(q)
    (out / OUT_NAME).with_suffix(".json").write_text(json.dumps(manifest, indent=1) + "\n")
    log(f"wrote {out / OUT_NAME} ({len(q)} B, sha256 {manifest['sha256'][:12]}...) + manifest")
    return manifest


# ---------------------------------------------------------------- blinks score with another eye model

def score(args: argparse.Namespace) -> dict:
    from edge_liveness.config import load_settings
    from edge_liveness.pipeline import build_pipeline, load_models
    from edge_liveness.recordings.blink_annotations import find_annotated
    from edge_liveness.recordings.blink_score import DEFAULT_TOLERANCE, grouped, score_all, totals
    from edge_liveness.vision.eyes import EyeRefiner

    settings = load_settings(args.config)
    root = Path(args.dir)
    annotations = find_annotated(root, Path(args.videos) if args.videos else None)
    if not annotations:
        raise IrisConvertError(f"no video under {root} has an annotation beside it (<clip>.tag or <video>.blinks.csv)")
    models = load_models(settings)
    models.eyes = EyeRefiner(args.eyes, settings.models.num_threads)
    pipeline = build_pipeline(settings, models)
    scores, _ = score_all(pipeline, annotations, root, DEFAULT_TOLERANCE)
    eyes = Path(args.eyes)
    return {"dir": str(root), "eye_model": {"file": eyes.name, "sha256": hashlib.sha256(eyes.read_bytes()).hexdigest()},
            "model": {"name": models.blink.name, "sha256": models.blink.sha256, "threshold": pipeline.blink.threshold},
            "total": totals(scores, DEFAULT_TOLERANCE), **grouped(scores, DEFAULT_TOLERANCE),
            "clips": [s.as_dict() for s in scores]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.blink.iris_int8", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="rebuild, check, convert to int8, write the model and its manifest")
    c.add_argument("--out", type=Path, required=True, help="folder for the .tflite and its manifest (models/)")
    c.add_argument("--src", type=Path, default=None, help="the pinned float eye model (default: the model store's)")
    c.add_argument("--shared", type=Path, default=None, help="the shared data folder (default ../shared/data)")
    c.add_argument("--twice", action="store_true", help="convert twice and refuse unless the bytes are equal")
    s = sub.add_parser("score", help="`blinks score` with another eye model")
    s.add_argument("dir", help="a folder of annotated clips")
    s.add_argument("--eyes", required=True, help="the eye model .tflite to read the eyelids with")
    s.add_argument("--videos", default=None, help="as `blinks score --videos` (tests/data/blinks with ../shared/data)")
    s.add_argument("--config", "-c", default=None)
    s.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = ap.parse_args(argv)
    from edge_liveness.config import ConfigError, load_settings
    from edge_liveness.recordings.blink_annotations import AnnotationError
    from edge_liveness.vision.modelstore import ModelStore
    from edge_liveness.vision.runtime import ModelError

    try:
        if args.cmd == "convert":
            src = args.src or ModelStore.from_settings(load_settings()).path("eyes")
            res = convert(src, args.out, args.shared or shared_root(), args.twice, log=lambda m: print(m, file=sys.stderr))
        else:
            res = score(args)
            if args.out:
                args.out.write_text(json.dumps(res, indent=1) + "\n")
            res = {"eye_model": res["eye_model"], "total": res["total"]}
    except ConfigError as e:
        print(f"config error: {'; '.join(e.problems)}", file=sys.stderr)
        return 2
    except (IrisConvertError, ModelError, AnnotationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
