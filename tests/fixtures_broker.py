"""A real mosquitto on 127.0.0.1 for tests: plain (anonymous) or TLS + password.

``mosquitto_broker`` yields a started ``Broker``; ``stop()``/``start()`` restart it on the same
port with its persistence file, so a subscriber with a persistent session keeps its queue across
the restart. ``make_tls_broker(users=...)`` starts a TLS listener that needs a password; the CA and
server certificate (and an unrelated CA, for "untrusted" tests) are made once per session with the
openssl CLI.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    def json(self) -> Any:
        return json.loads(self.payload)


class Collector:
    """A paho subscriber that records every message; ``wait_for`` polls a predicate."""

    def __init__(self, host: str, port: int, topics: list[str], client_id: str | None = None,
                 persistent: bool = False, **connect_kw: Any):
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.topics = topics
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
                                  clean_session=not persistent)
        self.client.reconnect_delay_set(0.1, 0.5)
        if connect_kw.get("tls"):
            self.client.tls_set(ca_certs=connect_kw["tls"])
        if connect_kw.get("username"):
            self.client.username_pw_set(connect_kw["username"], connect_kw.get("password"))
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async(host, port, 30)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise RuntimeError(f"test subscriber could not subscribe at {host}:{port}")

    def _on_connect(self, client, userdata, flags, rc, props):
        if not rc.is_failure:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos))

    def on(self, topic: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, pred: Callable[["Collector"], bool], timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred(self):
                return True
            time.sleep(0.02)
        return pred(self)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Broker:
    """One mosquitto process; ``start()`` again after ``stop()`` reuses the port and persistence."""

    def __init__(self, workdir: Path, tls: dict[str, Path] | None = None, users: dict[str, str] | None = None):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.tls = tls
        self.users = users or {}
        self.proc: subprocess.Popen | None = None
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self._collectors: list[Collector] = []
        self._write_conf()

    def _write_conf(self) -> None:
        lines = [f"listener {self.port} {self.host}", "persistence true",
                 f"persistence_location {self.workdir}/", f"log_dest file {self.log}",
                 "log_type error", "log_type warning", "log_type notice",
                 # As root mosquitto drops to user 'mosquitto', which cannot read a test's temp dir.
                 f"user {getpass.getuser()}"]
        if self.users:
            pw = self.workdir / "passwd"
            pw.unlink(missing_ok=True)
            for i, (user, password) in enumerate(self.users.items()):
                cmd = ["mosquitto_passwd", "-b", str(pw), user, password]
                if i == 0:
                    cmd.insert(1, "-c")
                subprocess.run(cmd, check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            lines += [f"cafile {self.tls['ca']}", f"certfile {self.tls['cert']}", f"keyfile {self.tls['key']}"]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 5.0) -> "Broker":
        if not Path(MOSQUITTO).exists():
            pytest.skip(f"{MOSQUITTO} not installed (apt install mosquitto)")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = self.log.read_text() if self.log.exists() else ""
                raise RuntimeError(f"mosquitto exited ({self.proc.returncode}): {err} {log[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not accept on {self.host}:{self.port} within {timeout} s")

    def stop(self) -> None:
        """SIGTERM: mosquitto writes its persistence file and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def collect(self, topics: list[str] | str, **kw: Any) -> Collector:
        c = Collector(self.host, self.port, [topics] if isinstance(topics, str) else topics, **kw)
        self._collectors.append(c)
        return c

    def close(self) -> None:
        for c in self._collectors:
            try:
                c.close()
            except Exception:
                pass
        self.stop()


@pytest.fixture
def mosquitto_broker(tmp_path: Path):
    """A started anonymous broker on a free port (persistence on, so restarts keep sessions)."""
    b = Broker(tmp_path / "broker").start()
    yield b
    b.close()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "3", "-subj", f"/CN={name}", cwd=d)


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory) -> dict[str, Path]:
    """ca, cert, key (server, for 127.0.0.1/localhost) and other_ca (which signed nothing)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not installed")
    d = tmp_path_factory.mktemp("tls")
    _make_ca(d, "ca")
    _make_ca(d, "other_ca")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "server.key",
             "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "3", "-extfile", "san.ext", cwd=d)
    return {"ca": d / "ca.crt", "cert": d / "server.crt", "key": d / "server.key", "other_ca": d / "other_ca.crt"}


@pytest.fixture
def make_tls_broker(tmp_path: Path, tls_material):
    """Factory: ``make_tls_broker(users={"door": "secret"})`` -> started TLS broker needing a password."""
    made: list[Broker] = []

    def make(users: dict[str, str] | None = None) -> Broker:
        b = Broker(tmp_path / f"tls-broker-{len(made)}", tls=tls_material, users=users or {"door": "door-pass"})
        made.append(b)
        return b.start()

    yield make
    for b in made:
        b.close()
