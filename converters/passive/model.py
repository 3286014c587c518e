"""The liveness network: MobileNetV2 backbone + small head, and where its starting weights come from.

``Rescaling(1/127.5, -1)`` sits INSIDE the model, so the model takes raw RGB values 0..255: after
full-integer conversion the int8 input has scale 1.0 / zero point -128 and the device feeds camera
bytes straight in (no float maths per pixel).

TensorFlow/Keras are imported inside functions only (``edge-liveness --help`` must not load them).
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("converters.model")

BACKBONE_NAME = "mobilenetv2_backbone"
OUTPUT_NAME = "p_live"


class WeightsError(ValueError):
    """Starting weights cannot be loaded (message is one line naming the fix)."""


def build_model(size: int = 128, alpha: float = 1.0, weights: str | None = "imagenet", head_units: int = 128,
                dropout: float = 0.5):
    """Uncompiled Keras model: uint8-range RGB (S,S,3) -> P(live) (1 = live)."""
    import keras

    backbone = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, include_top=False, weights=None)
    backbone.name = BACKBONE_NAME
    if weights and weights != "none":
        load_backbone_weights(backbone, weights, alpha)
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_minus1_1")(inputs)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(head_units, activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    out = keras.layers.Dense(1, activation="sigmoid", name=OUTPUT_NAME)(x)
    return keras.Model(inputs, out, name=f"liveness_mnv2_{alpha:g}_{size}")


def backbone_of(model):
    return model.get_layer(BACKBONE_NAME)


def load_backbone_weights(backbone, weights: str, alpha: float) -> str:
    """Fill the backbone from ``imagenet`` (Keras download), a MobileNetV2 ImageNet .tflite, or .keras/.h5.

    Returns a short description of the source for the metrics/manifest.
    """
    import keras

    if weights == "imagenet":
        try:
            ref = keras.applications.MobileNetV2(input_shape=backbone.input_shape[1:], alpha=alpha, include_top=False,
                                                 weights="imagenet")
        except Exception as e:  # noqa: BLE001 - any download failure means the same fix
            raise WeightsError(
                f"Keras ImageNet weights could not be downloaded ({type(e).__name__}): give a MobileNetV2 ImageNet .tflite "
                f"instead, e.g. --weights tf2_mobilenet_v2_1.0_224_ptq.tflite (Coral, Apache-2.0), or --weights none") from None
        backbone.set_weights(ref.get_weights())
        return "keras imagenet"
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"--weights {weights}: no such file (use imagenet, none, a .tflite, .keras or .h5 file)")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        from converters.passive.imagenet_tflite import ImportWeightsError, assign_to_backbone, read_tflite_weights

        try:
            n = assign_to_backbone(backbone, read_tflite_weights(path), path.name)
        except ImportWeightsError as e:
            raise WeightsError(str(e)) from None
        log.info("imported %d convolutions from %s", n, path.name)
        return f"imagenet from {path.name}"
    if suffix == ".h5":
        try:
            backbone.load_weights(str(path))
        except Exception as e:  # noqa: BLE001
            raise WeightsError(f"--weights {path}: cannot load into MobileNetV2 alpha {alpha:g} ({str(e).splitlines()[0][:120]})") from None
        return f"weights from {path.name}"
    if suffix == ".keras":
        other = keras.saving.load_model(str(path), compile=False)
        src = _find_backbone(other)
        if src is None:
            raise WeightsError(f"--weights {path}: holds no MobileNetV2 backbone")
        try:
            backbone.set_weights(src.get_weights())
        except ValueError as e:
            raise WeightsError(f"--weights {path}: backbone does not match alpha {alpha:g} ({str(e).splitlines()[0][:120]})") from None
        return f"backbone from {path.name}"
    raise WeightsError(f"--weights {weights}: unknown kind (use imagenet, none, a .tflite, .keras or .h5 file)")


def _find_backbone(model):
    import keras

    for layer in model.layers:
        if layer.name == BACKBONE_NAME or (isinstance(layer, keras.Model) and "mobilenet" in layer.name.lower()):
            return layer
    return model if "mobilenet" in model.name.lower() else None


def set_trainable(model, phase: str, fine_tune_from: int = 100) -> None:
    """``head``: backbone frozen. ``finetune``: backbone layers from ``fine_tune_from`` on trainable.

    BatchNormalization stays frozen in both phases: Keras 3 otherwise normalises with batch
    statistics once the backbone is trainable, which wrecks transferred weights (loss stuck at
    0.693, see docs/training.md), and the folded ImageNet statistics are what the weights expect.
    """
    import keras

    bb = backbone_of(model)
    if phase == "head":
        bb.trainable = False
        return
    bb.trainable = True
    for i, layer in enumerate(bb.layers):
        layer.trainable = i >= fine_tune_from and not isinstance(layer, keras.layers.BatchNormalization)


def uncompiled_copy(model):
    """A copy without optimiser state (a compiled .keras file is ~2.5x larger)."""
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone
