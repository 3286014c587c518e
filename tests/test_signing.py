"""Signing and subscriber-side verification, including the `verify` command."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from edge_liveness.events import signing
from edge_liveness.events.publisher import Publisher
from edge_liveness.events.verify import Verifier, verify_event

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

    from edge_liveness.decide.decision import Decision, Prompt

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


def test_a_duplicated_key_is_refused_at_any_depth_by_verify_and_verifier():
    # The probe's payload: a signed fail with "result":"pass","reason":"live" inserted in front of
    # the real fields. Python keeps the last copy (the signed fail), other parsers the first (pass).
    p = dict(_event(), result="fail", reason="spoof_suspected")
    p = signing.sign({k: v for k, v in p.items() if k != "sig"}, KEY)
    wire = signing.dumps(p)
    assert verify_event(wire, KEY).ok
    forged = '{"result":"pass","reason":"live",' + wire[1:]
    assert json.loads(forged)["result"] == "fail"  # why a last-wins parser would call it good
    r = verify_event(forged, KEY)
    assert not r.ok and r.reason.startswith("duplicate key 'result'"), r
    nested = wire.replace('"evidence":{', '"evidence":{"frames":1,', 1)
    assert "duplicate key 'frames'" in verify_event(nested.encode(), KEY).reason
    assert Verifier(KEY).check(forged).reason.startswith("duplicate key")


def test_a_signed_command_is_not_an_event():
    cmd = signing.command("attempt", "door-1", KEY, seq=50)
    r = verify_event(signing.dumps(cmd), KEY)
    assert not r.ok and r.reason == "wrong type 'command': expected decision or prompt", r
    assert not Verifier(KEY).check(cmd).ok
    assert verify_event(cmd, KEY, types=("command",)).ok


def test_command_seq_never_repeats_within_a_millisecond():
    seqs = [signing.command("attempt", "d", KEY)["seq"] for _ in range(2000)]
    assert len(set(seqs)) == len(seqs) and seqs == sorted(seqs)


def test_verifier_state_survives_a_restart_and_is_written_atomically(tmp_path):
    state = tmp_path / "verify.state"
    v = Verifier(KEY, state_path=state)
    assert v.check(_event(seq=10)).ok
    assert json.loads(state.read_text()) == {"last_seq": {"door-1": 10}}
    v2 = Verifier(KEY, state_path=state)  # a new process: the replay is still caught
    r = v2.check(_event(seq=10))
    assert not r.ok and r.reason.startswith("replay: seq 10 <= last accepted 10")
    assert v2.check(_event(seq=11)).ok
    assert [p.name for p in tmp_path.iterdir()] == ["verify.state"], "no temp file left behind"
    state.write_text("{not json")
    from edge_liveness.events.verify import VerifyStateError

    try:
        Verifier(KEY, state_path=state)
        raise AssertionError("a corrupt state file must be refused")
    except VerifyStateError as e:
        assert "not a verify state file" in str(e) and "\n" not in str(e)


def test_verify_cli_state_across_runs(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    state = tmp_path / "seen.json"
    cmd = [sys.executable, "-m", "edge_liveness", "verify", "--key-file", str(key_file), "--state", str(state)]
    one = (signing.dumps(_event(seq=5)) + "\n").encode()
    first = subprocess.run(cmd, input=one, capture_output=True, timeout=60)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(cmd, input=one, capture_output=True, timeout=60)
    assert again.returncode == 1 and json.loads(again.stdout)["reason"].startswith("replay")
    state.write_text("[]")
    bad = subprocess.run(cmd, input=one, capture_output=True, timeout=60)
    assert bad.returncode == 2 and b"Traceback" not in bad.stderr
    assert len(bad.stderr.decode().strip().splitlines()) == 1 and b"not a verify state file" in bad.stderr


def test_state_key_is_created_once_with_mode_0600(tmp_path):
    import os
    import stat

    key, created = signing.state_key(tmp_path / "state")
    path = tmp_path / "state" / "signing_key"
    assert created and len(key) == 64 and bytes.fromhex(key.decode())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again, created2 = signing.state_key(tmp_path / "state")
    assert again == key and not created2
    path.write_text("  \n")
    try:
        signing.state_key(tmp_path / "state")
        raise AssertionError("an empty key file must be refused")
    except signing.KeyFileError as e:
        assert "key file is empty" in str(e)


def test_empty_or_blank_signing_key_file_is_a_one_line_config_error(tmp_path):
    from edge_liveness.config import ConfigError, load_settings

    for content in ("", "\n", "   \t \n"):
        (tmp_path / "signing_key").write_text(content)
        try:
            load_settings(secrets_dir=tmp_path)
            raise AssertionError(f"{content!r} accepted")
        except ConfigError as e:
            assert len(e.problems) == 1 and "signing key file is empty" in e.problems[0]
    (tmp_path / "signing_key").write_text("")
    out = subprocess.run([sys.executable, "-m", "edge_liveness", "config", "check", "--secrets-dir", str(tmp_path)],
                         capture_output=True, timeout=60)
    assert out.returncode == 2 and b"Traceback" not in out.stderr, out.stderr
    assert b"signing key file is empty" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_a_secret_of_the_wrong_type_is_not_echoed(tmp_path):
    from edge_liveness.config import ConfigError, load_settings

    cfg = tmp_path / "c.toml"
    cfg.write_text('[security]\nsigning_key = 1234567890123\n[mqtt]\npassword = ["hunter2-secret"]\n')
    try:
        load_settings(cfg)
        raise AssertionError("accepted")
    except ConfigError as e:
        text = "\n".join(e.problems)
    assert "1234567890123" not in text and "hunter2" not in text
    assert "security.signing_key" in text and "mqtt.password" in text


def test_verify_config_finds_the_key_run_created_in_the_state_dir(tmp_path):
    state = tmp_path / "state"
    key, _ = signing.state_key(state)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[storage]\nstate_dir = "{state}"\n')
    p = signing.sign({"type": "decision", "device_id": "door-1", "seq": 3, "ts": time.time()}, key)
    out = subprocess.run([sys.executable, "-m", "edge_liveness", "verify", "--config", str(cfg)],
                         input=(signing.dumps(p) + "\n").encode(), capture_output=True, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout)["ok"] is True, out.stderr
