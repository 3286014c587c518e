"""The frame loop's side of the web page: hand over, never wait.

``publish(result, pipeline)`` runs on the frame loop after each frame. With nobody watching it returns
after two attribute reads. With Server-Sent Events clients it puts small dicts (numbers only) in each
client's bounded queue, dropping events for a client that does not keep up. With a preview viewer it
leaves a reference to the frame in a one-slot box at most ``preview_fps`` times a second; the encoder
thread draws and encodes from there, and each viewer's connection thread sends the newest JPEG it has
not sent yet. A slow or vanished viewer therefore only ever delays its own connection thread.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any

from edge_liveness.web.annotate import Overlay, draw, encode_jpeg, overlay_from

log = logging.getLogger(__name__)

STATE_INTERVAL_S = 0.2   # state events at most 5 a second: a phone's page cannot show more
VERDICT_SHOW_S = 2.0     # the preview keeps a decision's colour this long
QUEUE_EVENTS = 64        # per SSE client; past it that client's events are dropped
PREVIEW_MAX_SIDE = 480   # downscaled: enough to aim a camera, cheap to encode


class FinderTap:
    """Wraps the pipeline's face finder to keep its last ``FaceView`` (face box and landmarks),
    which ``FrameResult`` does not carry. One attribute store per frame; everything else passes through."""

    def __init__(self, inner: Any):
        self._inner = inner
        self.last: Any = None

    def process(self, frame_bgr: Any) -> Any:
        view = self._inner.process(frame_bgr)
        self.last = view
        return view

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def tap(pipeline: Any) -> FinderTap:
    finder = pipeline.finder
    if not isinstance(finder, FinderTap):
        finder = pipeline.finder = FinderTap(finder)
    return finder


class Subscriber:
    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[str, str]] = queue.Queue(maxsize=QUEUE_EVENTS)
        self.dropped = 0

    def offer(self, event: str, data: str) -> None:
        try:
            self.queue.put_nowait((event, data))
        except queue.Full:
            self.dropped += 1


class WebHub:
    def __init__(self, preview_fps: float = 5.0, max_side: int = PREVIEW_MAX_SIDE, jpeg_quality: int = 70):
        self.preview_interval_s = 1.0 / preview_fps
        self.max_side = max_side
        self.jpeg_quality = jpeg_quality
        self._lock = threading.Lock()
        self._subs: tuple[Subscriber, ...] = ()  # swapped whole, so the loop reads it without the lock
        self.viewers = 0
        self.frames_encoded = 0
        self._last_state = -1e9
        self._last_preview = -1e9
        self._state_key: tuple | None = None
        self._prompt: tuple[str, ...] = ()
        self._verdict: tuple[str, str, float] | None = None  # result, reason, monotonic time
        self._last: tuple[Any, Any] | None = None  # the latest FrameResult and engine
        # the passive models score only some frames (schedule.py): the page shows the latest score of
        # the attempt rather than a dash on every frame in between
        self._p_live: float | None = None
        self.model: dict[str, Any] = {}
        self._pipeline: Any = None
        # preview: the loop fills the slot, the encoder empties it
        self._slot: tuple[Any, Overlay] | None = None
        self._slot_cond = threading.Condition()
        self._jpeg: tuple[int, bytes] = (0, b"")
        self._jpeg_cond = threading.Condition()
        self._closed = False
        self._encoder: threading.Thread | None = None

    # ------------------------------------------------------------------ frame loop side
    def publish(self, result: Any, pipeline: Any) -> None:
        """Called once per processed frame. Never blocks, never raises into the loop."""
        try:
            self._publish(result, pipeline)
        except Exception as e:  # the page is a convenience: it must never take the door down
            log.warning("web page: frame hand-over failed: %s", e)

    def _publish(self, result: Any, pipeline: Any) -> None:
        engine = pipeline.engine
        now = time.monotonic()
        if pipeline is not self._pipeline:  # first frame, or a reload swapped models
            self._pipeline = pipeline
            li = pipeline.models.liveness
            self.model = {"name": li.name, "sha256": li.sha256, "threshold": round(float(engine.threshold), 4),
                          "runtime": getattr(li, "runtime", None)}
        for out in result.outputs:
            if out.kind == "prompt":
                self._prompt = tuple(out.actions)
            elif out.kind == "decision":
                self._prompt = ()
                self._verdict = (out.result, out.reason, now)
            self._broadcast(out.kind, {"kind": out.kind, **out.body()})
        self._last = (result, engine)  # for /api/status, computed only when asked
        if engine.state != "collecting":
            self._p_live = None
        elif result.obs.p_live is not None:
            self._p_live = result.obs.p_live
        if not self._subs and not self.viewers:
            return
        verdict = self._verdict if self._verdict and now - self._verdict[2] < VERDICT_SHOW_S else None
        prompt = self._prompt if engine.state == "collecting" else ()
        if self._subs:
            key = (engine.state, engine.active_mode, prompt)
            if key != self._state_key or now - self._last_state >= STATE_INTERVAL_S:
                self._state_key, self._last_state = key, now
                self._broadcast("state", self._state(result, engine, prompt))
        if self.viewers and now - self._last_preview >= self.preview_interval_s:
            self._last_preview = now
            # the frame's own view: with schedule.overlap the finder is already on the next frame
            view = getattr(result, "view", None) or tap(pipeline).last
            ov = overlay_from(result.obs, view, engine.state, prompt,
                              verdict[0] if verdict else None, verdict[1] if verdict else None, p_live=self._p_live)
            with self._slot_cond:
                self._slot = (result.frame.image, ov)
                self._slot_cond.notify()

    def _state(self, result: Any, engine: Any, prompt: tuple[str, ...]) -> dict[str, Any]:
        o = result.obs

        def r(v: float | None, n: int = 3) -> float | None:
            return None if v is None or v != v else round(float(v), n)

        h, w = result.frame.image.shape[:2]
        st = {"kind": "state", "state": engine.state, "active_mode": engine.active_mode, "prompt": list(prompt),
              "n_faces": o.n_faces, "face_frac": r(o.face_frac), "yaw": r(o.yaw, 1), "pitch": r(o.pitch, 1),
              "p_live": r(self._p_live if o.p_live is None else o.p_live), "ear_left": r(o.ear_left), "ear_right": r(o.ear_right), "blink": o.blink,
              "frame": [w, h], "ms": round(sum(result.ms.values()), 2)}
        return st

    @property
    def snapshot(self) -> dict[str, Any]:
        """The state event of the latest frame (for /api/status and a newly connected client)."""
        last = self._last
        if last is None:
            return {}
        result, engine = last
        return self._state(result, engine, self._prompt if engine.state == "collecting" else ())

    def _broadcast(self, event: str, body: dict[str, Any]) -> None:
        subs = self._subs
        if not subs:
            return
        data = json.dumps(body, separators=(",", ":"), default=str)
        for s in subs:
            s.offer(event, data)

    # ------------------------------------------------------------------ server side: events
    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        with self._lock:
            self._subs = self._subs + (sub,)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    # ------------------------------------------------------------------ server side: preview
    def add_viewer(self) -> int:
        """Count one preview viewer; return the JPEG sequence number to wait past."""
        with self._lock:
            self.viewers += 1
            if self._encoder is None:
                self._encoder = threading.Thread(target=self._encode_loop, name="web-preview", daemon=True)
                self._encoder.start()
        return self._jpeg[0]

    def remove_viewer(self) -> None:
        with self._lock:
            self.viewers = max(0, self.viewers - 1)
            last = self.viewers == 0
        if last:
            # nothing of the picture is kept while nobody watches: not the frame, not its JPEG
            with self._slot_cond:
                self._slot = None
            with self._jpeg_cond:
                self._jpeg = (self._jpeg[0], b"")

    def next_jpeg(self, after: int, timeout: float = 5.0) -> tuple[int, bytes] | None:
        """The newest JPEG with a sequence number above ``after``; None on timeout or close."""
        with self._jpeg_cond:
            if not self._jpeg_cond.wait_for(lambda: self._jpeg[0] > after or self._closed, timeout):
                return None
            return None if self._closed else self._jpeg

    def _encode_loop(self) -> None:
        while not self._closed:
            with self._slot_cond:
                self._slot_cond.wait_for(lambda: self._slot is not None or self._closed, timeout=1.0)
                item, self._slot = self._slot, None
            if item is None:
                with self._lock:
                    if self.viewers == 0:
                        self._encoder = None  # ends with the last viewer; the next one starts it again
                        return
                continue
            image, ov = item
            try:
                jpeg = encode_jpeg(draw(image, ov, self.max_side), self.jpeg_quality)
            except Exception as e:  # one bad frame must not end the preview for everyone
                log.warning("web preview: cannot draw or encode a frame: %s", e)
                continue
            self.frames_encoded += 1
            with self._jpeg_cond:
                self._jpeg = (self._jpeg[0] + 1, jpeg)
                self._jpeg_cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        with self._slot_cond:
            self._slot_cond.notify_all()
        with self._jpeg_cond:
            self._jpeg_cond.notify_all()
        for s in self._subs:
            s.offer("close", "{}")
