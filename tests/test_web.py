"""The commissioning page (`[web]`) on a real daemon replaying a real recording: who may read and
who may act, the journal and health routes, the preview's cost rule (no viewer: no encoding), and
that slow, stuck or vanished viewers never hold up the frame loop. The browser side is
test_web_browser.py."""

from __future__ import annotations

import socket
import threading
import time

import cv2
import numpy as np
import pytest

from conftest import shared_file
from edge_liveness.events.commands import CommandError, validate_args
from web_helpers import TOKEN, WebDaemon, read_mjpeg

pytestmark = pytest.mark.slow

WRONG = "not-the-door-token-42"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, shared_data):
    d = WebDaemon(tmp_path_factory.mktemp("web"), shared_file("video", "tranvanluyt_real.mp4"),
                  extra={"EDGE_LIVENESS_DECISION__REARM": "cooldown", "EDGE_LIVENESS_DECISION__COOLDOWN_S": "1"})
    try:
        d.wait_running()
        yield d
    finally:
        rc = d.stop()
    assert rc == 0, d.log()[-2000:]
    # Every request of this module, right and wrong tokens included, went through a DEBUG log.
    text = d.log()
    assert "web GET" in text, "request logging is off: the no-token-in-logs check would prove nothing"
    assert TOKEN not in text and WRONG not in text


def _status(d: WebDaemon) -> dict:
    code, st = d.get_json("/api/status")
    assert code == 200
    return st


def _wait(pred, timeout: float, what: str, step: float = 0.2):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_refuses_a_network_host_without_a_token(tmp_path, shared_data):
    d = WebDaemon(tmp_path, shared_file("video", "tranvanluyt_real.mp4"), host="0.0.0.0", token=None)
    rc = d.proc.wait(timeout=60)
    d.stop()
    lines = [ln for ln in d.log().splitlines() if ln.strip()]
    assert rc == 2
    errors = [ln for ln in lines if "ERROR" in ln]
    assert len(errors) == 1 and "web_token" in errors[0] and "127.0.0.1" in errors[0], lines


def test_loopback_page_reads_without_a_token(daemon):
    code, headers, body = daemon.request("GET", "/")
    assert code == 200 and headers["content-type"].startswith("text/html")
    assert b'id="preview"' in body and b"never written to disk" in body
    assert "default-src 'self'" in headers["content-security-policy"]  # no CDN, nothing from elsewhere
    for asset in ("/app.js", "/app.css"):
        assert daemon.request("GET", asset)[0] == 200
    st = _status(daemon)
    assert st["model"]["name"] and len(st["model"]["sha256"]) == 64 and 0 < st["model"]["threshold"] < 1
    assert st["health"]["camera"] and st["health"]["fps"] > 0
    assert st["web"] == {**st["web"], "controls": True, "signed_in": False}
    assert st["state"]["state"] in ("idle", "collecting", "cooldown") and st["state"]["active_mode"] == "blink"
    assert st["state"]["frame"] == [368, 656]


def test_loopback_refuses_foreign_host_names(daemon):
    # DNS rebinding: another site's name resolving to 127.0.0.1 must not reach the preview.
    for path in ("/", "/preview.mjpg", "/api/decisions"):
        code, _, body = daemon.request("GET", path, headers={"Host": f"attacker.example:{daemon.port}"})
        assert code == 403 and b"localhost" in body


def test_decisions_limit(daemon):
    for bad in ("0", "abc", "501", "-3"):
        code, body = daemon.get_json(f"/api/decisions?limit={bad}")
        assert code == 400 and "limit must be a whole number from 1 to 500" in body["error"]
    _wait(lambda: daemon.get_json("/api/decisions?limit=5")[1]["decisions"], 40, "a first decision")
    code, body = daemon.get_json("/api/decisions?limit=2")
    assert code == 200 and 1 <= len(body["decisions"]) <= 2
    d = body["decisions"][0]
    assert d["type"] == "decision" and d["result"] in ("pass", "fail") and "sig" not in d
    assert set(d["evidence"]) >= {"frames", "passive_median", "active_mode", "model"}


def test_controls_need_the_token_and_the_mqtt_validation(daemon):
    assert daemon.post("/api/active", {"mode": "off"}, token=None) == (401, {
        "ok": False, "error": "web token required: sign in at / or send Authorization: Bearer <web_token>"})
    assert daemon.post("/api/active", {"mode": "off"}, token=WRONG) == (401, {"ok": False, "error": "wrong web token"})
    assert daemon.post("/api/attempt", {}, token=None)[0] == 401
    for args in ({"mode": "blinky"}, {"mode": "off", "x": 1}, {"enabled": "yes"}, {}):
        with pytest.raises(CommandError) as e:
            validate_args("active", args)
        assert daemon.post("/api/active", args) == (400, {"ok": False, "error": str(e.value)})
    assert daemon.post("/api/attempt", {"now": True})[0] == 400
    code, body = daemon.post("/api/active", b"{not json")
    assert code == 400 and "not JSON" in body["error"]
    code, body = daemon.post("/api/active", {"mode": "off"}, headers={"Origin": "http://attacker.example"})
    assert code == 403 and "cross-site" in body["error"]
    code, body = daemon.post("/api/active", b"x" * 5000)
    assert code == 413


def test_mode_switch_reaches_the_next_decision(daemon):
    assert daemon.post("/api/active", {"mode": "turn"}) == (200, {"ok": True, "active_mode": "turn"})
    assert _status(daemon)["state"].get("active_mode", "turn") == "turn"
    seen = {d["seq"] for d in daemon.get_json("/api/decisions?limit=50")[1]["decisions"]}
    code, body = daemon.post("/api/attempt", {})
    assert code == 200 and body["ok"] is True

    def new_turn_decision():
        return [d for d in daemon.get_json("/api/decisions?limit=50")[1]["decisions"]
                if d["seq"] not in seen and d["evidence"]["active_mode"] == "turn"]

    _wait(new_turn_decision, 40, "a decision made with active mode 'turn'")
    assert daemon.post("/api/active", {"mode": "blink"})[0] == 200


def test_sign_in_sets_a_cookie_that_is_not_the_token(daemon):
    code, headers, _ = daemon.request("GET", f"/?token={WRONG}")
    assert code == 401
    code, headers, _ = daemon.request("GET", f"/?token={TOKEN}")
    assert code == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"].split(";")[0]
    assert TOKEN not in headers["set-cookie"] and "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
    assert daemon.post("/api/active", {"mode": "blink"}, token=None, headers={"Cookie": cookie})[0] == 200
    code, st = daemon.get_json("/api/status", headers={"Cookie": cookie})
    assert st["web"]["signed_in"] is True
    code, headers, _ = daemon.request("POST", "/login", body=f"token={TOKEN}",
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert code == 303 and headers["set-cookie"].split(";")[0] == cookie


def test_a_stale_cookie_is_no_credential_and_locks_nobody_out(daemon):
    # After the token changes, a browser keeps sending the old cookie: nothing to guess in it (an
    # HMAC of the token), so it is not counted as a wrong token; loopback reads stay open.
    stale = "edge_liveness_web=" + "0" * 64
    for _ in range(30):  # more than the wrong-token allowance of an address
        code, st = daemon.get_json("/api/status", headers={"Cookie": stale})
        assert code == 200 and st["web"]["signed_in"] is False
    assert daemon.post("/api/active", {"mode": "blink"}, token=None, headers={"Cookie": stale}) == (401, {
        "ok": False, "error": "web token required: sign in at / or send Authorization: Bearer <web_token>"})
    # not counted as 30 wrong tokens: this address's right token is still compared (else: 429)
    assert daemon.post("/api/active", {"mode": "blink"})[0] == 200


def test_preview_is_encoded_only_while_watched(daemon):
    _wait(lambda: _status(daemon)["web"]["preview_viewers"] == 0, 25, "no preview viewers")
    e0 = _status(daemon)["web"]["preview_frames_encoded"]
    time.sleep(1.5)
    assert _status(daemon)["web"]["preview_frames_encoded"] == e0, "frames were encoded with nobody watching"

    c = daemon.conn()
    c.request("GET", "/preview.mjpg")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type").startswith("multipart/x-mixed-replace")
    frames = read_mjpeg(r, 4)
    assert _status(daemon)["web"]["preview_viewers"] == 1
    r.close()
    c.close()
    assert len(frames) == 4 and len(set(frames)) == 4, "the preview did not change"
    for f in frames:
        img = cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and max(img.shape[:2]) <= 480  # downscaled
    _wait(lambda: _status(daemon)["web"]["preview_viewers"] == 0, 25, "the viewer count to drop after close")
    e1 = _status(daemon)["web"]["preview_frames_encoded"]
    assert e1 >= e0 + 4
    time.sleep(1.5)
    assert _status(daemon)["web"]["preview_frames_encoded"] == e1


def _stuck_viewer(port: int, path: str = "/preview.mjpg") -> socket.socket:
    """Asks for a stream and never reads: its receive buffer fills and the server's writes stall."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return s


def test_stuck_and_vanished_viewers_do_not_hold_up_the_loop(daemon):
    before = _status(daemon)["health"]["fps"]
    events: list[float] = []
    stop = threading.Event()

    def listen() -> None:
        c = daemon.conn(timeout=30)
        c.request("GET", "/api/events")
        r = c.getresponse()
        while not stop.is_set():
            line = r.fp.readline()
            if not line:
                return
            if line.startswith(b"event: state"):
                events.append(time.monotonic())
        c.close()

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    stuck = [_stuck_viewer(daemon.port) for _ in range(3)] + [_stuck_viewer(daemon.port, "/api/events")]
    gone = socket.create_connection(("127.0.0.1", daemon.port))
    gone.sendall(b"GET /preview.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    gone.recv(1000)
    gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST, not FIN
    gone.close()
    time.sleep(4.0)  # > 1 s of status refresh, and long enough for the stuck sockets' buffers to fill
    t_check = time.monotonic()
    time.sleep(2.0)
    during = _status(daemon)["health"]["fps"]
    recent = [e for e in events if e >= t_check]
    for s in stuck:
        s.close()
    stop.set()
    assert during >= 0.5 * before, f"frame loop slowed from {before} to {during} fps with stuck viewers"
    assert len(recent) >= 5, f"state events stalled: {len(recent)} in 2 s"
    _wait(lambda: _status(daemon)["web"]["preview_viewers"] == 0, 30, "stuck viewers to be dropped")


def test_network_host_needs_the_token_for_everything(tmp_path, shared_data):
    d = WebDaemon(tmp_path, shared_file("video", "tranvanluyt_real.mp4"), host="0.0.0.0")
    try:
        d.wait_running()
        code, headers, body = d.request("GET", "/")
        assert code == 401 and headers["content-type"].startswith("text/html") and b"web token" in body
        for path in ("/preview.mjpg", "/api/events", "/api/decisions", "/api/status"):
            assert d.request("GET", path)[0] == 401, path
            assert d.request("GET", path, token=WRONG)[0] == 401, path
        assert d.request("GET", "/api/status", token=TOKEN)[0] == 200
        code, headers, _ = d.request("GET", f"/?token={TOKEN}")
        cookie = headers["set-cookie"].split(";")[0]
        assert d.request("GET", "/api/decisions", headers={"Cookie": cookie})[0] == 200
        assert d.request("GET", "/", headers={"Cookie": cookie})[0] == 200
    finally:
        rc = d.stop()
    assert rc == 0
    assert TOKEN not in d.log() and WRONG not in d.log()


def test_challenge_prompt_reaches_the_event_stream(daemon):
    import json

    c = daemon.conn(timeout=30)
    c.request("GET", "/api/events")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    try:
        assert daemon.post("/api/active", {"mode": "challenge"})[0] == 200
        assert daemon.post("/api/attempt", {})[0] == 200
        prompt, prompted_state, event = None, None, None
        t0 = time.monotonic()
        while time.monotonic() - t0 < 40 and not (prompt and prompted_state):
            line = r.fp.readline().decode().strip()
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                body = json.loads(line[6:])
                if event == "prompt":
                    prompt = body
                elif event == "state" and prompt and body["prompt"]:
                    prompted_state = body
        assert prompt and prompt["kind"] == "prompt" and prompt["actions"], "no challenge prompt on the stream"
        assert set(prompt["actions"]) <= {"blink", "turn_left", "turn_right", "nod"}
        assert prompted_state["prompt"] == prompt["actions"] and prompted_state["active_mode"] == "challenge"
    finally:
        r.close()
        c.close()
        daemon.post("/api/active", {"mode": "blink"})


def test_the_page_shows_the_attempts_latest_passive_score_between_scored_frames(face_models):
    # the models score only some attempt frames (schedule.py): the page must not flicker to "-"
    from edge_liveness.config import load_settings
    from edge_liveness.pipeline import build_pipeline
    from edge_liveness.recordings.attempts import replay_attempts
    from edge_liveness.web.hub import WebHub

    hub = WebHub()
    pipeline = build_pipeline(load_settings(None))
    seen = {"collecting": 0, "unscored": 0, "shown": 0, "idle_shown": 0}

    def on_frame(result):
        hub.publish(result, pipeline)
        snap = hub.snapshot
        if pipeline.engine.state == "collecting" and result.obs.p_live is None and seen["collecting"]:
            seen["unscored"] += 1
            seen["shown"] += snap["p_live"] is not None
        if pipeline.engine.state == "collecting":
            seen["collecting"] += 1
        elif result.obs.p_live is None:
            seen["idle_shown"] += snap["p_live"] is not None

    replay_attempts(pipeline, shared_file("video", "tranvanluyt_real.mp4"), on_frame=on_frame)
    assert seen["unscored"] > 0 and seen["shown"] == seen["unscored"], seen
    assert seen["idle_shown"] == 0, seen  # outside an attempt no stale score is shown
