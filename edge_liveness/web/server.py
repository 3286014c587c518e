"""The commissioning page's HTTP server: routes, token checks, static files.

Who may do what:

- ``web.host`` loopback, no token: anyone on the device may look (page, preview, events, decisions);
  requests whose Host header is not a loopback name are refused, so a web page elsewhere cannot
  reach the preview through DNS rebinding.
- ``web.host`` not loopback: every request needs the ``web_token`` secret (the daemon will not start
  without one).
- State-changing requests (``POST /api/active``, ``POST /api/attempt``) always need the token, even
  on loopback, so no other web page the installer opens can switch the door's check (CSRF).

The token is accepted as ``Authorization: Bearer <token>``, as the ``edge_liveness_web`` cookie that
``POST /login`` or one ``GET /?token=`` sets (the page then reloads without it in the address), and is
never logged: request lines are logged at DEBUG without their query string. Wrong tokens, on any
route, are rate-limited per address and logged once per burst (auth.py). How many connections the
page serves, and for how long, is limits.py's.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler
from importlib import resources
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from edge_liveness.events.commands import CommandError, TokenBucket, validate_args
from edge_liveness.web import WebError
from edge_liveness.web.auth import COOKIE, LOCKED, LOGIN_PAGE, OK, WRONG, TokenAuth, check_web_config, is_loopback
from edge_liveness.web.hub import WebHub
from edge_liveness.web.limits import IO_TIMEOUT_S, REQUEST_TIMEOUT_S, BoundedHTTPServer

log = logging.getLogger(__name__)

# Streams have caps of their own and do not count against limits.MAX_CONNECTIONS.
MAX_VIEWERS = 4        # preview connections (each costs a thread and a share of one encoder)
MAX_SUBSCRIBERS = 16   # event-stream connections
DEFAULT_LIMIT, MAX_LIMIT = 20, 500
FRAME_WAIT_S = 20.0    # a preview with no frames (camera down) keeps waiting, this long at a time
PREVIEW_SNDBUF = 64 * 1024  # a viewer that stops reading fills this, then is dropped after STREAM_SEND_TIMEOUT_S
STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/app.css": ("app.css", "text/css; charset=utf-8")}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


class WebServer:
    """``start()`` serves from a daemon thread; ``close()`` stops it. Everything it needs is injected."""

    def __init__(self, web: Any, hub: WebHub, journal: Path, command_fn: Callable[[str, dict], dict],
                 health_fn: Callable[[], dict], device_id: str = "", max_command_bytes: int = 4096,
                 command_rate_per_min: int = 30):
        check_web_config(web)
        self.web = web
        self.hub = hub
        self.journal = journal
        self.command_fn = command_fn
        self.health_fn = health_fn
        self.device_id = device_id
        self.max_command_bytes = max_command_bytes
        self.auth = TokenAuth(web.token.get_secret_value())
        self.open_reads = is_loopback(web.host)
        self.command_bucket = TokenBucket(command_rate_per_min)
        self._lock = threading.Lock()
        self._server: BoundedHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Any, hub: WebHub, command_fn: Callable[[str, dict], dict],
                      health_fn: Callable[[], dict]) -> "WebServer":
        return cls(settings.web, hub, settings.state_path / "outbox.db", command_fn, health_fn, settings.device.id,
                   settings.mqtt.max_command_bytes, settings.mqtt.command_rate_per_min)

    def start(self) -> int:
        host, port = self.web.host, self.web.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_cls = type("Server", (BoundedHTTPServer,), {"address_family": family})
        try:
            self._server = server_cls((host.strip("[]"), port), _handler_for(self))
            self._server.deadlines.on_tick(self.auth.wrong.tick)
        except OSError as e:
            raise WebError(f"cannot serve the web page on {host}:{port} ({e.strerror or e}): choose a free web.port "
                           "or a local address for web.host") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="web-http", daemon=True)
        self._thread.start()
        bound = self._server.server_address[1]
        where = "this device only" if self.open_reads else "the network, token required"
        log.info("web page on http://%s:%d/ (%s)", host if ":" not in host else f"[{host}]", bound, where)
        return bound

    def close(self) -> None:
        self.hub.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ------------------------------------------------------------------ helpers for the handler
    def decisions(self, limit: int) -> list[dict[str, Any]]:
        if not self.journal.is_file():
            return []  # no event yet: the daemon creates the journal on its first one
        conn = sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True, timeout=2.0)
        try:
            rows = conn.execute("SELECT seq, created, delivered_at, payload FROM events WHERE kind = 'decision' "
                                "ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        finally:
            conn.close()
        out = []
        for seq, created, delivered_at, payload in rows:
            try:
                d = json.loads(payload)
            except ValueError:
                continue
            d.pop("sig", None)
            d.update(seq=seq, journaled_at=created, delivered=delivered_at is not None)
            out.append(d)
        return out


def _read_static(name: str) -> bytes:
    return resources.files("edge_liveness.web").joinpath("static", name).read_bytes()


def _handler_for(srv: WebServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "edge-liveness"
        timeout = IO_TIMEOUT_S
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms wait for the client's ACK
        server: BoundedHTTPServer
        signed_in = False

        # -------------------------------------------------------------- plumbing
        def handle_one_request(self) -> None:
            # The whole request (keep-alive wait included) within the deadline, however it trickles in.
            self.server.deadlines.arm(self.connection, REQUEST_TIMEOUT_S)
            super().handle_one_request()

        def send_response(self, code: int, message: str | None = None) -> None:
            self.server.deadlines.disarm(self.connection)  # the request is in; IO_TIMEOUT_S bounds the answer
            super().send_response(code, message)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            # the request line may hold ?token=: log the path only
            log.debug("web %s %s", self.command, urlsplit(getattr(self, "path", "")).path)

        def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
            # its message can quote the raw request line, ?token= and all: the path and the outcome only
            outcome = "timed out" if "timed out" in format else f"answered {args[0]}" if format.startswith("code") else "error"
            log.debug("web: request from %s on %s %s", self.client_address[0], urlsplit(getattr(self, "path", "")).path,
                      outcome)

        def _send(self, code: int, ctype: str, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in {**SECURITY_HEADERS, **(headers or {})}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
            self._send(code, "application/json", json.dumps(obj, separators=(",", ":")).encode(), headers)

        def _error(self, code: int, msg: str) -> None:
            self._json(code, {"ok": False, "error": msg})

        def _credential(self, token: str | None = None) -> str:
            """OK, WRONG, LOCKED or NONE for the request's bearer token or cookie (or ``token``, typed in)."""
            if token is None:
                auth = self.headers.get("Authorization", "")
                token = auth[7:].strip() if auth.startswith("Bearer ") else None
                cookie = next((v for k, _, v in (p.strip().partition("=") for p in self.headers.get("Cookie", "").split(";"))
                               if k == COOKIE), None)
            else:
                cookie = None
            what = f"{self.command} " + "".join(c if c.isprintable() else "?" for c in urlsplit(self.path).path[:60])
            verdict = srv.auth.check(token, cookie, self.client_address[0], what)
            self.signed_in = verdict == OK
            return verdict

        def _refuse_credential(self, verdict: str, page: bool) -> None:
            if verdict == LOCKED:
                return self._error(429, "too many wrong tokens from this address: wait a minute")
            if page:
                return self._send(401, "text/html; charset=utf-8", LOGIN_PAGE.format(msg="Wrong token, try again.").encode())
            self._error(401, "wrong web token")

        def _host_ok(self) -> bool:
            # Without a token, answer only to loopback names: defeats DNS rebinding.
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0] if "]" not in (self.headers.get("Host") or "") \
                else (self.headers.get("Host") or "").split("]")[0] + "]"
            return is_loopback(host)

        def _refuse_read(self, page: bool) -> None:
            if srv.open_reads:
                self._error(403, "this page answers to localhost / 127.0.0.1 only: open it by that name")
            elif page:
                self._send(401, "text/html; charset=utf-8",
                           LOGIN_PAGE.format(msg="This door device's page needs its web token.").encode())
            else:
                self._error(401, "web token required: sign in at / or send Authorization: Bearer <web_token>")

        def _signed_in_page(self, token: str) -> None:
            verdict = self._credential(token)
            if verdict != OK:
                return self._refuse_credential(verdict, page=True)
            # set the cookie and reload without the token, so it leaves the address bar and history
            self._send(303, "text/plain; charset=utf-8", b"signed in\n", {"Location": "/", "Set-Cookie": srv.auth.set_cookie()})

        # -------------------------------------------------------------- GET
        def do_GET(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            path, query = url.path, parse_qs(url.query)
            if path == "/" and "token" in query:
                return self._signed_in_page(query["token"][0])
            if path in ("/app.css",):  # the sign-in page's style: nothing secret
                return self._static(path)
            if path == "/login":
                return self._send(200, "text/html; charset=utf-8",
                                  LOGIN_PAGE.format(msg="Sign in to use the controls.").encode())
            verdict = self._credential()
            if verdict in (WRONG, LOCKED):
                return self._refuse_credential(verdict, page=path == "/")
            if verdict != OK and not (srv.open_reads and self._host_ok()):
                return self._refuse_read(page=path == "/")
            if path in STATIC:
                return self._static(path)
            if path == "/preview.mjpg":
                return self._preview()
            if path == "/api/events":
                return self._events()
            if path == "/api/decisions":
                return self._decisions(query)
            if path == "/api/status":
                return self._status()
            self._error(404, f"no such page {path[:60]!r}: try / , /preview.mjpg, /api/events, /api/decisions, /api/status")

        def _static(self, path: str) -> None:
            name, ctype = STATIC[path]
            self._send(200, ctype, _read_static(name))

        def _decisions(self, query: dict[str, list[str]]) -> None:
            raw = query.get("limit", [str(DEFAULT_LIMIT)])[0]
            try:
                limit = int(raw)
                if not 1 <= limit <= MAX_LIMIT:
                    raise ValueError
            except ValueError:
                return self._error(400, f"limit must be a whole number from 1 to {MAX_LIMIT} (got {raw[:20]!r})")
            try:
                rows = srv.decisions(limit)
            except sqlite3.Error as e:
                return self._error(503, f"journal unreadable ({e}): check storage.state_dir")
            self._json(200, {"decisions": rows})

        def _status(self) -> None:
            try:
                health = dict(srv.health_fn() or {})
            except Exception as e:  # health is best effort; the page must still load
                health = {"problem": str(e)}
            hub = srv.hub
            self._json(200, {"device_id": srv.device_id, "health": health, "model": hub.model, "state": hub.snapshot,
                             "web": {"preview_viewers": hub.viewers, "preview_frames_encoded": hub.frames_encoded,
                                     "event_clients": hub.subscribers, "preview_fps": srv.web.preview_fps,
                                     "controls": bool(srv.auth.token), "signed_in": self.signed_in}})

        def _stream_headers(self, ctype: str) -> None:
            self.server.to_stream(self.connection)  # capped by its route from here on, not by the request pool
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            for k, v in SECURITY_HEADERS.items():
                self.send_header(k, v)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

        def _preview(self) -> None:
            hub = srv.hub
            with srv._lock:
                if hub.viewers >= MAX_VIEWERS:
                    return self._error(503, f"{MAX_VIEWERS} previews are open already: close one")
                seq = hub.add_viewer()
            try:
                # a small send buffer: a viewer that stops reading is noticed after a few frames
                # (then STREAM_SEND_TIMEOUT_S), not after megabytes of buffered preview
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PREVIEW_SNDBUF)
                self._stream_headers("multipart/x-mixed-replace; boundary=frame")
                while True:
                    got = hub.next_jpeg(seq, timeout=FRAME_WAIT_S)
                    if got is None:
                        if hub.closed:
                            return
                        continue  # no frames (camera down): keep the connection, wait on
                    seq, jpeg = got
                    if not jpeg:
                        continue
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode()
                                     + b"\r\n\r\n" + jpeg + b"\r\n")
                    self.wfile.flush()
            except (OSError, ValueError):
                pass  # the viewer went away (or stopped reading for STREAM_SEND_TIMEOUT_S)
            finally:
                hub.remove_viewer()

        def _events(self) -> None:
            hub = srv.hub
            with srv._lock:
                if hub.subscribers >= MAX_SUBSCRIBERS:
                    return self._error(503, f"{MAX_SUBSCRIBERS} event streams are open already: close one")
                sub = hub.subscribe()
            try:
                self._stream_headers("text/event-stream")
                if hub.snapshot:
                    self._event("state", json.dumps(hub.snapshot))
                while True:
                    try:
                        event, data = sub.queue.get(timeout=10.0)
                    except queue.Empty:
                        self.wfile.write(b": keep-alive\n\n")  # also finds a vanished client
                        self.wfile.flush()
                        continue
                    if event == "close":
                        return
                    self._event(event, data)
            except (OSError, ValueError):
                pass
            finally:
                hub.unsubscribe(sub)

        def _event(self, event: str, data: str) -> None:
            self.wfile.write(f"event: {event}\ndata: {data}\n\n".encode())
            self.wfile.flush()

        # -------------------------------------------------------------- POST
        def do_POST(self) -> None:  # noqa: N802
            path = urlsplit(self.path).path
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return self._error(400, "Content-Length must be a number")
            if length > srv.max_command_bytes:
                self.close_connection = True
                return self._error(413, f"body too large: {length} bytes > mqtt.max_command_bytes {srv.max_command_bytes}")
            body = self.rfile.read(length) if length > 0 else b""
            if path == "/login":
                token = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
                return self._signed_in_page(token)
            if path not in ("/api/active", "/api/attempt"):
                return self._error(404, f"no such action {path[:60]!r}: POST /api/active or /api/attempt")
            if not srv.auth.token:
                return self._error(403, "controls need a web token: put one in the secret file web_token "
                                        "(credentials directory) and restart the daemon")
            verdict = self._credential()
            if verdict in (WRONG, LOCKED):
                return self._refuse_credential(verdict, page=False)
            if verdict != OK:
                return self._error(401, "web token required: sign in at / or send Authorization: Bearer <web_token>")
            origin = self.headers.get("Origin")
            if origin and urlsplit(origin).netloc != self.headers.get("Host"):
                return self._error(403, "cross-site request refused: use the page served by this device")
            name = path.rsplit("/", 1)[1]
            try:
                args = json.loads(body) if body.strip() else {}
            except RecursionError:
                return self._error(400, "body nested too deeply: send a flat JSON object")
            except ValueError as e:
                return self._error(400, f"body is not JSON ({e}): send a JSON object")
            if not isinstance(args, dict):
                return self._error(400, "body must be a JSON object")
            try:
                args = validate_args(name, args)  # exactly the MQTT command's rules
            except CommandError as e:
                return self._error(400, str(e))
            if not srv.command_bucket.take():
                return self._error(429, "rate limited: over mqtt.command_rate_per_min; try again later")
            log.info("web: command %s %s", name, args or "")
            self.server.deadlines.disarm(self.connection)  # the frame loop may take its time to answer
            result = srv.command_fn(name, args)
            self._json(200 if result.get("ok") else 503, result)

    return Handler
