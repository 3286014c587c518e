"""The MQTT link and the publisher against a real mosquitto: availability, events, outages, TLS, HA."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_liveness.config import load_settings
from edge_liveness.events.mqtt import MqttLink
from edge_liveness.events.outbox import Outbox
from edge_liveness.events.publisher import Publisher
from edge_liveness.events.verify import Verifier

KEY = "mqtt-test-key"
DEVICE = "door1"
BASE = f"edge-liveness/{DEVICE}"


def make_settings(broker, state_dir: Path, **mqtt):
    m = {"host": broker.host, "port": broker.port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.3, **mqtt}
    return load_settings(mqtt=m, device={"id": DEVICE}, storage={"state_dir": str(state_dir)},
                         security={"signing_key": KEY})


class Stack:
    """Outbox + link + publisher wired like the daemon does it."""

    def __init__(self, settings):
        self.settings = settings
        self.outbox = Outbox.open(settings.state_path / "outbox.db", settings.storage)
        self.link = MqttLink(settings)
        self.pub = Publisher(self.outbox, self.link, DEVICE, KEY.encode())
        self.link.start()

    def wait_connected(self, want: bool = True, timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.link.connected != want:
            time.sleep(0.02)
        return self.link.connected == want

    def close(self):
        self.pub.flush(1.0)
        self.link.stop()
        self.pub.close()
        self.outbox.close()


@pytest.fixture
def stack_factory():
    made = []

    def make(settings):
        s = Stack(settings)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def _body(i: int) -> dict:
    return {"result": "pass", "reason": None, "attempt_id": f"a{i}", "duration_s": 1.5}


def _unique_in_order(msgs) -> list[dict]:
    seen, out = set(), []
    for m in msgs:
        p = m.json()
        if p["event_id"] not in seen:
            seen.add(p["event_id"])
            out.append(p)
    return out


# A publisher in its own process, driven line by line on stdin, so the test can kill -9 it.
DRIVER = r"""
import sys
from edge_liveness.config import load_settings
from edge_liveness.service.logs import setup_logging
from edge_liveness.events.mqtt import MqttLink
from edge_liveness.events.outbox import Outbox
from edge_liveness.events.publisher import Publisher
import time
setup_logging("INFO")
host, port, state = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = load_settings(mqtt={"host": host, "port": port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.3},
                  device={"id": "door1"}, storage={"state_dir": state}, security={"signing_key": "mqtt-test-key"})
box = Outbox.open(s.state_path / "outbox.db", s.storage)
link = MqttLink(s)
pub = Publisher(box, link, "door1", b"mqtt-test-key")
link.start()
for line in sys.stdin:
    cmd, *arg = line.split()
    if cmd == "connected":
        end = time.monotonic() + 5
        while not link.connected and time.monotonic() < end:
            time.sleep(0.02)
        print("connected", link.connected, flush=True)
    elif cmd == "submit":
        for i in range(int(arg[0])):
            pub.submit("decision", {"result": "pass", "reason": None, "attempt_id": str(i)})
        print("submitted", flush=True)
    elif cmd == "flush":
        print("flushed", pub.flush(5.0), flush=True)
    elif cmd == "stop":
        link.stop()
        print("stopped", flush=True)
        break
"""


class Driver:
    def __init__(self, broker, state: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", DRIVER, broker.host, str(broker.port), str(state)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def do(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        out = self.proc.stdout.readline().strip()
        if not out:
            raise AssertionError(f"driver died: {self.proc.stderr.read()}")
        return out

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def test_availability_online_then_last_will_offline_on_kill_9(mosquitto_broker, tmp_path):
    sub = mosquitto_broker.collect(f"{BASE}/availability")
    d = Driver(mosquitto_broker, tmp_path / "state")
    assert d.do("connected") == "connected True"
    assert sub.wait_for(lambda c: [m.payload for m in c.on(f"{BASE}/availability")][-1:] == [b"online"])
    d.kill9()
    assert sub.wait_for(lambda c: [m.payload for m in c.on(f"{BASE}/availability")][-1:] == [b"offline"])
    # Retained: a client arriving later learns the device is offline.
    late = mosquitto_broker.collect(f"{BASE}/availability")
    assert late.wait_for(lambda c: c.on(f"{BASE}/availability"))
    m = late.on(f"{BASE}/availability")[0]
    assert m.payload == b"offline" and m.retain


def test_clean_stop_says_offline_and_every_connect_says_online(mosquitto_broker, tmp_path, stack_factory):
    st = stack_factory(make_settings(mosquitto_broker, tmp_path))
    assert st.wait_connected()
    mosquitto_broker.stop()
    assert st.wait_connected(False)
    mosquitto_broker.start()
    assert st.wait_connected(timeout=5)
    assert st.link.reconnects == 1
    late = mosquitto_broker.collect(f"{BASE}/availability")
    assert late.wait_for(lambda c: c.on(f"{BASE}/availability"))
    assert late.on(f"{BASE}/availability")[0].payload == b"online"  # re-sent after the broker restart
    st.link.stop()
    assert late.wait_for(lambda c: c.on(f"{BASE}/availability")[-1].payload == b"offline")


def test_events_arrive_at_qos1_signed_and_verify(mosquitto_broker, tmp_path, stack_factory):
    sub = mosquitto_broker.collect([f"{BASE}/events", f"{BASE}/prompt"])
    st = stack_factory(make_settings(mosquitto_broker, tmp_path))
    assert st.wait_connected()
    sent = [st.pub.submit("decision", _body(i)) for i in range(5)]
    prompt = st.pub.submit("prompt", {"attempt_id": "a9", "actions": ["blink", "nod"], "step_timeout_s": 5.0})
    assert st.pub.flush(5)
    assert st.pub.backlog == 0 and st.outbox.pending_count() == 0
    assert sub.wait_for(lambda c: len(c.on(f"{BASE}/events")) == 5 and len(c.on(f"{BASE}/prompt")) == 1)
    got = [m.json() for m in sub.on(f"{BASE}/events")]
    assert got == sent and sub.on(f"{BASE}/prompt")[0].json() == prompt
    assert all(m.qos == 1 and not m.retain for m in sub.messages)
    v = Verifier(KEY.encode())
    assert all(v.check(m.payload).ok for m in sorted(sub.messages, key=lambda m: m.json()["seq"]))


def test_broker_outage_mid_run_every_event_once_in_seq_order(mosquitto_broker, tmp_path, stack_factory):
    sub = mosquitto_broker.collect(f"{BASE}/events", client_id="persistent-sub", persistent=True)
    st = stack_factory(make_settings(mosquitto_broker, tmp_path))
    assert st.wait_connected()
    sent = [st.pub.submit("decision", _body(i)) for i in range(5)]
    assert st.pub.flush(5)
    mosquitto_broker.stop()
    assert st.wait_connected(False)
    sent += [st.pub.submit("decision", _body(i)) for i in range(5, 12)]
    assert st.pub.backlog == 7 and st.outbox.pending_count() == 7  # journaled, waiting
    mosquitto_broker.start()
    assert st.pub.flush(10), "backlog did not drain after the broker came back"
    assert sub.wait_for(lambda c: len(_unique_in_order(c.on(f"{BASE}/events"))) == 12, timeout=10)
    got = _unique_in_order(sub.on(f"{BASE}/events"))
    assert [p["event_id"] for p in got] == [p["event_id"] for p in sent]
    assert [p["seq"] for p in got] == sorted(p["seq"] for p in got)
    assert st.link.reconnects >= 1


def test_publisher_killed_mid_backlog_the_next_process_sends_it_all(mosquitto_broker, tmp_path):
    sub = mosquitto_broker.collect(f"{BASE}/events", client_id="persistent-sub2", persistent=True)
    state = tmp_path / "state"
    a = Driver(mosquitto_broker, state)
    assert a.do("connected") == "connected True"
    assert a.do("submit 6") == "submitted" and a.do("flush") == "flushed True"
    mosquitto_broker.stop()
    assert a.do("submit 9") == "submitted"  # journaled only: the broker is down
    a.kill9()
    mosquitto_broker.start()
    b = Driver(mosquitto_broker, state)
    assert b.do("connected") == "connected True"
    assert b.do("submit 2") == "submitted" and b.do("flush") == "flushed True"
    assert b.do("stop") == "stopped"
    assert sub.wait_for(lambda c: len(_unique_in_order(c.on(f"{BASE}/events"))) == 17, timeout=10)
    got = _unique_in_order(sub.on(f"{BASE}/events"))
    seqs = [p["seq"] for p in got]
    assert seqs == sorted(seqs)
    box = Outbox.open(state / "outbox.db")
    assert box.pending_count() == 0 and [r.event_id for r in box.rows()] == [p["event_id"] for p in got]
    v = Verifier(KEY.encode())
    assert all(v.check(p).ok for p in got)


def _lines(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_tls_with_password_connects_and_delivers(make_tls_broker, tls_material, tmp_path, stack_factory):
    b = make_tls_broker(users={"door": "s3cret-pass"})
    sub = b.collect(f"{BASE}/events", tls=str(tls_material["ca"]), username="door", password="s3cret-pass")
    st = stack_factory(make_settings(b, tmp_path, tls=True, ca_file=str(tls_material["ca"]), username="door",
                                     password="s3cret-pass"))
    assert st.wait_connected()
    p = st.pub.submit("decision", _body(1))
    assert sub.wait_for(lambda c: len(c.on(f"{BASE}/events")) == 1)
    assert sub.on(f"{BASE}/events")[0].json() == p


def test_wrong_password_one_clear_line_and_keeps_retrying(make_tls_broker, tls_material, tmp_path, caplog):
    b = make_tls_broker(users={"door": "right-pass"})
    s = make_settings(b, tmp_path, tls=True, ca_file=str(tls_material["ca"]), username="door",
                      password="wrong-pass-XYZ")
    link = MqttLink(s)
    with caplog.at_level(logging.DEBUG, logger="edge_liveness"):
        link.start()
        time.sleep(1.5)  # several retries at 0.1..0.3 s
        assert not link.connected and link.connects == 0
        lines = _lines(caplog, "refused the login")
        link.stop()
    assert len(lines) == 1 and "mqtt_password" in lines[0] and "retrying" in lines[0]
    assert "wrong-pass-XYZ" not in caplog.text


def test_untrusted_ca_one_clear_line_and_keeps_retrying(make_tls_broker, tls_material, tmp_path, caplog):
    b = make_tls_broker()
    s = make_settings(b, tmp_path, tls=True, ca_file=str(tls_material["other_ca"]), username="door",
                      password="door-pass")
    link = MqttLink(s)
    with caplog.at_level(logging.INFO, logger="edge_liveness"):
        link.start()
        time.sleep(1.2)
        assert not link.connected and link.client.is_connected() is False
        link.stop()
    lines = _lines(caplog, "not trusted")
    assert len(lines) == 1 and "mqtt.ca_file" in lines[0]


def test_broker_down_at_start_then_up(mosquitto_broker, tmp_path, stack_factory, caplog):
    mosquitto_broker.stop()
    with caplog.at_level(logging.INFO, logger="edge_liveness"):
        st = stack_factory(make_settings(mosquitto_broker, tmp_path))
        p = st.pub.submit("decision", _body(1))
        time.sleep(0.8)
        mosquitto_broker.start()
        assert st.wait_connected(timeout=5)
    assert len(_lines(caplog, "refused the connection")) == 1
    assert st.pub.flush(5) and st.outbox.get(p["seq"]).delivered


def test_missing_tls_file_is_one_line_error(tmp_path, mosquitto_broker):
    from edge_liveness.events.mqtt import MqttError

    s = make_settings(mosquitto_broker, tmp_path, tls=True, ca_file=str(tmp_path / "nope.pem"))
    with pytest.raises(MqttError, match="mqtt.ca_file: .*nope.pem not found"):
        MqttLink(s)


def test_home_assistant_discovery_and_republish_on_ha_online(mosquitto_broker, tmp_path, stack_factory):
    sub = mosquitto_broker.collect("homeassistant/#")
    st = stack_factory(make_settings(mosquitto_broker, tmp_path, ha_discovery=True))
    assert st.wait_connected()
    node = f"edge_liveness_{DEVICE}"
    topics = [f"homeassistant/event/{node}/decision/config", f"homeassistant/binary_sensor/{node}/face_present/config",
              f"homeassistant/sensor/{node}/fps/config"]
    assert sub.wait_for(lambda c: all(c.on(t) for t in topics))
    configs = {t: sub.on(t)[0].json() for t in topics}
    for t, cfg in configs.items():
        assert cfg["availability_topic"] == f"{BASE}/availability"
        assert cfg["device"]["identifiers"] == [node] and cfg["unique_id"].startswith(node)
    late = mosquitto_broker.collect(f"homeassistant/+/{node}/#")  # retained: HA restarting later still sees them
    assert late.wait_for(lambda c: all(c.on(t) and c.on(t)[0].retain for t in topics))
    assert configs[topics[0]]["state_topic"] == f"{BASE}/events"
    assert configs[topics[0]]["event_types"] == ["pass", "fail"]
    assert configs[topics[1]]["state_topic"] == configs[topics[2]]["state_topic"] == f"{BASE}/state"
    sub.client.publish("homeassistant/status", "online", qos=1)
    assert sub.wait_for(lambda c: all(len(c.on(t)) >= 2 for t in topics))
    st.link.publish_state({"fps": 14.5, "face_present": True})
    state = mosquitto_broker.collect(f"{BASE}/state")
    assert state.wait_for(lambda c: c.on(f"{BASE}/state"))
    assert state.on(f"{BASE}/state")[0].json() == {"fps": 14.5, "face_present": True}


def test_unwritable_journal_events_still_go_out_and_are_journaled_on_recovery(mosquitto_broker, tmp_path,
                                                                               stack_factory):
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")
    sub = mosquitto_broker.collect(f"{BASE}/events")
    st = stack_factory(make_settings(mosquitto_broker, blocker))
    assert not st.outbox.healthy and "writable directory" in st.outbox.problem
    assert st.wait_connected()
    sent = [st.pub.submit("decision", _body(i)) for i in range(3)]
    assert sub.wait_for(lambda c: len(c.on(f"{BASE}/events")) == 3)
    assert [m.json() for m in sub.on(f"{BASE}/events")] == sent
    blocker.unlink()
    blocker.mkdir()
    assert st.outbox.retry(force=True)
    end = time.monotonic() + 5
    while time.monotonic() < end and len(st.outbox.rows()) < 3:
        time.sleep(0.05)
    rows = st.outbox.rows()
    assert [r.event_id for r in rows] == [p["event_id"] for p in sent] and all(r.delivered for r in rows)
    assert st.pub.backlog == 0
