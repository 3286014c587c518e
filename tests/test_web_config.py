"""The `[web]` section, the `web_token` secret and the loopback rule, without a daemon."""

from __future__ import annotations

import http.client
import socket

import pytest

from edge_liveness.config import ConfigError, load_settings
from edge_liveness.web import WebError
from edge_liveness.web.auth import check_web_config, is_loopback
from edge_liveness.web.hub import WebHub
from edge_liveness.web.server import WebServer


def test_defaults_are_off_and_local():
    w = load_settings().web
    assert (w.enabled, w.host, w.port, w.preview_fps, w.token.get_secret_value()) == (False, "127.0.0.1", 8088, 5.0, "")


def test_web_token_secret_file(tmp_path):
    (tmp_path / "web_token").write_text("front-door-token\n")
    s = load_settings(secrets_dir=tmp_path)
    assert s.web.token.get_secret_value() == "front-door-token"
    assert "front-door-token" not in repr(s) and "front-door-token" not in str(s.model_dump())


@pytest.mark.parametrize("text, needle", [
    ("[web]\npreview_fps = 0\n", "web.preview_fps: must be > 0 (got 0)"),
    ("[web]\npreview_fps = 60\n", "web.preview_fps: must be <= 30"),
    ("[web]\nport = 70000\n", "web.port: must be < 65536"),
    ("[web]\nhost = \"\"\n", "web.host"),
    ("[web]\nenable = true\n", "web.enable: unknown key"),
])
def test_bad_values_are_one_line_each(tmp_path, text, needle):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_settings(f)
    assert len(e.value.problems) == 1 and needle in e.value.problems[0]


@pytest.mark.parametrize("host, loop", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True), ("LOCALHOST", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("door.local", False), ("127.0.0.1.example", False),
])
def test_loopback(host, loop):
    assert is_loopback(host) is loop


def test_network_host_needs_a_token(tmp_path):
    s = load_settings(web={"enabled": True, "host": "0.0.0.0"})
    with pytest.raises(WebError, match="web_token"):
        check_web_config(s.web)
    (tmp_path / "web_token").write_text("t0ken")
    check_web_config(load_settings(secrets_dir=tmp_path, web={"enabled": True, "host": "0.0.0.0"}).web)
    check_web_config(load_settings(web={"enabled": True}).web)  # loopback: fine without one


def _free_port(family=socket.AF_INET, host="127.0.0.1") -> int:
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def test_serves_on_ipv6_loopback_and_says_when_the_port_is_taken(tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        port = _free_port(socket.AF_INET6, "::1")
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    s = load_settings(web={"enabled": True, "host": "::1", "port": port}, storage={"state_dir": str(tmp_path)})
    server = WebServer.from_settings(s, WebHub(), lambda n, a: {"ok": False}, lambda: {"state": "test"})
    assert server.start() == port
    try:
        c = http.client.HTTPConnection("::1", port, timeout=5)
        c.request("GET", "/api/decisions", headers={"Host": f"[::1]:{port}"})
        r = c.getresponse()
        assert r.status == 200 and r.read() == b'{"decisions":[]}'  # no journal yet: an empty list
        c.close()
        other = WebServer.from_settings(s, WebHub(), lambda n, a: {"ok": False}, dict)
        with pytest.raises(WebError, match=r"cannot serve the web page on ::1:\d+ .*choose a free web.port"):
            other.start()
    finally:
        server.close()
