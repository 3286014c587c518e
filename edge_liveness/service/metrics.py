"""Prometheus metrics and a localhost-only /healthz + /metrics HTTP endpoint.

``prometheus_client`` is an optional dependency (the ``metrics`` extra). ``Metrics(enabled=False)``
never imports it and every method is a cheap no-op, so the frame loop calls them unconditionally.
Each ``Metrics`` owns its own ``CollectorRegistry``: a config reload or a test can build a new one
without "Duplicated timeseries" clashes in the process-global registry.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("edge_liveness.metrics")

INSTALL_HINT = "pip install 'edge-liveness[metrics]'"
# Stage latencies on a Pi are 0.5-50 ms; the buckets resolve that range.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
DEFAULT_ALIVE_WINDOW_S = 5.0


class MetricsError(ValueError):
    """Metrics were asked for but cannot be provided (message is one line naming the fix)."""


class Metrics:
    def __init__(self, enabled: bool, alive_window_s: float = DEFAULT_ALIVE_WINDOW_S):
        self.enabled = enabled
        self.alive_window_s = alive_window_s
        self._last_frame: float | None = None  # monotonic; read by /healthz
        self._fps = 0.0
        self._connected = False
        self._backlog = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if not enabled:
            return
        try:
            import prometheus_client as pc
        except ImportError:
            raise MetricsError(f"health.http is on but prometheus_client is not installed: {INSTALL_HINT} "
                               "(or set health.http = false)") from None
        self._pc = pc
        r = self.registry = pc.CollectorRegistry(auto_describe=True)
        p = "edge_liveness_"
        self._frames = pc.Counter(p + "frames", "Frames processed by the loop", registry=r)
        self._dropped = pc.Counter(p + "frames_dropped", "Frames dropped because the loop was busy", registry=r)
        self._corrupt = pc.Counter(p + "corrupt_frames", "Frames rejected as corrupt or empty", registry=r)
        self._decisions = pc.Counter(p + "decisions", "Liveness decisions", ["result", "reason"], registry=r)
        self._latency = pc.Histogram(p + "stage_latency_seconds", "Per-stage processing time per frame", ["stage"],
                                     buckets=LATENCY_BUCKETS, registry=r)
        self._backlog_g = pc.Gauge(p + "backlog", "Journaled events not yet acknowledged by the broker", registry=r)
        self._reconnects = pc.Counter(p + "mqtt_reconnects", "MQTT reconnections", registry=r)
        self._connected_g = pc.Gauge(p + "mqtt_connected", "1 while the MQTT link is up", registry=r)
        self._fps_g = pc.Gauge(p + "fps", "Frames per second processed (recent)", registry=r)
        self._reopens = pc.Counter(p + "camera_reopens", "Camera reopen attempts", registry=r)

    # ------------------------------------------------------------------ recording (frame loop)

    def frame(self, stage_ms: dict[str, float] | None = None) -> None:
        if not self.enabled:
            return
        self._last_frame = time.monotonic()
        self._frames.inc()
        for stage, ms in (stage_ms or {}).items():
            self._latency.labels(stage=stage).observe(ms / 1000.0)

    def decision(self, result: str, reason: str | None) -> None:
        if self.enabled:
            self._decisions.labels(result=str(result), reason=reason or "").inc()

    def set_backlog(self, n: int) -> None:
        if self.enabled:
            self._backlog = n
            self._backlog_g.set(n)

    def reconnect(self) -> None:
        if self.enabled:
            self._reconnects.inc()

    def connected(self, up: bool) -> None:
        if self.enabled:
            self._connected = bool(up)
            self._connected_g.set(1 if up else 0)

    def corrupt_frame(self) -> None:
        if self.enabled:
            self._corrupt.inc()

    def dropped(self, n: int = 1) -> None:
        if self.enabled and n > 0:
            self._dropped.inc(n)

    def camera_reopen(self) -> None:
        if self.enabled:
            self._reopens.inc()

    def set_fps(self, fps: float) -> None:
        if self.enabled:
            self._fps = float(fps)
            self._fps_g.set(fps)

    # ------------------------------------------------------------------ reading

    def exposition(self) -> bytes:
        """The Prometheus text format of this registry (empty when disabled)."""
        return self._pc.generate_latest(self.registry) if self.enabled else b""

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(alive, details): alive while a frame went through the loop in the last ``alive_window_s``."""
        age = None if self._last_frame is None else time.monotonic() - self._last_frame
        alive = age is not None and age <= self.alive_window_s
        return alive, {"status": "ok" if alive else "stalled",
                       "last_frame_age_s": None if age is None else round(age, 3),
                       "fps": round(self._fps, 2), "mqtt_connected": self._connected, "backlog": self._backlog}

    # ------------------------------------------------------------------ HTTP

    def serve(self, host: str = "127.0.0.1", port: int = 9108) -> int:
        """Serve /healthz and /metrics from a daemon thread; return the bound port (0 picks one).

        Only loopback addresses are accepted: the endpoint has no authentication, and a door device
        must not offer one to its LAN (put a reverse proxy or node-exporter in front for that).
        """
        if not self.enabled:
            return 0
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise MetricsError(f"health.host {host!r} is not a loopback address: use 127.0.0.1 or ::1")
        if self._server is not None:
            return self._server.server_address[1]
        server_cls = _V6Server if ":" in host else ThreadingHTTPServer
        try:
            self._server = server_cls((host, port), _handler_for(self))
        except OSError as e:
            raise MetricsError(f"cannot serve metrics on {host}:{port} ({e.strerror or e}): "
                               "choose a free health.port") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()
        bound = self._server.server_address[1]
        log.info("health endpoint on http://%s:%d/healthz and /metrics", host, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            self._thread = None


class _V6Server(ThreadingHTTPServer):
    import socket as _socket
    address_family = _socket.AF_INET6


def _handler_for(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "edge-liveness"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics._pc.CONTENT_TYPE_LATEST, metrics.exposition())
            elif path == "/healthz":
                alive, details = metrics.health()
                self._send(200 if alive else 503, "application/json", json.dumps(details).encode())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            # A scraper every 15 s would flood journald at INFO.
            log.debug("http %s", format % args)

    return Handler
