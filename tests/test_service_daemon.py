"""The real daemon (`edge-liveness run`) as systemd would run it.

The test plays the service manager: it owns the AF_UNIX datagram socket named by NOTIFY_SOCKET and
sets WATCHDOG_USEC, then checks what the daemon tells it (READY, WATCHDOG, STATUS, RELOADING,
STOPPING) while it processes a real recording, stalls, reloads and stops.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import shared_file
from fault_helpers import NotifyListener

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
WATCHDOG_S = 2.0  # WatchdogSec= the test pretends to have set
READY_TIMEOUT_S = 120.0  # model loading on a busy 2-core machine
# Run against another liveness model (a .tflite with its manifest) than the one shipped in models/.
LIVENESS_OVERRIDE = os.environ.get("EDGE_LIVENESS_TEST_LIVENESS_MODEL", "")


def _liveness_model_env() -> dict[str, str]:
    if LIVENESS_OVERRIDE:
        return {"EDGE_LIVENESS_MODELS__LIVENESS": LIVENESS_OVERRIDE}
    from edge_liveness.liveness.model import default_model_path

    if not default_model_path().is_file():
        pytest.skip(f"no shipped liveness model at {default_model_path()} yet "
                    "(or set EDGE_LIVENESS_TEST_LIVENESS_MODEL to a .tflite with its manifest)")
    return {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _frames_total(port: int) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    code, body = _get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200
    for fam in text_string_to_metric_families(body):
        if fam.name == "edge_liveness_frames":
            return sum(s.value for s in fam.samples if s.name.endswith("_total"))
    raise AssertionError("edge_liveness_frames_total missing from /metrics")


class Daemon:
    def __init__(self, tmp_path: Path, source: Path, loop: bool, extra_env: dict[str, str] | None = None):
        pytest.importorskip("prometheus_client")
        model_env = _liveness_model_env()
        self.tmp = tmp_path
        self.state = tmp_path / "state"
        self.config = tmp_path / "edge-liveness.toml"
        self.config.write_text('[logging]\nlevel = "INFO"\n')
        self.port = _free_port()
        self.notify = NotifyListener(tmp_path / "notify.sock")
        self.log_path = tmp_path / "daemon.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_LIVENESS_") and k not in
               ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY")}
        env.update({
            "NOTIFY_SOCKET": str(self.notify.path),
            "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6)),
            "EDGE_LIVENESS_CAMERA__SOURCE": str(source),
            "EDGE_LIVENESS_CAMERA__LOOP": "true" if loop else "false",
            "EDGE_LIVENESS_CAMERA__REALTIME": "true",
            "EDGE_LIVENESS_CAMERA__READ_TIMEOUT_S": "1",
            "EDGE_LIVENESS_MQTT__ENABLED": "false",
            "EDGE_LIVENESS_STORAGE__STATE_DIR": str(self.state),
            "EDGE_LIVENESS_HEALTH__HTTP": "true",
            "EDGE_LIVENESS_HEALTH__PORT": str(self.port),
            **model_env,
            **(extra_env or {}),
        })
        self.env = env
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_liveness", "run", "--quiet", "--config", str(self.config)],
                                     cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=self._log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> float:
        try:
            return self.notify.wait_for("READY", timeout=READY_TIMEOUT_S, proc=self.proc)
        except AssertionError:
            text = self.log()
            if self.proc.poll() is not None and "models fetch" in text:
                pytest.skip(f"face models are not fetched on this machine: {text.strip().splitlines()[-1]}")
            raise AssertionError(f"daemon never became ready; log tail:\n{text[-3000:]}")

    def status_cli(self) -> subprocess.CompletedProcess:
        env = {k: v for k, v in self.env.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        return subprocess.run([sys.executable, "-m", "edge_liveness", "status", "--json"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)

    def terminate_and_check(self) -> None:
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=10)
        took = time.monotonic() - t0
        self.notify.wait_for("STOPPING", since=t0, timeout=1)
        assert code == 0, self.log()[-3000:]
        assert took < 5.0, f"SIGTERM took {took:.1f} s (systemd's TimeoutStopSec budget is for the flush, not a hang)"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()
        self.notify.close()


@pytest.fixture
def daemon_factory(tmp_path):
    made: list[Daemon] = []

    def make(source: Path, loop: bool, **kw) -> Daemon:
        d = Daemon(tmp_path, source, loop, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def test_ready_watchdog_metrics_reload_and_stop(daemon_factory):
    video = shared_file("video", "tranvanluyt_real.mp4")
    d = daemon_factory(video, loop=True)
    ready = d.wait_ready()
    proc, notify = d.proc, d.notify

    # Frames flow: pings keep coming, never further apart than the watchdog allows.
    time.sleep(4.0)
    pings = notify.times("WATCHDOG", since=ready)
    assert len(pings) >= 2, notify.snapshot()[-10:]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) < WATCHDOG_S, gaps
    assert any("fps" in m.get("STATUS", "") for _, m in notify.snapshot())

    # /metrics counters move during the replay; /healthz says alive.
    n1 = _frames_total(d.port)
    time.sleep(1.5)
    n2 = _frames_total(d.port)
    assert n2 > n1 > 0
    code, body = _get(f"http://127.0.0.1:{d.port}/healthz")
    assert code == 200 and json.loads(body)["status"] == "ok"

    # `edge-liveness status` sees a running daemon with this pid.
    r = d.status_cli()
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["running"] is True, r.stdout + r.stderr
    assert out["status"]["pid"] == proc.pid

    # SIGHUP with a broken config: RELOADING, then READY again on the OLD config, still running.
    d.config.write_text("[camera]\nfps = -5\n")
    t_hup = time.monotonic()
    proc.send_signal(signal.SIGHUP)
    notify.wait_for("RELOADING", since=t_hup, timeout=10, proc=proc)
    notify.wait_for("READY", since=t_hup, timeout=30, proc=proc)
    time.sleep(2.5)
    assert proc.poll() is None
    assert "camera.fps" in d.log() and "keeping the running config" in d.log()
    assert len(notify.times("WATCHDOG", since=t_hup + 0.5)) >= 1  # still processing frames
    assert _frames_total(d.port) > n2

    # A good config reloads.
    d.config.write_text('[logging]\nlevel = "INFO"\n[decision]\ncooldown_s = 2.0\n')
    t_hup2 = time.monotonic()
    proc.send_signal(signal.SIGHUP)
    notify.wait_for("READY", since=t_hup2, timeout=60, proc=proc)
    assert "reloaded" in d.log()

    d.terminate_and_check()
    r = d.status_cli()
    assert r.returncode == 3 and json.loads(r.stdout)["running"] is False


def _mjpeg_frames(video: Path, n: int) -> list[bytes]:
    import cv2

    cap = cv2.VideoCapture(str(video))
    out = []
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            cap.release()
            cap = cv2.VideoCapture(str(video))
            continue
        out.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    cap.release()
    return out


def test_watchdog_stops_when_the_camera_stalls(daemon_factory, tmp_path):
    """A FIFO camera that stops producing (the writer keeps it open, like a hung driver)."""
    video = shared_file("video", "tranvanluyt_real.mp4")
    fifo = tmp_path / "camera.mjpeg"
    os.mkfifo(fifo)
    frames = _mjpeg_frames(video, 90)
    stalled_at: list[float] = []
    release = threading.Event()

    def camera() -> None:
        fd = os.open(fifo, os.O_WRONLY)  # blocks until the daemon opens its camera
        try:
            for jpg in frames:  # ~4.5 s of frames at 20 fps
                os.write(fd, jpg)
                time.sleep(0.05)
            stalled_at.append(time.monotonic())
            release.wait(60)  # stalled: open, silent
        except BrokenPipeError:
            pass
        finally:
            os.close(fd)

    writer = threading.Thread(target=camera, daemon=True)
    writer.start()
    # FFmpeg probes 5 MB of a stream before it returns from open; a small probe lets frames flow live.
    d = daemon_factory(fifo, loop=False,
                       extra_env={"OPENCV_FFMPEG_CAPTURE_OPTIONS": "probesize;65536|analyzeduration;0|fpsprobesize;0"})
    try:
        ready = d.wait_ready()
        deadline = time.monotonic() + 30
        while not stalled_at and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stalled_at, "the fake camera never finished sending"
        stall = stalled_at[0]
        assert d.notify.times("WATCHDOG", since=ready), "no watchdog pings while frames flowed"

        time.sleep(6.5)  # longer than healthz's 5 s window and 3x the watchdog interval
        assert d.proc.poll() is None, "the daemon should keep running; restarting is systemd's job"
        late = d.notify.times("WATCHDOG", since=stall + 1.0)
        assert late == [], f"watchdog pinged {len(late)} times after the camera stalled"
        code, body = _get(f"http://127.0.0.1:{d.port}/healthz")
        assert code == 503 and json.loads(body)["status"] == "stalled"
        statuses = [m["STATUS"] for t, m in d.notify.snapshot() if "STATUS" in m and t > stall]
        assert any("stalled" in s for s in statuses), statuses

        d.terminate_and_check()  # SIGTERM with the camera hung still exits cleanly and quickly
    finally:
        release.set()
        writer.join(timeout=5)
