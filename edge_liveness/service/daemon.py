"""`edge-liveness run`: the daemon's frame loop, signals, reload and health reporting.

The loop is the pipeline: read a frame, process it, publish what was decided, report health.
WATCHDOG=1 is sent from here, only after a frame was processed: a stuck camera then stops the
heartbeat and systemd restarts us, which a heartbeat thread would hide.

What it delegates, one job each: the signing key (service/key.py), the journal, link and publisher
(service/transport.py), the commissioning page (service/web_page.py), what a command does
(service/command_actions.py), what a reload may change (service/reload.py), the health report (service/health.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import signal
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any

# `run`'s first act, before the imports below and the models load (a second or more): a SIGHUP
# meanwhile (kill -HUP, a reload sent early) would end the process, the default action. It is
# noted here, logged, and applied once the daemon runs (_install_signals).
STARTING_HUP = threading.Event()
if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGHUP, lambda _signum, _frame: STARTING_HUP.set())

from edge_liveness.service import reload as daemon_reload
from edge_liveness.camera.supervisor import Camera, CameraError, ReplaySource, open_source
from edge_liveness.config import ConfigError, Settings, load_settings
from edge_liveness.service.command_actions import handle_command
from edge_liveness.service.health import Health
from edge_liveness.service.transport import Transport
from edge_liveness.service.web_page import WebPage
from edge_liveness.service.logs import kv, setup_logging
from edge_liveness.vision.runtime import ModelError
from edge_liveness.events.signing import KeyFileError

log = logging.getLogger("edge_liveness.daemon")

EXIT_OK, EXIT_CONFIG, EXIT_FAILURE = 0, 2, 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="TOML config (default /etc/edge-liveness/edge-liveness.toml when it exists)")
    p.add_argument("--source", help="override camera.source (device index, /dev/videoN, picamera2, URL, file, folder)")
    p.add_argument("--secrets-dir", help="directory of secret files (default $CREDENTIALS_DIRECTORY)")
    p.add_argument("--exit-at-end", action="store_true", help="exit when a replay source ends instead of waiting")
    p.add_argument("--quiet", action="store_true", help="do not print decisions to stdout")


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
        self.last_decision: dict[str, Any] | None = None
        self.camera_state = "opening"
        self.camera_restart = False
        self.face_present = False
        self.frames = 0  # processed since start: `status` exits non-zero while it is 0 (a door without a camera)
        self.transport = Transport()
        self.web = WebPage()

    # ------------------------------------------------------------ set-up
    def _overrides(self) -> dict[str, Any]:
        return {"camera": {"source": self.source_override}} if self.source_override else {}

    def _open_camera(self) -> Camera:
        cam_cfg = self.settings.camera
        if self.exit_at_end and cam_cfg.loop:
            # The flag typed for this run beats the standing config: whoever asks to exit at the end means it.
            cam_cfg = cam_cfg.model_copy(update={"loop": False})
        source = open_source(cam_cfg.source, cam_cfg)
        return Camera(source, cam_cfg, on_state=self._camera_state)

    def _camera_state(self, state: str) -> None:
        self.camera_state = state
        self.notifier.status(f"camera {state}")

    def _on_command(self, name: str, args: dict) -> dict:
        """Called from the MQTT thread: hand over to the frame loop and wait for its answer."""
        fut: Future = Future()
        self.commands.put((name, args, fut))
        try:
            return fut.result(timeout=5.0)
        except Exception as e:
            return {"ok": False, "error": f"not handled: {e}"}

    def _web_health(self) -> dict[str, Any]:
        """The page's /api/status: the status file's view, once there is one."""
        status = getattr(self, "status", None)
        return status.status.to_dict() if status is not None else {"state": "starting"}

    # ------------------------------------------------------------ run
    def run(self) -> int:
        from edge_liveness.service.metrics import Metrics
        from edge_liveness.pipeline import build_pipeline
        from edge_liveness.service.sdnotify import Notifier
        from edge_liveness.service.status import StatusFile

        s = self.settings
        self.notifier = Notifier()
        if not self.web.start(s, self._on_command, self._web_health):
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
            log.error("state directory %s unusable (%s): decisions cannot be journaled until it is fixed", s.storage.state_dir, e)
        self.status = StatusFile(s.state_path)
        self.health = Health(self.metrics, self.notifier, self.status)
        from edge_liveness.events.mqtt import MqttError

        try:
            self.transport.start(s, self._on_command)
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
        if self.exit_at_end and s.camera.loop and isinstance(self.camera.source, ReplaySource):
            log.info("--exit-at-end: camera.loop = true is ignored, the daemon exits when the recording ends")
        code = self._loop()
        lost = self._shutdown()
        # A stop that lost decisions (ERROR lines say which) is a failure, not a clean exit.
        return EXIT_FAILURE if lost and code == EXIT_OK else code

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
                    # schedule.overlap: the results are of earlier frames (overlap.py); while no newer
                    # frame waits the camera sets the pace, and every held frame is judged now
                    runner = self._runner()
                    for result in runner.push(frame) + ([] if self.camera.frame_waiting() else runner.flush()):
                        self._handle(result, now)
                    if not ready and self.frames:
                        self.notifier.ready()
                        ready = True
                        log.info("first frame processed: ready")
                    self.notifier.watchdog()
                    if now - last_status > 1.0:
                        self._report(now)
                        last_status = now
            except CameraError as e:
                self._flush()
                log.error("%s", e)
                # A file that cannot be read will not heal by restarting: say "fix the config".
                return EXIT_CONFIG if isinstance(self.camera.source, ReplaySource) else EXIT_FAILURE
            self._flush()
            if self.stop.is_set():
                break
            if self.camera_restart:
                self.camera_restart = False
                try:
                    self.camera = self._open_camera()
                    self.health.camera_reopened()
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
        from edge_liveness.service.attempt_images import AttemptImages

        if getattr(self, "images", None) is None:
            self.images = AttemptImages.from_settings(self.settings)
        p = self.pipeline
        self.images.observe(frame.image, result.anchors, p.engine.attempt_id, result.outputs, p.crop_size, p.crop_margin)

    def _handle(self, result, now: float) -> None:
        """One frame's result: keep images (if asked), publish its decisions, feed the page and health."""
        if self.settings.storage.save_images:
            self._keep_images(result.frame, result)
        self.face_present = result.obs.n_faces > 0
        for out in result.outputs:
            self._emit(out)
        self.web.publish(result, self.pipeline)
        self.health.rate.tick(now)
        self.frames += 1
        self.metrics.frame(result.ms)

    def _runner(self):
        """The frame runner of the current pipeline (a reload replaces both; a frame held for the old
        pipeline is dropped with it: its attempt already ended with the reload's decision)."""
        from edge_liveness.overlap import FrameRunner

        runner = getattr(self, "runner", None)
        if runner is None or runner.pipeline is not self.pipeline:
            if runner is not None:
                runner.drop()
                runner.close()
            self.runner = runner = FrameRunner(self.pipeline)
        return runner

    def _flush(self) -> None:
        """The frame an overlapped runner still holds, when the source ends or the camera goes."""
        runner = getattr(self, "runner", None)
        if runner is not None and runner.pipeline is self.pipeline:
            for result in runner.flush():
                self._handle(result, time.monotonic())

    def _emit(self, out: Any) -> None:
        payload = self.transport.publisher.submit(out.kind, out.body())
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
                fut.set_result(handle_command(name, args, self.pipeline.engine, self.settings, self.reload))
            except Exception as e:
                log.warning("command %s failed: %s", name, e)
                fut.set_result({"ok": False, "error": str(e)})
        if self.reload_requested.is_set():
            self.reload_requested.clear()
            self.reload()

    def _report(self, now: float) -> None:
        self.health.report(now, camera=self.camera, camera_state=self.camera_state, pipeline=self.pipeline,
                           transport=self.transport, face_present=self.face_present, frames=self.frames,
                           last_decision=self.last_decision)

    # ------------------------------------------------------------ reload and signals
    def reload(self) -> tuple[bool, str]:
        """Re-read config and models; keep everything as it is when the new ones are bad."""
        self.notifier.reloading()
        try:
            new, pipeline = daemon_reload.load_new(self.config_path, self.secrets_dir, self._overrides())
        except daemon_reload.ReloadRejected as e:
            return self._reload_rejected(str(e))
        pipeline.engine.active_mode = daemon_reload.active_mode(self.settings, new, self.pipeline.engine.active_mode)
        # The attempt in progress belongs to the old models and settings: end it with a decision
        # (fail, "reload") rather than let it vanish with the old engine.
        out = self.pipeline.engine.abort("reload")
        if out is not None:
            self._emit(out)
        old = self.settings
        self.settings, self.pipeline = new, pipeline
        if daemon_reload.camera_must_reopen(old, new):
            self.camera_restart = True
        setup_logging(new.logging.level, new.logging.format)
        msg = daemon_reload.reloaded_message(pipeline)
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
        if STARTING_HUP.is_set():
            log.info("SIGHUP received while starting: re-reading the configuration now that the daemon runs")
            self.reload_requested.set()

    def _shutdown(self) -> int:
        """End the attempt, flush the outbox, say offline: all within systemd's stop timeout.
        Returns the number of events lost (neither journaled nor kept in a fallback file)."""
        self.notifier.stopping()
        runner = getattr(self, "runner", None)
        if runner is not None:
            runner.drop()  # a frame held at the stop: the attempt ends with the shutdown decision below
            runner.close()
        pipeline = getattr(self, "pipeline", None)
        if pipeline is not None and self.transport.publisher is not None:
            out = pipeline.engine.abort("shutdown")
            if out is not None:
                self._emit(out)
        lost = self.transport.close()
        if hasattr(self, "status"):
            self.status.set_state("stopped")
        self.web.close()
        log.info("stopped")
        return lost


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
