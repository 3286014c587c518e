"""The publish stage of `edge-liveness bench`: a real outbox, and a real broker when one is at hand."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from edge_liveness.bench.stats import BenchError, _r, summarize


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None)


@contextmanager
def broker(spec: str | None, allow_start: bool) -> Iterator[tuple[str, int, str] | None]:
    """(host, port, how) of a broker for the run: the given one, or a mosquitto started on a free port."""
    if spec:
        host, _, port = spec.rpartition(":")
        if not host or not port.isdigit():
            raise BenchError(f"--broker {spec}: use HOST:PORT, e.g. 127.0.0.1:1883")
        yield host, int(port), "given"
        return
    exe = _mosquitto_binary() if allow_start else None
    if exe is None:
        yield None
        return
    port = _free_port()
    proc = subprocess.Popen([exe, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 5.0
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise BenchError(f"mosquitto exited at start (code {proc.returncode}): give --broker HOST:PORT or --no-broker")
                time.sleep(0.02)
        else:
            raise BenchError("mosquitto did not accept connections within 5 s: give --broker HOST:PORT or --no-broker")
        yield "127.0.0.1", port, f"mosquitto started by the bench ({exe})"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def publisher_for(settings, broker_addr: tuple[str, int, str] | None) -> Iterator[tuple[Any, Any, str]]:
    """A real Publisher over a real outbox in a temp dir (and an MQTT link when a broker is given)."""
    from edge_liveness.events.outbox import Outbox
    from edge_liveness.events.publisher import Publisher

    with tempfile.TemporaryDirectory(prefix="edge-liveness-bench-") as d:
        outbox = Outbox.open(Path(d) / "outbox.db", settings.storage)
        link, how = None, "SQLite outbox only (no broker)"
        if broker_addr is not None:
            from edge_liveness.events.mqtt import MqttLink

            host, port, origin = broker_addr
            s = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"host": host, "port": port, "enabled": True})})
            link = MqttLink(s, client_id=f"edge-liveness-bench-{os.getpid()}")
            link.start()
            end = time.monotonic() + 5.0
            while not link.connected and time.monotonic() < end:
                time.sleep(0.01)
            if not link.connected:
                link.stop()
                raise BenchError(f"cannot connect to the MQTT broker at {host}:{port}: check --broker or give --no-broker")
            how = f"SQLite outbox + MQTT QoS 1 to {host}:{port} ({origin})"
        pub = Publisher(outbox, link, settings.device.id, b"bench-signing-key")
        try:
            yield pub, link, how
        finally:
            if link is not None:
                pub.flush(timeout=5.0)
            pub.close()
            if link is not None:
                link.stop()
            outbox.close()


def publish_bench(settings, broker_addr, body: dict[str, Any], n: int) -> dict[str, Any]:
    """``n`` submits of one decision body: journal (fsync'd) + hand to MQTT; then wait for the acks."""
    with publisher_for(settings, broker_addr) as (pub, link, how):
        ms = []
        for _ in range(n):
            t = time.perf_counter()
            pub.submit("decision", body)
            ms.append((time.perf_counter() - t) * 1e3)
        out = {"how": how, "submit": summarize(ms)}
        if link is not None:
            t = time.perf_counter()
            drained = pub.flush(timeout=10.0)
            out["all_acked"] = drained
            out["ack_wait_after_last_submit_ms"] = _r((time.perf_counter() - t) * 1e3)
        return out
