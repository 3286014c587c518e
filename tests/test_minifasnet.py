"""The MiniFASNet pair (issue 26 item 1): our ONNX importer, the int8 models against ONNX Runtime,
upstream's crop rule, the device wrapper's manifest check, and the order it puts real faces in.

Real data only: frames from ../shared/data, the shipped int8 models, the peer's ONNX files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_file
from edge_liveness.liveness import minifasnet as mf
from edge_liveness.vision.runtime import ModelError, bundled_model_path

ONNX_DIR = ("models", "antispoof_silentface_minifasnet")
# int8 vs ONNX Runtime on real crops, the pair's P(real): the converter measured a mean |dP| of about
# 0.02 and 97 % equal decisions on 175 check crops; these bounds leave room for a small sample.
INT8_MEAN_ABS_DP = 0.05
INT8_DECISION_AGREEMENT = 0.85


def _need(module: str) -> None:
    try:
        __import__(module)
    except ImportError as e:
        pytest.skip(f"{module} is not importable ({e}): pip install '.[workstation]'")


def _frames(path: Path, n: int) -> list[np.ndarray]:
    from converters.passive.minifasnet import sample_frames

    return sample_frames(path, n)


def _box(face_finder, frame: np.ndarray):
    face_finder.reset()
    view = face_finder.process(frame)
    assert view.landmarks is not None, "no face found in a shared frame that has one"
    return mf.face_box(view.landmarks)


@pytest.fixture(scope="module")
def pair() -> mf.MiniFASNetPair:
    return mf.MiniFASNetPair()


@pytest.fixture(scope="module")
def real_crops(shared_data, face_finder) -> dict[float, np.ndarray]:
    """Crops of people the int8 models were not calibrated on: NUAA 0008 live + print, lestari live + replay."""
    frames = (_frames(shared_data / "liveness/nuaa/live/0008", 5) + _frames(shared_data / "liveness/nuaa/spoof/0008", 5)
              + _frames(shared_data / "video/lestari_real.mp4", 5) + _frames(shared_data / "video/lestari_fake_phone_replay.mp4", 5))
    boxes = [_box(face_finder, f) for f in frames]
    return {s: np.stack([mf.crop_for(f, b, s) for f, b in zip(frames, boxes)]) for s in (2.7, 4.0)}


def _onnx(name: str) -> Path:
    return shared_file(*ONNX_DIR, name)


# ---- the crop rule (device side) ------------------------------------------------------------------------------------


def test_crop_rule_shifts_a_corner_box_inside_and_never_pads(shared_data):
    import cv2

    frame = cv2.imread(str(sorted((shared_data / "liveness/nuaa/live/0001").glob("*.jpg"))[0]))
    h, w = frame.shape[:2]  # 480 x 640
    box = (-10.0, -20.0, 50.0, 60.0)  # 60 x 80, hanging over the top-left corner
    l, t, r, b = mf.crop_window(w, h, box, 2.7)
    assert (l, t) == (0, 0), "the window is shifted to the frame's edge, not cut off or padded"
    assert (r, b) == (int(60 * 2.7), int(80 * 2.7)), "the full scaled size is kept after the shift"
    crop = mf.crop_for(frame, box, 2.7)
    assert crop.shape == (80, 80, 3)
    assert np.array_equal(crop, cv2.resize(frame[0:b + 1, 0:r + 1], (80, 80), interpolation=cv2.INTER_LINEAR))
    # bottom-right corner: shifted back by exactly what stuck out
    l, t, r, b = mf.crop_window(w, h, (600.0, 440.0, 660.0, 500.0), 2.7)
    assert (r, b) == (w - 1, h - 1) and (r - l, b - t) in ((161, 161), (162, 162))
    # a box too large for the scale: the scale shrinks until the window fits, then it fills that side
    l, t, r, b = mf.crop_window(w, h, (200.0, 100.0, 400.0, 400.0), 4.0)
    assert (t, b) == (0, h - 1) and 0 <= l and r <= w - 1
    # every window of a frame's worth of boxes lies inside it: nothing is ever padded
    for x0 in (-100.0, 0.0, 300.0, 620.0):
        for y0 in (-100.0, 0.0, 200.0, 470.0):
            for s in (2.7, 4.0):
                l, t, r, b = mf.crop_window(w, h, (x0, y0, x0 + 120.0, y0 + 150.0), s)
                assert 0 <= l <= r <= w - 1 and 0 <= t <= b <= h - 1


def test_face_box_is_the_measured_shape_of_the_mesh(shared_data, face_finder):
    import cv2

    frame = cv2.imread(str(sorted((shared_data / "liveness/nuaa/live/0003").glob("*.jpg"))[0]))
    face_finder.reset()
    lm = face_finder.process(frame).landmarks
    x0, y0, x1, y1 = lm.box()
    b = mf.face_box(lm)
    assert b[2] - b[0] == pytest.approx((x1 - x0) * mf.BOX_WIDTH * mf.BOX_FACTOR, rel=1e-4)
    assert b[3] - b[1] == pytest.approx((y1 - y0) * mf.BOX_HEIGHT * mf.BOX_FACTOR, rel=1e-4)
    assert (b[1] + b[3]) / 2 < (y0 + y1) / 2, "the box sits higher than the mesh (RetinaFace reaches up the forehead)"


# ---- the device wrapper ---------------------------------------------------------------------------------------------


def test_wrapper_refuses_a_model_whose_sha256_does_not_match_its_manifest(tmp_path):
    src = bundled_model_path(mf.MODEL_NAMES[0])
    model = tmp_path / src.name
    shutil.copy(src, model)
    shutil.copy(src.with_suffix(".json"), model.with_suffix(".json"))
    mf.MiniFASNet(model)  # the intact copy loads
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ModelError) as e:
        mf.MiniFASNet(model)
    msg = str(e.value)
    assert "\n" not in msg and "sha256" in msg and "converters.passive.minifasnet" in msg
    model.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match="manifest .* is missing"):
        mf.MiniFASNet(model)


def test_the_int8_models_run_as_one_xnnpack_graph(pair):
    """No op XNNPACK cannot run in int8 (PRELU was one: it split each model into 34 pieces, 5-10x slower)."""
    for m in pair.models:
        ops = [op["op_name"] for op in m.model.interpreter._get_ops_details()]
        if "DELEGATE" not in ops:
            pytest.skip(f"the TFLite runtime here ({m.model.runtime}) applies no XNNPACK delegate")
        assert ops.count("DELEGATE") == 1 and "PRELU" not in ops, f"{m.name}: {ops.count('DELEGATE')} delegated pieces"
        assert m.model.input.dtype == np.int8 and m.model.outputs[0].dtype == np.int8


def test_print_and_replay_score_below_live_faces(shared_data, face_finder, pair):
    """Per person, the median P(real) of live frames is above that of the same person's attack frames."""
    cases = {"NUAA 0009 print": ("liveness/nuaa/live/0009", "liveness/nuaa/spoof/0009"),
             "tranvanluyt screen replay": ("video/tranvanluyt_real.mp4", "video/tranvanluyt_fake_screen_replay.mp4"),
             "lestari phone replay": ("video/lestari_real.mp4", "video/lestari_fake_phone_replay.mp4")}
    for name, (live, attack) in cases.items():
        med = []
        for path in (live, attack):
            scores = []
            for f in _frames(shared_data / path, 7):
                face_finder.reset()
                lm = face_finder.process(f).landmarks
                if lm is not None:  # a replay frame may show no face the detector takes (a hand, a blur)
                    scores.append(pair.score_landmarks(f, lm))
            assert len(scores) >= 4, f"{path}: a face in only {len(scores)} of 7 frames"
            assert all(0.0 <= s.p_real <= 1.0 and len(s.per_model) == 2 for s in scores)
            med.append(float(np.median([s.p_real for s in scores])))
        assert med[0] > 0.5 > med[1], f"{name}: median P(real) live {med[0]:.3f}, attack {med[1]:.3f}"


# ---- workstation: the importer and the int8 conversion against ONNX Runtime -----------------------------------------


@pytest.mark.workstation
def test_importer_matches_onnx_runtime_on_a_real_crop(real_crops):
    _need("tensorflow")
    _need("onnxruntime")
    _need("onnx")
    from converters.passive.minifasnet import SOURCES, onnx_logits
    from converters.passive.onnx_import import to_keras

    for f, _, scale, _ in SOURCES:
        crops = real_crops[scale][[0, 5]]  # a live and a print crop
        keras_model = to_keras(_onnx(f))
        ours = keras_model.predict(crops.astype(np.float32), verbose=0)
        ref = onnx_logits(_onnx(f), crops)
        assert np.abs(ours - ref).max() < 1e-3, f"{f}: Keras {ours} vs ONNX Runtime {ref}"


@pytest.mark.workstation
def test_importer_refuses_an_unknown_op_in_one_line(tmp_path):
    _need("onnx")
    import onnx
    from onnx import TensorProto, helper

    from converters.passive.onnx_import import OnnxImportError, read_graph

    node = helper.make_node("LeakyRelu", ["x"], ["y"], name="odd")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    path = tmp_path / "odd.onnx"
    onnx.save(helper.make_model(g), str(path))
    with pytest.raises(OnnxImportError) as e:
        read_graph(path)
    assert "\n" not in str(e.value) and "LeakyRelu" in str(e.value) and "odd" in str(e.value)


@pytest.mark.workstation
def test_int8_models_agree_with_onnx_runtime_on_real_crops(real_crops, pair):
    _need("onnxruntime")
    from converters.passive.minifasnet import SOURCES, onnx_logits, softmax

    ref = np.mean([softmax(onnx_logits(_onnx(f), real_crops[s]))[:, mf.REAL_CLASS] for f, _, s, _ in SOURCES], axis=0)
    ours = np.array([np.mean([m.softmax(c)[mf.REAL_CLASS] for m, c in zip(pair.models, crops)])
                     for crops in zip(real_crops[2.7], real_crops[4.0])])
    d = np.abs(ours - ref)
    assert d.mean() <= INT8_MEAN_ABS_DP, f"mean |dP(real)| {d.mean():.3f} (per crop {np.round(d, 3)})"
    assert np.mean((ours >= 0.5) == (ref >= 0.5)) >= INT8_DECISION_AGREEMENT
