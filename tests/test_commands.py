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


def test_screen_passes_only_what_the_key_holder_could_have_sent():
    cp = CommandProcessor(Recorder(), key=KEY, device_id="door1", rate_per_min=100)
    good = cp.screen("active", signed("active", {"mode": "turn"}, 7))
    assert good.passed and good.signed and good.seq == 7
    refused = {
        "forged": cp.screen("active", signed("active", {"mode": "turn"}, 8, key=b"forged")),
        "unsigned": cp.screen("active", b'{"mode": "turn"}'),
        "other door": cp.screen("active", signed("active", {"mode": "turn"}, 9, device="door2")),
        "stale": cp.screen("active", signed("active", {"mode": "turn"}, 10, ts=time.time() - 3600)),
        "garbage": cp.screen("active", b"\xff{"),
        "too large": cp.screen("active", b"{" + b" " * 5000 + b"}"),
        "deep": cp.screen("active", '{"a":' + "[" * 5000 + "]" * 5000 + "}"),
    }
    assert not any(r.passed for r in refused.values()), refused
    assert "bad signature" in refused["forged"].error and "unsigned" in refused["unsigned"].error
    # Arguments are not screened: a signed command with bad ones is the key holder's, answered by handle().
    assert cp.screen("active", signed("active", {"mode": "sideways"}, 11)).passed
    assert cp.handle("active", signed("active", {"mode": "turn"}, 12))["ok"]
    assert "replay" in cp.screen("active", signed("active", {"mode": "off"}, 12)).error
    loose = CommandProcessor(Recorder(), key=KEY, allow_unsigned=True)
    unsigned = loose.screen("attempt", b"")
    assert unsigned.passed and not unsigned.signed


def test_a_refused_flood_is_answered_and_logged_up_to_the_budget_then_counted(caplog):
    from edge_liveness.events.commands import REFUSALS_PER_MIN

    t = [0.0]
    cp = CommandProcessor(Recorder(), key=KEY, device_id="door1", monotonic=lambda: t[0])
    with caplog.at_level(logging.WARNING, logger="edge_liveness.commands"):
        answers = []
        for i in range(5000):  # a forged flood, 5,000 in 5 s
            s = cp.screen("active", signed("active", {"mode": "off"}, 100 + i, key=b"forged"))
            answers.append(cp.refuse("active", s.error))
            t[0] += 0.001
        t[0] += 1.0
        cp.gate.tick()
        assert not any("flood over" in r.getMessage() for r in caplog.records), "over only after a quiet spell"
        t[0] += 5.0
        cp.gate.tick()
    answered = [a for a in answers if a is not None]
    assert len(answered) == REFUSALS_PER_MIN and all("bad signature" in a["error"] for a in answered)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("rejected" in m for m in lines) == REFUSALS_PER_MIN
    assert sum(m.startswith("command flood:") for m in lines) == 1
    assert [m for m in lines if "flood over" in m] == [
        f"command flood over: {5000 - REFUSALS_PER_MIN} refused commands were dropped unanswered"]
    assert cp.stats.dropped == 5000 - REFUSALS_PER_MIN and cp.stats.rejected == REFUSALS_PER_MIN


def test_a_command_whose_seq_cannot_be_written_is_refused_and_stays_acceptable(tmp_path):
    """command_seq cannot be written (here its directory is a file): the command is refused, naming the
    cause, nothing runs, and the same command is accepted once the seq can be kept."""
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("a file where the state directory should be")
    rec = Recorder()
    cp = CommandProcessor(rec, key=KEY, device_id="door1", seq_file=not_a_dir / "command_seq")
    cmd = signed("active", {"mode": "turn"}, 40)
    answer = cp.handle("active", cmd)
    assert answer["ok"] is False and rec.calls == [], answer
    assert answer["error"].startswith(f"cannot record its seq 40 in {not_a_dir / 'command_seq'} (Not a directory)")
    assert f"make {not_a_dir} writable by the daemon" in answer["error"]
    assert cp.last_seq is None, "a seq that was not kept is not the last accepted one"
    not_a_dir.unlink()
    not_a_dir.mkdir()
    assert cp.handle("active", cmd)["ok"] and rec.calls == [("active", {"mode": "turn"})]
    assert (not_a_dir / "command_seq").read_text() == "40"
    assert "replay" in cp.handle("active", cmd)["error"]


def test_unsigned_commands_cannot_take_the_places_kept_for_signed_ones(mosquitto_broker, tmp_path):
    """With allow_unsigned_commands, a flood of unsigned commands behind a slow handler fills the queue
    only up to RESERVED_FOR_SIGNED places short of full: a signed command still gets in and is handled."""
    import threading

    from edge_liveness.config import load_settings
    from edge_liveness.events.mqtt import COMMAND_QUEUE, RESERVED_FOR_SIGNED, MqttLink

    release, entered = threading.Event(), threading.Event()
    handled = []

    def slow(name, args):
        entered.set()
        release.wait(30)
        handled.append((name, args))
        return {}

    s = load_settings(mqtt={"host": mosquitto_broker.host, "port": mosquitto_broker.port, "command_rate_per_min": 1000},
                      device={"id": "door1"}, storage={"state_dir": str(tmp_path)},
                      security={"signing_key": KEY.decode(), "allow_unsigned_commands": True})
    link = MqttLink(s, on_command=slow)
    sub = mosquitto_broker.collect("edge-liveness/door1/set/+/result")
    link.start()
    base = "edge-liveness/door1/set"
    try:
        end = time.monotonic() + 5
        while not link.connected and time.monotonic() < end:
            time.sleep(0.02)
        sub.client.publish(f"{base}/attempt", b"{}", qos=1)
        assert entered.wait(10), "the first command never reached the handler"
        n_unsigned = COMMAND_QUEUE + 10
        for _ in range(n_unsigned):
            sub.client.publish(f"{base}/attempt", b"{}", qos=1)
        # COMMAND_QUEUE - RESERVED_FOR_SIGNED wait behind the one in the handler; the rest are answered "busy".
        busy = n_unsigned - (COMMAND_QUEUE - RESERVED_FOR_SIGNED)
        assert sub.wait_for(lambda c: len(c.messages) >= busy, 10), len(sub.messages)
        assert all("busy" in m.json()["error"] for m in sub.messages)
        sub.client.publish(f"{base}/active", signed("active", {"mode": "turn"}, 500), qos=1)
        time.sleep(0.5)
        assert len(sub.messages) == busy, "the signed command must find a place, not a busy answer"
        release.set()
        assert sub.wait_for(lambda c: any(m.topic == f"{base}/active/result" for m in c.messages), 20)
        assert [m.json() for m in sub.messages if m.topic == f"{base}/active/result"] == [{"ok": True}]
        assert ("active", {"mode": "turn"}) in handled
    finally:
        release.set()
        link.stop()


def test_screen_never_refuses_what_handle_would_accept_and_never_raises():
    """Hypothesis: the MQTT thread's screen may let through what handle() then refuses (bad arguments,
    rate), never the reverse; and it answers anything without raising."""
    from hypothesis import given, settings, strategies as st

    now = 1_700_000_000.0
    values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                      max_size=3), max_leaves=10)

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(["active", "attempt", "reload", "dance"]), st.sampled_from(["door1", "door2"]),
           st.dictionaries(st.sampled_from(["mode", "enabled", "x"]), values, max_size=2),
           st.sampled_from([KEY, b"forged"]), st.booleans(), st.binary(max_size=200))
    def check(name, device, args, key, wire_ok, junk):
        cp = CommandProcessor(Recorder(), key=KEY, device_id="door1", rate_per_min=10000, clock=lambda: now)
        payload = signing.dumps(signing.command(name, device, key, seq=1, ts=now, **args)).encode() if wire_ok else junk
        screened = cp.screen(name, payload)
        answer = cp.handle(name, payload)
        if answer["ok"]:
            assert screened.passed and screened.signed and screened.seq == 1
        if not screened.passed:
            assert screened.error and not answer["ok"]

    check()
