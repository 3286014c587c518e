"""The daemon's health, reported about once a second: Prometheus, systemd, the status file, MQTT.

Why a module of its own: one snapshot of the running daemon (state, fps, camera, broker, backlog,
last decision, model) goes to four readers, each with its own fields; the frame loop only says
when. The camera's and the link's running totals become Prometheus counters here.
"""

from __future__ import annotations

from typing import Any


class Rate:
    """Frames per second over a sliding second."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def tick(self, now: float) -> None:
        self.stamps.append(now)
        while self.stamps and now - self.stamps[0] > 2.0:
            self.stamps.pop(0)

    def fps(self, now: float) -> float:
        recent = [s for s in self.stamps if now - s <= 2.0]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)


class Health:
    """Takes the metrics, the systemd notifier and the status file the daemon opened."""

    def __init__(self, metrics: Any, notifier: Any, status: Any) -> None:
        self.metrics, self.notifier, self.status = metrics, notifier, status
        self.rate = Rate()
        self._counted: dict[str, int] = {}

    def camera_reopened(self) -> None:
        """A new Camera counts from zero again; the link's reconnects go on."""
        self._counted = {k: v for k, v in self._counted.items() if k == "reconnects"}

    def _count(self, camera: Any, link: Any) -> None:
        """Feed the camera's and the link's running totals into the Prometheus counters."""
        st = camera.stats
        totals = {"corrupt": st.corrupt, "reopens": st.reopens, "dropped": st.dropped,
                  "reconnects": link.reconnects if link is not None else 0}
        last = self._counted
        for _ in range(totals["corrupt"] - last.get("corrupt", 0)):
            self.metrics.corrupt_frame()
        for _ in range(totals["reopens"] - last.get("reopens", 0)):
            self.metrics.camera_reopen()
        if totals["dropped"] > last.get("dropped", 0):
            self.metrics.dropped(totals["dropped"] - last.get("dropped", 0))
        for _ in range(totals["reconnects"] - last.get("reconnects", 0)):
            self.metrics.reconnect()
        self._counted = totals

    def report(self, now: float, *, camera: Any, camera_state: str, pipeline: Any, transport: Any,
               face_present: bool, frames: int, last_decision: dict[str, Any] | None) -> None:
        link = transport.link
        self._count(camera, link)
        engine = pipeline.engine
        fps = self.rate.fps(now)
        backlog = transport.publisher.backlog
        connected = bool(link and link.connected)
        self.metrics.set_fps(fps)
        self.metrics.set_backlog(backlog)
        self.metrics.connected(connected)
        self.notifier.status(f"{engine.state}, {fps:.1f} fps, camera {camera_state}, "
                             f"broker {'up' if connected else 'down'}, backlog {backlog}")
        li = pipeline.models.liveness
        state = {"state": engine.state, "fps": round(fps, 1), "active_mode": engine.active_mode,
                 "camera": camera_state, "face_present": face_present, "broker_connected": connected, "backlog": backlog,
                 "frames": frames, "last_decision": last_decision, "model": {"name": li.name, "sha256": li.sha256},
                 "storage_problem": getattr(transport.outbox, "problem", None)}
        self.status.update({k: v for k, v in state.items() if k != "face_present"})  # not a status-file field
        if link is not None:
            link.publish_state({k: state[k] for k in ("state", "fps", "active_mode", "camera", "face_present", "backlog",
                                                      "storage_problem")})
