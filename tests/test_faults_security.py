"""Secure by default, against the real daemon and broker: with no key configured (the quick start)
the daemon creates one at first start, signs events with it and refuses unsigned commands; an
empty key file is a config error; ``allow_unsigned_commands`` says once that it is unsafe."""

from __future__ import annotations

import json
import os
import stat

import pytest

from conftest import shared_file
from fault_helpers import DEVICE_ID, DaemonProc, EventSink, assert_one_clear_error, base_env, publish, topic_base

pytestmark = pytest.mark.slow


def _video():
    return shared_file("video", "tranvanluyt_real.mp4")


def _answer(sink: EventSink, b, name: str, payload: str | bytes) -> dict:
    n = len(sink.results(name))
    publish(b.host, b.port, [(f"{topic_base()}/set/{name}", payload)])
    assert sink.wait_for(lambda s: len(s.results(name)) > n, 20), f"no answer on set/{name}/result"
    return sink.results(name)[-1]


def test_quick_start_creates_a_key_signs_events_and_refuses_unsigned_commands(mosquitto_broker, tmp_path,
                                                                              face_models):
    from edge_liveness.events import signing
    from edge_liveness.events.verify import Verifier

    b = mosquitto_broker
    state = tmp_path / "state"
    key_path = state / "signing_key"
    sink = EventSink(b.host, b.port, topic_base(), key="unused")
    env = base_env(state, _video(), b.port, active__mode="blink")
    d = DaemonProc(tmp_path, env, secrets={})  # no signing_key anywhere
    try:
        d.wait_ready()
        line = d.wait_log(r"WARNING .*no signing_key configured: created one at \S+signing_key \(mode 0600\)", timeout=10)
        assert str(key_path) in line
        assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
        key = key_path.read_text().strip()
        assert len(key) == 64 and bytes.fromhex(key)
        d.wait_decisions(1, timeout=60)
        assert sink.wait_for(lambda s: s.decisions(), 30)
        v = Verifier(key.encode(), check_time=False)
        assert all(v.check(e).ok for e in sink.decisions().values()), "events must be signed with the created key"

        # The probe's command: unsigned set/active {"mode": "off"} from any client. Refused.
        answer = _answer(sink, b, "active", b'{"mode": "off"}')
        assert answer["ok"] is False and "unsigned command refused" in answer["error"], answer
        d.wait_log(r"WARNING .*command active rejected: unsigned command refused", timeout=10)
        assert sink.wait_for(lambda s: s.states() and s.states()[-1]["active_mode"] == "blink", 10)
        # Signed with the created key, for this device and command: accepted.
        cmd = signing.command("active", DEVICE_ID, key.encode(), mode="off")
        assert _answer(sink, b, "active", json.dumps(cmd)) == {"ok": True, "active_mode": "off"}
        assert d.stop() == 0
    finally:
        d.close()

    # The next start keeps the key (subscribers were given it), and says where it is.
    d2 = DaemonProc(tmp_path, env, secrets={}, name="second")
    try:
        d2.wait_ready()
        d2.wait_log(r"INFO .*signing with the key created at first start: \S+signing_key", timeout=10)
        assert key_path.read_text().strip() == key
        assert "created one" not in d2.log()
        assert d2.stop() == 0
    finally:
        d2.close()
        sink.close()


def test_allow_unsigned_commands_is_logged_once_as_unsafe(mosquitto_broker, tmp_path, face_models):
    b = mosquitto_broker
    sink = EventSink(b.host, b.port, topic_base())
    env = base_env(tmp_path / "state", _video(), b.port, security__allow_unsigned_commands=True)
    d = DaemonProc(tmp_path, env)
    try:
        d.wait_ready()
        d.wait_log(r"connected to", timeout=30)
        assert _answer(sink, b, "active", b'{"mode": "blink"}') == {"ok": True, "active_mode": "blink"}
        assert _answer(sink, b, "active", b'{"mode": "off"}') == {"ok": True, "active_mode": "off"}
        unsafe = [s for s in d.log().splitlines() if "allow_unsigned_commands" in s]
        assert len(unsafe) == 1 and "WARNING" in unsafe[0] and "unsafe" in unsafe[0], unsafe
        assert d.stop() == 0
    finally:
        d.close()
        sink.close()


@pytest.mark.parametrize("content", ["", "\n", "  \t\n"])
def test_an_empty_signing_key_file_is_a_config_error(tmp_path, content):
    d = DaemonProc(tmp_path, base_env(tmp_path / "state", _video(), None), secrets={"signing_key": content})
    try:
        code = d.wait_exit(60)
        assert_one_clear_error(d, code, "signing key file is empty")
        assert not (tmp_path / "state" / "signing_key").exists(), "an empty configured key must not be replaced"
    finally:
        d.close()


def test_an_empty_key_file_in_the_state_dir_is_one_line_and_exit_2(tmp_path, face_models):
    state = tmp_path / "state"
    state.mkdir()
    (state / "signing_key").write_text("\n")
    d = DaemonProc(tmp_path, base_env(state, _video(), None), secrets={})
    try:
        code = d.wait_exit(120)
        assert_one_clear_error(d, code, "key file is empty: delete it to have a new one created")
    finally:
        d.close()


@pytest.mark.parametrize("target, needle", [
    ("/dev/zero", "is a character device, not a secret file"),  # was skipped: the daemon then signed with another key
    ("/proc/self/mem", "input/output error"),
])
def test_a_secret_that_is_no_file_is_one_line_and_exit_2(tmp_path, target, needle):
    """Issue 27: a configured secret is never silently ignored, nor read forever."""
    secrets = tmp_path / "daemon-secrets"  # DaemonProc's directory, made first so the link is in it
    secrets.mkdir()
    (secrets / "signing_key").symlink_to(target)
    d = DaemonProc(tmp_path, base_env(tmp_path / "state", _video(), None), secrets={})
    try:
        code = d.wait_exit(60)
        line = assert_one_clear_error(d, code, needle)
        assert "signing_key" in line
        assert not (tmp_path / "state" / "signing_key").exists(), "a configured key must not be replaced"
    finally:
        d.close()
