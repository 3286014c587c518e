"""The supervisor that keeps a camera alive, over the frame sources of ``camera/sources.py``.

``Camera`` wraps any source: it reopens a failed or vanished one with capped exponential backoff
(waiting on an Event, never busy-waiting), checks every frame before the pipeline sees it, and can
capture in its own thread so that a slow stage drops frames instead of building up latency.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from edge_liveness.config import CameraConfig
# The sources are re-exported: callers name them from here, as they always did.
from edge_liveness.camera.sources import (IMAGE_EXTS, MAX_SIDE, MIN_SIDE, CameraError, Frame, FrameSource, OpenCVSource,
                                   Picamera2Source, ReplaySource, check_frame, gstreamer_available, open_source,
                                   read_image)

__all__ = ["IMAGE_EXTS", "MAX_SIDE", "MIN_SIDE", "Camera", "CameraError", "CameraStats", "Frame", "FrameSource",
           "OpenCVSource", "Picamera2Source", "ReplaySource", "check_frame", "gstreamer_available", "open_source",
           "read_image"]

log = logging.getLogger("edge_liveness.camera")


# ---------------------------------------------------------------- supervisor

@dataclass
class CameraStats:
    frames: int = 0
    dropped: int = 0  # captured but overtaken by a newer frame before the loop took it
    corrupt: int = 0
    reopens: int = 0
    state: str = "opening"
    last_problem: str = ""


class Camera:
    """Keeps one source delivering frames: reopen with backoff, frame checks, optional capture thread."""

    def __init__(self, source: FrameSource, cfg: CameraConfig, threaded: bool | None = None,
                 on_state: Callable[[str], None] | None = None):
        self.source = source
        self.cfg = cfg
        self.threaded = cfg.threaded if threaded is None else threaded
        self.on_state = on_state
        self.stats = CameraStats()
        self._index = 0
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._ended = False
        self._error: CameraError | None = None
        self._seen_problems: set[str] = set()  # each kind of corrupt frame is logged the first time

    # -- state reporting
    def _set_state(self, state: str, problem: str = "") -> None:
        if state != self.stats.state or problem != self.stats.last_problem:
            self.stats.state, self.stats.last_problem = state, problem
            if self.on_state:
                self.on_state(state)

    # -- open/read with backoff, in whichever thread runs it
    def _open_with_backoff(self, stop: threading.Event) -> bool:
        delay = self.cfg.reopen_initial_s
        attempt = 0
        last_msg, last_log = "", 0.0
        while not stop.is_set():
            try:
                self.source.open()
                if attempt:
                    log.info("camera %s open again after %d attempt(s)", self.source.name, attempt + 1)
                self._set_state("streaming")
                return True
            except CameraError as e:
                attempt += 1
                if isinstance(self.source, ReplaySource):
                    raise  # a file does not heal by waiting: say so at once
                # The first failure and every new reason are logged at once, a repeat once a minute:
                # a camera unplugged for a night must not fill the journal.
                now = time.monotonic()
                if str(e) != last_msg or now - last_log >= 60.0:
                    log.warning("%s; retrying in %gs (attempt %d)", e, delay, attempt)
                    last_msg, last_log = str(e), now
                self._set_state(f"reopening in {delay:g}s (attempt {attempt})", str(e))
                stop.wait(delay)
                delay = min(delay * 2, self.cfg.reopen_max_s)
        return False

    def _read_frames(self, stop: threading.Event) -> Iterator[Frame]:
        """Open, read until the end or a failure, reopen; until stop or a finite source ends."""
        if not self._open_with_backoff(stop):
            return
        while not stop.is_set():
            try:
                img, ts = self.source.read()
            except CameraError as e:
                log.warning("%s; reopening", e)
                self.stats.reopens += 1
                self.source.close()
                self._set_state("reopening", str(e))
                stop.wait(self.cfg.reopen_initial_s)
                if not self._open_with_backoff(stop):
                    return
                continue
            if img is None:
                self._set_state("ended")
                return
            img, problem = check_frame(img)
            if img is None:
                self.stats.corrupt += 1
                kind = problem.split(" (")[0]
                if kind not in self._seen_problems or self.stats.corrupt % 100 == 0:
                    self._seen_problems.add(kind)
                    log.warning("corrupt frame skipped: %s (%d so far)", problem, self.stats.corrupt)
                continue
            self.stats.frames += 1
            frame = Frame(img, float(ts), self._index)
            self._index += 1
            yield frame

    def frame_waiting(self) -> bool:
        """A newer frame is already here (threaded: the capture thread delivered one the caller has not
        taken). Unthreaded, the next frame is read when asked: a file replayed as fast as it reads always
        has one (True); a live camera or a paced replay cannot say, and a held frame would add latency (False)."""
        if not self.threaded:
            return isinstance(self.source, ReplaySource) and not self.source.realtime
        with self._cond:
            return self._latest is not None

    def frames(self, stop: threading.Event, poll_s: float = 0.25) -> Iterator[Frame | None]:
        """Yield frames; in threaded mode also None every ``poll_s`` without one (housekeeping time).

        Ends when ``stop`` is set or a finite source reaches its end. Unthreaded, every frame
        reaches the caller (replay, tests); threaded, only the newest one does.
        """
        if not self.threaded:
            try:
                yield from self._read_frames(stop)
            finally:
                self.source.close()
            return
        thread_stop = threading.Event()
        t = threading.Thread(target=self._thread_main, args=(thread_stop,), name="capture", daemon=True)
        t.start()
        last_frame_at = time.monotonic()
        stalled = False
        try:
            while not stop.is_set():
                with self._cond:
                    if self._latest is None and not self._ended:
                        self._cond.wait(poll_s)
                    frame, self._latest = self._latest, None
                    ended = self._ended
                if frame is not None:
                    if stalled:
                        log.info("camera %s delivering frames again", self.source.name)
                        stalled = False
                        self._set_state("streaming")
                    last_frame_at = time.monotonic()
                    yield frame
                    continue
                if ended:
                    if self._error is not None:
                        raise self._error
                    return
                idle = time.monotonic() - last_frame_at
                if idle > self.cfg.read_timeout_s and not stalled and self.stats.state == "streaming":
                    stalled = True
                    log.error("camera %s stalled: no frame for %.1fs (the systemd watchdog restarts the daemon if it stays so)",
                              self.source.name, idle)
                    self._set_state("stalled", f"no frame for {idle:.0f}s")
                yield None
        finally:
            thread_stop.set()
            t.join(timeout=2.0)
            if not t.is_alive():
                self.source.close()

    def _thread_main(self, thread_stop: threading.Event) -> None:
        def emit(frame: Frame) -> None:
            with self._cond:
                if self._latest is not None:
                    self.stats.dropped += 1
                self._latest = frame
                self._cond.notify()

        try:
            for frame in self._read_frames(thread_stop):
                emit(frame)
        except CameraError as e:
            self._error = e
            self._set_state("failed", str(e))
        except Exception as e:  # a source bug must surface, not leave a silently dead thread
            log.error("capture thread failed: %s", e)
            self._error = CameraError(f"capture failed: {e}")
            self._set_state("failed", str(e))
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify()
