"""The TFLite runtime wrapper on real model files."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_file
from edge_liveness.vision.runtime import ModelError, TFLiteModel, make_interpreter


def test_float_model_loads_with_litert_and_knows_its_input(face_models):
    m = TFLiteModel(face_models / "face_detection_short_range.tflite", num_threads=2)
    assert m.runtime == "ai-edge-litert"
    assert m.input_size == (128, 128) and m.input_dtype == np.float32 and not m.input.quantized
    regressors, scores = sorted(m.run(np.zeros((128, 128, 3), np.float32)), key=lambda a: a.shape[-1])[::-1]
    assert regressors.shape == (1, 896, 16) and scores.shape == (1, 896, 1)
    assert m.describe()["threads"] == 2


def test_quantised_model_converts_in_and_out():
    path = shared_file("models", "imagenet_mobilenet_v2_int8_tflite_coral", "tf2_mobilenet_v2_1.0_224_ptq.tflite")
    m = TFLiteModel(path)
    spec = m.input
    assert spec.quantized and spec.dtype in (np.int8, np.uint8) and spec.scale > 0
    x = np.linspace(-1, 1, 224 * 224 * 3, dtype=np.float32).reshape(224, 224, 3)
    q = m.quantize_input(x)
    assert q.dtype == spec.dtype
    # Round trip through the quantisation is within one step.
    back = (q.astype(np.float32) - spec.zero_point) * spec.scale
    assert np.max(np.abs(back - x)) <= spec.scale * 0.51 + 1e-6
    (probs,) = m.run(x)
    assert probs.dtype == np.float32 and probs.shape[-1] == 1001
    # Raw path: the same input bytes give the same output as run().
    m.set_input_raw(q[None])
    m.invoke()
    assert np.array_equal(m.output(0), probs)


def test_missing_and_corrupt_models_are_one_line(tmp_path):
    with pytest.raises(ModelError, match="models fetch"):
        TFLiteModel(tmp_path / "nope.tflite")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ModelError, match="not a TFLite model") as e:
        TFLiteModel(bad)
    assert "\n" not in str(e.value)
    good = shared_file("models", "imagenet_mobilenet_v2_int8_tflite_coral", "tf2_mobilenet_v2_1.0_224_ptq.tflite").read_bytes()
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(good[: len(good) // 3])
    with pytest.raises(ModelError):
        TFLiteModel(truncated)


def test_model_the_runtime_cannot_parse_is_one_line():
    # MediaPipe Tasks' newer blaze_face file (with metadata) is rejected by ai-edge-litert 2.3:
    # a real example of "valid TFLite header, still unusable".
    path = shared_file("models", "facedet_mediapipe_blazeface", "blaze_face_short_range.tflite")
    with pytest.raises(ModelError, match="could not be loaded") as e:
        TFLiteModel(path)
    assert "\n" not in str(e.value)


def test_fallback_runtime_reports_why_it_is_unusable():
    data = shared_file("models", "imagenet_mobilenet_v2_int8_tflite_coral", "tf2_mobilenet_v2_1.0_224_ptq.tflite").read_bytes()
    try:
        import tflite_runtime  # noqa: F401
        pytest.skip("tflite-runtime is installed here")
    except ImportError:
        pass
    with pytest.raises(ModelError, match="tflite-runtime: not installed"):
        make_interpreter(data, prefer="tflite-runtime")
