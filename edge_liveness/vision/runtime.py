"""TFLite runtime loader and the one small wrapper every model on the device goes through.

Loader order: ai-edge-litert, then tflite-runtime, then tensorflow.lite. A candidate counts only
when it can actually build an interpreter: tflite-runtime 2.14 imports fine under numpy 2 and then
fails inside ``Interpreter()``, so importing is not proof enough.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger("edge_liveness.runtime")

TFLITE_MAGIC = b"TFL3"


class ModelError(RuntimeError):
    """A model file is missing, corrupt or not what the daemon expects (message is one line)."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float  # 0.0 when the tensor is not quantised
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(self.dtype, np.integer)


def _candidates() -> list[tuple[str, Callable[[], Any]]]:
    def litert():
        from ai_edge_litert import interpreter  # type: ignore

        return interpreter.Interpreter

    def tflite_runtime():
        from tflite_runtime import interpreter  # type: ignore

        return interpreter.Interpreter

    def tensorflow():
        import tensorflow as tf  # type: ignore  # last resort: only present on workstations

        return tf.lite.Interpreter

    return [("ai-edge-litert", litert), ("tflite-runtime", tflite_runtime), ("tensorflow.lite", tensorflow)]


FETCH_FIX = "re-fetch it with `edge-liveness models fetch`"


def check_tflite_file(path: Path, fix: str = FETCH_FIX) -> bytes:
    """Read a model file and check it is a TFLite flatbuffer; raise ModelError with the fix
    (``fix``: what repairs this model; `models fetch` only fetches the face models)."""
    path = Path(path)
    if path.is_dir():
        raise ModelError(f"model file {path} is a directory, not a .tflite file: fix models.* in the config")
    if not path.is_file():
        raise ModelError(f"model file {path} is missing: run `edge-liveness models fetch` or fix models.* in the config")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"model file {path} is not readable ({e.strerror or e}): fix its owner/mode") from None
    if len(data) < 8 or data[4:8] != TFLITE_MAGIC:
        raise ModelError(f"model file {path} is not a TFLite model (bad header): {fix}")
    return data


# Printed by the TFLite C++ runtime straight to fd 2 on every start; no Python-side switch hides it.
_NATIVE_NOISE = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)


@contextlib.contextmanager
def _native_stderr_filtered():
    """Catch what native code writes to fd 2 meanwhile; pass on everything but the known INFO noise."""
    try:
        sys.stderr.flush()
        tmp = tempfile.TemporaryFile()  # no writable temp dir: load unfiltered rather than not at all
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines():
                if line.strip() and line.strip() not in _NATIVE_NOISE:
                    print(line, file=sys.stderr)


def make_interpreter(model: bytes, num_threads: int = 1, prefer: str | None = None,
                     path: Path | None = None) -> tuple[Any, str]:
    """Build an interpreter from the first runtime that works; return it with the runtime's name."""
    label = f"model file {path} " if path else "model "
    errors = []
    for name, get in _candidates():
        if prefer and name != prefer:
            continue
        try:
            cls = get()
            with _native_stderr_filtered():
                interp = cls(model_content=model, num_threads=max(1, int(num_threads)))
                interp.allocate_tensors()
            return interp, name
        except ImportError as e:
            errors.append(f"{name}: not installed ({e.name or e})")
        except (ValueError, RuntimeError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if "_ARRAY_API" in str(e) or "numpy" in str(e).lower():
                errors.append(f"{name}: unusable with this numpy ({msg})")
                continue
            raise ModelError(f"{label}could not be loaded by {name} ({msg}): the file is damaged or from an "
                             f"incompatible converter; restore it or re-fetch/re-convert it") from e
    raise ModelError("no TFLite runtime works here (" + "; ".join(errors) + "): pip install ai-edge-litert")


def _spec(d: dict) -> TensorSpec:
    q = d.get("quantization") or (0.0, 0)
    scale, zp = float(q[0]), int(q[1])
    return TensorSpec(d["name"], int(d["index"]), tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]), scale, zp)


class TFLiteModel:
    """One TFLite model: allocated once, converts float inputs/outputs through its quantisation.

    ``run()`` takes float32 (or already correctly typed) arrays and returns float32 outputs,
    dequantised when the model is quantised. Use ``set_input_raw``/``invoke``/``output`` to skip the
    conversions in a hot loop.
    """

    def __init__(self, path: str | Path, num_threads: int = 1, name: str | None = None, prefer_runtime: str | None = None,
                 fix: str = FETCH_FIX, data: bytes | None = None):
        """``data``: the file's bytes, already read and checked by the caller (a second interpreter of a
        model whose digest was verified: the file is then not read again)."""
        self.path = Path(path)
        self.name = name or self.path.stem
        data = check_tflite_file(self.path, fix) if data is None else data
        self.size_bytes = len(data)
        self.interpreter, self.runtime = make_interpreter(data, num_threads, prefer_runtime, self.path)
        self.num_threads = num_threads
        self.inputs = [_spec(d) for d in self.interpreter.get_input_details()]
        self.outputs = [_spec(d) for d in self.interpreter.get_output_details()]
        log.debug("loaded %s with %s (%d threads): in %s out %s", self.path.name, self.runtime, num_threads,
                  [(s.shape, s.dtype.name) for s in self.inputs], [(s.shape, s.dtype.name) for s in self.outputs])

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the first input, NHWC."""
        shape = self.input.shape
        if len(shape) != 4:
            raise ModelError(f"model {self.path.name} has input shape {shape}, expected NHWC [1,H,W,C]")
        return shape[1], shape[2]

    @property
    def input_dtype(self) -> np.dtype:
        return self.input.dtype

    def quantize_input(self, x: np.ndarray, spec: TensorSpec | None = None) -> np.ndarray:
        spec = spec or self.input
        if spec.dtype == x.dtype:
            return x
        if spec.quantized:
            info = np.iinfo(spec.dtype)
            q = np.round(x.astype(np.float32) / spec.scale + spec.zero_point)
            return np.clip(q, info.min, info.max).astype(spec.dtype)
        return x.astype(spec.dtype)

    def dequantize(self, y: np.ndarray, spec: TensorSpec) -> np.ndarray:
        if spec.quantized:
            return (y.astype(np.float32) - spec.zero_point) * spec.scale
        return y.astype(np.float32, copy=False)

    def set_input_raw(self, x: np.ndarray, i: int = 0) -> None:
        self.interpreter.set_tensor(self.inputs[i].index, x)

    def invoke(self) -> None:
        self.interpreter.invoke()

    def output_raw(self, i: int = 0) -> np.ndarray:
        return self.interpreter.get_tensor(self.outputs[i].index)

    def output(self, i: int = 0) -> np.ndarray:
        return self.dequantize(self.output_raw(i), self.outputs[i])

    def run(self, *xs: np.ndarray) -> list[np.ndarray]:
        for i, x in enumerate(xs):
            spec = self.inputs[i]
            if x.ndim == len(spec.shape) - 1:
                x = x[None]
            self.set_input_raw(np.ascontiguousarray(self.quantize_input(x, spec)), i)
        self.invoke()
        return [self.output(i) for i in range(len(self.outputs))]

    def describe(self) -> dict:
        s = self.input
        return {"name": self.name, "path": str(self.path), "runtime": self.runtime, "threads": self.num_threads,
                "input_shape": list(s.shape), "input_dtype": s.dtype.name, "input_scale": s.scale,
                "input_zero_point": s.zero_point, "size_bytes": self.size_bytes}


def bundled_model_path(name: str) -> Path:
    """A model shipped inside the package (``models/`` is packaged as ``edge_liveness.bundled_models``),
    or in ``models/`` of a source tree that was not installed."""
    try:
        from importlib.resources import files

        return Path(str(files("edge_liveness.bundled_models").joinpath(name)))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "models" / name
