"""`convert`: a tiny freshly built Keras MobileNetV2 to full-integer int8 (needs TensorFlow)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.workstation

SIZE = 48


def _tf_or_skip():
    try:
        import tensorflow  # noqa: F401
    except ImportError as e:
        pytest.skip(f"TensorFlow is not importable ({e}): pip install '.[workstation]'")


@pytest.fixture(scope="module")
def crops(shared_data, tmp_path_factory) -> Path:
    """Real NUAA frames of both classes, resized to SIZE (representative data for the tiny model)."""
    import cv2

    d = tmp_path_factory.mktemp("calib")
    for kind in ("live", "spoof"):
        (d / kind).mkdir()
        for f in sorted((shared_data / "liveness" / "nuaa" / kind / "0001").glob("*.jpg"))[:12]:
            img = cv2.imread(str(f))
            h, w = img.shape[:2]
            s = min(h, w)
            img = cv2.resize(img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(d / kind / f"{f.stem}.png"), img)
    return d


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    _tf_or_skip()
    import keras

    from converters.passive.model import build_model

    keras.utils.set_random_seed(1)
    model = build_model(size=SIZE, alpha=0.35, weights="none")
    # Keras' default (Glorot) init lets activations vanish through 17 bottlenecks (features ~1e-11, a
    # constant 0.5 output); He-scaled kernels keep them alive so int8 and float have something to agree on
    rng = np.random.default_rng(1)
    for layer in model.get_layer("mobilenetv2_backbone").layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            k = layer.get_weights()[0]
            fan_in = k.shape[0] * k.shape[1] * (1 if isinstance(layer, keras.layers.DepthwiseConv2D) else k.shape[2])
            layer.set_weights([rng.normal(0, np.sqrt(2.0 / fan_in), k.shape).astype(np.float32)])
    path = tmp_path_factory.mktemp("m") / "tiny.keras"
    model.save(path)
    return path


def _args(**kw) -> argparse.Namespace:
    base = dict(quantize="int8", calibration=None, out=None, eval_dir=None, max_drop=0.01, threshold_data=None,
                threshold=None, num_calibration=24, crop_size=None, crop_margin=0.25, seed=0)
    base.update(kw)
    return argparse.Namespace(**base)


def test_int8_round_trip_is_fully_integer_and_agrees_with_keras(tiny_model, crops, tmp_path, capsys):
    import keras

    from converters.passive import convert
    from converters.data.crop_folders import load_crops
    from edge_liveness.vision.runtime import TFLiteModel

    out = tmp_path / "tiny_int8.tflite"
    rc = convert.main(_args(model=str(tiny_model), calibration=str(crops), out=str(out), crop_size=SIZE))
    assert rc == 0, capsys.readouterr().err
    report, problems = convert.inspect_int8(out.read_bytes())
    assert problems == []
    by_role: dict[str, set[str]] = {}
    for t in report:
        by_role.setdefault(t.role, set()).add(t.dtype)
    assert by_role["input"] == {"int8"} and by_role["output"] == {"int8"}
    assert by_role["weight"] == {"int8"} and by_role["activation"] == {"int8"}
    # TFLite's int8 conv / fully-connected kernels take int32 biases (scale = input x weight scale)
    assert by_role["bias"] == {"int32"}
    int32 = [t for t in report if t.dtype == "int32"]
    assert int32 and all(t.role in ("bias", "shape", "axis") for t in int32)

    m = TFLiteModel(out)
    assert m.input.scale == pytest.approx(1.0) and m.input.zero_point == -128  # Rescaling is inside the model
    data = load_crops(crops, size=SIZE)
    k = keras.saving.load_model(tiny_model, compile=False)
    ref = np.asarray(k(data.images.astype(np.float32), training=False)).reshape(-1)
    q = np.array([m.run(img[None].astype(np.float32))[0].reshape(-1)[0] for img in data.images])
    assert np.ptp(ref) > 0.05  # the comparison means something only when outputs differ
    # an untrained random net amplifies rounding more than a trained one; still close per crop
    assert np.max(np.abs(q - ref)) < 0.1 and np.mean(np.abs(q - ref)) < 0.04
    assert np.corrcoef(q, ref)[0, 1] > 0.8

    manifest = json.loads(out.with_suffix(".json").read_text())
    import hashlib

    assert manifest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert manifest["input_size"] == [SIZE, SIZE] and manifest["color_order"] == "RGB"
    assert manifest["crop"]["size"] == SIZE and manifest["crop"]["margin"] == 0.25
    assert manifest["output"] == "P(live)" and 0 < manifest["threshold"] <= 1
    assert manifest["quantize_mode"] == "int8" and manifest["source_model"].endswith("tiny.keras") and manifest["created"]


def test_eval_reports_float_vs_int8(tiny_model, crops, tmp_path, capsys):
    from converters.passive import convert

    out = tmp_path / "e.tflite"
    rc = convert.main(_args(model=str(tiny_model), calibration=str(crops), out=str(out), eval_dir=str(crops), crop_size=SIZE,
                            max_drop=1.0))
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    for side in ("float", "converted"):
        assert {"accuracy", "apcer", "bpcer", "acer", "auc"} <= set(res[side])
        assert res[side]["n_live"] == res[side]["n_spoof"] == 12
    assert 0.0 <= res["agreement"] <= 1.0
    assert res["acer_drop"] == pytest.approx(res["converted"]["acer"] - res["float"]["acer"])


def test_model_with_a_float_only_op_is_refused(crops, tmp_path):
    _tf_or_skip()
    import keras

    from converters.passive import convert

    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(4, 3)(x)
    x = keras.layers.Lambda(lambda t: keras.ops.sin(t))(x)  # SIN has no int8 kernel
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1, activation="sigmoid")(x)
    from converters.data.crop_folders import load_crops

    model = keras.Model(inp, out)
    calib = load_crops(crops, size=SIZE)
    with pytest.raises(convert.ConvertError) as e:
        data = convert.to_tflite(tmp_path / "sin.keras", "int8", calib, keras_model=model, n_calib=8)
        _, problems = convert.inspect_int8(data)  # had the converter let it through, the inspection refuses
        if problems:
            raise convert.ConvertError(problems[0])
    assert "\n" not in str(e.value)


def test_bad_inputs_are_one_line(tmp_path, capsys):
    _tf_or_skip()
    from converters.passive import convert

    assert convert.main(_args(model=str(tmp_path / "none.keras"), out=str(tmp_path / "x.tflite"))) == 2
    assert "no such model" in capsys.readouterr().err
    (tmp_path / "m.keras").write_text("junk")
    assert convert.main(_args(model=str(tmp_path / "m.keras"), out=str(tmp_path / "x.bin"))) == 2
    assert ".tflite" in capsys.readouterr().err
