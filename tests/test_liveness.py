"""Device-side liveness classifier: the shipped one-view int8 model (the default until the two-view model,
tests/test_liveness_two_view.py), its manifest, and refusals (no TensorFlow)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_liveness.liveness.model import LivenessModel, default_model_path, manifest_path, read_manifest
from edge_liveness.vision.runtime import ModelError


def one_view_path() -> Path:
    return default_model_path().with_name("liveness_mnv2_int8.tflite")


@pytest.fixture(scope="module")
def model() -> LivenessModel:
    path = one_view_path()
    if not path.is_file():
        pytest.fail(f"the shipped liveness model {path} is missing (scripts/train_default_model.sh --install makes it)")
    return LivenessModel(path)


def test_manifest_is_read_and_matches_the_model(model):
    m = read_manifest(one_view_path())
    assert model.sha256 == m["sha256"]
    assert model.input_size == model.crop_size == m["input_size"][0] == m["crop"]["size"]
    assert model.crop_margin == m["crop"]["margin"]
    assert 0 < model.threshold < 1 and model.threshold == m["threshold"]
    assert m["color_order"] == "RGB" and m["output"] == "P(live)"
    # full-integer model: int8 in, int8 out, raw bytes shifted by 128
    assert model.model.input.dtype == np.int8 and model.model.outputs[0].dtype == np.int8
    assert model.model.input.scale == pytest.approx(1.0) and model.model.input.zero_point == -128


def _nuaa_crops(model, shared_data, kind: str, subject: str, n: int) -> list[np.ndarray]:
    import cv2

    from edge_liveness.vision.align import align_crop
    from edge_liveness.config import load_settings
    from edge_liveness.vision.face import FaceDetector
    from edge_liveness.vision.landmarks import Landmarker

    settings = load_settings()
    det, lm = FaceDetector.from_settings(settings), Landmarker.from_settings(settings)
    files = sorted((shared_data / "liveness" / "nuaa" / kind / subject).glob("*.jpg"))[::5][:n]
    crops = []
    for f in files:
        img = cv2.imread(str(f))
        faces = det.detect(img)
        assert faces, f"no face in {f}"
        face = max(faces, key=lambda x: x.area)
        crops.append(align_crop(img, lm.run(img, face.anchors()).anchors(), model.crop_size, model.crop_margin).image)
    return crops


# NUAA subjects 0008-0010 are held out of training, validation and the threshold choice.
@pytest.mark.parametrize("subject", ["0009", "0010"])
def test_unseen_live_face_scores_above_print_attack(model, shared_data, face_models, subject):
    live = [model.predict(c) for c in _nuaa_crops(model, shared_data, "live", subject, 6)]
    spoof = [model.predict(c) for c in _nuaa_crops(model, shared_data, "spoof", subject, 6)]
    assert all(0.0 <= p <= 1.0 for p in live + spoof)
    assert np.median(live) >= model.threshold > np.median(spoof), (live, spoof, model.threshold)


def test_predict_is_deterministic_and_checks_the_crop(model):
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (model.input_size, model.input_size, 3), dtype=np.uint8)
    assert model.predict(crop) == model.predict(crop.copy())
    with pytest.raises(ValueError, match="uint8"):
        model.predict(crop[:-1])
    with pytest.raises(ValueError, match="uint8"):
        model.predict(crop.astype(np.float32))


def test_colour_order_matters(model, shared_data, face_models):
    """The manifest says RGB: the wrapper swaps the BGR frame itself, so a swapped input changes the score."""
    crop = _nuaa_crops(model, shared_data, "live", "0008", 1)[0]
    assert model.predict(crop) != model.predict(np.ascontiguousarray(crop[:, :, ::-1]))


def _copy(tmp_path: Path) -> Path:
    src = one_view_path()
    dst = tmp_path / src.name
    shutil.copyfile(src, dst)
    shutil.copyfile(manifest_path(src), manifest_path(dst))
    return dst


def test_missing_manifest_is_refused(tmp_path):
    dst = _copy(tmp_path)
    manifest_path(dst).unlink()
    with pytest.raises(ModelError, match="manifest .* is missing") as e:
        LivenessModel(dst)
    assert "\n" not in str(e.value)


def test_sha256_mismatch_is_refused(tmp_path):
    dst = _copy(tmp_path)
    m = json.loads(manifest_path(dst).read_text())
    m["sha256"] = "0" * 64
    manifest_path(dst).write_text(json.dumps(m))
    with pytest.raises(ModelError, match="do not belong together"):
        LivenessModel(dst)


def test_altered_model_bytes_are_refused(tmp_path):
    dst = _copy(tmp_path)
    data = bytearray(dst.read_bytes())
    data[-100] ^= 0xFF
    dst.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        LivenessModel(dst)


def test_wrong_input_shape_is_refused(tmp_path):
    dst = _copy(tmp_path)
    m = json.loads(manifest_path(dst).read_text())
    m["input_size"] = [96, 96]
    m["crop"]["size"] = 96
    manifest_path(dst).write_text(json.dumps(m))
    with pytest.raises(ModelError, match="takes input"):
        LivenessModel(dst)


def test_missing_model_and_bad_manifest_are_one_line(tmp_path):
    with pytest.raises(ModelError, match="is missing"):
        LivenessModel(tmp_path / "nope.tflite")
    dst = _copy(tmp_path)
    manifest_path(dst).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        LivenessModel(dst)


def test_module_does_not_import_tensorflow():
    import subprocess

    code = "import sys, edge_liveness.liveness.model; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
