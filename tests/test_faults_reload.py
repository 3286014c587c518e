"""Reloads thrown at the real daemon while attempts are in progress: every attempt that started
ends with a decision (the one a reload interrupts: ``fail``/``reload``), none vanishes."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

from conftest import shared_file
from fault_helpers import DEVICE_ID, SIGNING_KEY, DaemonProc, EventSink, base_env, publish, topic_base

pytestmark = pytest.mark.slow


def test_reload_every_2s_ends_each_attempt_with_a_decision(mosquitto_broker, tmp_path, face_models):
    from edge_liveness.events import signing

    b = mosquitto_broker
    sink = EventSink(b.host, b.port, topic_base())
    # An active check the recording never satisfies and no timeout in reach: every attempt is
    # still collecting when the next reload comes.
    env = base_env(tmp_path / "state", shared_file("video", "tranvanluyt_real.mp4"), b.port,
                   active__mode="turn", active__turn_deg=79, active__turn_window_s=60, decision__attempt_timeout_s=300)
    d = DaemonProc(tmp_path, env)
    try:
        d.wait_ready()
        d.wait_log(r"attempt \S+ started", timeout=60)
        for i in range(6):
            t = time.monotonic()
            if i == 3:  # one of them over MQTT, signed
                cmd = signing.command("reload", DEVICE_ID, SIGNING_KEY.encode())
                publish(b.host, b.port, [(f"{topic_base()}/set/reload", json.dumps(cmd))])
                assert sink.wait_for(lambda s: s.results("reload"), 20)
                assert sink.results("reload")[-1]["ok"] is True, sink.results("reload")
            else:
                d.signal(signal.SIGHUP)
            d.wait_log(r"reloaded: model", timeout=30, since=t)
            time.sleep(2.0)
        assert d.stop() == 0
        started = set(re.findall(r"attempt (\S+) started", d.log()))
        decided = {e["attempt_id"]: e for e in d.decisions()}
        assert len(started) >= 6, started
        assert started == set(decided), f"attempts that vanished without a decision: {started - set(decided)}"
        reloads = [e for e in decided.values() if e["reason"] == "reload"]
        assert len(reloads) >= 5 and all(e["result"] == "fail" for e in reloads), \
            [(e["result"], e["reason"]) for e in decided.values()]
        assert sink.wait_for(lambda s: {e["event_id"] for e in reloads} <= s.decisions().keys(), 20)
        import jsonschema
        from importlib.resources import files

        schema = json.loads(files("edge_liveness").joinpath("schemas/event.schema.json").read_text())
        v = jsonschema.Draft202012Validator(schema)
        assert not list(v.iter_errors(reloads[0])), "a reload decision must match the published schema"
        assert "Traceback" not in d.log()
    finally:
        d.close()
        sink.close()
