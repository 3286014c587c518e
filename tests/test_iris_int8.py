"""The int8 eye model (converters/blink/iris_int8.py, models/iris_landmark_int8.tflite) on real eyes."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, shared_file
from fixtures_models import video_frames
from edge_liveness.vision.eye_signals import ear_from_points
from edge_liveness.vision.eyes import EyeRefiner
from edge_liveness.vision.modelstore import WHEEL_REQUIREMENT, ModelStore, _by_key

INT8 = REPO / "models" / "iris_landmark_int8.tflite"
MANIFEST = INT8.with_suffix(".json")


def _faces(face_finder, video, start, stop) -> dict:
    """frame index -> (frame, mesh points) for start..stop-1; the finder tracks from frame 0, as in a replay."""
    face_finder.reset()
    out = {}
    for i, _, frame in video_frames(video, 0, stop):
        lm = face_finder.process(frame).landmarks
        if lm is not None and i >= start:
            out[i] = (frame, lm.points)
    return out


def test_committed_int8_model_matches_its_manifest():
    from converters.blink.iris_int8 import integer_only

    m = json.loads(MANIFEST.read_text())
    data = INT8.read_bytes()
    assert m["sha256"] == hashlib.sha256(data).hexdigest() and m["size_bytes"] == len(data)
    # made from the pinned wheel's eye model, nothing else
    assert m["source"]["sha256"] == _by_key("eyes").sha256 and m["source"]["wheel"] == WHEEL_REQUIREMENT
    assert integer_only(data) == []
    assert m["input_quantization"] == [pytest.approx(1 / 255), -128]
    # calibrated on other people than it was checked on
    assert not set(m["calibration"]["zju_people"]) & set(m["check"]["zju_people"])
    assert not set(m["calibration"]["videos"]) & set(m["check"]["videos"])
    assert m["check_rebuilt_float_vs_file"]["contour_px"]["max"] < 0.01
    assert m["check_int8_vs_float"]["ear_abs_diff"]["mean"] < 0.01


def test_rebuild_knows_the_eye_model_ops_and_refuses_others(float_eye_store):
    pytest.importorskip("tensorflow", reason="the rebuild reads the flatbuffer with TensorFlow's schema (workstation)")
    from converters.blink.iris_rebuild import KNOWN_OPS, IrisConvertError, read_graph

    store = float_eye_store
    ops, ins, outs = read_graph(store.path("eyes").read_bytes())
    assert {o.kind for o in ops} == set(KNOWN_OPS) and len(ins) == 1 and len(outs) == 2
    # the face mesh keeps float16 weights behind DEQUANTIZE ops; the detector concatenates
    for key, op in (("landmarks", "DEQUANTIZE"), ("detector", "CONCATENATION")):
        with pytest.raises(IrisConvertError, match=op):
            read_graph(store.path(key).read_bytes())


def test_rebuilt_float_model_matches_the_file_on_real_eye_crops(face_finder, float_eye_store, shared_data):
    pytest.importorskip("tensorflow", reason="the rebuild is Keras (workstation)")
    from converters.blink.iris_int8 import REBUILD_TOLERANCE_PX, build_keras, compare, keras_points, tflite_points

    path = float_eye_store.path("eyes")
    refiner = EyeRefiner(path)
    faces = list(_faces(face_finder, shared_file("video", "apfol_real2.webm"), 0, 40).values())[::4]
    crops = np.concatenate([refiner.crops(f, p) for f, p in faces])
    data = path.read_bytes()
    diff = compare(tflite_points(data, crops), keras_points(build_keras(data), crops), digits=6)
    assert len(crops) >= 16
    assert diff["contour_px"]["max"] < REBUILD_TOLERANCE_PX and diff["iris_px"]["max"] < REBUILD_TOLERANCE_PX


def test_int8_eye_model_reads_a_real_blink_like_the_float_one(face_finder, float_eye_store, shared_data):
    # tranvanluyt_real.mp4 (never in the calibration): a blink at 531-536 (tests/data/blinks)
    faces = _faces(face_finder, shared_file("video", "tranvanluyt_real.mp4"), 500, 560)
    assert len(faces) == 60
    f32, q8 = EyeRefiner(float_eye_store.path("eyes")), EyeRefiner(INT8)
    assert q8.model.input.dtype == np.int8
    frame, points = faces[500]
    # the int8 input is the float input quantised (q = pixel - 128)
    assert np.array_equal(q8.crops(frame, points), q8.model.quantize_input(f32.crops(frame, points)))

    def ears(refiner, i):
        pair = refiner.run(*faces[i])
        return [ear_from_points(pair.left.ear_points), ear_from_points(pair.right.ear_points)]

    e32 = np.array([ears(f32, i) for i in sorted(faces)])
    e8 = np.array([ears(q8, i) for i in sorted(faces)])
    d = np.abs(e8 - e32)
    assert d.mean() < 0.015 and d.max() < 0.05
    # both see the lids shut in the blink (531-536) and open before it (500-524)
    for e in (e32, e8):
        assert np.all(e[31:37].min(axis=0) < 0.6 * np.median(e[:25], axis=0))


def test_cli_bad_input_is_one_line(tmp_path):
    cmd = [sys.executable, "-m", "converters.blink.iris_int8"]
    r = subprocess.run(cmd + ["convert", "--out", str(tmp_path), "--src", str(tmp_path / "none.tflite")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "not the pinned eye model" in r.stderr
    r = subprocess.run(cmd + ["score", str(tmp_path), "--eyes", str(INT8)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no video under" in r.stderr


def test_the_default_eye_model_is_the_bundled_int8_copy_and_it_is_verified(tmp_path, monkeypatch):
    # the default `models.eyes = "iris_landmark_int8.tflite"` loads the copy shipped in the package, pinned by
    # sha256 like the wheel's models, with no fetch; an altered copy is refused with one line, never loaded
    from edge_liveness.config import load_settings
    from edge_liveness.vision import runtime
    from edge_liveness.vision.modelstore import BUNDLED_ALTERNATIVES

    s = load_settings()
    assert s.models.eyes == "iris_landmark_int8.tflite"
    s = s.model_copy(update={"models": s.models.model_copy(update={"dir": str(tmp_path)})})
    store = ModelStore.from_settings(s)
    assert store.locate("eyes") == runtime.bundled_model_path("iris_landmark_int8.tflite")
    assert BUNDLED_ALTERNATIVES["eyes"]["iris_landmark_int8.tflite"] == json.loads(INT8.with_suffix(".json").read_text())["sha256"]
    refiner = EyeRefiner.from_settings(s)
    assert refiner is not None and refiner.model.input.dtype == np.int8
    altered = tmp_path / "iris_landmark_int8.tflite"
    altered.write_bytes(INT8.read_bytes()[:-1] + b"\0")
    monkeypatch.setattr(runtime, "bundled_model_path", lambda name: tmp_path / name)
    with pytest.raises(runtime.ModelError) as e:
        store.locate("eyes")
    assert "\n" not in str(e.value) and "7290a8fdab48" in str(e.value)
    with pytest.raises(runtime.ModelError, match="reinstall"):
        store.fetch(tmp_path / "no.whl", log=lambda m: None)
