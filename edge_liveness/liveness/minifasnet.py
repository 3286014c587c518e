"""A second passive opinion that knows screens: Silent-Face's two MiniFASNets (Apache-2.0) as int8 TFLite.

Each model reads one crop of the frame: the face box scaled about its centre by the model's crop
scale (2.7 and 4.0), the scale first reduced so the box fits in the frame, then the box SHIFTED
inside the frame (never padded: a black border would be a feature the models never saw), resized to
80x80 bilinear, BGR 0-255. Output: 3 logits; softmax; class 1 = real. The pair's P(real) is the mean
of the two models' class-1 softmax (upstream sums them and reports half the sum).

The face box: upstream's came from a RetinaFace detector (WIDER FACE boxes: forehead to chin, cheek
to cheek). Here it comes from the face mesh (:func:`face_box`), shaped and scaled as measured
against a WIDER FACE RetinaFace on the shared data (models/README.md).

Models and manifests: ``converters/passive/minifasnet.py``. A model whose bytes do not match its
manifest's sha256 is refused (ModelError, one line). No TensorFlow here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from edge_liveness.vision.landmarks import FaceLandmarks
from edge_liveness.vision.runtime import ModelError, TFLiteModel, bundled_model_path

MODEL_NAMES = ("minifasnet_v2_2.7_int8.tflite", "minifasnet_v1se_4.0_int8.tflite")
INPUT_SIZE = 80
REAL_CLASS = 1
# The mesh's extent -> a RetinaFace-like box, measured on 143 shared faces against a WIDER FACE
# RetinaFace (models/README.md): its box is 0.97 x the mesh's width, 1.10 x its height, centred
# 0.06 x the height higher (it reaches further up the forehead). The overall factor, swept 0.8-1.2,
# barely moves the scores' agreement with the RetinaFace crops; 1.0 matches their windows best.
BOX_WIDTH, BOX_HEIGHT, BOX_SHIFT_Y = 0.97, 1.10, -0.06
BOX_FACTOR = 1.0
_FIX = "re-create it with `python -m converters.passive.minifasnet --out models/`"

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels (as Face.box)


def face_box(landmarks: FaceLandmarks | np.ndarray, factor: float = BOX_FACTOR) -> Box:
    """The face box the MiniFASNets' crop rule starts from, from the mesh (FaceLandmarks or its points)."""
    pts = landmarks.points if isinstance(landmarks, FaceLandmarks) else np.asarray(landmarks)
    xy = pts[:, :2]
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + BOX_SHIFT_Y * h
    hw, hh = w * BOX_WIDTH * factor / 2, h * BOX_HEIGHT * factor / 2
    return float(cx - hw), float(cy - hh), float(cx + hw), float(cy + hh)


def crop_window(frame_w: int, frame_h: int, box: Box, scale: float) -> tuple[int, int, int, int]:
    """Upstream's window (left, top, right, bottom; inclusive pixels): the box scaled by ``scale``
    (reduced so it fits), then shifted inside the frame."""
    x, y = box[0], box[1]
    bw, bh = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
    scale = min((frame_h - 1) / bh, (frame_w - 1) / bw, scale)
    nw, nh = bw * scale, bh * scale
    cx, cy = x + bw / 2, y + bh / 2
    l, t, r, b = cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2
    if l < 0:
        r, l = r - l, 0.0
    if t < 0:
        b, t = b - t, 0.0
    if r > frame_w - 1:
        l, r = l - (r - frame_w + 1), frame_w - 1.0
    if b > frame_h - 1:
        t, b = t - (b - frame_h + 1), frame_h - 1.0
    return int(l), int(t), int(r), int(b)


def crop_for(frame_bgr: np.ndarray, box: Box, scale: float, size: int = INPUT_SIZE) -> np.ndarray:
    """The ``size`` x ``size`` BGR crop one MiniFASNet reads (upstream's rule: shifted, never padded)."""
    h, w = frame_bgr.shape[:2]
    l, t, r, b = crop_window(w, h, box, scale)
    return cv2.resize(frame_bgr[t:b + 1, l:r + 1], (size, size), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class PeerScore:
    p_real: float  # the pair: mean of the models' softmax P(real)
    per_model: tuple[float, ...]  # each model's softmax P(real), in MODEL_NAMES order


class MiniFASNet:
    """One int8 MiniFASNet and its manifest: ``p_real(frame_bgr, box)``, ``softmax(crop_bgr)``."""

    def __init__(self, path: str | Path, num_threads: int = 1):
        self.path = Path(path)
        mp = self.path.with_suffix(".json")
        if not mp.is_file():
            raise ModelError(f"MiniFASNet manifest {mp} is missing: keep the .json beside the .tflite or {_FIX}")
        try:
            m = json.loads(mp.read_text(encoding="utf-8"))
            self.scale, self.name, want_sha = float(m["crop"]["scale"]), str(m["name"]), str(m["sha256"]).lower()
            size, order = int(m["input_size"][0]), str(m["color_order"]).upper()
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError, ValueError, IndexError) as e:
            raise ModelError(f"MiniFASNet manifest {mp} is unreadable or lacks a field ({type(e).__name__}: {e}): {_FIX}") from None
        if not self.path.is_file():
            raise ModelError(f"MiniFASNet model {self.path} is missing: restore it or {_FIX}")
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        if digest != want_sha:
            raise ModelError(f"MiniFASNet model {self.path.name} has sha256 {digest[:12]}... but its manifest says "
                             f"{want_sha[:12]}... (model and manifest do not belong together): restore both or {_FIX}")
        if size != INPUT_SIZE or order != "BGR" or not 1.0 <= self.scale <= 10.0:
            raise ModelError(f"MiniFASNet manifest {mp} says input {size}, {order}, scale {self.scale}: "
                             f"expected {INPUT_SIZE}, BGR, scale 1-10; {_FIX}")
        self.sha256 = digest
        self.model = TFLiteModel(self.path, num_threads=num_threads, name=self.name, fix=_FIX)
        spec, out = self.model.input, self.model.outputs[0]
        if tuple(spec.shape) != (1, INPUT_SIZE, INPUT_SIZE, 3) or int(np.prod(out.shape)) != 3:
            raise ModelError(f"MiniFASNet model {self.path.name} takes {list(spec.shape)} and gives {list(out.shape)}: "
                             f"expected [1, {INPUT_SIZE}, {INPUT_SIZE}, 3] -> 3 logits; {_FIX}")
        self._spec, self._out = spec, out
        self._x = np.zeros(spec.shape, spec.dtype)
        # int8 input with scale 1 and zero point -128 is the raw pixel minus 128: a byte shift
        self._shift = spec.dtype == np.int8 and spec.quantized and abs(spec.scale - 1.0) < 1e-6 and spec.zero_point == -128

    def softmax(self, crop_bgr: np.ndarray) -> np.ndarray:
        """The three class probabilities for one 80x80 BGR uint8 crop."""
        if crop_bgr.shape != (INPUT_SIZE, INPUT_SIZE, 3) or crop_bgr.dtype != np.uint8:
            raise ValueError(f"MiniFASNet crop must be ({INPUT_SIZE}, {INPUT_SIZE}, 3) uint8, got {crop_bgr.shape} {crop_bgr.dtype}")
        m = self.model
        if self._shift:
            np.subtract(crop_bgr, 128, out=self._x[0], casting="unsafe")
            m.set_input_raw(self._x)
        else:
            m.set_input_raw(np.ascontiguousarray(m.quantize_input(crop_bgr[None].astype(np.float32))))
        m.invoke()
        z = m.dequantize(m.output_raw(0), self._out).reshape(-1).astype(np.float64)
        e = np.exp(z - z.max())
        return e / e.sum()

    def p_real(self, frame_bgr: np.ndarray, box: Box) -> float:
        return float(self.softmax(crop_for(frame_bgr, box, self.scale))[REAL_CLASS])


class MiniFASNetPair:
    """Both models: ``score(frame_bgr, box)`` / ``score_landmarks(frame_bgr, landmarks)`` -> PeerScore."""

    def __init__(self, paths: Sequence[str | Path] | None = None, num_threads: int = 1, box_factor: float = BOX_FACTOR):
        self.models = [MiniFASNet(p, num_threads) for p in (paths or [bundled_model_path(n) for n in MODEL_NAMES])]
        self.box_factor = box_factor

    def score(self, frame_bgr: np.ndarray, box: Box, done: Sequence[float] = ()) -> PeerScore:
        """``done``: the P(real) of the first ``len(done)`` models on this frame and box, computed
        elsewhere (the pipeline runs one on another thread)."""
        each = tuple(done) + tuple(m.p_real(frame_bgr, box) for m in self.models[len(done):])
        return PeerScore(float(np.mean(each)), each)

    def score_landmarks(self, frame_bgr: np.ndarray, landmarks: FaceLandmarks | np.ndarray) -> PeerScore:
        return self.score(frame_bgr, face_box(landmarks, self.box_factor))

    def describe(self) -> list[dict]:
        return [{**m.model.describe(), "sha256": m.sha256, "crop_scale": m.scale} for m in self.models]
