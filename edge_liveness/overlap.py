"""Frames through the pipeline, optionally two at once: the next frame's face while this one is judged.

``Pipeline.find`` (detector or tracked mesh, head pose and motion) depends only on earlier frames'
faces; ``Pipeline.judge`` (the scheduled eye and passive models, the decision) depends on the
decision so far. With ``schedule.overlap`` the next frame's ``find`` runs on a worker thread while
this frame's ``judge`` runs on the caller's, so a frame costs about the larger of the two instead of
their sum (the TFLite runtime releases the GIL while a model runs). Each half still sees every frame
in order and the same state as when run one after the other, so the results are identical
(tests/test_overlap.py); each result comes one frame later, after the next frame has arrived.
``flush`` judges the frame still held when the source ends.

Each interpreter only ever runs on one thread: the mesh, the detector and a second interpreter of the
two-view model on the worker, the others on the caller's. On a frame that carries the passive models
the worker runs the two-view model's tight view after the next frame's ``find`` while this thread runs
its context view and the texture pair (``Pipeline.lend_worker``; a one-view model leaves the worker the
pair's first model instead), so such a frame is split about evenly. The second interpreter costs one
more copy of the model's packed weights in memory; its scores are the same bits.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from edge_liveness.camera.supervisor import Frame
from edge_liveness.pipeline import FrameResult, Pipeline, Sighting


class FrameRunner:
    """``push(frame)`` -> the results ready after it (none or one); ``flush()`` -> the held frame's."""

    def __init__(self, pipeline: Pipeline, overlap: bool | None = None):
        self.pipeline = pipeline
        self.overlap = pipeline.settings.schedule.overlap if overlap is None else bool(overlap)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="find") if self.overlap else None
        self._held: Future[Sighting] | None = None
        if self._pool is not None:
            pipeline.lend_worker(self._pool)

    def push(self, frame: Frame) -> list[FrameResult]:
        if self._pool is None:
            return [self.pipeline.process(frame)]
        nxt = self._pool.submit(self.pipeline.find, frame)
        try:
            out = [self.pipeline.judge(self._held.result())] if self._held is not None else []
        finally:
            self._held = nxt
        # wait for the next frame's face too: a frame's cost is the larger half, never more work in flight
        nxt.result()
        return out

    def flush(self) -> list[FrameResult]:
        """The held frame's result (the source ended, the camera is reopened or the pipeline replaced)."""
        held, self._held = self._held, None
        return [self.pipeline.judge(held.result())] if held is not None else []

    def drop(self) -> None:
        """Forget the held frame unjudged (a reload replaces the pipeline it was found with)."""
        self._held = None

    def close(self) -> None:
        if self._pool is not None:
            self.pipeline.lend_worker(None)
            self._pool.shutdown(wait=True)
