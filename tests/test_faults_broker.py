"""Broker faults thrown at the real daemon: absent at start, killed, restarted, refusing the login,
presenting an untrusted certificate, slow. Decisions wait in the journal and all arrive, each once.

The subscriber is a persistent MQTT session (clean_session false) made before the daemon
publishes, so the broker queues for it while it reconnects after a broker restart, as a real
door controller would set up.
"""

from __future__ import annotations

import re
import time

import pytest

from conftest import shared_file
from fault_helpers import (DaemonProc, DelayProxy, EventSink, assert_one_clear_error, base_env, journal_rows,
                           topic_base, wait_until)

pytestmark = pytest.mark.slow


def _video():
    return shared_file("video", "tranvanluyt_real.mp4")


def _assert_all_delivered(d: DaemonProc, sink: EventSink, state_dir, exactly_once: bool, timeout: float = 30.0) -> int:
    """Every decision the daemon made (stdout) arrived (deduplicated), signed, and is marked delivered."""
    made = {e["event_id"] for e in d.decisions()}
    assert made, "the daemon made no decision"
    assert sink.wait_for(lambda s: made <= s.decisions().keys(), timeout), \
        f"lost {len(made - sink.decisions().keys())} of {len(made)} decisions"
    assert sink.bad_signatures() == []
    if exactly_once:
        assert sink.duplicates() == 0, f"{sink.duplicates()} duplicate deliveries"
    assert made <= {r[1] for r in journal_rows(state_dir)}, "a decision that went out is missing from the journal"
    # The PUBACK is marked in the journal by the publisher's worker a moment later.
    wait_until(lambda: not [r for r in journal_rows(state_dir) if r[1] in made and r[2] is None], 10,
               "every delivered decision marked delivered in the journal")
    return len(made)


def test_broker_absent_at_start_killed_and_restarted(mosquitto_broker, tmp_path, face_models):
    b = mosquitto_broker
    sink = EventSink(b.host, b.port, topic_base(), client_id="door-controller")
    b.stop()  # the session persists in the broker's file; the broker is now absent
    state = tmp_path / "state"
    d = DaemonProc(tmp_path, base_env(state, _video(), b.port))
    try:
        # Absent at start: one line, then decisions pile up in the journal.
        d.wait_log(r"broker 127\.0\.0\.1:\d+ refused the connection .*retrying", timeout=120)
        d.wait_ready()
        d.wait_decisions(3)
        d.wait_notify("STATUS", "broker down", timeout=10)
        backlog = d.wait_notify("STATUS", "backlog", timeout=5)
        assert backlog
        assert sum("refused the connection" in s for s in d.log_lines()) == 1, "retries must not flood the log"

        # The broker comes: the backlog drains, each decision exactly once.
        b.start()
        d.wait_log(r"connected to 127\.0\.0\.1:\d+", timeout=30)
        n0 = _assert_all_delivered(d, sink, state, exactly_once=True)

        # Killed (SIGKILL) mid-run, decisions made meanwhile, restarted.
        t_kill = time.monotonic()
        b.proc.kill()
        b.proc.wait()
        lost = d.wait_log(r"connection to .* lost \(the broker closed it or the network dropped\); reconnecting, "
                          r"events wait in the journal", timeout=30, since=t_kill)
        assert "Unspecified error" not in d.log(), lost
        made_before = len(d.decisions())
        d.wait_decisions(made_before + 2)
        b.start()
        d.wait_log(r"connected to .*\(reconnect \d+\)", timeout=30, since=t_kill)
        n1 = _assert_all_delivered(d, sink, state, exactly_once=False)

        # A clean restart (SIGTERM: what `systemctl restart mosquitto` does).
        b.stop()
        made_before = len(d.decisions())
        d.wait_decisions(made_before + 2)
        b.start()
        n2 = _assert_all_delivered(d, sink, state, exactly_once=False)
        assert n0 < n1 < n2
        # QoS 1 is at-least-once; a resend after a lost PUBACK is the only allowed duplicate.
        assert sink.duplicates() <= 2, sink.duplicates()
        wait_until(lambda: any(s.get("backlog") == 0 for s in sink.states()[-3:]), 10, "state backlog 0")
        assert d.stop() == 0
    finally:
        d.close()
        sink.close()


def _tls_env(b, ca, **extra):
    return dict(mqtt__tls=True, mqtt__ca_file=str(ca), mqtt__username="door", mqtt__port=b.port, **extra)


def _restart_fixed(tmp_path, state, b, tls_material, name):
    """The operator fixes the secret/CA and restarts the service: the old backlog goes out."""
    env = base_env(state, _video(), b.port, **_tls_env(b, tls_material["ca"]))
    return DaemonProc(tmp_path, env, secrets={"signing_key": "fault-tests-signing-key-0123456789abcdef",
                                               "mqtt_password": "door-pass"}, name=name)


@pytest.mark.parametrize("fault", ["bad_password", "untrusted_certificate"])
def test_broker_refuses_then_fixed_and_restarted_delivers_the_backlog(fault, make_tls_broker, tls_material, tmp_path,
                                                                       face_models):
    b = make_tls_broker(users={"door": "door-pass", "controller": "ctl-pass"})
    sink = EventSink(b.host, b.port, topic_base(), client_id="door-controller", tls=str(tls_material["ca"]),
                     username="controller", password="ctl-pass")
    state = tmp_path / "state"
    if fault == "bad_password":
        env = base_env(state, _video(), b.port, **_tls_env(b, tls_material["ca"]))
        secrets = {"signing_key": "fault-tests-signing-key-0123456789abcdef", "mqtt_password": "wrong"}
        needle = r"refused the login .*check mqtt\.username and the mqtt_password secret; retrying"
    else:
        env = base_env(state, _video(), b.port, **_tls_env(b, tls_material["other_ca"]))
        secrets = {"signing_key": "fault-tests-signing-key-0123456789abcdef", "mqtt_password": "door-pass"}
        needle = r"ERROR .*TLS: the certificate of 127\.0\.0\.1:\d+ is not trusted .*set mqtt\.ca_file"
    d1 = DaemonProc(tmp_path, env, secrets=secrets, name="refused")
    d2 = None
    try:
        d1.wait_log(needle, timeout=120)
        d1.wait_ready()
        d1.wait_decisions(3)
        time.sleep(1.5)  # several reconnect attempts: still one line
        assert sum(bool(re.search(needle, s)) for s in d1.log_lines()) == 1
        assert sink.decisions() == {}
        made = {e["event_id"] for e in d1.decisions()}
        assert d1.stop() == 0  # a stop while the broker refuses is still quick and clean
        assert made <= {r[1] for r in journal_rows(state) if r[2] is None}, "undelivered decisions must stay pending"

        d2 = _restart_fixed(tmp_path, state, b, tls_material, "fixed")
        d2.wait_log(r"connected to 127\.0\.0\.1", timeout=120)
        assert sink.wait_for(lambda s: made <= s.decisions().keys(), 30), \
            f"lost {len(made - sink.decisions().keys())} of {len(made)} decisions from the refused run"
        assert sink.duplicates() == 0
        wait_until(lambda: not [r for r in journal_rows(state) if r[1] in made and r[2] is None], 10,
                   "the old backlog marked delivered")
        assert d2.stop() == 0
    finally:
        d1.close()
        if d2 is not None:
            d2.close()
        sink.close()


def test_slow_broker_link_delivers_everything_once(mosquitto_broker, tmp_path, face_models):
    b = mosquitto_broker
    proxy = DelayProxy(b.host, b.port, delay_s=0.4)  # 0.8 s round trip
    sink = EventSink(b.host, b.port, topic_base())
    state = tmp_path / "state"
    d = DaemonProc(tmp_path, base_env(state, _video(), proxy.port, mqtt__keepalive_s=5))
    try:
        d.wait_ready()
        d.wait_log(r"connected to 127\.0\.0\.1", timeout=30)
        d.wait_decisions(6)
        # The frame loop does not wait for the network: frames keep flowing at the camera's pace.
        t = time.monotonic()
        time.sleep(2.0)
        assert len(d.notify.times("WATCHDOG", since=t)) >= 2
        _assert_all_delivered(d, sink, state, exactly_once=True)
        assert proxy.connections == 1, "a slow link must not cause reconnects"
        assert d.stop() == 0
    finally:
        d.close()
        proxy.close()
        sink.close()


def test_missing_tls_file_is_one_line_and_exit_2(tmp_path, face_models):
    env = base_env(tmp_path / "state", _video(), 1883, mqtt__tls=True, mqtt__ca_file=str(tmp_path / "nope.crt"))
    d = DaemonProc(tmp_path, env)
    try:
        code = d.wait_exit(120)
        assert_one_clear_error(d, code, "mqtt.ca_file")
    finally:
        d.close()
