"""`edge-liveness run`: the daemon's frame loop, signals, reload and health reporting.

The loop is the pipeline: read a frame, process it, publish what was decided, report health.
WATCHDOG=1 is sent from here, only after a frame was processed: a stuck camera then stops the
heartbeat and systemd restarts us, which a heartbeat thread would hide.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from edge_liveness.camera import Camera, CameraError, ReplaySource, open_source
from edge_liveness.config import ConfigError, Settings, load_settings
from edge_liveness.logs import kv, setup_logging
from edge_liveness.runtime import ModelError
from edge_liveness.signing import KeyFileError

log = logging.getLogger("edge_liveness.daemon")

EXIT_OK, EXIT_CONFIG, EXIT_FAILURE = 0, 2, 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="TOML config (default /etc/edge-liveness/edge-liveness.toml when it exists)")
    p.add_argument("--source", help="override camera.source (device index, /dev/videoN, picamera2, URL, file, folder)")
    p.add_argument("--secrets-dir", help="directory of secret files (default $CREDENTIALS_DIRECTORY)")
    p.add_argument("--exit-at-end", action="store_true", help="exit when a replay source ends instead of waiting")
    p.add_argument("--quiet", action="store_true", help="do not print decisions to stdout")


class _Rate:
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


class Daemon:
    def __init__(self, settings: Settings, config_path: str | None, secrets_dir: str | None = None,
                 source_override: str | None = None, exit_at_end: bool = False, print_events: bool = True):
        self.settings = settings
        self.config_path = config_path
        self.secrets_dir = secrets_dir
        self.source_override = source_override
        self.exit_at_end = exit_at_end
        self.print_events = print_events
        self.stop = threading.Event()
        self.reload_requested = threading.Event()
        self.commands: queue.Queue[tuple[str, dict, Future]] = queue.Queue()
        self.rate = _Rate()
        self.last_decision: dict[str, Any] | None = None
        self.camera_state = "opening"
        self.camera_restart = False
        self.face_present = False
        self.frames = 0  # processed since start: `status` exits non-zero while it is 0 (a door without a camera)
        self._counted: dict[str, int] = {}
        self.web_hub: Any = None
        self.web_server: Any = None

    # ------------------------------------------------------------ set-up
    def _overrides(self) -> dict[str, Any]:
        return {"camera": {"source": self.source_override}} if self.source_override else {}

    def _open_camera(self) -> Camera:
        cam_cfg = self.settings.camera
        source = open_source(cam_cfg.source, cam_cfg)
        return Camera(source, cam_cfg, on_state=self._camera_state)

    def _camera_state(self, state: str) -> None:
        self.camera_state = state
        self.notifier.status(f"camera {state}")

    def _start_transport(self) -> None:
        from edge_liveness.mqtt import MqttLink
        from edge_liveness.outbox import Outbox
        from edge_liveness.publisher import Publisher

        s = self.settings
        key = s.security.signing_key.get_secret_value().encode() or None
        if key is None:
            key = self._state_key()
        self.outbox = Outbox.open(s.state_path / "outbox.db", s.storage)
        self.link = MqttLink(s, on_command=self._on_command, key=key) if s.mqtt.enabled else None
        self.publisher = Publisher(self.outbox, self.link, s.device.id, key, fallback_dir=fallback_dir())
        self.publisher.import_fallback()
        if self.link is not None:
            self.link.journal_problem = lambda: self.outbox.problem
            self.link.start()

    def _state_key(self) -> bytes:
        """No key configured: the one kept in the state directory, created at first start."""
        from edge_liveness.signing import KEY_FILE, state_key

        path = self.settings.state_path / KEY_FILE
        try:
            key, created = state_key(self.settings.state_path)
        except OSError as e:
            import secrets

            log.error("no signing_key configured and %s cannot be created (%s): events are signed with a key held "
                      "in memory for this run only (no subscriber can check them) and every command is refused; "
                      "fix the state directory or put the key in the secrets directory", path, e.strerror or e)
            return secrets.token_hex(32).encode()
        if created:
            log.warning("no signing_key configured: created one at %s (mode 0600); events are signed with it and "
                        "commands must be: give it to subscribers and command senders", path)
        else:
            log.info("signing with the key created at first start: %s", path)
        return key

    def _on_command(self, name: str, args: dict) -> dict:
        """Called from the MQTT thread: hand over to the frame loop and wait for its answer."""
        fut: Future = Future()
        self.commands.put((name, args, fut))
        try:
            return fut.result(timeout=5.0)
        except Exception as e:
            return {"ok": False, "error": f"not handled: {e}"}

    # ------------------------------------------------------------ the commissioning page (web.enabled)
    def _start_web(self) -> bool:
        """Serve the page when web.enabled; False (after one ERROR line) when it cannot be served as configured."""
        if not self.settings.web.enabled:
            return True
        from edge_liveness.web import WebError
        from edge_liveness.web.hub import WebHub
        from edge_liveness.web.server import WebServer

        hub = WebHub(self.settings.web.preview_fps)
        try:
            server = WebServer.from_settings(self.settings, hub, self._on_command, self._web_health)
            server.start()
        except WebError as e:
            log.error("%s", e)
            return False
        self.web_hub, self.web_server = hub, server
        return True

    def _web_health(self) -> dict[str, Any]:
        status = getattr(self, "status", None)
        return status.status.to_dict() if status is not None else {"state": "starting"}

    # ------------------------------------------------------------ run
    def run(self) -> int:
        from edge_liveness.metrics import Metrics
        from edge_liveness.pipeline import build_pipeline
        from edge_liveness.sdnotify import Notifier
        from edge_liveness.status import StatusFile

        s = self.settings
        self.notifier = Notifier()
        if not self._start_web():
            return EXIT_CONFIG
        self.notifier.status("loading models")
        try:
            self.pipeline = build_pipeline(s)
        except ModelError as e:
            log.error("%s", e)
            return EXIT_CONFIG
        self.metrics = Metrics(enabled=s.health.http)
        if s.health.http:
            self.metrics.serve(s.health.host, s.health.port)
        try:
            s.state_path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            log.error("state directory %s unusable (%s): decisions go out over MQTT only until it is fixed", s.storage.state_dir, e)
        self.status = StatusFile(s.state_path)
        from edge_liveness.mqtt import MqttError

        try:
            self._start_transport()
        except (MqttError, KeyFileError) as e:
            log.error("%s", e)
            self._shutdown()
            return EXIT_CONFIG
        try:
            self.camera = self._open_camera()
        except CameraError as e:
            log.error("%s", e)
            self._shutdown()
            return EXIT_CONFIG

        self._install_signals()
        li = self.pipeline.models.liveness
        log.info("running", extra=kv(device=s.device.id, source=self.camera.source.name, model=li.name,
                                        sha256=li.sha256[:12], threshold=li.threshold, active=self.pipeline.engine.active_mode,
                                        runtime=li.runtime if hasattr(li, "runtime") else "?"))
        code = self._loop()
        self._shutdown()
        return code

    def _loop(self) -> int:
        ready = False
        last_status = 0.0
        while not self.stop.is_set():
            try:
                for frame in self.camera.frames(self.stop):
                    now = time.monotonic()
                    self._housekeeping()
                    if self.camera_restart:
                        break
                    if frame is None:
                        # No frame, no WATCHDOG=1: a camera gone for longer than WatchdogSec= gets a
                        # fresh process from systemd (which is one more reopen, with clean state).
                        if now - last_status > 1.0:
                            self._report(now)
                            last_status = now
                        continue
                    result = self.pipeline.process(frame)
                    if self.settings.storage.save_images:
                        self._keep_images(frame, result)
                    self.face_present = result.obs.n_faces > 0
                    for out in result.outputs:
                        self._emit(out)
                    if self.web_hub is not None:
                        self.web_hub.publish(result, self.pipeline)
                    self.rate.tick(now)
                    self.frames += 1
                    self.metrics.frame(result.ms)
                    if not ready:
                        self.notifier.ready()
                        ready = True
                        log.info("first frame processed: ready")
                    self.notifier.watchdog()
                    if now - last_status > 1.0:
                        self._report(now)
                        last_status = now
            except CameraError as e:
                log.error("%s", e)
                # A file that cannot be read will not heal by restarting: say "fix the config".
                return EXIT_CONFIG if isinstance(self.camera.source, ReplaySource) else EXIT_FAILURE
            if self.stop.is_set():
                break
            if self.camera_restart:
                self.camera_restart = False
                try:
                    self.camera = self._open_camera()
                    self._counted = {k: v for k, v in self._counted.items() if k == "reconnects"}
                except CameraError as e:
                    log.error("%s", e)
                    return EXIT_FAILURE
                continue
            # The source ended (a replay file without loop).
            if self.exit_at_end:
                break
            log.info("replay source ended; waiting (no frames: the watchdog stops); "
                     "run with --exit-at-end to exit when a recording ends")
            self.notifier.status("source ended")
            self.stop.wait(1.0)
            while not self.stop.is_set():
                self._housekeeping()
                self._report(time.monotonic())
                self.stop.wait(0.5)
        return EXIT_OK

    # ------------------------------------------------------------ per-frame helpers
    def _keep_images(self, frame: Any, result: Any) -> None:
        """storage.save_images: the attempt's crops, filed by its decision, on this device only."""
        from edge_liveness.attempt_images import AttemptImages

        if getattr(self, "images", None) is None:
            self.images = AttemptImages.from_settings(self.settings)
        p = self.pipeline
        self.images.observe(frame.image, p.finder.last_anchors, p.engine.attempt_id, result.outputs, p.crop_size, p.crop_margin)

    def _emit(self, out: Any) -> None:
        payload = self.publisher.submit(out.kind, out.body())
        if out.kind == "decision":
            self.last_decision = {k: payload.get(k) for k in ("result", "reason", "ts", "event_id", "seq")}
            self.metrics.decision(payload["result"], payload.get("reason"))
            log.info("decision", extra=kv(result=payload["result"], reason=payload.get("reason"), seq=payload["seq"]))
        if self.print_events:
            print(json.dumps(payload, separators=(",", ":")), flush=True)

    def _housekeeping(self) -> None:
        while True:
            try:
                name, args, fut = self.commands.get_nowait()
            except queue.Empty:
                break
            try:
                fut.set_result(self._handle_command(name, args))
            except Exception as e:
                log.warning("command %s failed: %s", name, e)
                fut.set_result({"ok": False, "error": str(e)})
        if self.reload_requested.is_set():
            self.reload_requested.clear()
            self.reload()

    def _handle_command(self, name: str, args: dict) -> dict:
        engine = self.pipeline.engine
        if name == "active":
            mode = args.get("mode")
            if mode is None and "enabled" in args:
                mode = self.settings.active.mode if args["enabled"] else "off"
                if mode == "off" and args["enabled"]:
                    mode = "blink"
            engine.active_mode = mode
            log.info("active check set to %s by command", mode)
            return {"ok": True, "active_mode": engine.active_mode}
        if name == "attempt":
            engine.start_attempt()
            return {"ok": True, "state": engine.state}
        if name == "reload":
            ok, msg = self.reload()
            return {"ok": True, "message": msg} if ok else {"ok": False, "error": msg}
        return {"ok": False, "error": f"unknown command {name}"}

    def _count(self) -> None:
        """Feed the camera's and the link's running totals into the Prometheus counters."""
        st = self.camera.stats
        totals = {"corrupt": st.corrupt, "reopens": st.reopens, "dropped": st.dropped,
                  "reconnects": self.link.reconnects if self.link is not None else 0}
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

    def _report(self, now: float) -> None:
        self._count()
        engine = self.pipeline.engine
        fps = self.rate.fps(now)
        backlog = self.publisher.backlog
        connected = bool(self.link and self.link.connected)
        self.metrics.set_fps(fps)
        self.metrics.set_backlog(backlog)
        self.metrics.connected(connected)
        self.notifier.status(f"{engine.state}, {fps:.1f} fps, camera {self.camera_state}, "
                             f"broker {'up' if connected else 'down'}, backlog {backlog}")
        li = self.pipeline.models.liveness
        state = {"state": engine.state, "fps": round(fps, 1), "active_mode": engine.active_mode,
                 "camera": self.camera_state, "face_present": self.face_present, "broker_connected": connected, "backlog": backlog, "frames": self.frames,
                 "last_decision": self.last_decision, "model": {"name": li.name, "sha256": li.sha256},
                 "storage_problem": getattr(self.outbox, "problem", None)}
        self.status.update({k: v for k, v in state.items() if k != "face_present"})  # not a status-file field
        if self.link is not None:
            self.link.publish_state({k: state[k] for k in ("state", "fps", "active_mode", "camera", "face_present", "backlog",
                                                          "storage_problem")})

    # ------------------------------------------------------------ reload and signals
    def reload(self) -> tuple[bool, str]:
        """Re-read config and models; keep everything as it is when the new ones are bad."""
        from edge_liveness.pipeline import build_pipeline

        self.notifier.reloading()
        try:
            new = load_settings(self.config_path, secrets_dir=self.secrets_dir, **self._overrides())
            pipeline = build_pipeline(new)
        except ConfigError as e:
            msg = f"reload rejected, keeping the running config: {'; '.join(e.problems)}"
            return self._reload_rejected(msg)
        except ModelError as e:
            msg = f"reload rejected, keeping the running models: {e}"
            return self._reload_rejected(msg)
        pipeline.engine.active_mode = self.pipeline.engine.active_mode if new.active.mode == self.settings.active.mode \
            else new.active.mode
        # The attempt in progress belongs to the old models and settings: end it with a decision
        # (fail, "reload") rather than let it vanish with the old engine.
        out = self.pipeline.engine.abort("reload")
        if out is not None:
            self._emit(out)
        old = self.settings
        self.settings, self.pipeline = new, pipeline
        if new.camera != old.camera:
            log.info("camera settings changed: reopening the camera")
            self.camera_restart = True
        if new.mqtt != old.mqtt or new.security != old.security or new.storage != old.storage or new.web != old.web:
            log.warning("mqtt/security/storage/web settings changed: they apply after a restart (systemctl restart edge-liveness)")
        setup_logging(new.logging.level, new.logging.format)
        li = pipeline.models.liveness
        msg = f"reloaded: model {li.name} {li.sha256[:12]}"
        log.info(msg)
        self.notifier.ready()
        return True, msg

    def _reload_rejected(self, msg: str) -> tuple[bool, str]:
        log.error(msg)
        self.notifier.ready()
        self.notifier.status(msg)
        self.status.update(message=msg)
        return False, msg

    def _install_signals(self) -> None:
        def on_stop(signum, _frame):
            log.info("%s received: stopping", signal.Signals(signum).name)
            self.stop.set()

        def on_hup(_signum, _frame):
            self.reload_requested.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def _shutdown(self) -> None:
        """End the attempt, flush the outbox, say offline: all within systemd's stop timeout."""
        self.notifier.stopping()
        pipeline = getattr(self, "pipeline", None)
        if pipeline is not None and hasattr(self, "publisher"):
            out = pipeline.engine.abort("shutdown")
            if out is not None:
                self._emit(out)
        if hasattr(self, "publisher"):
            self.publisher.flush(timeout=2.0)
            self.publisher.keep_unjournaled()
        if getattr(self, "link", None) is not None:
            self.link.stop()
        if hasattr(self, "outbox"):
            self.outbox.close()
        if hasattr(self, "status"):
            self.status.set_state("stopped")
        if self.web_server is not None:
            self.web_server.close()
        log.info("stopped")


def fallback_dir() -> Path | None:
    """Where events the journal could not take are kept: systemd's RuntimeDirectory= (on another file
    system than the state directory), else $XDG_RUNTIME_DIR/edge-liveness; None when neither is set."""
    if os.environ.get("RUNTIME_DIRECTORY"):
        return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "edge-liveness"
    return None


def main(args: argparse.Namespace) -> int:
    setup_logging()
    try:
        overrides = {"camera": {"source": args.source}} if args.source else {}
        settings = load_settings(args.config, secrets_dir=args.secrets_dir, **overrides)
    except ConfigError as e:
        for p in e.problems:
            print(f"config error: {p}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(settings.logging.level, settings.logging.format)
    daemon = Daemon(settings, args.config, args.secrets_dir, args.source, args.exit_at_end, not args.quiet)
    return daemon.run()
