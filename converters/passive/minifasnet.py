"""Silent-Face's MiniFASNet pair (ONNX, Apache-2.0) -> full-integer int8 TFLite + manifests, checked
against ONNX Runtime on real face crops.

    python -m converters.passive.minifasnet --out models/

- Import: our own ONNX -> Keras importer (``onnx_import.py``), batch fixed at 1; the float Keras
  model must match ONNX Runtime on the check crops (logits within ``FLOAT_TOLERANCE``).
- int8: int8 weights and activations, int8 input (scale 1, zero point -128: q = pixel - 128 when the
  calibration crops span 0-255) and int8 logits; a model with any float tensor or op is refused.
  Why not float32 input/output: that adds QUANTIZE/DEQUANTIZE ops per call for nothing (the
  pixels are bytes anyway, the logits need only a softmax); uint8 would add a requantise op.
- Calibration and check crops are REAL face crops cut the device's way: the project's face mesh,
  ``minifasnet.face_box``, upstream's shift-inside crop rule. Calibration people and check people
  do not overlap (lists below), and both sides hold live faces and attacks.
- The manifest beside each model: what the device wrapper needs (input, colour order, value range,
  crop rule and scale, classes, sha256) plus the source's sha256, the licence and the check results.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_liveness.liveness.minifasnet import (BOX_FACTOR, BOX_HEIGHT, BOX_SHIFT_Y, BOX_WIDTH, INPUT_SIZE, MODEL_NAMES,
                                               REAL_CLASS, crop_for, face_box)

REPO = Path(__file__).resolve().parents[2]
ONNX_DIR = "models/antispoof_silentface_minifasnet"
UPSTREAM = {"repository": "minivision-ai/Silent-Face-Anti-Spoofing", "commit": "b6d5f04ad787",
            "path": "resources/anti_spoof_models/", "licence": "Apache-2.0"}
# (onnx file, pinned sha256 of it, crop scale, output name): the shared README's table
SOURCES = (
    ("2.7_80x80_MiniFASNetV2.onnx", "c5c5a1b8e44954a37ad6082d272bf9f6bffa05176870504a689ea3c092b8453a", 2.7, MODEL_NAMES[0]),
    ("4_0_0_80x80_MiniFASNetV1SE.onnx", "10ab7233411e1765b787f5bc2bf78699a9ec09e59dce917b2290b13ea9c69b79", 4.0, MODEL_NAMES[1]),
)
CLASSES = ["attack (upstream class 0)", "real", "attack (upstream class 2)"]
FLOAT_TOLERANCE = 1e-3  # max |logit| difference, Keras float vs ONNX Runtime
CROP_RULE = ("face box (x0, y0, x1, y1) scaled about its centre by `crop.scale`; the scale first reduced to "
             "min(scale, (H-1)/box_h, (W-1)/box_w) so it fits, then the window shifted inside the frame, never padded; "
             "pixels [top..bottom, left..right] inclusive (int() of the float corners), resized to 80x80 bilinear "
             "(edge_liveness.liveness.minifasnet.crop_for, upstream src/generate_patches.py)")
BOX_RULE = (f"edge_liveness.liveness.minifasnet.face_box: face-mesh extent, width x {BOX_WIDTH}, height x {BOX_HEIGHT}, "
            f"centre moved {BOX_SHIFT_Y} x height, then x {BOX_FACTOR} (measured against a WIDER FACE RetinaFace: models/README.md)")


@dataclass(frozen=True)
class Source:
    path: str  # under the shared data folder: a video, an image folder or one image
    label: int  # 1 live, 0 attack
    person: str
    n: int  # frames taken, evenly spaced
    tight: bool = False  # a tight face crop: when no face is found the whole image is the box


def _nuaa(subjects: range, n: int) -> list[Source]:
    return [Source(f"liveness/nuaa/{lab}/{s:04d}", int(lab == "live"), f"nuaa_{s:04d}", n)
            for s in subjects for lab in ("live", "spoof")]


def _replay_crops(people: tuple[str, ...], n: int) -> list[Source]:
    return [Source(f"liveness/selfie_replay_more/{p}/{lab}", int(lab == "real"), p, n, tight=True)
            for p in people for lab in ("real", "fake")]


CALIBRATION = (_nuaa(range(1, 6), 12) + [
    Source("video/tranvanluyt_real.mp4", 1, "tranvanluyt", 16), Source("video/tranvanluyt_fake_screen_replay.mp4", 0, "tranvanluyt", 16),
    Source("video/zubair_real.mov", 1, "zubair", 12), Source("video/zubair_fake_phone_replay.mp4", 0, "zubair", 12),
    Source("video/apfol_real2.webm", 1, "apfol", 12), Source("video/apfol_fake2.webm", 0, "apfol", 12),
] + _replay_crops(("trickyf0x", "krzysiek", "balveer"), 8))
CHECK = (_nuaa(range(6, 11), 8) + [
    Source("video/lestari_real.mp4", 1, "lestari", 16), Source("video/lestari_fake_phone_replay.mp4", 0, "lestari", 16),
    Source("video/saikan45_backlit_man_1.avi", 1, "saikan45", 8),
] + _replay_crops(("dsourav", "jtboing", "wolfhuo", "vishal", "shubhamlala"), 6))


class MiniFASNetConvertError(ValueError):
    """Conversion refused (one line naming the problem and the fix)."""


def shared_root() -> Path:
    return Path(os.environ.get("EDGE_LIVENESS_SHARED_DATA", REPO.parent / "shared" / "data"))


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sample_frames(path: Path, n: int) -> list[np.ndarray]:
    """``n`` evenly spaced frames (BGR) of a video, an image folder (sorted) or one image."""
    import cv2

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
        pick = [files[int(i)] for i in np.unique(np.linspace(0, len(files) - 1, min(n, len(files))).round())] if files else []
        return [im for im in (cv2.imread(str(p)) for p in pick) if im is not None]
    if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"):
        im = cv2.imread(str(path))
        return [] if im is None else [im]
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        # skip the first and last half second: recordings start and stop with the hand on the button
        want = set(np.linspace(15, max(total - 16, 15), n).round().astype(int).tolist()) if total > 0 else set(range(0, 30 * n, 30))
        i = 0
        while len(frames) < len(want):
            ok, fr = cap.read()
            if not ok:
                break
            if i in want:
                frames.append(fr)
            i += 1
    finally:
        cap.release()
    return frames


@dataclass
class Crops:
    by_scale: dict[float, np.ndarray]  # scale -> (N, 80, 80, 3) uint8 BGR
    labels: np.ndarray
    people: list[str]
    no_face: int  # frames skipped (no face; tight crops fall back to the whole image instead)
    whole_image: int  # tight crops that used the whole image as the box


def cut_crops(sources: list[Source], root: Path, finder, scales: tuple[float, ...]) -> Crops:
    """Face crops of every source, cut as the device cuts them (mesh -> face_box -> crop_for)."""
    out: dict[float, list[np.ndarray]] = {s: [] for s in scales}
    labels, people, no_face, whole = [], [], 0, 0
    for src in sources:
        path = root / src.path
        if not path.exists():
            raise MiniFASNetConvertError(f"{path} is missing: put the shared data at {root} (or set EDGE_LIVENESS_SHARED_DATA)")
        for frame in sample_frames(path, src.n):
            finder.reset()  # unrelated frames: no tracking from one to the next
            view = finder.process(frame)
            if view.landmarks is not None:
                box = face_box(view.landmarks)
            elif src.tight:
                h, w = frame.shape[:2]
                box, whole = (0.0, 0.0, float(w - 1), float(h - 1)), whole + 1
            else:
                no_face += 1
                continue
            for s in scales:
                out[s].append(crop_for(frame, box, s))
            labels.append(src.label)
            people.append(src.person)
    return Crops({s: np.stack(v) for s, v in out.items()}, np.array(labels), people, no_face, whole)


def face_finder():
    from edge_liveness.config import load_settings
    from edge_liveness.vision.tracking import FaceFinder

    return FaceFinder.from_settings(load_settings())


def onnx_logits(onnx_path: Path, crops: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: crops[i:i + 64].astype(np.float32).transpose(0, 3, 1, 2)})[0]
                           for i in range(0, len(crops), 64)])


def tflite_logits(model_bytes: bytes, crops: np.ndarray) -> tuple[np.ndarray, tuple[float, int]]:
    """Dequantised logits through the device's runtime wrapper (input quantised by its scale/zero
    point), and that input (scale, zero point)."""
    from edge_liveness.vision.runtime import TFLiteModel

    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(model_bytes)
        f.flush()
        m = TFLiteModel(f.name, num_threads=1)
    logits = np.stack([m.run(c[None].astype(np.float32))[0].reshape(-1) for c in crops])
    return logits, (m.input.scale, m.input.zero_point)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def to_int8(keras_model, calibration: np.ndarray) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calibration[i:i + 1].astype(np.float32)] for i in range(len(calibration)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with contextlib.redirect_stdout(sys.stderr):  # the converter prints its traced signature; stdout carries data
        return conv.convert()


def not_integer(model_bytes: bytes, inspect) -> list[str]:
    """``convert.inspect_int8``'s problems, less PAD's int32 paddings operand (a shape, like RESHAPE's:
    the explicit ZeroPadding2D where ONNX pads a stride-2 conv on both sides and TF's 'same' would not)."""
    from ai_edge_litert import interpreter as litert

    interp = litert.Interpreter(model_content=model_bytes,
                                experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    names = {d["index"]: d["name"] for d in interp.get_tensor_details()}
    pads = {names[int(op["inputs"][1])][:60] for op in interp._get_ops_details() if op["op_name"] in ("PAD", "PADV2")}
    return [p for p in inspect(model_bytes)[1] if not any(p == f"tensor {n} (activation) is int32" for n in pads)]


def agreement(ref_logits: list[np.ndarray], q_logits: list[np.ndarray]) -> dict:
    """int8 vs ONNX Runtime: |dP(real)| and argmax agreement (one model: a list of one; the pair: two)."""
    p_ref = np.mean([softmax(z) for z in ref_logits], axis=0)
    p_q = np.mean([softmax(z) for z in q_logits], axis=0)
    d = np.abs(p_q[:, REAL_CLASS] - p_ref[:, REAL_CLASS])
    return {"n": int(len(d)), "mean_abs_dp_real": round(float(d.mean()), 4), "p95_abs_dp_real": round(float(np.percentile(d, 95)), 4),
            "max_abs_dp_real": round(float(d.max()), 4),
            "argmax_agreement": round(float(np.mean(p_q.argmax(1) == p_ref.argmax(1))), 4),
            "decision_agreement_at_0.5": round(float(np.mean((p_q[:, REAL_CLASS] >= 0.5) == (p_ref[:, REAL_CLASS] >= 0.5))), 4)}


def manifest(name: str, onnx_file: str, onnx_sha: str, scale: float, model_bytes: bytes, calib: Crops, check: dict) -> dict:
    return {
        "name": Path(name).stem, "source_onnx": {"file": onnx_file, "sha256": onnx_sha}, "upstream": UPSTREAM,
        "licence": "Apache-2.0",
        "input_size": [INPUT_SIZE, INPUT_SIZE], "color_order": "BGR",
        "value_range": "raw pixels 0-255, no normalisation; int8 input q = round(pixel / scale) + zero point: "
                       f"scale {check['model']['input_scale_zero_point'][0]}, zero point {check['model']['input_scale_zero_point'][1]}"
                       " (1.0 and -128: q = pixel - 128)",
        "crop": {"size": INPUT_SIZE, "scale": scale, "rule": CROP_RULE, "box": BOX_RULE},
        "classes": CLASSES, "real_class": REAL_CLASS,
        "output": "3 int8 logits; softmax; P(real) = softmax[1]; the pair's P(real) = mean over the two models",
        "quantization": "full integer: int8 weights, activations, input and output (int32 biases)",
        "calibration": {"crops": int(len(calib.labels)), "live": int(calib.labels.sum()), "attack": int((calib.labels == 0).sum()),
                        "people": sorted(set(calib.people))},
        "check_vs_onnxruntime": check,
        "converter": "python -m converters.passive.minifasnet --out models/",
        "sha256": hashlib.sha256(model_bytes).hexdigest(), "size_bytes": len(model_bytes),
    }


def convert(out: Path, onnx_dir: Path, root: Path, log=print) -> dict:
    from converters.passive.convert import inspect_int8
    from converters.passive.onnx_import import to_keras

    for f, sha, _, _ in SOURCES:
        p = onnx_dir / f
        if not p.is_file():
            raise MiniFASNetConvertError(f"{p} is missing: give --onnx-dir the folder with the two MiniFASNet ONNX files")
        if sha256_file(p) != sha:
            raise MiniFASNetConvertError(f"{p} has sha256 {sha256_file(p)[:12]}..., expected {sha[:12]}...: restore the pinned file")
    finder = face_finder()
    scales = tuple(s for _, _, s, _ in SOURCES)
    log(f"cutting calibration crops ({len(CALIBRATION)} sources) and check crops ({len(CHECK)} sources) ...")
    calib, check = cut_crops(CALIBRATION, root, finder, scales), cut_crops(CHECK, root, finder, scales)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"calibration_crops": len(calib.labels), "check_crops": len(check.labels), "check_people": sorted(set(check.people)),
                     "no_face_skipped": calib.no_face + check.no_face, "whole_image_boxes": calib.whole_image + check.whole_image,
                     "models": {}}
    refs, quants, built = [], [], []
    for f, sha, scale, name in SOURCES:
        km = to_keras(onnx_dir / f, batch_size=1)
        ref = onnx_logits(onnx_dir / f, check.by_scale[scale])
        float_diff = float(np.abs(km.predict(check.by_scale[scale].astype(np.float32), batch_size=32, verbose=0) - ref).max())
        if float_diff > FLOAT_TOLERANCE:
            raise MiniFASNetConvertError(f"{f}: the imported Keras model differs from ONNX Runtime by {float_diff:.2g} in a logit "
                                         f"(tolerance {FLOAT_TOLERANCE}): the importer is wrong for this graph")
        log(f"{f}: Keras float matches ONNX Runtime (max |logit diff| {float_diff:.2g}); converting to int8 ...")
        model_bytes = to_int8(km, calib.by_scale[scale])
        problems = not_integer(model_bytes, inspect_int8)
        if problems:
            raise MiniFASNetConvertError(f"{f}: the int8 model is not fully integer ({problems[0]}; {len(problems)} problems)")
        q, in_quant = tflite_logits(model_bytes, check.by_scale[scale])
        refs.append(ref)
        quants.append(q)
        stats = {"float_max_abs_logit_diff": float_diff, "input_scale_zero_point": [in_quant[0], in_quant[1]], **agreement([ref], [q])}
        built.append((name, f, sha, scale, model_bytes, stats))
        summary["models"][name] = {**stats, "sha256": hashlib.sha256(model_bytes).hexdigest(), "size_bytes": len(model_bytes)}
    summary["pair"] = agreement(refs, quants)
    for name, f, sha, scale, model_bytes, stats in built:
        (out / name).write_bytes(model_bytes)
        m = manifest(name, f, sha, scale, model_bytes, calib, {"model": stats, "pair": summary["pair"],
                                                               "people": sorted(set(check.people))})
        (out / name).with_suffix(".json").write_text(json.dumps(m, indent=2) + "\n", encoding="utf-8")
        log(f"wrote {out / name} ({len(model_bytes)} B) + manifest")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.passive.minifasnet", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the .tflite files and their manifests (models/)")
    ap.add_argument("--shared", type=Path, default=None, help="the shared data folder (default ../shared/data)")
    ap.add_argument("--onnx-dir", type=Path, default=None, help=f"the ONNX files (default <shared>/{ONNX_DIR})")
    args = ap.parse_args(argv)
    root = args.shared or shared_root()
    from edge_liveness.vision.runtime import ModelError
    from converters.passive.onnx_import import OnnxImportError

    try:
        summary = convert(args.out, args.onnx_dir or root / ONNX_DIR, root, log=lambda m: print(m, file=sys.stderr))
    except (MiniFASNetConvertError, OnnxImportError, ModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
