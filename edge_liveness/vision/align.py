"""The one face crop: used by the landmark model, the liveness classifier, dataset cutting and training.

Geometry (all in frame pixels; "left"/"right" are the SUBJECT's own sides, so in an unmirrored
camera the subject's right eye is on the image's left):

1. ``ex`` = unit vector from the right eye to the left eye; ``ey`` = ``ex`` turned +90 degrees in
   image coordinates (y down), i.e. pointing from the eyes toward the mouth for an upright face.
   The crop is rotated by ``angle = atan2(ex.y, ex.x)`` so the eye line is horizontal in it.
2. ``eye_mid`` = midpoint of the eyes; ``d_eye`` = eye distance; ``d_mouth`` = distance from
   ``eye_mid`` to the mouth.
3. Face size ``F = max(EYE_TO_FACE * d_eye, MOUTH_TO_FACE * d_mouth)``. The constants make ``F``
   equal the side of BlazeFace's own (square) face box: measured as the median over 124 detections
   on face_recognition's examples and the Yale faces (box side / d_eye = 2.33, / d_mouth = 2.22;
   spread 4 % and 1 %). Taking the max keeps the size when a head turn shortens ``d_eye`` or a nod
   shortens ``d_mouth``.
4. Centre ``c = eye_mid + CENTRE_T * (mouth - eye_mid)`` with ``CENTRE_T = 0.55`` (same
   measurement: the box centre lies 0.55 of the way from the eye midpoint to the mouth).
5. Crop side ``S = F * (1 + 2 * margin)`` frame pixels, i.e. ``margin`` of the face size added on
   each side. ``margin = 0.25`` gives MediaPipe's landmark ROI (face box x 1.5).
6. Output pixel ``(u, v)`` (OpenCV convention: integer coordinates are pixel centres) samples the
   frame at ``c + (S / size) * ((u - (size-1)/2) * ex + (v - (size-1)/2) * ey)``; bilinear,
   border replicated. ``matrix`` is the 2x3 affine frame -> crop, ``inverse`` crop -> frame.

The liveness model's manifest records ``size`` and ``margin``; with the same anchors the same
numbers give the same crop everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

EYE_TO_FACE = 2.33
MOUTH_TO_FACE = 2.22
CENTRE_T = 0.55


@dataclass(frozen=True)
class FaceAnchors:
    """Eye centres and mouth centre in frame pixels (subject's left/right)."""

    left_eye: np.ndarray
    right_eye: np.ndarray
    mouth: np.ndarray

    def __post_init__(self):
        for name in ("left_eye", "right_eye", "mouth"):
            v = np.asarray(getattr(self, name), np.float64).reshape(-1)[:2]
            object.__setattr__(self, name, v)

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.left_eye - self.right_eye))

    @property
    def angle_deg(self) -> float:
        """In-plane angle of the eye line (right -> left eye) in the image, degrees, y down."""
        d = self.left_eye - self.right_eye
        return math.degrees(math.atan2(d[1], d[0]))

    def geometry(self, margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(centre, ex, ey, crop side S in frame pixels) as documented in the module docstring."""
        d = self.left_eye - self.right_eye
        d_eye = float(np.linalg.norm(d))
        eye_mid = (self.left_eye + self.right_eye) / 2
        to_mouth = self.mouth - eye_mid
        d_mouth = float(np.linalg.norm(to_mouth))
        if d_eye < 1e-6 and d_mouth < 1e-6:
            raise ValueError("degenerate face anchors: eyes and mouth coincide")
        if d_eye >= 1e-6:
            ex = d / d_eye
        else:  # eyes on top of each other: take the eye line perpendicular to the mouth direction
            ex = np.array([-to_mouth[1], to_mouth[0]]) / d_mouth
        ey = np.array([-ex[1], ex[0]])
        face = max(EYE_TO_FACE * d_eye, MOUTH_TO_FACE * d_mouth)
        centre = eye_mid + CENTRE_T * to_mouth
        return centre, ex, ey, face * (1.0 + 2.0 * margin)


@dataclass(frozen=True)
class AlignedCrop:
    image: np.ndarray = field(repr=False)  # (size, size, C), same colour order and dtype as the input
    matrix: np.ndarray  # 2x3 frame -> crop
    inverse: np.ndarray  # 2x3 crop -> frame
    side: float  # crop side in frame pixels (S)

    def to_frame(self, pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, np.float64)
        return pts[..., :2] @ self.inverse[:, :2].T + self.inverse[:, 2]

    def to_crop(self, pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, np.float64)
        return pts[..., :2] @ self.matrix[:, :2].T + self.matrix[:, 2]

    def inside_share(self, frame_shape: tuple[int, ...], grid: int = 16) -> float:
        """The share of this crop that shows the frame (the rest is border): about 1 for a face well inside a
        camera frame, about 0.1 for a context view cut from a tight face crop. Sampled on a grid x grid lattice."""
        size = self.image.shape[0]
        c = (np.arange(grid) + 0.5) * size / grid - 0.5
        pts = self.to_frame(np.stack(np.meshgrid(c, c), -1).reshape(-1, 2))
        h, w = frame_shape[:2]
        inside = (pts[:, 0] >= -0.5) & (pts[:, 0] <= w - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] <= h - 0.5)
        return float(inside.mean())


def crop_matrices(anchors: FaceAnchors, size: int, margin: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The frame -> crop and crop -> frame 2x3 matrices and the crop side in frame pixels."""
    centre, ex, ey, side = anchors.geometry(margin)
    k = side / size
    half = (size - 1) / 2.0
    inverse = np.empty((2, 3), np.float64)
    inverse[:, 0] = k * ex
    inverse[:, 1] = k * ey
    inverse[:, 2] = centre - half * k * (ex + ey)
    matrix = np.empty((2, 3), np.float64)
    matrix[0, :2] = ex / k
    matrix[1, :2] = ey / k
    matrix[:, 2] = half - matrix[:, :2] @ centre
    return matrix, inverse, side


def align_crop(image: np.ndarray, anchors: FaceAnchors, size: int, margin: float = 0.25,
               out: np.ndarray | None = None, border: int = cv2.BORDER_REPLICATE) -> AlignedCrop:
    """Rotate by the eye line, crop the square around the face with ``margin``, resize to ``size``.

    ``out`` (size, size, C) of the image's dtype is reused when given (no allocation per frame).
    ``border``: how pixels beyond the frame are filled (OpenCV border mode; black for BORDER_CONSTANT).
    """
    if size < 8:
        raise ValueError(f"crop size must be >= 8 pixels, got {size}")
    if margin < 0:
        raise ValueError(f"crop margin must be >= 0, got {margin}")
    matrix, inverse, side = crop_matrices(anchors, size, margin)
    kw = {}
    if out is not None:
        kw["dst"] = out
    img = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border, **kw)
    if img.ndim == 2 and image.ndim == 3:
        img = img[:, :, None]
    return AlignedCrop(img, matrix, inverse, side)


DEFAULT_CONTEXT_SCALE = 2.7


def context_crop(frame: np.ndarray, anchors: FaceAnchors, size: int, scale: float = DEFAULT_CONTEXT_SCALE,
                 out: np.ndarray | None = None) -> AlignedCrop:
    """The wider view around the face: the same aligned square as ``align_crop``, ``scale`` x the face box.

    The tight crop shows skin texture; this one shows what surrounds the face, where a phone bezel,
    fingers, a paper edge, glare or the screen's own border gives an attack away (the Silent-Face
    project feeds 2.7x and 4x views for the same reason). ``scale`` is the crop side over the face
    box side, so ``scale = 1 + 2 * margin``. Beyond the frame it is black, not replicated: a close
    face's wide view runs off the frame, and replicated edge pixels make streaks, a texture that
    says nothing about the face but that a model would learn anyway.
    """
    if not scale >= 1.0:
        raise ValueError(f"context scale must be >= 1 (crop side over face box side), got {scale}")
    return align_crop(frame, anchors, size, margin=(float(scale) - 1.0) / 2.0, out=out, border=cv2.BORDER_CONSTANT)
