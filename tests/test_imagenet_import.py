"""ImageNet weights recovered from Coral's int8 MobileNetV2 TFLite (needs TensorFlow and the shared data)."""

from __future__ import annotations

import pytest

from conftest import shared_file

pytestmark = pytest.mark.workstation
CORAL = ("models", "imagenet_mobilenet_v2_int8_tflite_coral", "tf2_mobilenet_v2_1.0_224_ptq.tflite")


@pytest.fixture(scope="module")
def keras_mod():
    try:
        import keras
    except ImportError as e:
        pytest.skip(f"TensorFlow/Keras not importable ({e}): pip install '.[workstation]'")
    return keras


def test_rebuilt_float_model_agrees_with_the_tflite(keras_mod, shared_data):
    from converters.passive.imagenet_tflite import verify_import

    images = [shared_file("faces", "coral_test_data", "face.jpg"), shared_file("faces", "dlib_examples_faces", "dogs.jpg"),
              shared_file("faces", "face_recognition_examples", "obama.jpg")]
    checks = verify_import(shared_file(*CORAL), images)
    assert len(checks) == 3
    for c in checks:
        assert c.top1_agrees, (c.image, c.keras_top5, c.tflite_top5)
        assert c.overlap >= 3  # most of the top-5 classes agree too
    # not a degenerate model: different images get different classes
    assert len({c.keras_top5[0] for c in checks}) >= 2


def test_backbone_weights_are_assigned_and_bn_is_identity(keras_mod, shared_data):
    import numpy as np

    from converters.passive.imagenet_tflite import assign_to_backbone, read_tflite_weights

    w = read_tflite_weights(shared_file(*CORAL))
    assert w.classifier_kernel is not None and w.classifier_kernel.shape == (1280, 1001)
    bb = keras_mod.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=1.0, include_top=False, weights=None)
    assert assign_to_backbone(bb, w) == len(w.convs) == 52
    first = bb.get_layer("Conv1").get_weights()[0]
    np.testing.assert_allclose(first, w.convs[0].kernel)
    gamma, beta, mean, var = bb.get_layer("bn_Conv1").get_weights()
    assert np.all(gamma == 1) and np.all(mean == 0)
    np.testing.assert_allclose(beta, w.convs[0].bias)


def test_other_alpha_is_refused_in_one_line(keras_mod, shared_data):
    from converters.passive.imagenet_tflite import ImportWeightsError, assign_to_backbone, read_tflite_weights

    bb = keras_mod.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.5, include_top=False, weights=None)
    with pytest.raises(ImportWeightsError, match="alpha") as e:
        assign_to_backbone(bb, read_tflite_weights(shared_file(*CORAL)))
    assert "\n" not in str(e.value)


def test_train_weights_flag_refuses_mismatched_alpha(keras_mod, shared_data):
    from converters.passive.model import WeightsError, build_model

    with pytest.raises(WeightsError, match="alpha"):
        build_model(size=96, alpha=0.35, weights=str(shared_file(*CORAL)))
    with pytest.raises(WeightsError, match="no such file"):
        build_model(size=96, alpha=1.0, weights="/nonexistent/w.tflite")
