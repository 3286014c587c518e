"""The two-view liveness model on the device side: tight + context crop, its manifest, refusals (no TensorFlow).

How well it generalises to unseen people is measured by leave-one-person-out
(benchmarks/results/liveness_lopo_*.json), not here: these tests check that the device path (detector ->
mesh -> align_crop + context_crop -> predict_views) is the one the model was made for.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_liveness.liveness.model import LivenessModel, read_manifest
from edge_liveness.vision.runtime import ModelError, TFLiteModel

MODEL = Path(__file__).resolve().parent.parent / "models" / "liveness_two_view_int8.tflite"


@pytest.fixture(scope="module")
def model() -> LivenessModel:
    if not MODEL.is_file():
        pytest.fail(f"{MODEL} is missing (python -m converters.lopo.two_view makes it)")
    return LivenessModel(MODEL)


def _views(model: LivenessModel, video: Path, n: int, every: int = 15) -> list[tuple[np.ndarray, np.ndarray]]:
    import cv2

    from edge_liveness.vision.align import align_crop, context_crop
    from edge_liveness.config import load_settings
    from edge_liveness.vision.face import FaceDetector
    from edge_liveness.vision.landmarks import Landmarker

    settings = load_settings()
    det, lm = FaceDetector.from_settings(settings), Landmarker.from_settings(settings)
    cap = cv2.VideoCapture(str(video))
    out, i = [], 0
    while len(out) < n:
        ok, frame = cap.read()
        if not ok:
            break
        i += 1
        if i % every:
            continue
        faces = det.detect(frame)
        if not faces:
            continue
        a = lm.run(frame, max(faces, key=lambda f: f.area).anchors()).anchors()
        out.append((align_crop(frame, a, model.crop_size, model.crop_margin).image,
                    context_crop(frame, a, model.context_size, model.context_scale).image))
    cap.release()
    assert len(out) == n, f"only {len(out)} faces in {video}"
    return out


def test_manifest_describes_both_views(model):
    m = read_manifest(MODEL)
    assert model.views == 2 and m["views"] == ["tight", "context"] and m["fusion"] == "mean_logit"
    assert model.context_size == model.input_size == model.crop_size == m["context"]["size"]
    assert model.context_scale == m["context"]["scale"] and 2.0 <= model.context_scale <= 3.0
    assert 0 < model.threshold < 1
    assert model.model.input.dtype == np.int8 and model.model.outputs[0].dtype == np.int8
    assert MODEL.stat().st_size <= 4_000_000  # everything the device loads for the passive check


def test_predict_views_fuses_the_two_logits(model):
    rng = np.random.default_rng(1)
    t = rng.integers(0, 256, (model.input_size, model.input_size, 3), dtype=np.uint8)
    c = rng.integers(0, 256, (model.input_size, model.input_size, 3), dtype=np.uint8)
    raw = TFLiteModel(MODEL, num_threads=1)
    lt = float(raw.run(t[None, :, :, ::-1].astype(np.float32))[0].reshape(-1)[0])
    lc = float(raw.run(c[None, :, :, ::-1].astype(np.float32))[0].reshape(-1)[1])
    assert model.predict_views(t, c) == pytest.approx(1 / (1 + np.exp(-(lt + lc) / 2)), abs=1e-6)
    with pytest.raises(ValueError, match="predict_views"):
        model.predict(t)
    with pytest.raises(ValueError, match="context crop"):
        model.predict_views(t, None)


def test_real_recordings_through_the_device_path(model, shared_data, face_models):
    """tranvanluyt's live video passes and his screen replay fails (he is a training person: this checks
    the crops and fusion on the device, not generalisation); saikan45, a real person held out of training
    for the threshold choice, passes on median."""
    v = shared_data / "video"
    live = [model.predict_views(t, c) for t, c in _views(model, v / "tranvanluyt_real.mp4", 8)]
    fake = [model.predict_views(t, c) for t, c in _views(model, v / "tranvanluyt_fake_screen_replay.mp4", 8)]
    assert np.median(live) >= model.threshold > np.median(fake), (live, fake, model.threshold)
    assert "saikan45" in read_manifest(MODEL)["threshold_people"]
    held = [model.predict_views(t, c) for t, c in _views(model, v / "saikan45_backlit_man_1.avi", 6, every=10)]
    assert np.median(held) >= model.threshold, held


def test_bad_context_manifest_is_refused_in_one_line(tmp_path):
    dst = tmp_path / MODEL.name
    shutil.copyfile(MODEL, dst)
    m = json.loads(MODEL.with_suffix(".json").read_text())
    m["context"] = {"size": m["context"]["size"], "scale": "wide"}
    dst.with_suffix(".json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="bad context field") as e:
        LivenessModel(dst)
    assert "\n" not in str(e.value)
    del m["context"]  # read as a one-view model: its two outputs do not fit
    dst.with_suffix(".json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="one value"):
        LivenessModel(dst)


def test_the_twin_interpreter_gives_the_same_logits_and_refuses_a_changed_file(tmp_path):
    """schedule.overlap runs the tight view on a second interpreter of the same model (another thread):
    its logits must be the same bits, and it is built only from the bytes whose digest was checked."""
    from edge_liveness.liveness.model import default_model_path, manifest_path

    src = default_model_path()
    path = tmp_path / src.name
    shutil.copy(src, path)
    shutil.copy(manifest_path(src), manifest_path(path))
    lv = LivenessModel(path)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (lv.input_size, lv.input_size, 3), dtype=np.uint8) for _ in range(3)]
    with pytest.raises(ValueError, match="add_twin"):
        lv.view_logit(0, crops[0], twin=True)
    lv.add_twin()
    lv.add_twin()  # idempotent
    assert lv.has_twin and len(lv._feeds) == 2
    for c in crops:
        assert lv.view_logit(0, c, twin=True) == lv.view_logit(0, c) == lv.view_logits(c, c)[0]
        assert lv.view_logit(1, c, twin=True) == lv.view_logit(1, c)
    other = LivenessModel(path)
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelError, match="changed on disk"):
        other.add_twin()
