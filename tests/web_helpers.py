"""A real daemon with the commissioning page on, and small HTTP helpers, for the web tests."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 120.0  # model loading on a busy 2-core machine
TOKEN = "door-7f3c9a-commissioning"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDaemon:
    """`edge-liveness run` on a looping recording, web page on, MQTT off, logging at DEBUG
    (so a token that leaked into any log line would show)."""

    def __init__(self, tmp: Path, source: Path, host: str = "127.0.0.1", token: str | None = TOKEN,
                 extra: dict[str, str] | None = None):
        from edge_liveness.liveness.model import default_model_path

        if not default_model_path().is_file():
            pytest.skip(f"no shipped liveness model at {default_model_path()}")
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = host
        self.secrets = tmp / "secrets"
        self.secrets.mkdir(exist_ok=True)
        if token is not None:
            (self.secrets / "web_token").write_text(token + "\n")
        self.state = tmp / "state"
        self.log_path = tmp / "daemon.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_LIVENESS_") and k not in
               ("NOTIFY_SOCKET", "WATCHDOG_USEC", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY")}
        env.update({
            "EDGE_LIVENESS_CAMERA__SOURCE": str(source), "EDGE_LIVENESS_CAMERA__LOOP": "true",
            "EDGE_LIVENESS_CAMERA__REALTIME": "true", "EDGE_LIVENESS_MQTT__ENABLED": "false",
            "EDGE_LIVENESS_STORAGE__STATE_DIR": str(self.state), "EDGE_LIVENESS_LOGGING__LEVEL": "DEBUG",
            "EDGE_LIVENESS_WEB__ENABLED": "true", "EDGE_LIVENESS_WEB__HOST": host,
            "EDGE_LIVENESS_WEB__PORT": str(self.port),
            **(extra or {}),
        })
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_liveness", "run", "--quiet", "--secrets-dir",
                                      str(self.secrets)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=self._log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_running(self) -> dict[str, Any]:
        """Until the frame loop reports frames per second on /api/status."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = self.log()
                if "models fetch" in text:
                    pytest.skip(f"face models are not fetched here: {text.strip().splitlines()[-1]}")
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{text[-3000:]}")
            try:
                code, st = self.get_json("/api/status", token=TOKEN)
                if code == 200 and st["health"].get("fps", 0) > 0 and st["model"]:
                    return st
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"daemon never ran frames; log tail:\n{self.log()[-3000:]}")

    # -------------------------------------------------------------- HTTP
    def conn(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        c = self.conn()
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def get_json(self, path: str, token: str | None = None, **kw: Any) -> tuple[int, Any]:
        code, _, body = self.request("GET", path, token=token, **kw)
        return code, json.loads(body)

    def post(self, path: str, body: Any, token: str | None = TOKEN, **kw: Any) -> tuple[int, Any]:
        code, _, raw = self.request("POST", path, body=body, token=token, **kw)
        return code, json.loads(raw)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode


def read_mjpeg(resp: Any, n: int, timeout: float = 20.0) -> list[bytes]:
    """The first ``n`` JPEG parts of a multipart/x-mixed-replace response."""
    frames: list[bytes] = []
    t0 = time.monotonic()
    while len(frames) < n and time.monotonic() - t0 < timeout:
        line = resp.fp.readline()
        if not line:
            break
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
            resp.fp.readline()  # blank line
            frames.append(resp.fp.read(length))
    return frames
