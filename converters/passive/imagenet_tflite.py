"""Recover ImageNet MobileNetV2 weights from a quantised (or float) TFLite model.

Keras' ImageNet weights cannot be downloaded on an offline workstation, but Coral's
``tf2_mobilenet_v2_1.0_224_ptq.tflite`` (Apache-2.0) carries the same network. TFLite folded each
BatchNormalization into the convolution before it, so the import assigns the dequantised kernels to
the Keras Conv2D/DepthwiseConv2D layers in network order and turns each following BatchNorm into
"add the folded bias" (gamma=1, beta=bias, mean=0, var=1-eps). The final 1x1 convolution of the
TFLite model is the ImageNet classifier; it is returned separately so the import can be verified by
comparing the top-5 classes of both models on real images.

TensorFlow is imported inside functions only (workstation side).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("converters.imagenet_tflite")


class ImportWeightsError(ValueError):
    """The TFLite file cannot supply weights for the requested Keras model (message is one line)."""


@dataclass
class ConvWeights:
    kind: str  # "conv" or "depthwise"
    kernel: np.ndarray  # Keras layout: conv [H,W,I,O], depthwise [H,W,C,1]
    bias: np.ndarray  # [O] (the folded BatchNorm)
    name: str


@dataclass
class TFLiteWeights:
    convs: list[ConvWeights]  # backbone convolutions in execution order
    classifier_kernel: np.ndarray | None  # [1280, classes] when the model ends in the 1x1 classifier
    classifier_bias: np.ndarray | None
    input_size: int


def _interpreter(path: Path):
    from ai_edge_litert import interpreter as litert  # runtime package, always present

    # Without default delegates: XNNPACK would swallow the ops and hide their tensors.
    interp = litert.Interpreter(model_path=str(path),
                                experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    return interp


def _dequantize(interp, index: int, details: dict[int, dict]) -> np.ndarray:
    d = details[index]
    raw = interp.get_tensor(index)
    if raw.dtype == np.float32:
        return raw.astype(np.float32)
    if raw.dtype == np.float16:
        return raw.astype(np.float32)
    qp = d["quantization_parameters"]
    scales = np.asarray(qp["scales"], np.float32)
    zps = np.asarray(qp["zero_points"], np.float32)
    if scales.size == 0:
        raise ImportWeightsError(f"tensor {d['name'][:60]} is {raw.dtype} without quantisation parameters: not a weights file this import understands")
    if scales.size == 1:
        return (raw.astype(np.float32) - zps[0]) * scales[0]
    axis = int(qp["quantized_dimension"])
    shape = [1] * raw.ndim
    shape[axis] = -1
    return (raw.astype(np.float32) - zps.reshape(shape)) * scales.reshape(shape)


def read_tflite_weights(path: str | Path) -> TFLiteWeights:
    """Dequantised conv kernels and folded biases of a MobileNetV2 TFLite model, in op order."""
    path = Path(path)
    if not path.is_file():
        raise ImportWeightsError(f"{path}: weights file not found (give a MobileNetV2 ImageNet .tflite, a .keras/.h5 file, or --weights none)")
    try:
        interp = _interpreter(path)
    except (ValueError, RuntimeError) as e:
        raise ImportWeightsError(f"{path}: not a loadable TFLite model ({str(e).splitlines()[0] if str(e) else e})") from None
    details = {d["index"]: d for d in interp.get_tensor_details()}
    convs: list[ConvWeights] = []
    for op in interp._get_ops_details():  # the only API that exposes op order and operands
        name = op["op_name"]
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        _, w_idx, b_idx = (int(i) for i in op["inputs"][:3])
        w = _dequantize(interp, w_idx, details)
        b = _dequantize(interp, b_idx, details) if b_idx >= 0 else np.zeros(w.shape[0 if name == "CONV_2D" else 3], np.float32)
        # TFLite conv [O,H,W,I] -> Keras [H,W,I,O]; depthwise [1,H,W,C] -> Keras [H,W,C,1]
        kernel = np.transpose(w, (1, 2, 3, 0))
        convs.append(ConvWeights("conv" if name == "CONV_2D" else "depthwise", kernel, b.astype(np.float32), details[w_idx]["name"]))
    if not convs:
        raise ImportWeightsError(f"{path}: no convolutions found: not a MobileNetV2 TFLite model")
    cls_k = cls_b = None
    last = convs[-1]
    if last.kind == "conv" and last.kernel.shape[:2] == (1, 1) and last.kernel.shape[3] in (1000, 1001):
        convs.pop()
        cls_k, cls_b = last.kernel[0, 0], last.bias
    inp = interp.get_input_details()[0]["shape"]
    return TFLiteWeights(convs, cls_k, cls_b, int(inp[1]))


def _backbone_convs(backbone) -> list[tuple[Any, Any]]:
    """(conv layer, the BatchNormalization right after it) pairs in network order."""
    import keras

    layers = backbone.layers
    pairs = []
    for i, layer in enumerate(layers):
        if isinstance(layer, (keras.layers.DepthwiseConv2D, keras.layers.Conv2D)):
            bn = layers[i + 1] if i + 1 < len(layers) else None
            if not isinstance(bn, keras.layers.BatchNormalization):
                raise ImportWeightsError(f"layer {layer.name} is not followed by BatchNormalization: not a Keras MobileNetV2 backbone")
            pairs.append((layer, bn))
    return pairs


def assign_to_backbone(backbone, weights: TFLiteWeights, source: str = "the TFLite model") -> int:
    """Put the recovered weights into a Keras MobileNetV2 backbone; return how many convs were set.

    Refuses (ImportWeightsError, one line) unless every layer's kind and shape match, which is
    what happens when the Keras model's alpha differs from the TFLite model's.
    """
    import keras

    pairs = _backbone_convs(backbone)
    if len(pairs) != len(weights.convs):
        raise ImportWeightsError(f"{source} has {len(weights.convs)} backbone convolutions but the Keras MobileNetV2 has {len(pairs)}: not the same architecture")
    for (layer, bn), cw in zip(pairs, weights.convs):
        is_dw = isinstance(layer, keras.layers.DepthwiseConv2D)
        want = tuple(layer.get_weights()[0].shape)
        if (cw.kind == "depthwise") != is_dw or tuple(cw.kernel.shape) != want:
            raise ImportWeightsError(
                f"{source} does not map onto this MobileNetV2: layer {layer.name} wants {want}, the file has {tuple(cw.kernel.shape)} "
                f"(the file is for another alpha; Coral's file is alpha 1.0: use --alpha 1.0 or --weights none)")
    for (layer, bn), cw in zip(pairs, weights.convs):
        layer.set_weights([cw.kernel])
        n = cw.bias.shape[0]
        eps = float(bn.epsilon)
        # identity BatchNorm plus the folded bias: (x - 0) / sqrt(1 - eps + eps) * 1 + bias
        bn.set_weights([np.ones(n, np.float32), cw.bias, np.zeros(n, np.float32), np.full(n, 1.0 - eps, np.float32)])
    return len(pairs)


def build_imagenet_classifier(tflite_path: str | Path, size: int = 224, alpha: float = 1.0):
    """Keras MobileNetV2 + the TFLite's 1x1 classifier as one float model taking [-1,1] RGB.

    Only for verifying an import: returns (model, weights).
    """
    import keras

    w = read_tflite_weights(tflite_path)
    if w.classifier_kernel is None:
        raise ImportWeightsError(f"{tflite_path}: has no ImageNet classifier to verify against")
    backbone = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, include_top=False, weights=None)
    assign_to_backbone(backbone, w, str(tflite_path))
    x = keras.layers.GlobalAveragePooling2D()(backbone.output)
    dense = keras.layers.Dense(w.classifier_kernel.shape[1], activation="softmax")
    y = dense(x)
    dense.set_weights([w.classifier_kernel, w.classifier_bias])
    return keras.Model(backbone.input, y), w


@dataclass
class TopKCheck:
    image: str
    keras_top5: list[int]
    tflite_top5: list[int]

    @property
    def top1_agrees(self) -> bool:
        return self.keras_top5[0] == self.tflite_top5[0]

    @property
    def overlap(self) -> int:
        return len(set(self.keras_top5) & set(self.tflite_top5))


def _load_rgb(path: Path, size: int) -> np.ndarray | None:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        return None
    h, w = img.shape[:2]
    s = min(h, w)  # centre square, as ImageNet evaluation does
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def verify_import(tflite_path: str | Path, images: list[Path]) -> list[TopKCheck]:
    """Compare top-5 ImageNet classes of the rebuilt float model and the TFLite model itself."""
    from edge_liveness.vision.runtime import TFLiteModel

    model, w = build_imagenet_classifier(tflite_path, size=224)
    ref = TFLiteModel(tflite_path, num_threads=1)
    size = ref.input_size[0]
    out = []
    for p in images:
        rgb = _load_rgb(Path(p), size)
        if rgb is None:
            continue
        x = rgb.astype(np.float32)[None] / 127.5 - 1.0  # MobileNetV2's [-1,1] input
        p_ref = ref.run(x)[0][0]  # run() quantises through the file's own input scale
        p_k = model(x, training=False).numpy()[0]
        out.append(TopKCheck(str(p), [int(i) for i in np.argsort(-p_k)[:5]], [int(i) for i in np.argsort(-p_ref)[:5]]))
    return out
