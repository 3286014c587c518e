"""Prometheus metrics: counters move, the text parses, /healthz and /metrics over real HTTP."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from edge_liveness.service.metrics import Metrics, MetricsError  # noqa: E402


def _samples(m: Metrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_counters_gauges_histograms_move():
    m = Metrics(enabled=True)
    m.frame({"detect": 2.0, "landmarks": 3.0})
    m.frame({"detect": 40.0})
    m.dropped(3)
    m.corrupt_frame()
    m.decision("live", "blink")
    m.decision("live", "blink")
    m.decision("spoof", "model")
    m.set_backlog(7)
    m.reconnect()
    m.connected(True)
    m.camera_reopen()
    m.set_fps(14.5)
    s = _samples(m)
    assert s[("edge_liveness_frames_total", ())] == 2
    assert s[("edge_liveness_frames_dropped_total", ())] == 3
    assert s[("edge_liveness_corrupt_frames_total", ())] == 1
    assert s[("edge_liveness_decisions_total", (("reason", "blink"), ("result", "live")))] == 2
    assert s[("edge_liveness_decisions_total", (("reason", "model"), ("result", "spoof")))] == 1
    assert s[("edge_liveness_backlog", ())] == 7
    assert s[("edge_liveness_mqtt_reconnects_total", ())] == 1
    assert s[("edge_liveness_mqtt_connected", ())] == 1
    assert s[("edge_liveness_camera_reopens_total", ())] == 1
    assert s[("edge_liveness_fps", ())] == 14.5
    det = (("stage", "detect"),)
    assert s[("edge_liveness_stage_latency_seconds_count", det)] == 2
    assert s[("edge_liveness_stage_latency_seconds_sum", det)] == pytest.approx(0.042)
    # 2 ms falls in the 2 ms bucket, 40 ms does not.
    assert s[("edge_liveness_stage_latency_seconds_bucket", (("le", "0.002"), ("stage", "detect")))] == 1
    m.connected(False)
    assert _samples(m)[("edge_liveness_mqtt_connected", ())] == 0


def test_each_instance_has_its_own_registry():
    a, b = Metrics(True), Metrics(True)  # would raise "Duplicated timeseries" on the global registry
    a.frame({})
    assert _samples(a)[("edge_liveness_frames_total", ())] == 1
    assert _samples(b)[("edge_liveness_frames_total", ())] == 0


def test_disabled_is_a_no_op():
    m = Metrics(enabled=False)
    m.frame({"detect": 1.0}); m.decision("live", "blink"); m.set_backlog(1); m.reconnect()
    m.connected(True); m.corrupt_frame(); m.dropped(2); m.camera_reopen(); m.set_fps(3.0)
    assert m.exposition() == b"" and m.serve("127.0.0.1", 0) == 0
    assert not hasattr(m, "registry")


def test_only_loopback_is_served():
    with pytest.raises(MetricsError, match="loopback"):
        Metrics(True).serve("0.0.0.0", 0)


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_http_healthz_and_metrics():
    m = Metrics(True, alive_window_s=0.5)
    port = m.serve("127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{port}"
        code, ctype, body = _get(base + "/healthz")
        assert code == 503 and json.loads(body)["status"] == "stalled"  # no frame yet
        m.frame({"detect": 1.0})
        m.set_fps(10)
        code, ctype, body = _get(base + "/healthz")
        assert code == 200 and ctype == "application/json"
        h = json.loads(body)
        assert h["status"] == "ok" and h["fps"] == 10 and h["last_frame_age_s"] < 0.5
        code, ctype, body = _get(base + "/metrics")
        assert code == 200 and ctype.startswith("text/plain")
        fams = {f.name for f in text_string_to_metric_families(body)}
        assert {"edge_liveness_frames", "edge_liveness_stage_latency_seconds"} <= fams
        time.sleep(0.6)  # the loop stops producing frames
        assert _get(base + "/healthz")[0] == 503
        assert _get(base + "/nope")[0] == 404
    finally:
        m.close()


def test_port_in_use_is_one_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(MetricsError, match="health.port"):
            Metrics(True).serve("127.0.0.1", port)


def test_missing_prometheus_client_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_prometheus(name, *a, **kw):
        if name == "prometheus_client" or name.startswith("prometheus_client."):
            raise ImportError(name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_prometheus)
    with pytest.raises(MetricsError, match=r"pip install 'edge-liveness\[metrics\]'"):
        Metrics(enabled=True)
    Metrics(enabled=False)  # disabled never needs it
