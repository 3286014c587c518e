"""BlazeFace short-range face detector (MediaPipe's ``face_detection_short_range.tflite``).

Model contract (checked on the pinned file): input ``[1,128,128,3]`` float32 RGB scaled to
[-1, 1]; outputs ``regressors [1,896,16]`` (box centre offset, box size, 6 keypoints, all in
128-pixel input units relative to an anchor centre) and ``classificators [1,896,1]`` (logits).

The frame is letterboxed (aspect kept, zero padding) to 128x128, so results map back to frame
pixels with one scale and offset. Keypoints, in the model's order, are the SUBJECT's own sides
(the person's right eye shows on the image's left in an unmirrored camera):
``RIGHT_EYE, LEFT_EYE, NOSE_TIP, MOUTH, RIGHT_EAR, LEFT_EAR`` (ears are the tragion points).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_liveness.vision.runtime import ModelError, TFLiteModel

RIGHT_EYE, LEFT_EYE, NOSE_TIP, MOUTH, RIGHT_EAR, LEFT_EAR = range(6)
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")
INPUT_SIZE = 128
SCORE_CLIP = 100.0  # logits clipped as MediaPipe does before the sigmoid


@dataclass(frozen=True)
class Face:
    """One detected face, everything in frame pixels."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float
    keypoints: np.ndarray = field(repr=False)  # (6, 2) x, y; order: see KEYPOINT_NAMES (subject's sides)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def side(self) -> float:
        return max(self.width, self.height)

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    def keypoint(self, name: str) -> np.ndarray:
        return self.keypoints[KEYPOINT_NAMES.index(name)]

    def anchors(self):
        """Eye and mouth anchors for :func:`align.align_crop`."""
        from edge_liveness.vision.align import FaceAnchors

        return FaceAnchors(left_eye=self.keypoints[LEFT_EYE].copy(), right_eye=self.keypoints[RIGHT_EYE].copy(),
                           mouth=self.keypoints[MOUTH].copy())


def ssd_anchors(size: int = INPUT_SIZE, strides: tuple[int, ...] = (8, 16, 16, 16)) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1] for the short-range config.

    MediaPipe's options for this model: 4 layers, strides 8/16/16/16, one aspect ratio plus the
    interpolated scale (2 anchors per cell per layer), fixed anchor size. Consecutive layers with the
    same stride share a grid, so the 16x16 grid has 2 anchors per cell and the 8x8 grid 6:
    512 + 384 = 896. With fixed anchor size only the centres matter (width = height = 1).
    """
    out = []
    i = 0
    while i < len(strides):
        stride = strides[i]
        n = 0
        while i < len(strides) and strides[i] == stride:
            n += 2
            i += 1
        cells = int(np.ceil(size / stride))
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(centres, n, axis=0))
    return np.concatenate(out).astype(np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    a = (box[2] - box[0]) * (box[3] - box[1])
    b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(a + b - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray, iou: float) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe-style weighted NMS: each kept detection is the score-weighted mean of its cluster.

    Averaging (rather than keeping the single best) steadies boxes and keypoints from frame to frame.
    """
    order = np.argsort(-scores)
    boxes, kps, scores = boxes[order], kps[order], scores[order]
    out = []
    remaining = np.arange(len(scores))
    while remaining.size:
        first = remaining[0]
        overlap = _iou(boxes[first], boxes[remaining])
        members = remaining[overlap > iou]
        members = members if members.size else remaining[:1]
        w = scores[members][:, None]
        box = (boxes[members] * w).sum(0) / w.sum()
        kp = (kps[members] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, kp, float(scores[first])))
        remaining = remaining[overlap <= iou]
        remaining = remaining[remaining != first]
    return out


class FaceDetector:
    """Letterbox -> BlazeFace -> decode -> weighted NMS; ``detect(frame_bgr) -> list[Face]``."""

    def __init__(self, model_path: str | Path, min_score: float = 0.6, nms_iou: float = 0.3, num_threads: int = 1,
                 max_faces: int = 10):
        self.model = TFLiteModel(model_path, num_threads=num_threads, name="face_detector")
        shape = self.model.input.shape
        if shape != (1, INPUT_SIZE, INPUT_SIZE, 3) or len(self.model.outputs) != 2:
            raise ModelError(f"{model_path}: input {shape}, expected the BlazeFace short-range model "
                             f"[1,128,128,3]: run `edge-liveness models fetch`")
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        self.max_faces = max_faces
        self.anchors = ssd_anchors()
        # The outputs are ordered by name in the file; find them by shape so the order can't bite.
        self._reg = next(i for i, o in enumerate(self.model.outputs) if o.shape[-1] == 16)
        self._cls = 1 - self._reg
        self._input = np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.float32)
        self._canvas = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
        self._geom_key: tuple[int, int] | None = None
        self._resized: np.ndarray | None = None
        self._scale = 1.0
        self._offset = (0, 0)
        self._min_logit = float(np.log(self.min_score / (1 - self.min_score)))

    @classmethod
    def from_settings(cls, settings, path: str | Path | None = None) -> "FaceDetector":
        from edge_liveness.vision.modelstore import ModelStore

        p = path or ModelStore.from_settings(settings).locate("detector")
        d = settings.detection
        return cls(p, d.min_score, d.nms_iou, settings.models.num_threads)

    def _geometry(self, h: int, w: int) -> None:
        # Letterbox geometry and buffers depend only on the frame size: compute once per size.
        if self._geom_key == (h, w):
            return
        s = INPUT_SIZE / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        ox, oy = (INPUT_SIZE - nw) // 2, (INPUT_SIZE - nh) // 2
        self._canvas[:] = 0
        self._resized = np.empty((nh, nw, 3), np.uint8)
        self._scale, self._offset, self._geom_key = s, (ox, oy), (h, w)

    def prepare(self, frame_bgr: np.ndarray) -> None:
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
            raise ValueError(f"frame must be HxWx3 uint8 BGR, got {frame_bgr.shape} {frame_bgr.dtype}")
        h, w = frame_bgr.shape[:2]
        self._geometry(h, w)
        r = self._resized
        # INTER_AREA: a 640->128 shrink with bilinear aliases badly and costs detections.
        cv2.resize(frame_bgr, (r.shape[1], r.shape[0]), dst=r, interpolation=cv2.INTER_AREA)
        ox, oy = self._offset
        self._canvas[oy:oy + r.shape[0], ox:ox + r.shape[1]] = r[:, :, ::-1]  # BGR -> RGB
        # [0,255] -> [-1,1] into the preallocated input (padding becomes -1, as black)
        np.multiply(self._canvas, 1.0 / 127.5, out=self._input[0], casting="unsafe")
        self._input -= 1.0

    def detect(self, frame_bgr: np.ndarray) -> list[Face]:
        self.prepare(frame_bgr)
        m = self.model
        m.set_input_raw(self._input)
        m.invoke()
        logits = m.output_raw(self._cls)[0, :, 0]
        keep = np.flatnonzero(logits > self._min_logit)
        if keep.size == 0:
            return []
        reg = m.output_raw(self._reg)[0, keep]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[keep], -SCORE_CLIP, SCORE_CLIP)))
        anchors = self.anchors[keep]
        # Decode in 128-px input units: offsets are relative to the anchor centre (scale 128).
        cx = reg[:, 0] + anchors[:, 0] * INPUT_SIZE
        cy = reg[:, 1] + anchors[:, 1] * INPUT_SIZE
        w, h = reg[:, 2], reg[:, 3]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        kps = reg[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :] * INPUT_SIZE
        faces = []
        ox, oy = self._offset
        inv = 1.0 / self._scale
        fh, fw = self._geom_key
        for box, kp, score in weighted_nms(boxes, kps, scores, self.nms_iou)[: self.max_faces]:
            b = (box - np.array([ox, oy, ox, oy], np.float32)) * inv
            b = np.clip(b, [0, 0, 0, 0], [fw, fh, fw, fh])
            k = (kp - np.array([ox, oy], np.float32)) * inv
            if b[2] - b[0] < 1 or b[3] - b[1] < 1:
                continue
            faces.append(Face(tuple(float(v) for v in b), score, k.astype(np.float32)))
        return faces
