"""Command checks (unit) and the command path through a real broker."""

from __future__ import annotations

import json
import logging
import time

import pytest

from edge_liveness.events import signing
from edge_liveness.events.commands import CommandError, CommandProcessor, TokenBucket, validate_args

KEY = b"cmd-key"


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, name, args):
        self.calls.append((name, args))
        return {"applied": name}


def signed(name: str, args: dict, seq: int, ts: float | None = None, key: bytes = KEY, device: str = "door1") -> bytes:
    return signing.dumps(signing.command(name, device, key, seq=seq, ts=ts, **args)).encode()


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


def test_unsigned_commands_are_refused_by_default_whatever_the_key_source(tmp_path):
    rec = Recorder()
    for key in (None, KEY):
        cp = CommandProcessor(rec, key=key, rate_per_min=100, device_id="door1")
        answer = cp.handle("active", b'{"mode": "off"}')
        assert answer["ok"] is False and "unsigned command refused" in answer["error"]
        assert cp.handle("attempt", b"")["ok"] is False
    assert rec.calls == []


def test_allow_unsigned_commands_says_once_that_it_is_unsafe(tmp_path, caplog):
    from edge_liveness.config import load_settings

    s = load_settings(storage={"state_dir": str(tmp_path)}, security={"allow_unsigned_commands": True})
    with caplog.at_level(logging.WARNING):
        cp = CommandProcessor.from_settings(s, Recorder(), key=KEY)
        assert cp.handle("active", b'{"mode": "turn"}')["ok"]
        assert cp.handle("active", b'{"mode": "off"}')["ok"]
    unsafe = [r for r in caplog.records if "allow_unsigned_commands" in r.getMessage()]
    assert len(unsafe) == 1 and "unsafe" in unsafe[0].getMessage()
    # A signed command is still checked in full when unsigned ones are allowed.
    assert "bad signature" in cp.handle("attempt", signed("attempt", {}, 1, key=b"other", device=s.device.id))["error"]


def test_unsigned_mode_accepts_plain_json_and_rejects_garbage_with_reasons(caplog):
    rec = Recorder()
    cp = CommandProcessor(rec, key=None, max_bytes=256, rate_per_min=100, allow_unsigned=True)
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
    cp = CommandProcessor(rec, key=KEY, seq_file=tmp_path / "command_seq", device_id="door1")
    assert "unsigned" in cp.handle("active", b'{"mode": "turn"}')["error"]
    assert "bad signature" in cp.handle("active", signed("active", {"mode": "turn"}, 1, key=b"other"))["error"]
    assert cp.handle("active", signed("active", {"mode": "turn"}, 5))["ok"]
    assert "replay" in cp.handle("active", signed("active", {"mode": "off"}, 5))["error"]
    assert "stale" in cp.handle("active", signed("active", {"mode": "off"}, 6, ts=time.time() - 3600))["error"]
    assert rec.calls == [("active", {"mode": "turn"})]
    # The last accepted seq survives a restart, so an old command cannot be replayed afterwards.
    cp2 = CommandProcessor(rec, key=KEY, seq_file=tmp_path / "command_seq", device_id="door1")
    assert "replay" in cp2.handle("attempt", signed("attempt", {}, 5))["error"]
    assert cp2.handle("attempt", signed("attempt", {}, 6))["ok"]


def test_a_signed_command_is_bound_to_its_name_device_and_type():
    rec = Recorder()
    cp = CommandProcessor(rec, key=KEY, device_id="door1", rate_per_min=100)
    # A signed {} made for `attempt` is refused on set/reload (the probe's finding).
    made_for_attempt = signed("attempt", {}, 10)
    answer = cp.handle("reload", made_for_attempt)
    assert not answer["ok"] and "signed for command 'attempt', not 'reload'" in answer["error"], answer
    # Made for another door.
    answer = cp.handle("attempt", signed("attempt", {}, 11, device="door2"))
    assert not answer["ok"] and "signed for device 'door2', not 'door1'" in answer["error"], answer
    # A signed event (type decision) is not a command, and the old unbound form is refused.
    event = signing.dumps(signing.sign({"type": "decision", "device_id": "door1", "seq": 12, "ts": time.time()}, KEY))
    assert "wrong type 'decision'" in cp.handle("attempt", event)["error"]
    old = signing.dumps(signing.sign({"seq": 13, "ts": time.time()}, KEY))
    assert "wrong type" in cp.handle("attempt", old)["error"]
    assert rec.calls == []
    assert cp.handle("attempt", made_for_attempt)["ok"] and rec.calls == [("attempt", {})]


def test_a_duplicated_key_is_refused_at_any_depth():
    cp = CommandProcessor(Recorder(), key=KEY, device_id="door1", rate_per_min=100)
    good = signing.command("active", "door1", KEY, seq=20, mode="turn")
    wire = signing.dumps(good)
    # {"mode":"off", ...real fields}: Python keeps the last copy, other parsers the first.
    dup = '{"mode":"off",' + wire[1:]
    answer = cp.handle("active", dup)
    assert not answer["ok"] and "duplicate key 'mode'" in answer["error"], answer
    nested = '{"x":{"a":1,"a":2},' + wire[1:]
    assert "duplicate key 'a'" in cp.handle("active", nested)["error"]


def test_nesting_too_deep_is_answered_in_whole_words():
    cp = CommandProcessor(Recorder(), key=KEY, device_id="door1", rate_per_min=100, max_bytes=1 << 16)
    answer = cp.handle("active", '{"a":' + "[" * 5000 + "]" * 5000 + "}")
    assert not answer["ok"] and "nested too deeply" in answer["error"], answer


def test_rate_limit_under_a_steady_flood_is_logged_once_not_every_refill(caplog):
    t = [0.0]
    cp = CommandProcessor(Recorder(), key=KEY, device_id="door1", rate_per_min=30, monotonic=lambda: t[0])
    cp.bucket = TokenBucket(30, clock=lambda: t[0])
    seq = 100
    with caplog.at_level(logging.DEBUG, logger="edge_liveness.events.commands"):
        for _ in range(30 * 20):  # 20 commands a second for 30 s: one token back every 2 s
            seq += 1
            cp.handle("attempt", signed("attempt", {}, seq))
            t[0] += 0.05
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert sum("rate limited" in w for w in warnings) == 1, warnings[:10]
        assert not any("lifted" in w for w in warnings), "under a flood the limit is never lifted"
        t[0] += 5.0
        seq += 1
        assert cp.handle("attempt", signed("attempt", {}, seq))["ok"]
    lifted = [r.getMessage() for r in caplog.records if "rate limit lifted" in r.getMessage()]
    assert len(lifted) == 1 and "commands were rejected" in lifted[0]


def test_token_bucket_limits_a_flood_and_refills():
    t = [0.0]
    bucket = TokenBucket(6, clock=lambda: t[0])
    assert sum(bucket.take() for _ in range(20)) == 6
    t[0] += 10.0  # 6 per minute -> one token per 10 s
    assert bucket.take() and not bucket.take()


def test_handler_failure_is_an_answer_not_a_crash():
    def boom(name, args):
        raise RuntimeError("engine busy")

    cp = CommandProcessor(boom, allow_unsigned=True)
    assert cp.handle("attempt", b"{}") == {"ok": False, "error": "failed: engine busy"}


def test_commands_over_a_real_broker(mosquitto_broker, tmp_path):
    from edge_liveness.config import load_settings
    from edge_liveness.events.mqtt import MqttLink

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
        assert "unknown command" in send("dance", signed("dance", {}, 1))["error"]
        assert "bad signature" in send("active", signed("active", {"mode": "turn"}, 2, key=b"wrong"))["error"]
        assert "too large" in send("active", b"x" * (1 << 20))["error"]
        assert "unsigned command refused" in send("active", b'{"mode": "off"}')["error"]
        assert "signed for command 'attempt'" in send("reload", signed("attempt", {}, 3))["error"]
        assert send("active", signed("active", {"mode": "turn"}, 3)) == {"ok": True, "applied": "active"}
        assert "replay" in send("active", signed("active", {"mode": "turn"}, 3))["error"]
        assert rec.calls == [("active", {"mode": "turn"})]
        # Flood: 8 per minute; only commands that pass the signature check spend the budget, so the
        # one good command above leaves about 7.
        n = len(sub.messages)
        for i in range(20):
            sub.client.publish(f"{base}/attempt", signed("attempt", {}, 100 + i), qos=1)
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
        # Built by hand, as a subscriber in another language would (docs/mqtt.md, canonical form v1).
        body = {"type": "command", "command": "attempt", "device_id": "door1", **args, "seq": seq, "ts": _time.time()}
        canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        body["sig"] = hmac.new(k, canon, hashlib.sha256).hexdigest()
        return json.dumps(body).encode()

    calls = []
    cp = CommandProcessor(lambda n, a: calls.append((n, a)) or {"ok": True}, key=key, max_bytes=4096, rate_per_min=5,
                          device_id="door1")
    for i in range(200):
        assert not cp.handle("attempt", signed({}, 10 + i, k=b"forged"))["ok"]
    assert cp.handle("attempt", signed({}, 1000))["ok"]
    assert calls == [("attempt", {})]
