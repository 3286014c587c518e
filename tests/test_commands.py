"""Command checks (unit) and the command path through a real broker."""

from __future__ import annotations

import json
import logging
import time

import pytest

from edge_liveness import signing
from edge_liveness.commands import CommandError, CommandProcessor, TokenBucket, validate_args

KEY = b"cmd-key"


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, name, args):
        self.calls.append((name, args))
        return {"applied": name}


def signed(args: dict, seq: int, ts: float | None = None, key: bytes = KEY) -> bytes:
    return signing.dumps(signing.sign({**args, "seq": seq, "ts": time.time() if ts is None else ts}, key)).encode()


@pytest.mark.parametrize("name,args,ok", [
    ("active", {"mode": "challenge"}, True), ("active", {"enabled": False}, True),
    ("active", {"mode": "sideways"}, False), ("active", {"enabled": "yes"}, False),
    ("active", {"mode": "blink", "enabled": True}, False), ("active", {}, False),
    ("attempt", {}, True), ("reload", {}, True), ("reload", {"now": 1}, False), ("dance", {}, False),
])
def test_validate_args(name, args, ok):
    if ok:
        assert validate_args(name, args) == args
    else:
        with pytest.raises(CommandError):
            validate_args(name, args)


def test_unsigned_mode_accepts_plain_json_and_rejects_garbage_with_reasons(caplog):
    rec = Recorder()
    cp = CommandProcessor(rec, key=None, max_bytes=256, rate_per_min=100)
    assert cp.handle("active", b'{"mode": "turn"}') == {"ok": True, "applied": "active"}
    assert cp.handle("attempt", b"") == {"ok": True, "applied": "attempt"}
    with caplog.at_level(logging.WARNING):
        answers = {
            "json": cp.handle("active", b"{mode: turn"),
            "array": cp.handle("active", b"[1]"),
            "utf8": cp.handle("active", b"\xff\xfe"),
            "size": cp.handle("active", b"{" + b" " * 300 + b"}"),
            "unknown": cp.handle("dance", b"{}"),
            "type": cp.handle("active", b'{"enabled": 1}'),
        }
    assert rec.calls == [("active", {"mode": "turn"}), ("attempt", {})]
    assert all(a["ok"] is False for a in answers.values())
    assert answers["json"]["error"].startswith("bad JSON") and "too large" in answers["size"]["error"]
    assert "unknown command" in answers["unknown"]["error"] and "enabled" in answers["type"]["error"]
    assert len([r for r in caplog.records if "rejected" in r.getMessage()]) == 6


def test_signed_mode_rejects_missing_bad_replayed_and_stale(tmp_path):
    rec = Recorder()
    cp = CommandProcessor(rec, key=KEY, seq_file=tmp_path / "command_seq")
    assert "unsigned" in cp.handle("active", b'{"mode": "turn"}')["error"]
    assert "bad signature" in cp.handle("active", signed({"mode": "turn"}, 1, key=b"other"))["error"]
    assert cp.handle("active", signed({"mode": "turn"}, 5))["ok"]
    assert "replay" in cp.handle("active", signed({"mode": "off"}, 5))["error"]
    assert "stale" in cp.handle("active", signed({"mode": "off"}, 6, ts=time.time() - 3600))["error"]
    assert rec.calls == [("active", {"mode": "turn"})]
    # The last accepted seq survives a restart, so an old command cannot be replayed afterwards.
    cp2 = CommandProcessor(rec, key=KEY, seq_file=tmp_path / "command_seq")
    assert "replay" in cp2.handle("attempt", signed({}, 5))["error"]
    assert cp2.handle("attempt", signed({}, 6))["ok"]


def test_token_bucket_limits_a_flood_and_refills():
    t = [0.0]
    bucket = TokenBucket(6, clock=lambda: t[0])
    assert sum(bucket.take() for _ in range(20)) == 6
    t[0] += 10.0  # 6 per minute -> one token per 10 s
    assert bucket.take() and not bucket.take()


def test_handler_failure_is_an_answer_not_a_crash():
    def boom(name, args):
        raise RuntimeError("engine busy")

    assert CommandProcessor(boom).handle("attempt", b"{}") == {"ok": False, "error": "failed: engine busy"}


def test_commands_over_a_real_broker(mosquitto_broker, tmp_path):
    from edge_liveness.config import load_settings
    from edge_liveness.mqtt import MqttLink

    s = load_settings(mqtt={"host": mosquitto_broker.host, "port": mosquitto_broker.port, "command_rate_per_min": 8,
                            "max_command_bytes": 4096},
                      device={"id": "door1"}, storage={"state_dir": str(tmp_path)},
                      security={"signing_key": KEY.decode()})
    rec = Recorder()
    link = MqttLink(s, on_command=rec)
    sub = mosquitto_broker.collect("edge-liveness/door1/set/+/result")
    link.start()
    try:
        end = time.monotonic() + 5
        while not link.connected and time.monotonic() < end:
            time.sleep(0.02)
        base = "edge-liveness/door1/set"

        def send(name, payload) -> dict:
            n = len(sub.messages)
            sub.client.publish(f"{base}/{name}", payload, qos=1)
            assert sub.wait_for(lambda c: len(c.messages) > n), f"no answer to {name}"
            m = sub.messages[n]
            assert m.topic == f"{base}/{name}/result"
            return m.json()

        assert "bad JSON" in send("active", b"{not json")["error"]
        assert "unknown command" in send("dance", signed({}, 1))["error"]
        assert "bad signature" in send("active", signed({"mode": "turn"}, 2, key=b"wrong"))["error"]
        assert "too large" in send("active", b"x" * (1 << 20))["error"]
        assert send("active", signed({"mode": "turn"}, 3)) == {"ok": True, "applied": "active"}
        assert "replay" in send("active", signed({"mode": "turn"}, 3))["error"]
        assert rec.calls == [("active", {"mode": "turn"})]
        # Flood: 8 per minute; only commands that pass the signature check spend the budget, so the
        # one good command above leaves about 7.
        n = len(sub.messages)
        for i in range(20):
            sub.client.publish(f"{base}/attempt", signed({}, 100 + i), qos=1)
        assert sub.wait_for(lambda c: len(c.messages) >= n + 20, timeout=10)
        answers = [m.json() for m in sub.messages[n:]]
        limited = [a for a in answers if not a["ok"] and "rate limited" in a["error"]]
        assert len(limited) >= 12 and len(rec.calls) <= 1 + 8
    finally:
        link.stop()


def test_a_forged_flood_does_not_lock_out_the_signed_controller():
    import hashlib
    import hmac
    import time as _time

    key = b"k" * 32

    def signed(args: dict, seq: int, k: bytes = key) -> bytes:
        body = {**args, "seq": seq, "ts": _time.time()}
        canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        body["sig"] = hmac.new(k, canon, hashlib.sha256).hexdigest()
        return json.dumps(body).encode()

    calls = []
    cp = CommandProcessor(lambda n, a: calls.append((n, a)) or {"ok": True}, key=key, max_bytes=4096, rate_per_min=5)
    for i in range(200):
        assert not cp.handle("attempt", signed({}, 10 + i, k=b"forged"))["ok"]
    assert cp.handle("attempt", signed({}, 1000))["ok"]
    assert calls == [("attempt", {})]
