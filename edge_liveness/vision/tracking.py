"""Detector + face mesh + tracking, and the multiple-face policy: ``FaceFinder.process(frame) -> FaceView``.

Tracking (``detection.track``): after a good mesh, the next frame's mesh runs on the crop anchored
by the previous mesh and the detector is skipped. The detector runs again when
- the mesh's presence drops below ``detection.min_presence`` (tracking lost; the detector then
  runs in the same frame, so no frame is lost), or
- ``detection.redetect_frames`` frames (default 15, 0.5 s at 30 fps) have passed since it last ran:
  a frame count rather than a clock, so replays behave the same at any speed. This is what lets a
  second face entering the scene (a phone held up beside a live person) be counted within half a
  second although the live face is being tracked.
On frames where the detector is skipped, ``faces`` is None and ``n_faces``/``n_large_faces`` are
those of its last run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edge_liveness.vision.align import FaceAnchors
from edge_liveness.vision.face import Face, FaceDetector
from edge_liveness.vision.landmarks import FaceLandmarks, Landmarker

# Mesh points standing in for BlazeFace's keypoints when a face is tracked (subject's sides):
# right eye, left eye, nose tip, mouth, right ear (tragion area), left ear.
_MESH_EARS = (234, 454)


@dataclass(frozen=True)
class FaceView:
    faces: list[Face] | None  # this frame's detections; None when the detector was skipped
    n_faces: int
    n_large_faces: int  # faces with side >= min_face_frac x the frame's short side
    face: Face | None  # the chosen (largest) face; from the mesh when tracked
    landmarks: FaceLandmarks | None
    tracked: bool  # the mesh ran on the previous frame's mesh (detector skipped)
    reject_multiple: bool  # policy 'reject' and more than one large face
    large: bool  # the chosen face is large enough (min_face_frac)
    timings: dict[str, float] = field(default_factory=dict)  # ms: detect, landmarks


def face_from_landmarks(lm: FaceLandmarks) -> Face:
    """A Face (box on the detector's scale, keypoints from the mesh) for a tracked frame."""
    a = lm.anchors()
    centre, _, _, side = a.geometry(0.0)
    half = side / 2
    p = lm.points[:, :2]
    kps = np.stack([a.right_eye, a.left_eye, p[1], a.mouth, p[_MESH_EARS[0]], p[_MESH_EARS[1]]]).astype(np.float32)
    box = (float(centre[0] - half), float(centre[1] - half), float(centre[0] + half), float(centre[1] + half))
    return Face(box, lm.presence, kps)


class FaceFinder:
    def __init__(self, detector: FaceDetector, landmarker: Landmarker, cfg):
        self.detector = detector
        self.landmarker = landmarker
        self.cfg = cfg
        self.reset()

    @classmethod
    def from_settings(cls, settings) -> "FaceFinder":
        return cls(FaceDetector.from_settings(settings), Landmarker.from_settings(settings), settings.detection)

    @property
    def last_anchors(self) -> FaceAnchors | None:
        """The mesh anchors of the face in the last processed frame (the ones its liveness crop used)."""
        return self._prev

    def reset(self) -> None:
        self._prev: FaceAnchors | None = None
        self._since_detect = 0
        self._n_faces = 0
        self._n_large = 0

    def _large(self, face: Face, short_side: int) -> bool:
        return face.side >= self.cfg.min_face_frac * short_side

    def _detect(self, frame: np.ndarray, timings: dict) -> tuple[list[Face], Face | None]:
        t = time.perf_counter()
        faces = self.detector.detect(frame)
        timings["detect"] = (time.perf_counter() - t) * 1e3
        short = min(frame.shape[:2])
        self._n_faces = len(faces)
        self._n_large = sum(self._large(f, short) for f in faces)
        self._since_detect = 0
        return faces, max(faces, key=lambda f: f.area) if faces else None

    def _mesh(self, frame: np.ndarray, anchors: FaceAnchors, timings: dict) -> FaceLandmarks:
        t = time.perf_counter()
        lm = self.landmarker.run(frame, anchors)
        timings["landmarks"] = timings.get("landmarks", 0.0) + (time.perf_counter() - t) * 1e3
        return lm

    def process(self, frame_bgr: np.ndarray) -> FaceView:
        cfg = self.cfg
        timings = {"detect": 0.0, "landmarks": 0.0}
        short = min(frame_bgr.shape[:2])
        faces: list[Face] | None = None
        chosen: Face | None = None
        lm: FaceLandmarks | None = None
        tracked = False
        self._since_detect += 1
        if cfg.track and self._prev is not None and self._since_detect < cfg.redetect_frames:
            lm = self._mesh(frame_bgr, self._prev, timings)
            if lm.presence >= cfg.min_presence:
                tracked = True
                chosen = face_from_landmarks(lm)
            else:
                lm = None  # lost: fall through to the detector in this same frame
        if not tracked:
            faces, chosen = self._detect(frame_bgr, timings)
            if chosen is not None:
                lm = self._mesh(frame_bgr, chosen.anchors(), timings)
                if lm.presence < cfg.min_presence:
                    lm = None
        self._prev = lm.anchors() if lm is not None else None
        n_large = self._n_large
        reject = cfg.multiple_faces == "reject" and n_large > 1
        return FaceView(faces=faces, n_faces=self._n_faces, n_large_faces=n_large, face=chosen, landmarks=lm,
                        tracked=tracked, reject_multiple=reject,
                        large=chosen is not None and self._large(chosen, short), timings=timings)
