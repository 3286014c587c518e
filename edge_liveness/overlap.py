"""Frames through the pipeline on two threads: faces found up to a few frames ahead of the judging.

``Pipeline.find`` (detector or tracked mesh, head pose and motion) depends only on earlier frames'
faces; ``Pipeline.judge`` (the scheduled eye and passive models, the decision) depends on the
decision so far. With ``schedule.overlap`` a worker thread finds the faces of the frames pushed, in
order, up to ``schedule.find_ahead`` frames ahead of the frame this thread judges (the TFLite runtime
releases the GIL while a model runs). Each half still sees every frame in order and the same state as
when run one after the other, so the results are identical (tests/test_overlap.py).

Why ahead and not in lockstep: a frame that carries the passive models costs its judge about twice
what a plain attempt frame does, while ``find`` costs about the same on every frame. In lockstep
(the next frame's face while this one is judged, then wait for both) the worker idles through every
scored frame; with frames queued ahead it keeps finding, and the judge catches up on the cheap
frames after. A push returns the results of the frames more than ``find_ahead`` behind it; ``flush``
judges the rest. The daemon flushes whenever no newer frame is waiting (``Camera.frame_waiting``):
while the camera, not the CPU, sets the pace, a frame is judged as soon as its face is found.

No interpreter ever runs on two threads at once: the mesh, the detector and a second interpreter of the
two-view model on the worker, the others on this one. On a frame that carries the passive models the
worker runs the two-view model's tight view, before any further ``find``, then the texture pair's first
model, while this thread runs its context view and the pair's second (``Pipeline.lend_worker``; a
one-view model lends only the pair's first). A lent MiniFASNet the worker has not started when this
thread is done with the rest is cancelled and run here (``Future.cancel``): whichever thread is free
takes it, so a worker still busy finding faces ahead never holds the judge up. The second interpreter
costs one more copy of the model's packed weights in memory; its scores are the same bits.
"""

from __future__ import annotations

import threading
from collections import deque
from functools import partial
from concurrent.futures import CancelledError, Executor, Future
from typing import Any, Callable

from edge_liveness.camera.supervisor import Frame
from edge_liveness.pipeline import FrameResult, Pipeline, Sighting


class FindWorker(Executor):
    """One thread: ``submit`` (a job lent by the judging thread, run first) and ``find`` (the next
    frame's face, in push order)."""

    def __init__(self, find: Callable[[Frame], Sighting]):
        self._find = find
        self._cond = threading.Condition()
        self._lent: deque[tuple[Future, Callable[..., Any], tuple]] = deque()
        self._finds: deque[tuple[Future, Callable[..., Any], tuple]] = deque()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="find", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        # the judging thread waits on a lent job within this frame: it goes before any queued find
        if kwargs:
            fn, args = partial(fn, *args, **kwargs), ()
        return self._queue(self._lent, fn, args)

    def find(self, frame: Frame) -> Future:
        return self._queue(self._finds, self._find, (frame,))

    def _queue(self, q: deque, fn: Callable[..., Any], args: tuple) -> Future:
        fut: Future = Future()
        with self._cond:
            if self._closing:
                raise RuntimeError("the find worker is closed")
            q.append((fut, fn, args))
            self._cond.notify()
        return fut

    def cancel_finds(self) -> None:
        """Cancel the finds not started yet (the frames they belong to are being dropped)."""
        with self._cond:
            queued, self._finds = list(self._finds), deque()
        for fut, _, _ in queued:
            fut.cancel()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._lent and not self._finds and not self._closing:
                    self._cond.wait()
                q = self._lent if self._lent else self._finds
                if not q:
                    return
                fut, fn, args = q.popleft()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as e:  # the judging thread raises it where it waits for the result
                fut.set_exception(e)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.cancel_finds()
        with self._cond:
            self._closing = True
            self._cond.notify()
        if wait:
            self._thread.join()


class FrameRunner:
    """``push(frame)`` -> the results ready after it (none or more); ``flush()`` -> every held frame's."""

    def __init__(self, pipeline: Pipeline, overlap: bool | None = None, ahead: int | None = None):
        self.pipeline = pipeline
        sc = pipeline.settings.schedule
        self.overlap = sc.overlap if overlap is None else bool(overlap)
        self.ahead = max(1, sc.find_ahead if ahead is None else int(ahead))
        self._worker = FindWorker(pipeline.find) if self.overlap else None
        self._held: deque[Future] = deque()  # the frames pushed and not judged yet, oldest first
        if self._worker is not None:
            pipeline.lend_worker(self._worker)

    @property
    def held(self) -> int:
        return len(self._held)

    def push(self, frame: Frame) -> list[FrameResult]:
        if self._worker is None:
            return [self.pipeline.process(frame)]
        self._held.append(self._worker.find(frame))
        out = []
        while len(self._held) > self.ahead:
            out.append(self._judge_oldest())
        return out

    def flush(self, limit: int | None = None) -> list[FrameResult]:
        """Every held frame's result (or the oldest ``limit``), oldest first: no newer frame is waiting,
        the source ended, the camera is reopened or the pipeline replaced."""
        out = []
        while self._held and (limit is None or len(out) < limit):
            out.append(self._judge_oldest())
        return out

    def settle(self) -> list[FrameResult]:
        """Wait until every held frame's face is found, judging none (``bench``'s lockstep: no work of
        this runner's left running while another's frame is timed). Returns [] to add to a push's list."""
        for fut in list(self._held):
            fut.exception()  # waits; the error, if any, comes out where the frame is judged
        return []

    def _judge_oldest(self) -> FrameResult:
        # popped first: a frame whose find raised is gone, the error goes to the caller
        return self.pipeline.judge(self._held.popleft().result())

    def drop(self) -> None:
        """Forget the held frames unjudged (a reload replaces the pipeline they were found with); the
        find running now finishes first, so the old pipeline is idle once this returns."""
        if self._worker is not None:
            self._worker.cancel_finds()
        held, self._held = list(self._held), deque()
        for fut in held:
            try:
                fut.result()
            except (CancelledError, Exception):
                pass  # unjudged anyway: its error, if any, no longer concerns anyone

    def close(self) -> None:
        if self._worker is not None:
            self.pipeline.lend_worker(None)
            self._worker.shutdown(wait=True)
