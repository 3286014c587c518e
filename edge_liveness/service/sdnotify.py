"""systemd notify protocol (sd_notify(3)) without a dependency: datagrams to ``$NOTIFY_SOCKET``.

Outside systemd (no ``$NOTIFY_SOCKET``) every method is a no-op, so the daemon calls them
unconditionally. A send error is logged once and never raised: a broken notify socket must not
take the door's liveness loop down with it (systemd's watchdog will notice on its own).
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("edge_liveness.sdnotify")


def _socket_address(raw: str) -> str | bytes | None:
    if raw.startswith("@"):
        # Abstract namespace: the leading '@' stands for a NUL byte.
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    # vsock:... and other forms are not used on a door device; treat as "not under systemd".
    return None


class Notifier:
    """Sends READY/WATCHDOG/STATUS/RELOADING/STOPPING to the service manager."""

    def __init__(self, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self._address = _socket_address(raw) if raw else None
        self._sock: socket.socket | None = None
        self._warned = False
        if raw and self._address is None:
            log.warning("NOTIFY_SOCKET=%r is not a path or @abstract name; systemd notifications are off", raw)
        self.watchdog_interval_s = self._watchdog_interval(env)
        # The loop calls watchdog() every frame; systemd needs a ping per WatchdogSec, so send at
        # most one per quarter of it (one per second when no watchdog is set) to spare PID 1.
        self.min_ping_interval_s = min(1.0, self.watchdog_interval_s / 2) if self.watchdog_interval_s else 1.0
        self._last_ping = float("-inf")

    @staticmethod
    def _watchdog_interval(env) -> float | None:
        """Seconds between WATCHDOG=1 pings: half of WatchdogSec=, or None when no watchdog is on.

        ``WATCHDOG_PID`` names the process the watchdog is meant for; when it is another process
        (a child that inherited the environment), this one must not ping.
        """
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if not usec:
            return None
        if pid and pid.strip() != str(os.getpid()):
            return None
        try:
            value = int(usec)
        except ValueError:
            log.warning("WATCHDOG_USEC=%r is not a number; watchdog pings are off", usec)
            return None
        if value <= 0:
            return None
        return value / 1e6 / 2

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; True when sent."""
        if self._address is None:
            return False
        data = "\n".join(fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(data, self._address)
            return True
        except OSError as e:
            if not self._warned:
                self._warned = True
                log.warning("cannot send to systemd's notify socket (%s); continuing without notifications", e)
            return False

    def ready(self, status: str | None = None) -> bool:
        fields = ["READY=1"]
        if status:
            fields.append(f"STATUS={_one_line(status)}")
        return self.notify(*fields)

    def watchdog(self, force: bool = False) -> bool:
        """WATCHDOG=1, throttled to ``min_ping_interval_s``; True when a datagram went out."""
        now = time.monotonic()
        if not force and now - self._last_ping < self.min_ping_interval_s:
            return False
        sent = self.notify("WATCHDOG=1")
        if sent:
            self._last_ping = now
        return sent

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def reloading(self) -> bool:
        # Type=notify-reload (systemd >= 253) requires MONOTONIC_USEC; older managers ignore it.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    # A newline would start a new KEY=VALUE field in the datagram.
    return " ".join(str(text).split())
