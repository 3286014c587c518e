"""One frame through every stage, top to bottom, each stage timed.

    frame -> find face (detector / tracked landmarks) -> head pose -> eyes (signals, blink model)
          -> crop + classify (while an attempt can use it) -> decide

The face mesh runs on every frame; the eye model and the passive model(s) run on the frames the
schedule (``schedule.py``, the ``[schedule]`` config section) gives them: each at the rate the
decision consumes it, only while the attempt can use it, and one model per frame.

``build_pipeline`` loads and checks every model once; a missing or wrong model is one
``ModelError`` line before the first frame, never a failure in the loop.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge_liveness.vision.align import FaceAnchors, align_crop, context_crop
from edge_liveness.blink.detector import BlinkDetector, EyeSample, load_blink_model
from edge_liveness.blink.model import BlinkModel
from edge_liveness.camera.supervisor import Frame
from edge_liveness.config import Settings
from edge_liveness.vision.eyes import EyeRefiner
from edge_liveness.decide.decision import BLINK_TAKING_MODES, COLLECTING, DecisionEngine, FrameObservation, ModelInfo
from edge_liveness.vision.face import FaceDetector
from edge_liveness.vision.headpose import HeadMotion, Pose, estimate_pose
from edge_liveness.vision.landmarks import FaceLandmarks, Landmarker
from edge_liveness.liveness.fusion import LearnedFusion, fuse, fuse_learned
from edge_liveness.liveness.fusion import load_for as load_fusion
from edge_liveness.liveness.minifasnet import MiniFASNetPair, face_box
from edge_liveness.liveness.model import LivenessModel, default_model_path, p_live_of
from edge_liveness.schedule import Schedule
from edge_liveness.vision.tracking import FaceFinder, FaceView

log = logging.getLogger(__name__)

EYES = "eyes"  # the eye-contour model's name in the schedule
PRIMARY_PASSIVE = "classify"  # the passive stage whose score the texture pair may veto
TEXTURE = "texture"  # the texture pair's stage (liveness/minifasnet.py)
# what the learned fusion reads besides the stages' P: the two-view model's outputs, each MiniFASNet's P(real)
VIEW_LOGITS, PAIR_MODELS = ("classify_tight_logit", "classify_context_logit"), ("texture_v2", "texture_v1se")


@dataclass
class FrameResult:
    frame: Frame
    obs: FrameObservation  # what the decision engine saw (p_live only on the frames the schedule scored)
    outputs: list[Any]  # Decision | Prompt from the engine
    ms: dict[str, float] = field(default_factory=dict)
    eyes: EyeSample | None = None
    tracked: bool = False
    attempt: bool = False  # an attempt was collecting on this frame (or this frame may start one)
    scores: dict[str, float] = field(default_factory=dict)  # every passive score computed on this frame
    scored: bool = False  # the decision used this frame's passive score
    anchors: FaceAnchors | None = None  # the mesh anchors its crops used (the finder's, as of this frame)
    view: FaceView | None = None  # this frame's faces and mesh (with schedule.overlap the finder has moved on)

    def trace(self, state: str) -> dict[str, Any]:
        """The `replay --trace` frame line: numbers only, never pixels."""
        o = self.obs

        def r(v: float | None, n: int = 4) -> float | None:
            # NaN (eyes not visible) is not JSON: null
            return None if v is None or v != v else round(float(v), n)

        return {"type": "frame", "t": round(o.ts, 4), "i": self.frame.index, "face": o.n_faces > 0,
                "n_faces": o.n_faces, "n_large_faces": o.n_large_faces, "face_frac": r(o.face_frac, 3),
                "tracked": self.tracked, "yaw": r(o.yaw, 2), "pitch": r(o.pitch, 2), "roll": r(o.roll, 2),
                # the verdict the decision used where it used one, else (replay --trace) the primary's score
                "p_live": r(o.p_live if self.scored else self.scores.get(PRIMARY_PASSIVE)), "scored": self.scored,
                "p_texture": r(self.scores.get(TEXTURE)),
                "ear_left": r(o.ear_left), "ear_right": r(o.ear_right),
                "eyes_visible": o.eyes_visible, "blink": o.blink, "motions": list(o.motions),
                "departures": list(o.departures), "state": state,
                "ms": {k: round(v, 3) for k, v in self.ms.items()}}


@dataclass
class Sighting:
    """What ``Pipeline.find`` saw on a frame: the face and its motion, before any decision."""

    frame: Frame
    view: FaceView
    face_frac: float
    pose: Pose | None
    motions: tuple[str, ...]
    departures: tuple[str, ...]
    ms: dict[str, float]
    anchors: FaceAnchors | None  # the finder's anchors as of this frame (the next frame's find moves them on)


@dataclass
class Models:
    """Every model the pipeline needs, loaded and checked once."""

    detector: FaceDetector
    landmarker: Landmarker
    liveness: LivenessModel
    blink: BlinkModel | None  # None only while `blinks train` extracts signals for a first model
    eyes: EyeRefiner | None = None  # eyelid contours for blinks; None falls back to the face mesh
    texture: MiniFASNetPair | None = None  # the texture pair's veto (models.texture); None: off
    fusion: LearnedFusion | None = None  # decision.fusion = "learned" (with the pair and a two-view model); None: the veto

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name=self.liveness.name, sha256=self.liveness.sha256, threshold=self.liveness.threshold)


def load_models(settings: Settings, blink: bool = True) -> Models:
    """Load detector, landmarks, eye, blink and liveness models; raise runtime.ModelError (one line)
    on any problem. ``blink=False`` skips the blink model (signals only, for training one)."""
    liveness_path = Path(settings.models.liveness) if settings.models.liveness else default_model_path()
    liveness = LivenessModel(liveness_path, num_threads=settings.models.num_threads)
    if settings.schedule.overlap and settings.schedule.split_views and liveness.views == 2:
        liveness.add_twin()  # the overlap worker's interpreter (Pipeline.lend_worker), checked here, not mid-loop
    texture = MiniFASNetPair(num_threads=settings.models.num_threads) if settings.models.texture else None
    fusion = None
    if texture is not None and settings.decision.fusion == "learned" and liveness.views == 2:
        # fitted to these exact models: a retrained liveness model needs its own (fusion_export)
        fusion = load_fusion(liveness_path, liveness.sha256, {m.path.name: m.sha256 for m in texture.models},
                             liveness.manifest["view_weights"])
    return Models(detector=FaceDetector.from_settings(settings),
                  landmarker=Landmarker.from_settings(settings),
                  liveness=liveness,
                  blink=load_blink_model(settings) if blink else None,
                  eyes=EyeRefiner.from_settings(settings),
                  texture=texture, fusion=fusion)


# A passive stage: (frame, landmarks, ms) -> P(live); it times its own parts into ms.
PassiveScore = Callable[[Frame, FaceLandmarks, dict[str, float]], float]


class Pipeline:
    def __init__(self, settings: Settings, models: Models):
        self.settings = settings
        self.models = models
        self.finder = FaceFinder(models.detector, models.landmarker, settings.detection)
        # one eye a run (schedule.eyes_per_run) only where a blink model judges the window: the
        # signals `blinks train` extracts (no model yet) read both eyes on every frame
        self.blink = BlinkDetector(settings.blink, models.eyes, models.blink,
                                   settings.schedule.eyes_per_run if models.blink is not None else 2)
        self.motion = HeadMotion(settings.active)
        info = models.info
        if settings.decision.threshold is not None:
            info = ModelInfo(info.name, info.sha256, settings.decision.threshold)
        self.engine = DecisionEngine(settings.decision, settings.active, settings.detection, info)
        sc = settings.schedule
        self.schedule = Schedule(every_frame=sc.every_frame, share_frames=sc.parallel)
        self.passive: dict[str, PassiveScore] = {}
        # One line per passive model: it is then scored at schedule.passive_scores_per_s while an
        # attempt collects, on frames no other scheduled model uses. Added before the eye model, so
        # that when both fall due on one frame (an attempt's first) the score comes first: the
        # evidence clock (decision.min_evidence_s) starts on the attempt's first frame.
        self.add_passive(PRIMARY_PASSIVE, self._two_view_score)
        self.schedule.add(EYES, sc.eye_model_per_s)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="stage") if sc.parallel else None
        self._helper: Executor | None = None  # schedule.overlap's worker, lent by overlap.FrameRunner
        self._split_views = False  # the two views on two threads (lend_worker)
        self._view_logits: tuple[float, float] | None = None  # set by _two_view_score, read by _score_all
        self._pair: tuple[float, ...] | None = None  # set by _texture_score, read by _score_all
        # replay --trace scores every face so a recording can be studied frame by frame; the
        # decision still sees only the scores the schedule gives it, as in the daemon.
        self.always_classify = False
        # `blinks score` reads the eyes on every frame, attempt or not (at the schedule's rate)
        self.always_eyes = False
        self.crop_size = models.liveness.crop_size
        self.crop_margin = models.liveness.crop_margin

    def add_passive(self, name: str, score: PassiveScore) -> None:
        """Register a passive model: scheduled at ``schedule.passive_scores_per_s`` while an attempt can use it."""
        self.passive[name] = score
        self.schedule.add(name, self.settings.schedule.passive_scores_per_s)

    def _two_view_score(self, frame: Frame, lm: FaceLandmarks, ms: dict[str, float]) -> float:
        # the aligned crop and, for a two-view model, the wider context crop (a bezel, a hand, a paper edge)
        clock, lv, anchors = time.perf_counter, self.models.liveness, lm.anchors()
        t = clock()
        crop = align_crop(frame.image, anchors, self.crop_size, self.crop_margin)
        context = context_crop(frame.image, anchors, lv.context_size, lv.context_scale) if lv.views == 2 else None
        t1 = clock()
        if context is None:
            p = lv.predict_views(crop.image)
        else:
            self._view_logits = lv.view_logits(crop.image, context.image)
            p = p_live_of(self._view_logits)
        ms["crop"], ms["classify"] = (t1 - t) * 1e3, (clock() - t1) * 1e3
        return p

    def _two_view_split(self, frame: Frame, lm: FaceLandmarks, ms: dict[str, float]) -> Callable[[], float]:
        """The tight view cut and run on the worker (the twin interpreter, after the next frame's face),
        the context view here; returns what collects the score, to call after the texture pair.
        ``ms``: this thread's time, its crop and model and the wait for the other."""
        clock = time.perf_counter
        t, lv, anchors = clock(), self.models.liveness, lm.anchors()
        tight = self._helper.submit(self._tight_logit, frame, anchors)
        context = context_crop(frame.image, anchors, lv.context_size, lv.context_scale)
        t1 = clock()
        ctx = lv.view_logit(1, context.image)
        ms["crop"], spent = (t1 - t) * 1e3, clock() - t1

        def collect() -> float:
            t = clock()
            self._view_logits = (tight.result(), ctx)
            ms["classify"] = (spent + clock() - t) * 1e3
            return p_live_of(self._view_logits)

        return collect

    def _tight_logit(self, frame: Frame, anchors: FaceAnchors) -> float:
        crop = align_crop(frame.image, anchors, self.crop_size, self.crop_margin)
        return self.models.liveness.view_logit(0, crop.image, twin=True)

    def lend_worker(self, worker: Executor | None) -> None:
        """schedule.overlap's worker (overlap.py), or None once it is gone. A scored frame is then split about
        evenly: the worker runs a two-view model's tight view (a second interpreter, ``LivenessModel.add_twin``;
        schedule.split_views), then the pair's first model unless this thread, done first, takes it back."""
        self._helper = worker
        self._split_views = worker is not None and self.settings.schedule.split_views and self.models.liveness.views == 2
        if self._split_views:
            self.models.liveness.add_twin()

    def _texture_score(self, frame: Frame, box: tuple[float, float, float, float], ms: dict[str, float],
                       first: Future[float] | None) -> float:
        t, pair = time.perf_counter(), self.models.texture
        if first is None:
            s = pair.score(frame.image, box)
        else:  # the first model lent to the worker: the others run here first, then it too unless the worker started it
            rest = tuple(m.p_real(frame.image, box) for m in pair.models[1:])
            p0 = pair.models[0].p_real(frame.image, box) if first.cancel() else first.result()
            s = pair.score(frame.image, box, (p0,) + rest)
        ms["texture"] = (time.perf_counter() - t) * 1e3
        self._pair = s.per_model
        return s.p_real

    def _verdict(self, scores: dict[str, float], plan: frozenset[str], attempt: bool) -> float | None:
        """The frame's P(live) for the decision, on the frames the schedule gave the liveness model:
        its score and the texture pair's on the same frame, fused (liveness/fusion.py: learned, the pair
        vetoing on top, or the veto alone)."""
        if not attempt or PRIMARY_PASSIVE not in plan:
            return None
        return self.frame_verdict(scores)

    def frame_verdict(self, scores: dict[str, float]) -> float | None:
        """A frame's P(live) from its passive scores as the decision reads it (None: not scored)."""
        if PRIMARY_PASSIVE not in scores:
            return None
        d, fusion = self.settings.decision, self.models.fusion
        if fusion is not None and all(k in scores for k in VIEW_LOGITS + PAIR_MODELS):
            # centred on the manifest's threshold, not the engine's: the fusion has its own bar, and a
            # decision.threshold set in the config then moves the bar on this verdict as it would on the model's
            return fuse_learned(fusion, tuple(scores[k] for k in VIEW_LOGITS), tuple(scores[k] for k in PAIR_MODELS),
                                self.models.liveness.threshold, d.learned_veto_threshold)
        return fuse(scores[PRIMARY_PASSIVE], self.engine.threshold, scores.get(TEXTURE), d.texture_threshold)

    def _eye_plan(self) -> tuple[bool, bool]:
        """(the eye model is wanted on this frame, the eyes are read at all). The eye model runs while a blink
        can still count (always for `blinks score`; on every frame without a blink model, as `blinks train`
        extracts signals). Once a blink-mode attempt needs no more blinks the eyes are not read (the mesh's
        eyelids, on another scale, would spoil its EAR evidence), nor while no attempt collects or can start
        (after a decision, until the face leaves or the cooldown ends: nothing uses them). Otherwise (an
        attempt of another mode, or one that may start) the mesh's eyelids keep the signals flowing."""
        e = self.engine
        if self.always_eyes or e.wants_blinks:
            return True, True
        if not e.wants_liveness or (e.state == COLLECTING and e.attempt_mode in BLINK_TAKING_MODES):
            return False, False
        return False, True

    def process(self, frame: Frame) -> FrameResult:
        return self.judge(self.find(frame))

    def find(self, frame: Frame) -> Sighting:
        """Steps 1-2, which depend on earlier frames' faces only, never on the decision: ``overlap.py``
        runs them for the next frame while ``judge`` runs this one."""
        ms: dict[str, float] = {}
        clock = time.perf_counter

        # 1. find the face: detector, or landmarks tracked from the previous frame (every frame)
        view = self.finder.process(frame.image)
        ms.update(view.timings)
        lm = view.landmarks
        face_frac = view.face.side / min(frame.image.shape[:2]) if view.face is not None else 0.0

        # 2. head pose and completed head motions
        t = clock()
        pose = estimate_pose(lm, frame.image.shape) if lm is not None else None
        motions = tuple(self.motion.update(frame.ts, pose))
        ms["pose"] = (clock() - t) * 1e3
        return Sighting(frame, view, face_frac, pose, motions, tuple(self.motion.departures), ms, self.finder.last_anchors)

    def judge(self, seen: Sighting) -> FrameResult:
        """Steps 3-6 on a frame ``find`` has seen: the scheduled models and the decision."""
        frame, view, pose, motions, ms = seen.frame, seen.view, seen.pose, seen.motions, seen.ms
        lm, face_frac = view.landmarks, seen.face_frac
        clock = time.perf_counter
        self.engine.see_face(view.n_large_faces)
        attempt = self.engine.wants_liveness

        # 3. which scheduled models run on this frame
        eye_model, read_eyes = self._eye_plan()
        wanted = [EYES] if eye_model and self.models.eyes is not None else []
        if lm is not None and attempt:
            wanted += list(self.passive)
        every = self.models.blink is None  # `blinks train`: signals on every frame
        plan = self.schedule.plan(frame.ts, wanted)
        if every and EYES in wanted:
            plan = plan | {EYES}
        passive = [n for n in self.passive if n in plan]
        if lm is not None and self.always_classify:
            passive = list(self.passive)

        # 4 + 5. eyes and passive liveness; side by side in threads when schedule.parallel
        pending = None
        if self._pool is not None and passive and EYES in plan:
            pending = self._pool.submit(self._score_all, passive, frame, lm)
        t = clock()
        eyes = self._eyes(frame, lm, EYES in plan, eye_model, read_eyes)
        if eyes is not None:
            ms["eyes"] = (clock() - t) * 1e3
        if pending is not None:
            scores, pms = pending.result()
        else:
            scores, pms = self._score_all(passive, frame, lm) if passive else ({}, {})
        ms.update(pms)

        # 6. decide, on the scores the schedule gave (replay --trace computes more; they stay out)
        p_live = self._verdict(scores, plan, attempt)
        t = clock()
        nan = math.nan
        obs = FrameObservation(
            ts=frame.ts, n_faces=view.n_faces, n_large_faces=view.n_large_faces, face_frac=face_frac,
            yaw=pose.yaw if pose else None, pitch=pose.pitch if pose else None, roll=pose.roll if pose else None,
            p_live=p_live, ear_left=eyes.ear_left if eyes else nan, ear_right=eyes.ear_right if eyes else nan,
            # a frame that read one eye (schedule.eyes_per_run = 1) gives the attempt's EAR evidence nothing
            eyes_visible=_both_eyes(eyes), blink=eyes.blink if eyes else False, motions=motions,
            departures=seen.departures)
        outputs = self.engine.update(obs)
        ms["decide"] = (clock() - t) * 1e3
        return FrameResult(frame, obs, outputs, ms, tracked=view.tracked, eyes=eyes, attempt=attempt,
                           scores=scores, scored=p_live is not None, anchors=seen.anchors, view=view)

    def _eyes(self, frame: Frame, lm: FaceLandmarks | None, run: bool, eye_model: bool, read: bool) -> EyeSample | None:
        """This frame's eye sample, or None when the eyes are not read on it (the eye model is wanted
        but scheduled on another frame: the blink model's window interpolates between its frames)."""
        if run:
            return self.blink.update(frame.ts, lm, frame.image)
        if (eye_model and self.models.eyes is not None) or not read:
            return None
        return self.blink.update(frame.ts, lm, frame.image.shape)

    def _score_all(self, names: list[str], frame: Frame, lm: FaceLandmarks) -> tuple[dict[str, float], dict[str, float]]:
        ms: dict[str, float] = {}
        # the scorers leave their parts here (on this thread) for the learned fusion to read back
        self._view_logits, self._pair = None, None
        # the texture pair rides on the liveness model's frames (two 80 px int8 nets, under a millisecond
        # each): every score gets its veto from the same frame, and the eye model keeps every other frame
        pair = self.models.texture if PRIMARY_PASSIVE in names else None
        box = face_box(lm) if pair is not None else None
        split = self._split_views and PRIMARY_PASSIVE in names
        collect = self._two_view_split(frame, lm, ms) if split else None
        first = self._helper.submit(pair.models[0].p_real, frame.image, box) if pair is not None and self._helper is not None else None
        try:
            out = {n: float(self.passive[n](frame, lm, ms)) for n in names if collect is None or n != PRIMARY_PASSIVE}
            if pair is not None:
                out[TEXTURE] = self._texture_score(frame, box, ms, first)
        except BaseException:
            if first is not None and not first.cancel():
                first.exception()  # waits: a lent model never runs on two threads, whatever raised here
            raise
        if collect is not None:
            out = {PRIMARY_PASSIVE: collect(), **out}
        if self._view_logits is not None and self._pair is not None:
            out.update(zip(VIEW_LOGITS, self._view_logits))
            out.update(zip(PAIR_MODELS, self._pair))
        return out, ms

    def reset(self) -> None:
        """Forget per-subject state (after a reload or a camera reopen)."""
        self.blink.reset()
        self.finder.reset()
        self.schedule.reset()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _both_eyes(eyes: EyeSample | None) -> bool:
    return eyes is not None and eyes.visible and not (math.isnan(eyes.ear_left) or math.isnan(eyes.ear_right))


def build_pipeline(settings: Settings, models: Models | None = None) -> Pipeline:
    return Pipeline(settings, models or load_models(settings))
