"""Our own small ONNX -> Keras importer, for the ops a MobileFaceNet-style classifier needs (the
Silent-Face MiniFASNets) and nothing more.

Why our own: the general converters pull in large toolchains and rewrite graphs in ways that are
hard to audit; these networks use a dozen plain ops, and a reader can check every mapping here.

- Weights come from the ONNX file (``onnx.numpy_helper``); the Keras model is NHWC throughout and
  takes the same values as the ONNX input, transposed (NCHW -> NHWC); its output is the ONNX output.
- Conv -> Conv2D / DepthwiseConv2D (explicit ZeroPadding2D when ONNX's pads are not TF's 'same');
  PRelu -> x + relu(-(1 - a) x) (a 1x1 depthwise conv with ReLU, and an Add: what XNNPACK runs in
  int8; a PReLU layer when a slope is >= 1); GlobalAveragePool -> GlobalAveragePooling2D(keepdims);
  MatMul with a constant -> Dense; BatchNormalization right after a Conv or MatMul whose output
  nothing else reads is folded into its weights (else a Keras BatchNormalization);
  Shape/Gather/Unsqueeze/Concat/Constant are evaluated here as constants, so the flatten they feed
  becomes one Reshape (a Permute first when the map is larger than 1x1: ONNX flattens C, H, W).
- An op outside that list fails with one line naming the op and the node.

TensorFlow/Keras is imported inside functions only (workstation side).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SUPPORTED_OPS = ("Conv", "PRelu", "Relu", "Sigmoid", "Add", "Mul", "GlobalAveragePool", "BatchNormalization", "MatMul",
                 "Shape", "Gather", "Unsqueeze", "Concat", "Reshape", "Constant")


class OnnxImportError(ValueError):
    """The ONNX file cannot be imported (one line naming the problem)."""


@dataclass
class Node:
    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SymShape:
    """A shape vector known here at import time; None stands for the batch size."""

    dims: tuple[int | None, ...]


@dataclass
class Graph:
    nodes: list[Node]
    consts: dict[str, np.ndarray]
    input_name: str
    input_shape: tuple[int, int, int]  # C, H, W
    output_name: str


def read_graph(path: str | Path) -> Graph:
    """The ONNX graph as plain Python: nodes, constant tensors (initializers and Constant nodes)."""
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf raises several kinds; the user needs one line
        raise OnnxImportError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    nodes: list[Node] = []
    for n in g.node:
        if n.op_type not in SUPPORTED_OPS:
            raise OnnxImportError(f"{path.name}: ONNX op {n.op_type} (node {n.name or n.output[0]}) is not supported by "
                                  f"converters.passive.onnx_import (it knows {', '.join(SUPPORTED_OPS)})")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Constant":
            if "value" not in attrs:
                raise OnnxImportError(f"{path.name}: Constant node {n.name} has no 'value' tensor (only tensor constants are supported)")
            consts[n.output[0]] = numpy_helper.to_array(attrs["value"])
            continue
        nodes.append(Node(n.op_type, n.name or n.output[0], list(n.input), list(n.output), attrs))
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        raise OnnxImportError(f"{path.name}: expected one image input and one output, found {len(inputs)} and {len(g.output)}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or any(d is None for d in dims[1:]):
        raise OnnxImportError(f"{path.name}: input {inputs[0].name} must be NCHW with fixed C, H, W, is {dims}")
    return Graph(nodes, consts, inputs[0].name, (int(dims[1]), int(dims[2]), int(dims[3])), g.output[0].name)


def _consumers(nodes: list[Node], name: str) -> int:
    return sum(name in n.inputs for n in nodes)


def fold_batchnorm(graph: Graph) -> list[str]:
    """Fold each BatchNormalization into the Conv/MatMul right before it (when nothing else reads
    that output); returns the names of the folded BN nodes. Exact in float: y = W'x + b'."""
    folded = []
    producers = {o: n for n in graph.nodes for o in n.outputs}
    c = graph.consts
    for bn in [n for n in graph.nodes if n.op == "BatchNormalization"]:
        prev = producers.get(bn.inputs[0])
        if prev is None or prev.op not in ("Conv", "MatMul") or _consumers(graph.nodes, bn.inputs[0]) != 1:
            continue
        if prev.op == "MatMul" and prev.inputs[1] not in c:
            continue
        gamma, beta, mean, var = (c[i].astype(np.float64) for i in bn.inputs[1:5])
        s = gamma / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
        w = c[prev.inputs[1]].astype(np.float64)
        b = c[prev.inputs[2]].astype(np.float64) if len(prev.inputs) > 2 and prev.inputs[2] else np.zeros(len(s))
        wname, bname = prev.name + "/folded_w", prev.name + "/folded_b"
        # Conv weights are (O, I, kh, kw): scale per output row; MatMul's (F, O): per column
        c[wname] = (w * s[:, None, None, None] if prev.op == "Conv" else w * s[None, :]).astype(np.float32)
        c[bname] = ((b - mean) * s + beta).astype(np.float32)
        prev.inputs = [prev.inputs[0], wname, bname]
        prev.outputs = list(bn.outputs)
        graph.nodes.remove(bn)
        folded.append(bn.name)
    return folded


def _layer_name(node: Node, suffix: str = "") -> str:
    return (re.sub(r"[^A-Za-z0-9_.-]+", "_", node.name).strip("_") or node.op) + suffix


def _tf_same_pads(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    eff = (k - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def _conv(node: Node, x, consts: dict[str, np.ndarray]):
    import keras

    w = consts[node.inputs[1]]
    b = consts[node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] else None
    out_c, in_per_group, kh, kw = w.shape
    group = int(node.attrs.get("group", 1))
    strides = tuple(node.attrs.get("strides", (1, 1)))
    dil = tuple(node.attrs.get("dilations", (1, 1)))
    pads = tuple(node.attrs.get("pads", (0, 0, 0, 0)))  # top, left, bottom, right
    if node.attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise OnnxImportError(f"Conv node {node.name}: auto_pad is not supported (explicit pads only)")
    h, wd, in_c = (int(d) for d in x.shape[1:])
    same = (_tf_same_pads(h, kh, strides[0], dil[0]), _tf_same_pads(wd, kw, strides[1], dil[1]))
    if pads == (0, 0, 0, 0):
        padding = "valid"
    elif ((pads[0], pads[2]), (pads[1], pads[3])) == same:
        padding = "same"
    else:
        x = keras.layers.ZeroPadding2D(((pads[0], pads[2]), (pads[1], pads[3])), name=_layer_name(node, "_pad"))(x)
        padding = "valid"
    common = dict(strides=strides, padding=padding, dilation_rate=dil, use_bias=b is not None, name=_layer_name(node))
    if group == 1:
        layer = keras.layers.Conv2D(out_c, (kh, kw), **common)
        weights = [w.transpose(2, 3, 1, 0)]
    elif group == in_c and in_per_group == 1 and out_c % in_c == 0:
        mult = out_c // in_c
        layer = keras.layers.DepthwiseConv2D((kh, kw), depth_multiplier=mult, **common)
        # ONNX output channel c*mult + m comes from input channel c; Keras orders its kernel the same way
        weights = [w.reshape(in_c, mult, kh, kw).transpose(2, 3, 0, 1)]
    else:
        raise OnnxImportError(f"Conv node {node.name}: grouped convolution with {group} groups of {in_per_group} channels "
                              f"is not supported (only plain and depthwise)")
    y = layer(x)
    layer.set_weights(weights + ([b] if b is not None else []))
    return y


def _prelu(node: Node, x, consts: dict[str, np.ndarray]):
    import keras

    slope = consts[node.inputs[1]].reshape(-1)
    c = int(x.shape[-1])
    if slope.size == 1:
        slope = np.full(c, float(slope[0]), np.float32)
    if slope.size != c:
        raise OnnxImportError(f"PRelu node {node.name}: slope of {slope.size} values for {c} channels")
    if len(x.shape) == 4 and np.all(slope < 1.0):
        # XNNPACK has no int8 PRELU: each one would split the delegated graph (34 pieces for a
        # MiniFASNet, 5-10x slower). For slopes a < 1, PReLU(x) = x + relu(-(1 - a) x) exactly: a
        # 1x1 depthwise conv with a fused ReLU and an ADD, both int8 kernels XNNPACK runs.
        neg = keras.layers.DepthwiseConv2D(1, use_bias=False, activation="relu", name=_layer_name(node, "_neg"))
        q = neg(x)
        neg.set_weights([(-(1.0 - slope)).reshape(1, 1, c, 1).astype(np.float32)])
        return keras.layers.Add(name=_layer_name(node))([x, q])
    shared = list(range(1, len(x.shape) - 1)) or None
    layer = keras.layers.PReLU(shared_axes=shared, name=_layer_name(node))
    y = layer(x)
    layer.set_weights([slope.reshape((1,) * (len(x.shape) - 2) + (c,)).astype(np.float32)])
    return y


def _onnx_shape(x) -> tuple[int | None, ...]:
    """The tensor's shape as ONNX sees it (NCHW for rank 4)."""
    s = tuple(None if d is None else int(d) for d in x.shape)
    return (s[0], s[3], s[1], s[2]) if len(s) == 4 else s


def _reshape(node: Node, x, target: tuple[int | None, ...]):
    import keras

    shape = _onnx_shape(x)
    flat = int(np.prod(shape[1:]))
    if len(target) == 2 and target[0] in (None, 0, shape[0]) and target[1] in (-1, flat):
        if len(shape) == 4 and (shape[2], shape[3]) != (1, 1):
            x = keras.layers.Permute((3, 1, 2), name=_layer_name(node, "_nchw"))(x)  # flatten in ONNX's C, H, W order
        return keras.layers.Reshape((flat,), name=_layer_name(node))(x)
    raise OnnxImportError(f"Reshape node {node.name}: only a flatten to (batch, -1) is supported, got target {list(target)}")


def _const_int(v) -> tuple[int | None, ...]:
    return v.dims if isinstance(v, SymShape) else tuple(int(t) for t in np.asarray(v).reshape(-1))


def to_keras(path: str | Path, fold_bn: bool = True, batch_size: int | None = None):
    """The ONNX model at ``path`` as a Keras functional model (NHWC input of the same values).

    ``batch_size=1`` for TFLite: with a fixed batch the flatten is a plain RESHAPE, not a run-time
    SHAPE/STRIDED_SLICE/PACK computed in int32."""
    import keras

    path = Path(path)
    graph = read_graph(path)
    if fold_bn:
        fold_batchnorm(graph)
    c, h, w = graph.input_shape
    inp = keras.Input(shape=(h, w, c), batch_size=batch_size, name="input_nhwc")
    env: dict[str, Any] = {graph.input_name: inp}
    consts = graph.consts

    def val(name: str):
        if name in env:
            return env[name]
        if name in consts:
            return consts[name]
        raise OnnxImportError(f"{path.name}: tensor {name} is used before it is made (graph not in topological order?)")

    for n in graph.nodes:
        try:
            args = [val(i) for i in n.inputs if i]
            env[n.outputs[0]] = _node(n, args, consts)
        except OnnxImportError as e:
            raise OnnxImportError(f"{path.name}: {e}") from None
    out = env.get(graph.output_name)
    if out is None or isinstance(out, (np.ndarray, SymShape)):
        raise OnnxImportError(f"{path.name}: output {graph.output_name} is not computed from the input")
    return keras.Model(inp, out, name=re.sub(r"[^A-Za-z0-9_]+", "_", path.stem))


def _node(n: Node, args: list, consts: dict[str, np.ndarray]):
    import keras

    op = n.op
    if op == "Conv":
        return _conv(n, args[0], consts)
    if op == "PRelu":
        return _prelu(n, args[0], consts)
    if op == "Relu":
        return keras.layers.ReLU(name=_layer_name(n))(args[0])
    if op == "Sigmoid":
        return keras.layers.Activation("sigmoid", name=_layer_name(n))(args[0])
    if op in ("Add", "Mul"):
        if any(isinstance(a, np.ndarray) for a in args):
            raise OnnxImportError(f"{op} node {n.name}: a constant operand is not supported (tensor {op} tensor only)")
        layer = keras.layers.Add if op == "Add" else keras.layers.Multiply
        return layer(name=_layer_name(n))(args)
    if op == "GlobalAveragePool":
        return keras.layers.GlobalAveragePooling2D(keepdims=True, name=_layer_name(n))(args[0])
    if op == "MatMul":
        x, wt = args[0], args[1]
        if not isinstance(wt, np.ndarray) or wt.ndim != 2 or len(x.shape) != 2:
            raise OnnxImportError(f"MatMul node {n.name}: only (batch, features) x constant (features, units) is supported")
        bias = consts.get(n.inputs[2]) if len(n.inputs) > 2 else None  # set by fold_batchnorm
        layer = keras.layers.Dense(wt.shape[1], use_bias=bias is not None, name=_layer_name(n))
        y = layer(x)
        layer.set_weights([wt.astype(np.float32)] + ([bias] if bias is not None else []))
        return y
    if op == "BatchNormalization":
        x = args[0]
        gamma, beta, mean, var = (np.asarray(a, np.float32) for a in args[1:5])
        layer = keras.layers.BatchNormalization(axis=-1, epsilon=float(n.attrs.get("epsilon", 1e-5)), name=_layer_name(n))
        y = layer(x)
        layer.set_weights([gamma, beta, mean, var])
        return y
    if op == "Shape":
        return SymShape(_onnx_shape(args[0]))
    if op == "Gather":
        dims, idx = _const_int(args[0]), np.asarray(args[1])
        if int(n.attrs.get("axis", 0)) != 0:
            raise OnnxImportError(f"Gather node {n.name}: only axis 0 of a shape vector is supported")
        picked = tuple(dims[int(i)] for i in idx.reshape(-1))
        if None in picked:  # the batch size: stays symbolic (a scalar one is unsqueezed next anyway)
            return SymShape(picked)
        return np.array(picked if idx.ndim else picked[0], np.int64)
    if op == "Unsqueeze":
        v = args[0]
        return SymShape(v.dims) if isinstance(v, SymShape) else np.asarray(v).reshape(-1)
    if op == "Concat":
        parts: list[int | None] = []
        for a in args:
            parts.extend(_const_int(a))
        return SymShape(tuple(parts)) if None in parts else np.array(parts, np.int64)
    if op == "Reshape":
        return _reshape(n, args[0], _const_int(args[1]))
    raise OnnxImportError(f"ONNX op {op} (node {n.name}) is not supported")  # read_graph refuses these first
