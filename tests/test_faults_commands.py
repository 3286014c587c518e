"""Hostile commands over MQTT thrown at the real daemon (signing key configured): bad JSON, unknown
command, wrong argument types, oversize payloads, bad/missing/replayed/stale signatures, a
signature made for another command or device, duplicated keys, and a flood. Each is answered
``{"ok": false, "error": ...}`` on ``set/<name>/result`` and logged in one line; the flood is
rate-limited with one log line; frames and decisions never stop.
"""

from __future__ import annotations

import json
import time

import pytest

from conftest import shared_file
from fault_helpers import DEVICE_ID, SIGNING_KEY, DaemonProc, EventSink, base_env, publish, topic_base

pytestmark = pytest.mark.slow


def _signed(seq: int, ts: float | None = None, key: str = SIGNING_KEY, name: str = "active", device: str = DEVICE_ID,
            **args) -> str:
    from edge_liveness.events import signing

    return json.dumps(signing.command(name, device, key.encode(), seq=seq, ts=ts, **args))


def test_hostile_commands_are_rejected_logged_and_harmless(mosquitto_broker, tmp_path, face_models):
    b = mosquitto_broker
    base = topic_base()
    sink = EventSink(b.host, b.port, base)
    env = base_env(tmp_path / "state", shared_file("video", "tranvanluyt_real.mp4"), b.port,
                   mqtt__command_rate_per_min=40)
    d = DaemonProc(tmp_path, env)
    try:
        d.wait_ready()
        d.wait_log(r"connected to 127\.0\.0\.1", timeout=30)
        d.wait_decisions(1)
        seq = int(time.time())
        good = _signed(seq, mode="blink")
        oversize = _signed(seq + 50, mode="off", pad="x" * 5000)
        tampered = json.loads(_signed(seq + 60, mode="off"))
        tampered["mode"] = "blink"
        cases = [  # (command, payload, expected error text)
            ("active", good, None),
            ("active", good, "replay: seq"),
            ("active", b"{not json", "send a JSON object"),
            ("active", b"\xff\xfe\x00garbage", "send a JSON object"),
            ("active", b"[1, 2, 3]", "send a JSON object"),
            ("selfdestruct", _signed(seq + 1, name="selfdestruct"), "unknown command 'selfdestruct'"),
            ("active", _signed(seq + 2, mode=5), "mode must be one of"),
            ("active", _signed(seq + 3, enabled="yes"), "enabled must be true or false"),
            ("attempt", _signed(seq + 4, name="attempt", now=True), "takes no arguments"),
            # The probe's findings: a signed {} made for attempt sent to reload; another door's.
            ("reload", _signed(seq + 5, name="attempt"), "signed for command 'attempt', not 'reload'"),
            ("active", _signed(seq + 6, device="door-other", mode="off"), "signed for device 'door-other'"),
            ("active", '{"mode":"off",' + _signed(seq + 7, mode="blink")[1:], "duplicate key 'mode'"),
            ("active", oversize, "payload too large"),
            ("active", json.dumps(tampered), "signature check failed: bad signature"),
            ("active", _signed(seq + 70, key="not-the-key", mode="off"), "signature check failed: bad signature"),
            ("active", json.dumps({"seq": seq + 80, "ts": time.time(), "mode": "off"}), "unsigned"),
            ("active", _signed(seq + 90, ts=time.time() - 3600, mode="off"), "stale"),
            ("active", _signed(seq + 100, ts=time.time() + 3600, mode="off"), "from the future"),
            ("active", _signed(seq - 5, mode="off"), "replay: seq"),
            ("active", '{"a":' + "[" * 1500 + "]" * 1500 + "}", "nested too deeply"),
        ]
        for i, (name, payload, error) in enumerate(cases):
            n_before = len(sink.results(name))
            publish(b.host, b.port, [(f"{base}/set/{name}", payload)])
            assert sink.wait_for(lambda s: len(s.results(name)) > n_before, 15), f"no answer to case {i} ({error})"
            answer = sink.results(name)[-1]
            if error is None:
                assert answer["ok"] is True and answer["active_mode"] == "blink", answer
            else:
                assert answer["ok"] is False and error in answer["error"], (i, answer)
                d.wait_log(rf"WARNING .*command {name[:40]} rejected: .*{error[:12]}", timeout=10)
        assert d.wait_log(r"command active accepted \{'mode': 'blink'\}", timeout=5)

        # A flood: answered "rate limited" (or "busy" when the queue is full), logged once, harmless.
        n_dec = len(d.decisions())
        t_flood = time.monotonic()
        publish(b.host, b.port, [(f"{base}/set/attempt", _signed(seq + 1000 + i, name="attempt")) for i in range(400)])
        # Every command gets an answer, even in a flood.
        assert sink.wait_for(lambda s: len(s.results("attempt")) >= 401, 60), len(sink.results("attempt"))
        flood = sink.results("attempt")[1:]
        limited = [a for a in flood if not a["ok"] and ("rate limited" in a["error"] or "busy" in a["error"])]
        accepted = [a for a in flood if a["ok"]]
        assert len(limited) >= 350 and len(accepted) <= 41, (len(limited), len(accepted))
        assert sum("rate limited" in s for s in d.log_lines(t_flood)) <= 2, "a flood must not flood the log"
        t_after = time.monotonic()
        d.wait(lambda: d.notify.times("WATCHDOG", since=t_after), 5, "frames flowing after the flood")
        gaps = [b - a for a, b in zip(*(lambda t: (t, t[1:]))(d.notify.times("WATCHDOG", since=t_flood - 2)))]
        assert max(gaps) < 3.0, f"the watchdog would have fired during the flood: {gaps}"
        d.wait_decisions(n_dec + 2)

        # After the flood the limiter refills and a good command works; the lift is logged.
        time.sleep(3.0)
        n_before = len(sink.results("active"))
        publish(b.host, b.port, [(f"{base}/set/active", _signed(seq + 5000, mode="off"))])
        assert sink.wait_for(lambda s: len(s.results("active")) > n_before, 15)
        assert sink.results("active")[-1] == {"ok": True, "active_mode": "off"}
        d.wait_log(r"rate limit lifted: \d+ commands were rejected", timeout=5, since=t_flood)
        assert d.alive() and d.stop() == 0
        assert "Traceback" not in d.log()
    finally:
        d.close()
        sink.close()
