"""The passive liveness classifier on the device: an int8 TFLite MobileNetV2 and its manifest.

The manifest (``<model stem>.json`` beside the ``.tflite``) says how the model must be fed: input
size, colour order, normalisation, the aligned crop (size, margin) its training crops were cut
with, what the output means, the decision threshold chosen on the int8 model's own scores, and the
sha256 of the ``.tflite`` it belongs to. A model without its manifest, or with a manifest for other
bytes, is refused: a wrong threshold or crop silently ruins every decision.

A two-view model (manifest key ``context``: {size, scale}) scores the tight crop AND the wider
context crop (``align.context_crop``): one network run on each, output [tight-head logit,
context-head logit], fused as ``sigmoid((l_tight + l_context) / 2)`` by :meth:`predict_views`.

No TensorFlow here: everything goes through :class:`edge_liveness.vision.runtime.TFLiteModel`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_liveness.liveness.fusion import sigmoid
from edge_liveness.vision.runtime import ModelError, TFLiteModel, bundled_model_path

DEFAULT_MODEL_NAME = "liveness_two_view_int8.tflite"
REQUIRED_KEYS = ("name", "input_size", "color_order", "crop", "output", "threshold", "sha256")


def default_model_path() -> Path:
    """The model shipped inside the package (``models/`` is packaged as ``edge_liveness.bundled_models``)."""
    return bundled_model_path(DEFAULT_MODEL_NAME)


def manifest_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_suffix(".json")


def read_manifest(model_path: str | Path) -> dict[str, Any]:
    mp = manifest_path(model_path)
    if not mp.is_file():
        raise ModelError(f"liveness model manifest {mp} is missing: keep the .json written by `edge-liveness convert` beside the .tflite")
    try:
        data = json.loads(mp.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"liveness model manifest {mp} is not valid JSON ({e}): re-create it with `edge-liveness convert`") from None
    if not isinstance(data, dict):
        raise ModelError(f"liveness model manifest {mp} is not a JSON object: re-create it with `edge-liveness convert`")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ModelError(f"liveness model manifest {mp} lacks {', '.join(missing)}: re-create it with `edge-liveness convert`")
    return data


class LivenessModel:
    """``predict(crop_bgr) -> P(live)`` for one aligned face crop (uint8 BGR, size x size x 3).

    Two-view models: ``predict_views(tight_bgr, context_bgr) -> P(live)``; ``context_scale`` and
    ``context_size`` say how to cut the context crop (``views == 2``).
    """

    def __init__(self, path: str | Path, num_threads: int = 1):
        self.path = Path(path)
        if self.path.is_dir():
            raise ModelError(f"liveness model {self.path} is a directory, not a .tflite file: set models.liveness to "
                             f"the model file (its .json manifest beside it) or leave it empty for the shipped one")
        if not self.path.is_file():
            raise ModelError(f"liveness model {self.path} is missing: set models.liveness to a .tflite file or leave it empty for the shipped one")
        self.manifest = read_manifest(self.path)
        m = self.manifest
        data = self.path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != str(m["sha256"]).lower():
            raise ModelError(f"liveness model {self.path.name} has sha256 {digest[:12]}... but its manifest says "
                             f"{str(m['sha256'])[:12]}... (model and manifest do not belong together): re-convert or restore both files")
        self.sha256 = digest
        self.name = str(m["name"])
        try:
            self.threshold = float(m["threshold"])
            size = m["input_size"]
            self.input_size = int(size[0] if isinstance(size, (list, tuple)) else size)
            crop = m["crop"]
            self.crop_size = int(crop["size"])
            self.crop_margin = float(crop["margin"])
        except (TypeError, ValueError, KeyError) as e:
            raise ModelError(f"liveness model manifest {manifest_path(self.path)} has a bad field ({e}): re-create it with `edge-liveness convert`") from None
        if not 0.0 < self.threshold < 1.0:
            raise ModelError(f"liveness manifest threshold {self.threshold} is outside (0, 1): re-create it with `edge-liveness convert`")
        if str(m["color_order"]).upper() not in ("RGB", "BGR"):
            raise ModelError(f"liveness manifest color_order {m['color_order']!r} must be RGB or BGR")
        self._swap = str(m["color_order"]).upper() == "RGB"  # frames are BGR
        self.model = TFLiteModel(self.path, num_threads=num_threads, name=self.name,
                                 fix="restore it or re-create it with `edge-liveness convert` (`models fetch` fetches "
                                     "only the face models)")
        spec = self.model.input
        want = (1, self.input_size, self.input_size, 3)
        if tuple(spec.shape) != want:
            raise ModelError(f"liveness model {self.path.name} takes input {list(spec.shape)} but its manifest says "
                             f"{list(want)}: re-convert the model or fix the manifest")
        if self.crop_size != self.input_size:
            raise ModelError(f"liveness manifest crop size {self.crop_size} differs from the input size {self.input_size}: the crop must be cut at the input size")
        ctx = m.get("context")
        self.views = 2 if ctx else 1
        self.context_size: int | None = None
        self.context_scale: float | None = None
        if ctx:
            try:
                self.context_size, self.context_scale = int(ctx["size"]), float(ctx["scale"])
            except (TypeError, ValueError, KeyError) as e:
                raise ModelError(f"liveness model manifest {manifest_path(self.path)} has a bad context field ({e}): "
                                 f"re-create it with `python -m converters.lopo.two_view`") from None
            if self.context_size != self.input_size or self.context_scale < 1.0:
                raise ModelError(f"liveness manifest context {ctx} must have size {self.input_size} and scale >= 1")
        if len(self.model.outputs) != 1 or int(np.prod(self.model.outputs[0].shape)) != self.views:
            want_out = "one value (P(live))" if self.views == 1 else "two values (tight and context logits)"
            raise ModelError(f"liveness model {self.path.name} must have one output with {want_out}, has "
                             f"{[list(o.shape) for o in self.model.outputs]}")
        self._spec = spec
        self._out = self.model.outputs[0]
        # one interpreter and its preallocated input per thread that runs the model (add_twin)
        self._feeds = [self._feed(self.model)]
        if spec.quantized:
            self._q_scale, self._q_zero = 1.0 / spec.scale, float(spec.zero_point)
            # the usual case (Rescaling inside the model): scale 1.0, zero -128 -> just shift bytes
            self._shift_only = abs(spec.scale - 1.0) < 1e-6 and spec.dtype == np.int8 and spec.zero_point == -128
        else:
            self._shift_only = False

    @property
    def runtime(self) -> str:
        return self.model.runtime

    @property
    def has_twin(self) -> bool:
        return len(self._feeds) > 1

    def add_twin(self) -> None:
        """A second interpreter of the same verified bytes, so that a second thread can run one view while
        this one runs the other (schedule.overlap: the tight view on the worker, pipeline.py). Costs one
        more copy of the packed weights and arena (about 6.5 MB here: benchmarks/README.md, "Overlap"); the
        outputs are the same bits."""
        if self.has_twin:
            return
        data = self.path.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise ModelError(f"liveness model {self.path.name} changed on disk since it was loaded: restart the "
                             f"daemon (or reload) so that model and manifest are checked again")
        self._feeds.append(self._feed(TFLiteModel(self.path, num_threads=self.model.num_threads, name=self.name, data=data)))

    def _feed(self, model: TFLiteModel) -> "_Feed":
        shape = (1, self.input_size, self.input_size, 3)
        return _Feed(model, np.zeros(shape, self._spec.dtype), np.zeros(shape[1:], np.float32),
                     np.zeros(shape[1:], np.uint8))

    def predict(self, crop_bgr: np.ndarray) -> float:
        if self.views != 1:
            raise ValueError(f"{self.name} is a two-view model: call predict_views(tight_crop, context_crop)")
        return float(self._run(crop_bgr)[0])

    def predict_views(self, tight_bgr: np.ndarray, context_bgr: np.ndarray | None = None) -> float:
        """P(live) from the tight crop and the context crop (the latter ignored by one-view models)."""
        if self.views == 1:
            return float(self._run(tight_bgr)[0])
        return p_live_of(self.view_logits(tight_bgr, context_bgr))

    def view_logits(self, tight_bgr: np.ndarray, context_bgr: np.ndarray | None) -> tuple[float, float]:
        """A two-view model's two outputs: logit 0 on the tight crop, logit 1 on the context crop (each head
        times 2 x its view weight: their mean is the model's fused logit)."""
        if self.views != 2:
            raise ValueError(f"{self.name} is a one-view model: call predict(crop)")
        if context_bgr is None:
            raise ValueError(f"{self.name} needs the context crop too (align.context_crop, scale {self.context_scale})")
        return float(self._run(tight_bgr)[0]), float(self._run(context_bgr)[1])

    def view_logit(self, view: int, crop_bgr: np.ndarray, twin: bool = False) -> float:
        """A two-view model's logit ``view`` (0 tight, 1 context) on its crop; ``twin``: on the second
        interpreter (``add_twin``), for another thread. One interpreter never runs on two threads at once."""
        if self.views != 2:
            raise ValueError(f"{self.name} is a one-view model: call predict(crop)")
        if twin and not self.has_twin:
            raise ValueError(f"{self.name} has no twin interpreter: call add_twin() first")
        return float(self._run(crop_bgr, 1 if twin else 0)[view])

    def _run(self, crop_bgr: np.ndarray, feed: int = 0) -> np.ndarray:
        """The model's dequantised output values for one crop, on interpreter ``feed``."""
        s = self.input_size
        if crop_bgr.shape != (s, s, 3) or crop_bgr.dtype != np.uint8:
            raise ValueError(f"liveness crop must be ({s}, {s}, 3) uint8, got {crop_bgr.shape} {crop_bgr.dtype}")
        fd = self._feeds[feed]
        # cvtColor into the feed's buffer: arithmetic on a negative-stride [..., ::-1] view costs ~8x more
        src = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2RGB, dst=fd.rgb) if self._swap else crop_bgr
        x = fd.x[0]
        spec = self._spec
        if self._shift_only:
            # q = pixel - 128: uint8 arithmetic wraps modulo 256, which read as int8 is exactly
            # pixel - 128 (0 -> -128, 255 -> 127), written straight into the input buffer
            np.subtract(src, 128, out=x, casting="unsafe")
        elif spec.quantized:
            f = fd.f
            np.multiply(src, self._q_scale, out=f, casting="unsafe")
            f += self._q_zero
            np.rint(f, out=f)
            info = np.iinfo(spec.dtype)
            np.clip(f, info.min, info.max, out=f)
            x[...] = f
        else:
            x[...] = src
        m = fd.model
        m.set_input_raw(fd.x)
        m.invoke()
        raw = m.output_raw(0).reshape(-1)
        o = self._out
        return (raw.astype(np.float64) - o.zero_point) * o.scale if o.quantized else raw.astype(np.float64)

    def describe(self) -> dict[str, Any]:
        d = self.model.describe()
        d.update({"name": self.name, "sha256": self.sha256, "threshold": self.threshold, "crop_size": self.crop_size,
                  "crop_margin": self.crop_margin, "views": self.views, "context_scale": self.context_scale})
        return d


@dataclass(frozen=True)
class _Feed:
    """One interpreter of the model and its input buffers (quantised input, float scratch)."""

    model: TFLiteModel
    x: np.ndarray
    f: np.ndarray
    rgb: np.ndarray  # the crop in the model's colour order


def p_live_of(view_logits: tuple[float, float]) -> float:
    """A two-view model's P(live): the sigmoid of its two outputs' mean."""
    return sigmoid((view_logits[0] + view_logits[1]) / 2.0)
