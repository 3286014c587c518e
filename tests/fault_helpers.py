"""A small harness for the fault tests: the real daemon as a subprocess, watched from outside.

``DaemonProc`` starts ``edge-liveness run`` with a config, environment and secrets directory, and
collects what an operator would see: its stderr log lines, its systemd notify datagrams (the test
owns NOTIFY_SOCKET), and the events it prints on stdout. ``EventSink`` subscribes to its MQTT topics
and keeps decisions deduplicated by ``event_id``. ``DelayProxy`` is a slow network between the
daemon and the broker; ``MjpegServer`` is an IP camera that can be unplugged and plugged back in.

Nothing here is a stand-in for the daemon's own parts: the models, broker and video are real.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest

REPO = Path(__file__).resolve().parent.parent
SIGNING_KEY = "fault-tests-signing-key-0123456789abcdef"
DEVICE_ID = "door-fault"
READY_TIMEOUT_S = 120.0  # model loading on a busy 2-core machine
TEST_MODEL_ENV = "EDGE_LIVENESS_TEST_LIVENESS_MODEL"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def liveness_model_path() -> Path:
    """The liveness model the tests run: the shipped one, else $EDGE_LIVENESS_TEST_LIVENESS_MODEL, else skip."""
    from edge_liveness.liveness.model import default_model_path

    shipped = default_model_path()
    if shipped.is_file():
        return shipped
    override = os.environ.get(TEST_MODEL_ENV, "")
    if override:
        if not Path(override).is_file():
            pytest.fail(f"{TEST_MODEL_ENV}={override} does not exist")
        return Path(override)
    pytest.skip(f"no shipped liveness model at {shipped} yet (or set {TEST_MODEL_ENV} to a .tflite with its "
                ".json manifest)")


def liveness_model_env() -> dict[str, str]:
    from edge_liveness.liveness.model import default_model_path

    path = liveness_model_path()
    return {} if path == default_model_path() else {"EDGE_LIVENESS_MODELS__LIVENESS": str(path)}


def clean_env() -> dict[str, str]:
    """This process's environment without anything that would steer the daemon."""
    drop = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY",
            "RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR")
    return {k: v for k, v in os.environ.items() if not k.startswith("EDGE_LIVENESS_") and k not in drop}


# ---------------------------------------------------------------- systemd's side of NOTIFY_SOCKET

class NotifyListener:
    """Records every datagram the daemon sends to NOTIFY_SOCKET, with its arrival time."""

    def __init__(self, path: Path):
        self.path = path
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode(errors="replace").split("\n") if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def snapshot(self) -> list[tuple[float, dict[str, str]]]:
        with self._lock:
            return list(self.messages)

    def times(self, key: str, since: float = 0.0) -> list[float]:
        return [t for t, m in self.snapshot() if key in m and t >= since]

    def statuses(self, since: float = 0.0) -> list[str]:
        return [m["STATUS"] for t, m in self.snapshot() if "STATUS" in m and t >= since]

    def wait_for(self, key: str, since: float = 0.0, timeout: float = 10.0, proc: subprocess.Popen | None = None,
                 value: str | None = None) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, m in self.snapshot():
                if t >= since and key in m and (value is None or value in m[key]):
                    return t
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"daemon exited with {proc.returncode} before {key}")
            time.sleep(0.05)
        raise AssertionError(f"no {key}{'~' + value if value else ''} within {timeout} s; got {self.snapshot()[-5:]}")

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=2)


# ---------------------------------------------------------------- the daemon

@dataclass
class LogLine:
    t: float  # monotonic arrival time
    text: str


def base_env(state_dir: Path, source: str | Path, mqtt_port: int | None, **extra: Any) -> dict[str, str]:
    """Settings that make decisions come fast on a looping recording; ``extra`` as SECTION__KEY=value."""
    env = {
        "EDGE_LIVENESS_DEVICE__ID": DEVICE_ID,
        "EDGE_LIVENESS_CAMERA__SOURCE": str(source),
        "EDGE_LIVENESS_CAMERA__LOOP": "true",
        "EDGE_LIVENESS_CAMERA__REALTIME": "true",
        "EDGE_LIVENESS_CAMERA__READ_TIMEOUT_S": "3",
        "EDGE_LIVENESS_CAMERA__REOPEN_INITIAL_S": "0.2",
        "EDGE_LIVENESS_CAMERA__REOPEN_MAX_S": "1",
        "EDGE_LIVENESS_ACTIVE__MODE": "off",
        "EDGE_LIVENESS_DECISION__COOLDOWN_S": "0.2",
        "EDGE_LIVENESS_DECISION__REARM": "cooldown",
        "EDGE_LIVENESS_STORAGE__STATE_DIR": str(state_dir),
        "EDGE_LIVENESS_HEALTH__HTTP": "false",
        "EDGE_LIVENESS_MQTT__ENABLED": "true" if mqtt_port else "false",
        "EDGE_LIVENESS_MQTT__HOST": "127.0.0.1",
        "EDGE_LIVENESS_MQTT__PORT": str(mqtt_port or 1883),
        "EDGE_LIVENESS_MQTT__RECONNECT_MIN_S": "0.2",
        "EDGE_LIVENESS_MQTT__RECONNECT_MAX_S": "1",
    }
    for k, v in extra.items():
        env[f"EDGE_LIVENESS_{k.upper()}"] = str(v).lower() if isinstance(v, bool) else str(v)
    return env


class DaemonProc:
    """``edge-liveness run`` as a subprocess, with everything it says collected."""

    def __init__(self, workdir: Path, env: dict[str, str], config_text: str = "", args: Iterable[str] = (),
                 secrets: dict[str, str] | None = None, watchdog_s: float = 3.0, model_env: bool = True,
                 name: str = "daemon"):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / f"{name}.toml"
        self.config.write_text(config_text)
        self.secrets_dir = workdir / f"{name}-secrets"
        self.secrets_dir.mkdir(exist_ok=True)
        for k, v in ({"signing_key": SIGNING_KEY} if secrets is None else secrets).items():
            (self.secrets_dir / k).write_text(v)
        self.notify = NotifyListener(workdir / f"{name}.notify")
        self.log_path = workdir / f"{name}.log"
        self.lines: list[LogLine] = []
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        full_env = clean_env()
        full_env.update(liveness_model_env() if model_env else {})
        full_env.update({"NOTIFY_SOCKET": str(self.notify.path), "WATCHDOG_USEC": str(int(watchdog_s * 1e6))})
        full_env.update(env)
        self.env = full_env
        cmd = [sys.executable, "-m", "edge_liveness", "run", "--config", str(self.config),
               "--secrets-dir", str(self.secrets_dir), *args]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._log_file = open(self.log_path, "a", encoding="utf-8")
        self._readers = [threading.Thread(target=self._read_stderr, daemon=True, name="stderr"),
                         threading.Thread(target=self._read_stdout, daemon=True, name="stdout")]
        for t in self._readers:
            t.start()

    # -- collection
    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            text = raw.decode(errors="replace").rstrip("\n")
            with self._lock:
                self.lines.append(LogLine(time.monotonic(), text))
            self._log_file.write(text + "\n")
            self._log_file.flush()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict):
                with self._lock:
                    self.events.append(obj)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        with self._lock:
            return "\n".join(line.text for line in self.lines)

    def log_lines(self, since: float = 0.0) -> list[str]:
        with self._lock:
            return [line.text for line in self.lines if line.t >= since]

    def decisions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e.get("type") == "decision"]

    # -- waiting
    def wait(self, pred: Callable[[], Any], timeout: float, what: str, allow_exit: bool = False) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            v = pred()
            if v:
                return v
            if not allow_exit and self.proc.poll() is not None:
                time.sleep(0.2)  # let the readers drain
                raise AssertionError(f"daemon exited ({self.proc.returncode}) while waiting for {what}; log tail:\n"
                                     f"{self.log()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"no {what} within {timeout:g} s; log tail:\n{self.log()[-3000:]}")

    def wait_log(self, pattern: str, timeout: float = 20.0, since: float = 0.0) -> str:
        rx = re.compile(pattern)

        def find() -> str | None:
            return next((s for s in self.log_lines(since) if rx.search(s)), None)

        return self.wait(find, timeout, f"log line /{pattern}/", allow_exit=True)

    def wait_notify(self, key: str, value: str | None = None, timeout: float = 20.0, since: float = 0.0) -> float:
        def find() -> float | None:
            return next((t for t, m in self.notify.snapshot()
                         if t >= since and key in m and (value is None or value in m[key])), None)

        return self.wait(find, timeout, f"notify {key}{'~' + value if value else ''}")

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        try:
            return self.wait_notify("READY", timeout=timeout)
        except AssertionError:
            text = self.log()
            if self.proc.poll() is not None and "models fetch" in text:
                pytest.skip(f"face models are not fetched on this machine: {text.strip().splitlines()[-1]}")
            raise

    def wait_decisions(self, n: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        return self.wait(lambda: self.decisions() if len(self.decisions()) >= n else None, timeout,
                         f"{n} decisions (have {len(self.decisions())})")

    def wait_exit(self, timeout: float = 60.0) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon still running after {timeout} s; log tail:\n{self.log()[-3000:]}") from None
        for t in self._readers:
            t.join(timeout=5)
        return code

    # -- control and probes
    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as systemd stops it; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _proc_status(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def rss_kb(self) -> int:
        return self._proc_status("VmRSS")

    def threads(self) -> int:
        return self._proc_status("Threads")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for t in self._readers:
            t.join(timeout=5)
        self._log_file.close()
        self.notify.close()


def assert_one_clear_error(d: DaemonProc, code: int, needle: str) -> str:
    """Exit code 2, no traceback, and exactly one error line, naming ``needle``; returns that line."""
    text = d.log()
    assert code == 2, f"exit code {code}, expected 2; log:\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    errors = [s for s in text.splitlines() if " ERROR " in s or s.startswith("config error:")]
    assert len(errors) == 1, f"expected one error line, got {errors}"
    assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


# ---------------------------------------------------------------- the subscriber's side

class EventSink:
    """Subscribes to the daemon's topics; decisions deduplicated by event_id, signatures checked."""

    def __init__(self, host: str, port: int, base: str, client_id: str | None = None, key: str = SIGNING_KEY,
                 **connect_kw: Any):
        from fixtures_broker import Collector

        self.base = base
        self.key = key.encode()
        self.collector = Collector(host, port, [f"{base}/events", f"{base}/state", f"{base}/availability",
                                                f"{base}/set/+/result"],
                                   client_id=client_id, persistent=client_id is not None, **connect_kw)

    def _decision_msgs(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.collector.on(f"{self.base}/events")]

    def decisions(self) -> dict[str, dict[str, Any]]:
        """event_id -> payload, each once."""
        return {d["event_id"]: d for d in self._decision_msgs()}

    def duplicates(self) -> int:
        msgs = self._decision_msgs()
        return len(msgs) - len({d["event_id"] for d in msgs})

    def bad_signatures(self) -> list[dict[str, Any]]:
        from edge_liveness.events import signing

        return [d for d in self._decision_msgs() if not signing.check(d, self.key)]

    def states(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.collector.on(f"{self.base}/state")]

    def results(self, name: str) -> list[dict[str, Any]]:
        return [m.json() for m in self.collector.on(f"{self.base}/set/{name}/result")]

    def wait_for(self, pred: Callable[["EventSink"], Any], timeout: float = 30.0) -> bool:
        return self.collector.wait_for(lambda _c: pred(self), timeout)

    def close(self) -> None:
        self.collector.close()


def topic_base(device_id: str = DEVICE_ID) -> str:
    return f"edge-liveness/{device_id}"


def publish(host: str, port: int, items: list[tuple[str, bytes | str]], qos: int = 1) -> None:
    """Publish raw payloads (commands) from a throw-away client and wait for them to be sent."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fault-cmd-{os.getpid()}-{time.monotonic_ns()}")
    c.connect(host, port, 30)
    c.loop_start()
    try:
        infos = [c.publish(t, p, qos=qos) for t, p in items]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


# ---------------------------------------------------------------- a slow network

class DelayProxy:
    """TCP proxy on 127.0.0.1 that delivers every chunk ``delay_s`` late, in both directions."""

    def __init__(self, target_host: str, target_port: int, delay_s: float):
        self.target = (target_host, target_port)
        self.delay_s = delay_s
        self.port = free_port()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, name="proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            self.connections += 1
            self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        import queue

        q: queue.Queue[tuple[float, bytes]] = queue.Queue()

        def writer() -> None:
            while True:
                due, data = q.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    dst.sendall(data)
                except OSError:
                    break
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        w = threading.Thread(target=writer, daemon=True)
        w.start()
        src.settimeout(None)
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            q.put((time.monotonic() + self.delay_s, data))
            if not data:
                break
        w.join(timeout=self.delay_s + 5)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass


# ---------------------------------------------------------------- an IP camera that can be unplugged

def video_jpegs(path: Path, n: int, quality: int = 80) -> list[bytes]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    out: list[bytes] = []
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            if not out:
                raise AssertionError(f"{path}: no frames")
            break
        out.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
    cap.release()
    return out


class MjpegServer:
    """An HTTP MJPEG camera (multipart/x-mixed-replace), like most IP cameras; ``stop()`` unplugs it."""

    def __init__(self, jpegs: list[bytes], fps: float = 15.0, port: int | None = None):
        self.jpegs = jpegs
        self.fps = fps
        self.port = port or free_port()
        self.server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._unplugged = threading.Event()
        self.clients = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> "MjpegServer":
        owner = self
        self._unplugged.clear()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.clients += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not owner._unplugged.is_set():
                        jpg = owner.jpegs[i % len(owner.jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpg)).encode() + b"\r\n\r\n" + jpg + b"\r\n")
                        i += 1
                        time.sleep(1.0 / owner.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="mjpeg", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Unplug: close the listener and end every stream."""
        self._unplugged.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


# ---------------------------------------------------------------- small utilities

def wait_until(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def journal_rows(state_dir: Path) -> list[tuple[int, str, float | None]]:
    """(seq, event_id, delivered_at) of every decision in the daemon's journal (read-only)."""
    from edge_liveness.events.journal_file import open_readonly

    conn = open_readonly(state_dir / "outbox.db")
    try:
        return [tuple(r) for r in conn.execute("SELECT seq, event_id, delivered_at FROM events WHERE kind='decision' "
                                               "ORDER BY seq")]
    finally:
        conn.close()
