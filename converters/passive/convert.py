"""`edge-liveness convert`: Keras liveness model -> TFLite (int8 / float16 / dynamic / none) + manifest.

int8 is full-integer: int8 weights and activations, int8 input and output; representative data are
real face crops of both classes. A converted model in which any op would still compute in float is
refused (the device would silently run slow float kernels or fail on an int8-only accelerator).

The manifest ``<OUT stem>.json`` beside the model tells the device how to feed it and where to cut:
its threshold is chosen on the CONVERTED model's own scores (int8 squashes a confident sigmoid into
256 levels, so the float threshold does not carry over).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import json
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.measure import pad_metrics
from converters.data.crop_folders import CropSet, load_crops
from converters.data.dataset import DatasetError

log = logging.getLogger("converters.convert")

QUANT_MODES = ("int8", "float16", "dynamic", "none")
NORMALIZATION = "none outside the model: raw RGB 0..255 in (Rescaling(1/127.5, -1) is inside); int8 input q = pixel - 128"


class ConvertError(ValueError):
    """Conversion refused (message is one line naming the problem and the fix)."""


@dataclass
class TensorReport:
    name: str
    dtype: str
    shape: list[int]
    role: str  # input, output, weight, bias, activation


def load_keras(path: Path):
    import keras

    if path.is_dir():
        return None  # SavedModel: converted straight from the directory
    if not path.is_file():
        raise ConvertError(f"{path}: no such model file (give a .keras, .h5 or SavedModel folder)")
    if path.suffix.lower() not in (".keras", ".h5"):
        raise ConvertError(f"{path}: unknown model format (give a .keras, .h5 or SavedModel folder)")
    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as e:  # noqa: BLE001 - keras raises many kinds; one line is what the user needs
        raise ConvertError(f"{path}: cannot load the Keras model ({str(e).splitlines()[0][:160]})") from None


def _representative(images: np.ndarray, n: int, seed: int):
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(images))[:n]

    def gen():
        for i in idx:
            yield [images[i:i + 1].astype(np.float32)]

    return gen


def to_tflite(model_path: Path, quantize: str, calibration: CropSet | None, keras_model=None, n_calib: int = 300,
              seed: int = 0) -> bytes:
    import tensorflow as tf

    if quantize not in QUANT_MODES:
        raise ConvertError(f"--quantize must be one of {', '.join(QUANT_MODES)}, got {quantize!r}")
    if model_path.is_dir():
        conv = tf.lite.TFLiteConverter.from_saved_model(str(model_path))
    else:
        conv = tf.lite.TFLiteConverter.from_keras_model(keras_model if keras_model is not None else load_keras(model_path))
    if quantize == "int8":
        if calibration is None or len(calibration) == 0:
            raise ConvertError("int8 needs --calibration DIR with real face crops (100-500, both classes)")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _representative(calibration.images, n_calib, seed)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    elif quantize == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        # the converter prints its traced signature to stdout, which carries data: send it to stderr
        with contextlib.redirect_stdout(sys.stderr):
            return conv.convert()
    except Exception as e:  # noqa: BLE001
        first = next((ln for ln in str(e).splitlines() if "error" in ln.lower()), str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise ConvertError(f"conversion to {quantize} failed: {first.strip()[:200]} (an op without an int8 kernel? keep the "
                           f"model to MobileNetV2 + Dense layers)") from None


def inspect_int8(model: bytes) -> tuple[list[TensorReport], list[str]]:
    """Every tensor of the model with its role, and the problems that make it not fully integer.

    Allowed: int8 everywhere, int32 only for biases (TFLite's int8 kernels take int32 bias with
    scale = input scale x weight scale) and shape operands (RESHAPE's target shape).
    """
    from ai_edge_litert import interpreter as litert

    interp = litert.Interpreter(model_content=model,
                                experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    details = {d["index"]: d for d in interp.get_tensor_details()}
    inputs = {d["index"] for d in interp.get_input_details()}
    outputs = {d["index"] for d in interp.get_output_details()}
    roles: dict[int, str] = {}
    problems: list[str] = []
    referenced: set[int] = set(inputs) | set(outputs)
    for op in interp._get_ops_details():
        ins = [int(i) for i in op["inputs"] if int(i) >= 0]
        referenced.update(ins, (int(i) for i in op["outputs"]))
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            if len(ins) > 1:
                roles.setdefault(ins[1], "weight")
            if len(ins) > 2:
                roles.setdefault(ins[2], "bias")
        elif op["op_name"] in ("RESHAPE",) and len(ins) > 1:
            roles.setdefault(ins[1], "shape")
        elif op["op_name"] in ("MEAN", "SUM") and len(ins) > 1:
            roles.setdefault(ins[1], "axis")
        for t in [*ins, *[int(i) for i in op["outputs"]]]:
            dt = np.dtype(details[t]["dtype"])
            if dt == np.float32 or dt == np.float16:
                problems.append(f"{op['op_name']} uses {dt.name} tensor {details[t]['name'][:60]}")
        if op["op_name"] in ("DEQUANTIZE",):
            problems.append("DEQUANTIZE op: part of the graph would run in float")
    report = []
    for i, d in details.items():
        if i not in referenced:  # kernels' own scratch buffers (unnamed, outside the graph)
            continue
        role = "input" if i in inputs else "output" if i in outputs else roles.get(i, "activation")
        dt = np.dtype(d["dtype"]).name
        report.append(TensorReport(d["name"], dt, [int(s) for s in d["shape"]], role))
        if dt == "int32" and role not in ("bias", "shape", "axis"):
            problems.append(f"tensor {d['name'][:60]} ({role}) is int32")
        elif dt not in ("int8", "int32"):
            problems.append(f"tensor {d['name'][:60]} ({role}) is {dt}")
    return report, sorted(set(problems))


def tflite_scores(model_bytes: bytes, images: np.ndarray) -> np.ndarray:
    """P(live) of a TFLite model for RGB uint8 crops (through the device runtime wrapper)."""
    from edge_liveness.vision.runtime import TFLiteModel

    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(model_bytes)
        f.flush()
        m = TFLiteModel(f.name, num_threads=2)
    out = np.empty(len(images), np.float32)
    for i, img in enumerate(images):
        out[i] = float(m.run(img[None].astype(np.float32))[0].reshape(-1)[0])
    return out


def keras_scores(model, images: np.ndarray) -> np.ndarray:
    from converters.passive.train import predict

    return predict(model, images)


def _model_metrics_json(model_path: Path) -> dict:
    p = (model_path if model_path.is_dir() else model_path.parent) / "metrics.json"
    try:
        return json.loads(p.read_text()) if p.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def write_manifest(out: Path, model_bytes: bytes, *, input_size: int, crop: dict, threshold: float, source: Path,
                   quantize: str, extra: dict | None = None) -> Path:
    manifest = {
        "name": out.stem,
        "input_size": [int(input_size), int(input_size)],
        "color_order": "RGB",
        "normalization": NORMALIZATION,
        "crop": {"size": int(crop["size"]), "margin": float(crop["margin"]), "anchors": "face mesh eyes + mouth (align.py)"},
        "output": "P(live)",
        "output_meaning": "probability that the crop shows a live face; accept as live when >= threshold",
        "threshold": float(threshold),
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "size_bytes": len(model_bytes),
        "source_model": str(source),
        "quantization": {"int8": "full integer: int8 weights, activations, input and output (int32 biases)",
                         "float16": "float16 weights, float32 compute", "dynamic": "int8 weights, float activations",
                         "none": "float32"}[quantize],
        "quantize_mode": quantize,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    manifest.update(extra or {})
    mp = out.with_suffix(".json")
    mp.write_text(json.dumps(manifest, indent=2) + "\n")
    return mp


def compare(labels: np.ndarray, float_scores: np.ndarray, float_thr: float, q_scores: np.ndarray, q_thr: float) -> dict:
    f = pad_metrics.rates(labels, float_scores, float_thr)
    q = pad_metrics.rates(labels, q_scores, q_thr)
    agree = float(((float_scores >= float_thr) == (q_scores >= q_thr)).mean())
    return {"float": f.to_dict(), "converted": q.to_dict(), "agreement": agree,
            "acer_drop": (q.acer - f.acer) if q.acer is not None and f.acer is not None else None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help=".keras, .h5 or SavedModel folder")
    parser.add_argument("--quantize", choices=QUANT_MODES, default="int8")
    parser.add_argument("--calibration", help="folder of real face crops (both classes; index.csv or live/spoof folders): "
                                              "int8 representative data and, unless --threshold-data, the threshold")
    parser.add_argument("-o", "--out", required=True, help="output .tflite (the manifest goes beside it as .json)")
    parser.add_argument("--eval", dest="eval_dir", help="labelled crops: compare float and converted (accuracy, APCER, BPCER, ACER, AUC)")
    parser.add_argument("--max-drop", type=float, default=0.01, help="with --eval: fail when ACER rises by more than this (default 0.01)")
    parser.add_argument("--threshold-data", help="labelled validation crops to choose the threshold on (default: --calibration)")
    parser.add_argument("--threshold", type=float, help="fixed threshold instead of choosing one")
    parser.add_argument("--num-calibration", type=int, default=300, help="representative crops used (100-500, default 300)")
    parser.add_argument("--crop-size", type=int, help="crop size for the manifest (default: from the calibration dataset.json)")
    parser.add_argument("--crop-margin", type=float, help="crop margin for the manifest (default: from dataset.json)")
    parser.add_argument("--seed", type=int, default=0)


def main(args) -> int:
    try:
        return _main(args)
    except (ConvertError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(args) -> int:
    src, out = Path(args.model), Path(args.out)
    if out.suffix != ".tflite":
        raise ConvertError(f"-o {out}: give a .tflite file name (the manifest is written beside it as .json)")
    if not src.exists():
        raise ConvertError(f"{src}: no such model (give a .keras, .h5 or SavedModel folder)")
    keras_model = load_keras(src)
    size = int(keras_model.input_shape[1]) if keras_model is not None else None
    calib = load_crops(Path(args.calibration), size=size) if args.calibration else None
    if calib is not None and len(set(calib.labels.tolist())) < 2:
        log.warning("calibration crops hold one class only: quantisation ranges may not cover the other")
    size = size or (calib.images.shape[1] if calib is not None else None)
    if size is None:
        raise ConvertError("cannot tell the input size: give --calibration crops")
    print(f"converting {src.name} to {args.quantize} ...", file=sys.stderr, flush=True)
    model_bytes = to_tflite(src, args.quantize, calib, keras_model, args.num_calibration, args.seed)
    if args.quantize == "int8":
        report, problems = inspect_int8(model_bytes)
        if problems:
            raise ConvertError(f"the int8 model is not fully integer ({len(problems)} problems, first: {problems[0]}): "
                               f"remove the layer that has no int8 kernel")
        n32 = sum(1 for t in report if t.dtype == "int32")
        print(f"fully integer: {len(report)} tensors, all int8 except {n32} int32 biases/shape operands", file=sys.stderr)
    # threshold on the converted model's own scores
    thr_set = load_crops(Path(args.threshold_data), size=size) if args.threshold_data else calib
    meta = _model_metrics_json(src)
    q_thr_scores = None
    if args.threshold is not None:
        threshold = float(args.threshold)
    elif thr_set is not None and len(set(thr_set.labels.tolist())) == 2:
        q_thr_scores = tflite_scores(model_bytes, thr_set.images)
        threshold = pad_metrics.choose_threshold(thr_set.labels, q_thr_scores)
    else:
        raise ConvertError("no threshold: give --threshold-data (labelled validation crops of both classes) or --threshold")
    crop = dict((calib.crop if calib is not None and calib.crop else None) or meta.get("crop") or {})
    if args.crop_size:
        crop["size"] = args.crop_size
    if args.crop_margin is not None:
        crop["margin"] = args.crop_margin
    if crop.get("size") is None or crop.get("margin") is None:
        raise ConvertError("crop size/margin unknown: give --crop-size and --crop-margin (the values `dataset extract` used)")
    out.parent.mkdir(parents=True, exist_ok=True)
    extra: dict = {}
    rc = 0
    if args.eval_dir:
        ev = load_crops(Path(args.eval_dir), size=size)
        if keras_model is None:
            raise ConvertError("--eval compares against the Keras model: give a .keras or .h5 MODEL")
        fs_thr = thr_set if thr_set is not None else ev
        f_thr = pad_metrics.choose_threshold(fs_thr.labels, keras_scores(keras_model, fs_thr.images)) if args.threshold is None else threshold
        cmp = compare(ev.labels, keras_scores(keras_model, ev.images), f_thr, tflite_scores(model_bytes, ev.images), threshold)
        cmp["eval_dir"] = str(args.eval_dir)
        extra["eval"] = cmp
        print(json.dumps(cmp, indent=2))
        if cmp["acer_drop"] is not None and cmp["acer_drop"] > args.max_drop:
            print(f"error: {args.quantize} ACER {cmp['converted']['acer']:.4f} is {cmp['acer_drop']:.4f} worse than float "
                  f"{cmp['float']['acer']:.4f} (more than --max-drop {args.max_drop})", file=sys.stderr)
            rc = 1
    if thr_set is not None and q_thr_scores is not None:
        r = pad_metrics.rates(thr_set.labels, q_thr_scores, threshold)
        extra["threshold_data"] = {"dir": str(args.threshold_data or args.calibration), "n": len(thr_set), **r.to_dict()}
    if meta.get("train"):
        extra["training"] = {k: meta[k] for k in ("train", "config") if k in meta}
        extra["training"]["validation_subjects"] = meta.get("validation", {}).get("subjects")
    out.write_bytes(model_bytes)
    mp = write_manifest(out, model_bytes, input_size=size, crop=crop, threshold=threshold, source=src, quantize=args.quantize, extra=extra)
    print(f"wrote {out} ({len(model_bytes) / 1e6:.2f} MB) and {mp.name}; threshold {threshold:.4f}", file=sys.stderr)
    return rc
