"""Eyelid refinement: MediaPipe's per-eye model (``iris_landmark.tflite``) on a crop of each eye.

Why: the 468-point mesh barely moves its eyelid points when the eyes shut (tranvanluyt_real.mp4
frames 533-534: mesh EAR 0.28 -> 0.25 with the lids closed). The eye model sees only one eye at
64x64 and follows the lids.

Model contract (checked on the pinned file): input ``input_1`` [1,64,64,3] float32 RGB in [0, 1]
(MediaPipe's iris CPU graph does not zero-centre; see docs/vision.md for the [-1,1] comparison);
outputs ``output_eyes_contours_and_brows`` [1,213] = 71 x (x, y, z) and ``output_iris`` [1,15] =
5 x (x, y, z), x/y in input pixels. The model is made for the eye on the IMAGE's left in
MediaPipe's layout, outer corner at the crop's left: that is the subject's right eye (mesh 33 ->
133) in an unmirrored camera; the other eye (263 -> 362) is crop mirrored so its outer corner is
also on the left, and the points are mapped back through the same (mirroring) affine.

Crop (MediaPipe's iris ROI): centred on the midpoint of the mesh's two eye corners, rotated so the
corner line is horizontal, square with side ``ROI_SCALE`` x the corner distance.

Contour layout (first 16 of the 71 points; the rest are halo rings and the brow): 0 = outer corner,
1..7 lower lid from outer to inner, 8 = inner corner, 9..15 upper lid from outer to inner. EAR
p1..p6 = 0, 11, 13, 8, 5, 3 (the same lid positions as the mesh's 33, 160, 158, 133, 153, 144).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_liveness.vision.runtime import ModelError, TFLiteModel

log = logging.getLogger("edge_liveness.eyes")

INPUT_SIZE = 64
ROI_SCALE = 2.3
N_CONTOUR = 71
N_IRIS = 5
CONTOUR_EAR = (0, 11, 13, 8, 5, 3)  # p1..p6 in the model's eye contour
# (outer corner, inner corner) mesh indices; the second eye is mirrored into the model's layout
EYE_CORNERS = {"right": (33, 133), "left": (263, 362)}


@dataclass(frozen=True)
class EyeContour:
    """One eye from the eye model, in frame pixels."""

    contour: np.ndarray = field(repr=False)  # (71, 2)
    iris: np.ndarray = field(repr=False)  # (5, 2): centre then 4 points on the iris edge

    @property
    def ear_points(self) -> np.ndarray:
        return self.contour[list(CONTOUR_EAR)]


@dataclass(frozen=True)
class EyePair:
    left: EyeContour  # the subject's left eye
    right: EyeContour


class EyeRefiner:
    """``run(frame_bgr, landmarks) -> EyePair``: both eyes through the eye model (two invokes).

    Not one invoke at batch 2: measured (1 thread, apfol_real2.webm), a batch-2 invoke costs what two
    batch-1 invokes cost, for the float and the int8 model alike (the work is the convolutions, not
    the call), so the simpler fixed-batch path stays. A full-integer eye model (int8 input and
    outputs, ``converters/blink/iris_int8.py``) is accepted too: its input is quantised here.
    """

    def __init__(self, model_path: str | Path, num_threads: int = 1):
        self.model = TFLiteModel(model_path, num_threads=num_threads, name="eyes")
        shapes = sorted(o.shape[-1] for o in self.model.outputs)
        if self.model.input.shape != (1, INPUT_SIZE, INPUT_SIZE, 3) or shapes != [N_IRIS * 3, N_CONTOUR * 3]:
            raise ModelError(f"{model_path}: input {self.model.input.shape} outputs {shapes}, expected the eye model "
                             f"[1,64,64,3] -> [213], [15]: run `edge-liveness models fetch`")
        self._contour = next(i for i, o in enumerate(self.model.outputs) if o.shape[-1] == N_CONTOUR * 3)
        self._iris = 1 - self._contour
        self._crop = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
        self._rgb = np.empty_like(self._crop)
        spec = self.model.input
        self._input = np.zeros((2, INPUT_SIZE, INPUT_SIZE, 3), spec.dtype)  # row 0 right eye, row 1 left
        # int8 input whose scale is 1/255 and zero point -128 (what calibration on [0,1] pixels gives):
        # q = pixel - 128, i.e. the pixel's top bit flipped, read as int8: exact and cheap.
        self._int8_shift = (spec.dtype == np.int8 and spec.zero_point == -128
                            and abs(spec.scale * 255.0 - 1.0) < 1e-6)
        self._matrix = np.zeros((2, 3), np.float64)

    @classmethod
    def from_settings(cls, settings) -> "EyeRefiner | None":
        """The refiner, or None when ``blink.eye_model`` is off or the file is absent (mesh EAR then).

        An altered file is a ModelError (one line), never a silent fallback.
        """
        if not settings.blink.eye_model:
            return None
        from edge_liveness.vision.modelstore import FETCH_HINT, ModelStore

        path = ModelStore.from_settings(settings).locate_optional("eyes")
        if path is None:
            log.warning("eye model %s absent: blinks use the face mesh's eyelids, which miss many real blinks (%s)",
                        settings.models.eyes, FETCH_HINT)
            return None
        return cls(path, settings.models.num_threads)

    def run(self, frame_bgr: np.ndarray, points: np.ndarray) -> EyePair:
        """Both eyes of one face; ``points`` = the mesh's (468, >=2) frame-pixel points."""
        inv_right, inv_left = self._fill(frame_bgr, points)
        return EyePair(left=self._infer(1, inv_left), right=self._infer(0, inv_right))

    def run_one(self, frame_bgr: np.ndarray, points: np.ndarray, eye: str) -> EyeContour:
        """One eye (``"left"`` or ``"right"``, the subject's) through the model: one invoke, the same crop,
        mirroring and slot ``run`` gives it (``schedule.eyes_per_run = 1``)."""
        slot, mirror = (1, True) if eye == "left" else (0, False)
        outer, inner = EYE_CORNERS[eye]
        inv = self._crop_eye(frame_bgr, points[outer, :2], points[inner, :2], mirror=mirror, slot=slot)
        return self._infer(slot, inv)

    def crops(self, frame_bgr: np.ndarray, points: np.ndarray) -> np.ndarray:
        """A copy of the model input ``run`` would give for this face: [2,64,64,3] in the model's input
        type, row 0 the subject's right eye, row 1 the left eye mirrored (calibration and checks)."""
        self._fill(frame_bgr, points)
        return self._input.copy()

    def _fill(self, frame_bgr: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        (ro, ri), (lo, li) = EYE_CORNERS["right"], EYE_CORNERS["left"]
        inv_right = self._crop_eye(frame_bgr, points[ro, :2], points[ri, :2], mirror=False, slot=0)
        inv_left = self._crop_eye(frame_bgr, points[lo, :2], points[li, :2], mirror=True, slot=1)
        return inv_right, inv_left

    def _infer(self, slot: int, inv: np.ndarray) -> EyeContour:
        mdl = self.model
        mdl.set_input_raw(self._input[slot:slot + 1])
        mdl.invoke()
        return _to_frame(mdl.output(self._contour), mdl.output(self._iris), inv)

    def _crop_eye(self, frame_bgr: np.ndarray, outer: np.ndarray, inner: np.ndarray, mirror: bool,
                  slot: int) -> np.ndarray:
        """Cut one eye into row ``slot`` of the input buffer; return the crop -> frame affine."""
        outer = np.asarray(outer, np.float64)
        inner = np.asarray(inner, np.float64)
        d = inner - outer
        width = float(np.hypot(*d))
        if width < 1e-6:
            raise ValueError("eye corners coincide")
        ex = d / width  # crop +x: outer -> inner corner
        # crop +y points down the face. For the subject's right eye (outer corner on the image's left)
        # that is ex turned +90 deg (a rotation); for the left eye ex points the other way, so ex turned
        # -90 deg points down and the affine is a mirror: MediaPipe's horizontal flip of that eye.
        ey = np.array([-ex[1], ex[0]])
        if mirror:
            ey = -ey
        side = ROI_SCALE * width
        k = side / INPUT_SIZE  # frame pixels per crop pixel
        half = INPUT_SIZE / 2.0
        centre = (outer + inner) / 2
        # crop pixel centre u (0.5 offset: pixel centres) -> frame = centre + k ((u+0.5-half) ex + ...)
        inv = np.empty((2, 3))
        inv[:, 0] = k * ex
        inv[:, 1] = k * ey
        inv[:, 2] = centre + k * (0.5 - half) * (ex + ey)
        m = self._matrix
        cv2.invertAffineTransform(inv, m)
        cv2.warpAffine(frame_bgr, m, (INPUT_SIZE, INPUT_SIZE), dst=self._crop, flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
        # cvtColor into a contiguous buffer, then scale: a negative-stride [..., ::-1] view costs ~8x more
        cv2.cvtColor(self._crop, cv2.COLOR_BGR2RGB, dst=self._rgb)
        row = self._input[slot]
        if self._input.dtype == np.float32:
            np.multiply(self._rgb, 1.0 / 255.0, out=row, casting="unsafe")
        elif self._int8_shift:
            np.bitwise_xor(self._rgb, 0x80, out=row.view(np.uint8))
        else:
            row[...] = self.model.quantize_input(self._rgb.astype(np.float32) / 255.0)
        return inv


def _to_frame(contour_raw: np.ndarray, iris_raw: np.ndarray, inv: np.ndarray) -> EyeContour:
    """Model outputs of one eye -> frame pixels through its crop's affine."""
    # model coordinates: pixel corners are integers, so a pixel centre is at +0.5
    contour = contour_raw.reshape(N_CONTOUR, 3)[:, :2] - 0.5
    iris = iris_raw.reshape(N_IRIS, 3)[:, :2] - 0.5
    return EyeContour(contour @ inv[:, :2].T + inv[:, 2], iris @ inv[:, :2].T + inv[:, 2])
