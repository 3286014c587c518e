"""468-point face mesh (MediaPipe's ``face_landmark.tflite``) on the aligned crop.

Model contract (checked on the pinned file): input ``[1,192,192,3]`` float32 RGB in [0, 1] (MediaPipe's
CPU graph feeds [0, 1]; measured here: [-1, 1] input gives a lower presence and visibly worse points);
outputs ``[1,1,1,1404]`` = 468 x (x, y, z) in input pixels (z: depth in the same pixel units, smaller
= nearer the camera) and ``[1,1,1,1]`` face-presence logit (sigmoid -> probability).

The crop is :func:`align.align_crop` with ``margin = 0.25`` (MediaPipe's face ROI: the face box
x 1.5, rotated so the eyes are level). Points come back in frame pixels; z is scaled like x/y.

Mesh indices (MediaPipe topology; the SUBJECT's sides: the subject's right eye is on the image's
left in an unmirrored camera): right eye corners 33 (outer) / 133 (inner), left eye 263 (outer) /
362 (inner); 1 nose tip; 13/14 inner lips; 61/291 mouth corners; 10 forehead; 152 chin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_liveness.vision.align import AlignedCrop, FaceAnchors, align_crop
from edge_liveness.vision.runtime import ModelError, TFLiteModel

INPUT_SIZE = 192
ROI_MARGIN = 0.25

# Eye contours (subject's sides): used for eye centres (crop anchors) and EAR (see blink/detector.py).
RIGHT_EYE_RING = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE_RING = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
MOUTH_POINTS = (13, 14, 61, 291)
NOSE_TIP, FOREHEAD, CHIN = 1, 10, 152
MESH_EYE_SCALE = 1 / 0.939
MESH_MOUTH_SCALE = 1 / 0.964
RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_OUTER, LEFT_EYE_INNER = 33, 133, 263, 362
# the same indices as arrays, built once: the anchors read them on every frame
_RIGHT_RING, _LEFT_RING, _MOUTH = (np.array(r, np.intp) for r in (RIGHT_EYE_RING, LEFT_EYE_RING, MOUTH_POINTS))
# [0,255] -> [0,1] as a 256-entry table: cv2.LUT gives exactly the values of pixel * (1/255) rounded to
# float32 (checked in tests/test_landmarks.py), in a third less time than numpy's float64 multiply
_UNIT_SCALE = (np.arange(256, dtype=np.float64) * (1.0 / 255.0)).astype(np.float32)


@dataclass(frozen=True)
class FaceLandmarks:
    points: np.ndarray = field(repr=False)  # (468, 3) x, y in frame pixels; z in the same scale
    presence: float  # face-presence probability from the model
    crop_side: float = 0.0  # side of the crop the mesh ran on, frame pixels

    @property
    def right_eye(self) -> np.ndarray:
        """Centre of the subject's right eye (image left), frame pixels."""
        return self.points[_RIGHT_RING, :2].mean(0)

    @property
    def left_eye(self) -> np.ndarray:
        return self.points[_LEFT_RING, :2].mean(0)

    @property
    def mouth(self) -> np.ndarray:
        return self.points[_MOUTH, :2].mean(0)

    def anchors(self) -> FaceAnchors:
        """Crop anchors on the detector's scale, so a crop from the mesh matches one from the detector.

        The mesh's eye-ring centres sit closer together (x0.939) and nearer the mouth (x0.964) than
        BlazeFace's eye/mouth keypoints (medians over 124 faces, face_recognition examples + Yale):
        scale them back about the eye midpoint so one crop geometry (vision/align.py) serves both sources.
        """
        done = self.__dict__.get("_anchors")
        if done is not None:  # asked three times a frame (tracking, the face box, the passive crops)
            return done
        le, re_, mo = self.left_eye, self.right_eye, self.mouth
        mid = (le + re_) / 2
        done = FaceAnchors(left_eye=mid + (le - mid) * MESH_EYE_SCALE, right_eye=mid + (re_ - mid) * MESH_EYE_SCALE,
                           mouth=mid + (mo - mid) * MESH_MOUTH_SCALE)
        object.__setattr__(self, "_anchors", done)  # frozen, and FaceAnchors is frozen too: safe to share
        return done

    def box(self) -> tuple[float, float, float, float]:
        xy = self.points[:, :2]
        x0, y0 = xy.min(0)
        x1, y1 = xy.max(0)
        return float(x0), float(y0), float(x1), float(y1)

    @property
    def face_side(self) -> float:
        """Face size in frame pixels on the same scale as the detector's box side."""
        return self.crop_side / (1 + 2 * ROI_MARGIN) if self.crop_side else max(np.ptp(self.points[:, :2], 0))


class Landmarker:
    """``run(frame_bgr, anchors) -> FaceLandmarks``; anchors from the detector or the last mesh."""

    def __init__(self, model_path: str | Path, num_threads: int = 1):
        self.model = TFLiteModel(model_path, num_threads=num_threads, name="face_landmarks")
        if self.model.input.shape != (1, INPUT_SIZE, INPUT_SIZE, 3) or len(self.model.outputs) != 2:
            raise ModelError(f"{model_path}: input {self.model.input.shape}, expected the face mesh model "
                             f"[1,192,192,3]: run `edge-liveness models fetch`")
        self._pts = next(i for i, o in enumerate(self.model.outputs) if o.shape[-1] == 1404)
        self._pres = 1 - self._pts
        self._crop = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
        self._rgb = np.empty_like(self._crop)
        self._input = np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.float32)

    @classmethod
    def from_settings(cls, settings, path: str | Path | None = None) -> "Landmarker":
        from edge_liveness.vision.modelstore import ModelStore

        return cls(path or ModelStore.from_settings(settings).locate("landmarks"), settings.models.num_threads)

    def run(self, frame_bgr: np.ndarray, anchors: FaceAnchors) -> FaceLandmarks:
        crop = align_crop(frame_bgr, anchors, INPUT_SIZE, ROI_MARGIN, out=self._crop)
        # BGR -> RGB and [0,255] -> [0,1] straight into the preallocated input tensor
        # cvtColor into a contiguous buffer, then scale: a negative-stride [..., ::-1] view costs ~8x more
        cv2.cvtColor(self._crop, cv2.COLOR_BGR2RGB, dst=self._rgb)
        cv2.LUT(self._rgb, _UNIT_SCALE, dst=self._input[0])
        m = self.model
        m.set_input_raw(self._input)
        m.invoke()
        raw = m.output_raw(self._pts).reshape(468, 3)
        logit = float(m.output_raw(self._pres).reshape(-1)[0])
        return FaceLandmarks(self._to_frame(raw, crop), float(1.0 / (1.0 + np.exp(-logit))), crop.side)

    @staticmethod
    def _to_frame(raw: np.ndarray, crop: AlignedCrop) -> np.ndarray:
        pts = np.empty((raw.shape[0], 3), np.float32)
        # The model's coordinates treat pixel corners as integers; OpenCV's warp uses pixel centres.
        pts[:, :2] = crop.to_frame(raw[:, :2] - 0.5)
        pts[:, 2] = raw[:, 2] * (crop.side / INPUT_SIZE)
        return pts


def draw(frame_bgr: np.ndarray, lm: FaceLandmarks, color=(0, 255, 0)) -> np.ndarray:
    """Debug helper: the mesh points drawn on a copy of the frame."""
    out = frame_bgr.copy()
    for x, y in lm.points[:, :2].astype(int):
        cv2.circle(out, (int(x), int(y)), 1, color, -1)
    return out
