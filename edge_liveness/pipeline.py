"""One frame through every stage, top to bottom, each stage timed.

    frame -> find face (detector / tracked landmarks) -> head pose -> eyes (signals, blink model)
          -> crop + classify (only while an attempt can use it) -> decide

``build_pipeline`` loads and checks every model once; a missing or wrong model is one
``ModelError`` line before the first frame, never a failure in the loop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_liveness.vision.align import align_crop, context_crop
from edge_liveness.blink.detector import BlinkDetector, EyeSample, load_blink_model
from edge_liveness.blink.model import BlinkModel
from edge_liveness.camera.supervisor import Frame
from edge_liveness.config import Settings
from edge_liveness.vision.eyes import EyeRefiner
from edge_liveness.decide.decision import DecisionEngine, FrameObservation, ModelInfo
from edge_liveness.vision.face import FaceDetector
from edge_liveness.vision.headpose import HeadMotion, estimate_pose
from edge_liveness.vision.landmarks import Landmarker
from edge_liveness.liveness.model import LivenessModel, default_model_path
from edge_liveness.vision.tracking import FaceFinder

log = logging.getLogger(__name__)

BLINK_MODES = frozenset({"blink", "blink_and_turn", "challenge"})


@dataclass
class FrameResult:
    frame: Frame
    obs: FrameObservation
    outputs: list[Any]  # Decision | Prompt from the engine
    ms: dict[str, float] = field(default_factory=dict)
    eyes: EyeSample | None = None
    tracked: bool = False

    def trace(self, state: str) -> dict[str, Any]:
        """The `replay --trace` frame line: numbers only, never pixels."""
        o = self.obs

        def r(v: float | None, n: int = 4) -> float | None:
            # NaN (eyes not visible) is not JSON: null
            return None if v is None or v != v else round(float(v), n)

        return {"type": "frame", "t": round(o.ts, 4), "i": self.frame.index, "face": o.n_faces > 0,
                "n_faces": o.n_faces, "n_large_faces": o.n_large_faces, "face_frac": r(o.face_frac, 3),
                "tracked": self.tracked, "yaw": r(o.yaw, 2), "pitch": r(o.pitch, 2), "roll": r(o.roll, 2),
                "p_live": r(o.p_live), "ear_left": r(o.ear_left), "ear_right": r(o.ear_right),
                "eyes_visible": o.eyes_visible, "blink": o.blink, "motions": list(o.motions),
                "departures": list(o.departures), "state": state,
                "ms": {k: round(v, 3) for k, v in self.ms.items()}}


@dataclass
class Models:
    """Every model the pipeline needs, loaded and checked once."""

    detector: FaceDetector
    landmarker: Landmarker
    liveness: LivenessModel
    blink: BlinkModel | None  # None only while `blinks train` extracts signals for a first model
    eyes: EyeRefiner | None = None  # eyelid contours for blinks; None falls back to the face mesh

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name=self.liveness.name, sha256=self.liveness.sha256, threshold=self.liveness.threshold)


def load_models(settings: Settings, blink: bool = True) -> Models:
    """Load detector, landmarks, eye, blink and liveness models; raise runtime.ModelError (one line)
    on any problem. ``blink=False`` skips the blink model (signals only, for training one)."""
    liveness_path = Path(settings.models.liveness) if settings.models.liveness else default_model_path()
    return Models(detector=FaceDetector.from_settings(settings),
                  landmarker=Landmarker.from_settings(settings),
                  liveness=LivenessModel(liveness_path, num_threads=settings.models.num_threads),
                  blink=load_blink_model(settings) if blink else None,
                  eyes=EyeRefiner.from_settings(settings))


class Pipeline:
    def __init__(self, settings: Settings, models: Models):
        self.settings = settings
        self.models = models
        self.finder = FaceFinder(models.detector, models.landmarker, settings.detection)
        self.blink = BlinkDetector(settings.blink, models.eyes, models.blink)
        self.motion = HeadMotion(settings.active)
        info = models.info
        if settings.decision.threshold is not None:
            info = ModelInfo(info.name, info.sha256, settings.decision.threshold)
        self.engine = DecisionEngine(settings.decision, settings.active, settings.detection, info)
        # replay --trace scores every face so a recording can be studied frame by frame; the
        # daemon scores only what an attempt can use.
        self.always_classify = False
        # `blinks score` reads the eyes on every frame, attempt or not
        self.always_eyes = False
        self.crop_size = models.liveness.crop_size
        self.crop_margin = models.liveness.crop_margin

    def process(self, frame: Frame) -> FrameResult:
        ms: dict[str, float] = {}
        clock = time.perf_counter

        # 1. find the face: detector, or landmarks tracked from the previous frame
        view = self.finder.process(frame.image)
        ms.update(view.timings)
        lm = view.landmarks
        face_frac = view.face.side / min(frame.image.shape[:2]) if view.face is not None else 0.0
        self.engine.see_face(view.n_large_faces)

        # 2. head pose and completed head motions
        t = clock()
        pose = estimate_pose(lm, frame.image.shape) if lm is not None else None
        motions = tuple(self.motion.update(frame.ts, pose))
        ms["pose"] = (clock() - t) * 1e3

        # 3. eyes: lid signals and blinks. The eye-contour model (two ~1.7 ms calls) runs only while
        # an attempt can use a blink (or the caller asked for every frame, as `blinks score` does);
        # otherwise the mesh's eyelids keep the signals flowing.
        t = clock()
        precise = self.always_eyes or (self.engine.wants_liveness and self.engine.active_mode in BLINK_MODES)
        eyes = self.blink.update(frame.ts, lm, frame.image if precise else frame.image.shape)
        ms["eyes"] = (clock() - t) * 1e3

        # 4. passive liveness on the aligned crop (and, for a two-view model, the wider context crop
        # around it: a bezel, a hand, a paper edge), only when an attempt can use it
        p_live = None
        if lm is not None and (self.engine.wants_liveness or self.always_classify):
            t = clock()
            lv = self.models.liveness
            anchors = lm.anchors()
            crop = align_crop(frame.image, anchors, self.crop_size, self.crop_margin)
            context = context_crop(frame.image, anchors, lv.context_size, lv.context_scale) if lv.views == 2 else None
            ms["crop"] = (clock() - t) * 1e3
            t = clock()
            p_live = lv.predict_views(crop.image, None if context is None else context.image)
            ms["classify"] = (clock() - t) * 1e3

        # 5. decide
        t = clock()
        obs = FrameObservation(
            ts=frame.ts, n_faces=view.n_faces, n_large_faces=view.n_large_faces, face_frac=face_frac,
            yaw=pose.yaw if pose else None, pitch=pose.pitch if pose else None, roll=pose.roll if pose else None,
            p_live=p_live, ear_left=eyes.ear_left, ear_right=eyes.ear_right, eyes_visible=eyes.visible,
            blink=eyes.blink, motions=motions, departures=tuple(self.motion.departures))
        outputs = self.engine.update(obs)
        ms["decide"] = (clock() - t) * 1e3
        return FrameResult(frame, obs, outputs, ms, tracked=view.tracked, eyes=eyes)

    def reset(self) -> None:
        """Forget per-subject state (after a reload or a camera reopen)."""
        self.blink.reset()
        self.finder.reset()


def build_pipeline(settings: Settings, models: Models | None = None) -> Pipeline:
    return Pipeline(settings, models or load_models(settings))
