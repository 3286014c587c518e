"""sd_notify client against a real AF_UNIX datagram socket owned by the test."""

from __future__ import annotations

import os
import socket
import time

import pytest

from edge_liveness.service.sdnotify import Notifier


def _recv_all(sock: socket.socket) -> list[dict[str, str]]:
    out = []
    sock.settimeout(1.0)
    while True:
        try:
            data = sock.recv(4096)
        except (socket.timeout, BlockingIOError):
            return out
        out.append(dict(line.split("=", 1) for line in data.decode().split("\n")))
        sock.settimeout(0.05)


@pytest.fixture
def path_socket(tmp_path):
    path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    yield s, str(path)
    s.close()


@pytest.fixture
def abstract_socket():
    name = f"edge-liveness-test-{os.getpid()}-{time.monotonic_ns()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    yield s, "@" + name
    s.close()


def test_path_socket_receives_every_message(path_socket):
    sock, path = path_socket
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert n.ready(status="loop running")
    assert n.watchdog()
    assert n.status("camera\nreopening")  # a newline must not split the field
    assert n.reloading()
    assert n.stopping()
    msgs = _recv_all(sock)
    assert msgs[0] == {"READY": "1", "STATUS": "loop running"}
    assert msgs[1] == {"WATCHDOG": "1"}
    assert msgs[2] == {"STATUS": "camera reopening"}
    assert msgs[3]["RELOADING"] == "1"
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before <= int(msgs[3]["MONOTONIC_USEC"]) <= after
    assert msgs[4] == {"STOPPING": "1"}
    n.close()


def test_abstract_socket(abstract_socket):
    sock, name = abstract_socket
    n = Notifier({"NOTIFY_SOCKET": name})
    assert n.ready()
    assert _recv_all(sock) == [{"READY": "1"}]


def test_not_under_systemd_is_a_no_op():
    n = Notifier({})
    assert not n.enabled
    assert n.watchdog_interval_s is None
    assert n.ready() is False and n.watchdog() is False and n.stopping() is False


def test_send_error_is_logged_once_and_never_raised(tmp_path, caplog):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    with caplog.at_level("WARNING"):
        for _ in range(5):
            assert n.status("x") is False
    warnings = [r for r in caplog.records if "notify socket" in r.getMessage()]
    assert len(warnings) == 1


def test_watchdog_pings_are_throttled(path_socket):
    sock, path = path_socket
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    assert n.min_ping_interval_s == pytest.approx(0.5)
    sent = [n.watchdog() for _ in range(100)]  # a frame loop at full speed
    assert sent[0] is True and sum(sent) == 1
    assert n.watchdog(force=True) is True
    assert _recv_all(sock) == [{"WATCHDOG": "1"}, {"WATCHDOG": "1"}]


def test_watchdog_interval_is_half_of_watchdog_usec():
    assert Notifier({"WATCHDOG_USEC": "10000000"}).watchdog_interval_s == pytest.approx(5.0)
    own = Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())})
    assert own.watchdog_interval_s == pytest.approx(2.0)
    # Meant for another process (inherited environment): do not ping.
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "junk"}).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval_s is None


def test_reads_process_environment(monkeypatch, path_socket):
    sock, path = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    n = Notifier()
    assert n.watchdog_interval_s == pytest.approx(1.5)
    n.watchdog()
    assert _recv_all(sock) == [{"WATCHDOG": "1"}]
