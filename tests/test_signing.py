"""Signing and subscriber-side verification, including the `verify` command."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from edge_liveness import signing
from edge_liveness.publisher import Publisher
from edge_liveness.verify import Verifier, verify_event

KEY = b"test-key-0123456789"


def _event(seq: int = 7, ts: float | None = None, key: bytes = KEY) -> dict:
    p = {"type": "decision", "device_id": "door-1", "event_id": "e1", "seq": seq,
         "ts": time.time() if ts is None else ts, "result": "pass", "reason": None,
         "evidence": {"frames": 12, "model": {"name": "m", "sha256": "ab"}, "note": "grüße ✓"}}
    return signing.sign(p, key)


def test_canonical_form_is_key_order_and_whitespace_independent():
    a = {"b": 1, "a": {"y": 2, "x": "é"}, "sig": "zz"}
    b = json.loads(json.dumps({"a": {"x": "é", "y": 2}, "b": 1}, indent=3))
    assert signing.canonical(a) == signing.canonical(b) == '{"a":{"x":"é","y":2},"b":1}'.encode()


def test_signature_survives_a_json_round_trip_and_detects_any_change():
    p = _event()
    wire = signing.dumps(p)
    assert verify_event(wire, KEY).ok
    assert verify_event(wire.encode(), KEY).ok
    tampered = dict(p, result="fail")
    r = verify_event(tampered, KEY)
    assert not r.ok and r.reason == "bad signature"
    assert verify_event(p, b"another key").reason == "bad signature"


def test_no_key_means_no_sig_field():
    p = signing.sign({"seq": 1, "ts": 1.0}, None)
    assert "sig" not in p
    assert verify_event(p, KEY).reason.startswith("unsigned")


def test_replay_stale_and_future_are_rejected_with_reasons():
    now = 1_700_000_000.0
    assert verify_event(_event(seq=5, ts=now), KEY, last_seq=4, now=now).ok
    r = verify_event(_event(seq=5, ts=now), KEY, last_seq=5, now=now)
    assert not r.ok and r.reason.startswith("replay") and r.seq == 5
    assert verify_event(_event(ts=now - 301), KEY, now=now).reason.startswith("stale")
    assert verify_event(_event(ts=now + 301), KEY, now=now).reason.startswith("from the future")
    assert verify_event(_event(ts=now - 299), KEY, now=now).ok


def test_garbage_gets_a_reason_not_an_exception():
    cases = [b"\xff\xfe", "not json", "[1,2]", '{"seq": NaN}', '{"seq": 1, "sig": "\u00e9" }', "1" * 5000,
             '{"seq": true, "sig": "00"}', "[" * 100000, '{"seq": 1, "ts": 1, "sig": "' + "g" * 64 + '"}']
    for c in cases:
        r = verify_event(c, KEY)
        assert not r.ok and r.reason


def test_verifier_tracks_last_seq_per_device():
    v = Verifier(KEY)
    assert v.check(_event(seq=10)).ok
    assert not v.check(_event(seq=10)).ok  # the same message again: a replay (or a QoS 1 duplicate)
    other = dict(_event(seq=3))
    other["device_id"] = "door-2"
    assert v.check(signing.sign(other, KEY)).ok  # another device has its own counter
    assert v.check(_event(seq=11)).ok
    assert v.last_seq == {"door-1": 11, "door-2": 3}


def test_publisher_payload_verifies_and_has_the_envelope_in_order():
    pub = Publisher(None, None, "door-1", KEY)
    a = pub.submit("decision", {"result": "pass", "reason": None, "attempt_id": "a1"})
    b = pub.submit("prompt", {"attempt_id": "a1", "actions": ["blink"], "step_timeout_s": 5.0})
    assert list(a)[:5] == ["type", "device_id", "event_id", "seq", "ts"] and list(a)[-1] == "sig"
    assert b["seq"] == a["seq"] + 1 and a["event_id"] != b["event_id"]
    v = Verifier(KEY)
    assert v.check(a).ok and v.check(signing.dumps(b)).ok


def test_verify_cli_reports_each_line_and_exit_code(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    good = [signing.dumps(_event(seq=s)) for s in (1, 2)]
    lines = "\n".join([good[0], "garbage {", good[1], good[1], ""]) + "\n"
    cmd = [sys.executable, "-m", "edge_liveness", "verify", "--key-file", str(key_file)]
    out = subprocess.run(cmd, input=lines.encode(), capture_output=True, timeout=60)
    results = [json.loads(x) for x in out.stdout.decode().splitlines()]
    assert [r["ok"] for r in results] == [True, False, True, False]
    assert results[1]["reason"].startswith("bad JSON") and results[3]["reason"].startswith("replay")
    assert out.returncode == 1 and b"Traceback" not in out.stderr
    ok = subprocess.run(cmd, input=("\n".join(good) + "\n").encode(), capture_output=True, timeout=60)
    assert ok.returncode == 0
    missing = subprocess.run(cmd[:-1] + [str(tmp_path / "nope")], input=b"", capture_output=True, timeout=60)
    assert missing.returncode == 2 and b"cannot read key file" in missing.stderr


def _schema():
    from importlib.resources import files

    return json.loads(files("edge_liveness").joinpath("schemas/event.schema.json").read_text())


def test_schema_examples_validate_and_verify_with_the_example_key():
    import jsonschema

    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema)
    for ex in schema["examples"]:
        assert not list(v.iter_errors(ex))
        assert verify_event(ex, b"example-key", max_skew_s=float("inf")).ok


def test_published_decision_and_prompt_match_the_schema():
    import jsonschema

    from edge_liveness.decision import Decision, Prompt

    ev = {"frames": 20, "passive_median": 0.91, "passive_min": 0.8, "threshold": 0.6, "blinks": 1,
          "ear_baseline": 0.28, "ear_min": 0.12, "active_mode": "blink", "active_passed": True,
          "model": {"name": "m", "sha256": "ab" * 32}}
    pub = Publisher(None, None, "door-1", KEY)
    v = jsonschema.Draft202012Validator(_schema())
    ok = pub.submit("decision", Decision("pass", "live", "a1", 10.0, 1.2, ev).body())
    bad = pub.submit("decision", Decision("fail", "no_blink", "a2", 10.0, 6.0, ev).body())
    prompt = pub.submit("prompt", Prompt("a3", ("turn_left", "blink"), 5.0).body())
    for p in (ok, bad, prompt):
        assert not list(v.iter_errors(p)), p
    wrong = dict(bad, reason="live")  # a fail must say why
    assert list(v.iter_errors(wrong))
    unknown_action = dict(prompt, actions=["wink"])
    assert list(v.iter_errors(unknown_action))
