"""MediaPipe's eye model rebuilt as a Keras model from its own TFLite graph (converters/blink/iris_int8.py).

Op kinds and options (strides, padding, pool sizes, reshape) are read from the flatbuffer, constant
weights from the interpreter. Only the ops this model uses are known (``KNOWN_OPS``); any other op stops
the rebuild with one line. PReLU is rewritten so that the int8 model runs it inside XNNPACK (``_prelu``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KNOWN_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "ADD", "MAX_POOL_2D", "PAD", "RESHAPE")
PADDING = {0: "same", 1: "valid"}  # tflite Padding enum


class IrisConvertError(ValueError):
    """The model cannot be rebuilt or converted (message is one line)."""


@dataclass
class Op:
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)


def read_graph(data: bytes) -> tuple[list[Op], list[int], list[int]]:
    """(ops in execution order, graph input tensors, graph output tensors) of a one-subgraph model."""
    from tensorflow.lite.python import schema_py_generated as fb  # workstation only

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
    if len(model.subgraphs) != 1:
        raise IrisConvertError(f"the model has {len(model.subgraphs)} subgraphs, the rebuild handles one")
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    codes = [names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "CUSTOM") for c in model.operatorCodes]
    sg = model.subgraphs[0]
    ops = [Op(codes[o.opcodeIndex], [int(i) for i in o.inputs], [int(i) for i in o.outputs],
              dict(vars(o.builtinOptions)) if o.builtinOptions is not None else {}) for o in sg.operators]
    unknown = sorted({o.kind for o in ops} - set(KNOWN_OPS))
    if unknown:
        raise IrisConvertError(f"ops {unknown} have no rebuild here (known: {', '.join(KNOWN_OPS)})")
    return ops, [int(i) for i in sg.inputs], [int(i) for i in sg.outputs]


def interpreter(data: bytes):
    from ai_edge_litert import interpreter as litert

    # without default delegates: XNNPACK would take the ops over and hide their tensors
    it = litert.Interpreter(model_content=data,
                            experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def _plain(op: Op, n: int) -> None:
    o = op.options
    if o.get("fusedActivationFunction", 0) != 0 or o.get("dilationHFactor", 1) != 1 or o.get("dilationWFactor", 1) != 1:
        raise IrisConvertError(f"op {n} {op.kind} has a fused activation or dilation: not rebuilt here ({o})")


def _apply(op: Op, n: int, t: dict, const):
    """Build the Keras layer(s) of one op on the tensors made so far, set the file's weights, return the output."""
    import keras

    o, name = op.options, f"op{n:03d}_{op.kind.lower()}"
    x = t[op.inputs[0]]
    if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        _plain(op, n)
        w, b = const(op.inputs[1]), const(op.inputs[2])
        strides, padding = (o["strideH"], o["strideW"]), PADDING[o["padding"]]
        if op.kind == "CONV_2D":  # tflite [O,H,W,I] -> keras [H,W,I,O]
            layer = keras.layers.Conv2D(w.shape[0], w.shape[1:3], strides, padding, name=name)
            weights = [w.transpose(1, 2, 3, 0), b]
        else:
            m = int(o["depthMultiplier"])  # tflite [1,H,W,C*m] -> keras [H,W,C,m]
            layer = keras.layers.DepthwiseConv2D(w.shape[1:3], strides, padding, depth_multiplier=m, name=name)
            weights = [w[0].reshape(w.shape[1], w.shape[2], -1, m), b]
        y = layer(x)
        layer.set_weights(weights)
        return y
    if op.kind == "PRELU":
        return _prelu(x, const(op.inputs[1]), n, name)
    if op.kind == "ADD":
        _plain(op, n)
        return keras.layers.Add(name=name)([x, t[op.inputs[1]]])
    if op.kind == "MAX_POOL_2D":
        _plain(op, n)
        return keras.layers.MaxPooling2D((o["filterHeight"], o["filterWidth"]), (o["strideH"], o["strideW"]),
                                         PADDING[o["padding"]], name=name)(x)
    if op.kind == "PAD":
        pads = const(op.inputs[1]).astype(int)
        if pads[0].any():
            raise IrisConvertError(f"op {n} PAD pads the batch: not rebuilt here")
        return _pad_layer(pads[1:].tolist(), name)(x)
    new_shape = [int(v) for v in o["newShape"]]  # RESHAPE
    if new_shape[0] not in (1, -1):
        raise IrisConvertError(f"op {n} RESHAPE to {new_shape} changes the batch: not rebuilt here")
    return keras.layers.Reshape(tuple(new_shape[1:]), name=name)(x)


def _prelu(x, alpha: np.ndarray, n: int, name: str):
    """PReLU as ops XNNPACK runs in int8 (its PRELU is float-only: an int8 PRELU stays on TFLite's
    own kernels and splits the graph into ~40 delegate pieces, 5x slower than the float model).

    prelu(x) = x + (1 - a) relu(-x), per channel; (1 - a) relu(-x) = relu((a - 1) x) where a <= 1
    and -relu((1 - a) x) where a > 1: a 1x1 depthwise conv with a fused ReLU, then ADD (and, only
    in layers with some a > 1, a second one and SUB). The same function exactly, in float.
    """
    import keras

    if alpha.ndim != 3 or alpha.shape[:2] != (1, 1):
        raise IrisConvertError(f"op {n} PRELU has alpha {alpha.shape}, the rebuild handles per-channel (1,1,C)")
    a = alpha.reshape(-1)
    y = x
    for sign, k in ((1, np.where(a <= 1, a - 1, 0.0)), (-1, np.where(a > 1, 1 - a, 0.0))):
        if not k.any():
            continue
        part = "pos" if sign > 0 else "neg"
        dw = keras.layers.DepthwiseConv2D(1, use_bias=False, activation="relu", name=f"{name}_{part}")
        r = dw(x)
        dw.set_weights([k.reshape(1, 1, -1, 1).astype(np.float32)])
        merge = keras.layers.Add if sign > 0 else keras.layers.Subtract
        y = merge(name=f"{name}_{'add' if sign > 0 else 'sub'}")([y, r])
    return y


def _pad_layer(pads: list[list[int]], name: str):
    """Zero padding on H, W and channels (the model widens 64 -> 128 channels with a channel PAD)."""
    import keras

    class ZeroPad(keras.layers.Layer):
        def call(self, x):
            return keras.ops.pad(x, [[0, 0]] + pads)

    return ZeroPad(name=name)


def build_keras(data: bytes):
    """The float model as Keras, op for op (PReLU decomposed), with the file's weights; outputs in the file's order."""
    import keras

    ops, ins, outs = read_graph(data)
    it = interpreter(data)
    details = {d["index"]: d for d in it.get_tensor_details()}
    if len(ins) != 1:
        raise IrisConvertError(f"the model has {len(ins)} inputs, the rebuild handles one")
    shape = [int(s) for s in details[ins[0]]["shape"]]
    x = keras.Input(shape=tuple(shape[1:]), batch_size=shape[0], name="input_1")
    t = {ins[0]: x}
    for n, op in enumerate(ops):
        t[op.outputs[0]] = _apply(op, n, t, lambda i: np.array(it.get_tensor(i), np.float32))
    return keras.Model(x, [t[i] for i in outs], name="iris_landmark_rebuilt")
