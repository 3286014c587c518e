"""Hypothesis: the verifier and the command parser never raise, and signatures behave."""

from __future__ import annotations

import json

from hypothesis import given, settings, strategies as st

from edge_liveness import signing
from edge_liveness.commands import CommandProcessor
from edge_liveness.verify import Verifier, verify_event

KEY = b"fuzz-key"
NOW = 1_700_000_000.0

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False,
                                                                                  allow_infinity=False) | st.text()
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
bodies = st.dictionaries(st.text(max_size=10).filter(lambda k: k not in ("sig", "seq", "ts")), json_values, max_size=6)
FAST = settings(max_examples=200, deadline=None)


@FAST
@given(st.binary(max_size=300))
def test_verify_never_raises_on_bytes(raw):
    r = verify_event(raw, KEY, last_seq=5, now=NOW)
    assert not r.ok and isinstance(r.reason, str) and r.reason


@FAST
@given(st.text(max_size=300))
def test_verify_never_raises_on_text(text):
    assert not verify_event(text, KEY, now=NOW).ok


@FAST
@given(json_values)
def test_verify_never_raises_on_any_json(value):
    r = verify_event(json.dumps(value), KEY, now=NOW)
    assert not r.ok  # without the key nothing can forge a signature


@FAST
@given(bodies, st.integers(0, 2**53), st.floats(NOW - 200, NOW + 200))
def test_signed_payload_verifies_and_round_trips(body, seq, ts):
    p = signing.sign({**body, "seq": seq, "ts": ts}, KEY)
    assert verify_event(signing.dumps(p), KEY, now=NOW).ok
    assert verify_event(json.dumps(p, indent=2, ensure_ascii=True).encode(), KEY, now=NOW).ok


@FAST
@given(bodies, st.integers(0, 2**40), st.sampled_from(["seq", "ts", "extra"]))
def test_any_change_breaks_the_signature(body, seq, field):
    p = signing.sign({**body, "seq": seq, "ts": NOW}, KEY)
    q = dict(p)
    q[field] = (q.get(field) or 0) + 1 if field != "extra" else "x"
    r = verify_event(q, KEY, now=NOW)
    assert not r.ok and r.reason == "bad signature"


@FAST
@given(st.lists(st.integers(0, 50), min_size=1, max_size=20))
def test_verifier_accepts_only_strictly_rising_seq(seqs):
    v = Verifier(KEY)
    accepted = [s for s in seqs if v.check(signing.sign({"device_id": "d", "seq": s, "ts": NOW}, KEY), now=NOW).ok]
    assert accepted == sorted(set(accepted)) and accepted[0] == seqs[0]


@FAST
@given(st.text(max_size=30), st.binary(max_size=500))
def test_command_parser_never_raises_and_answers(name, payload):
    calls = []
    cp = CommandProcessor(lambda n, a: calls.append((n, a)) or {}, key=KEY, max_bytes=400, rate_per_min=10000,
                          clock=lambda: NOW)
    out = cp.handle(name, payload)
    assert isinstance(out, dict) and out["ok"] is False and out["error"]
    assert calls == []


@FAST
@given(st.text(max_size=12), json_values)
def test_unsigned_command_parser_only_passes_valid_commands(name, value):
    calls = []
    cp = CommandProcessor(lambda n, a: calls.append((n, a)) or {}, key=None, rate_per_min=10000)
    out = cp.handle(name, json.dumps(value).encode())
    if out["ok"]:
        n, a = calls[0]
        assert n in ("active", "attempt", "reload")
        assert a in ({}, {"mode": a.get("mode")}, {"enabled": a.get("enabled")})
    else:
        assert calls == [] and out["error"]
