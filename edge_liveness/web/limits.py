"""How much of the daemon the commissioning page may take, and how it gives way.

The page shares the process with the door's real work (camera, journal, MQTT link, status file),
which needs file descriptors too; ``http.server`` alone would take a descriptor and a thread for
every socket anyone opens and keep it while the client idles. So:

- at most ``connection_cap()`` requests are read or answered at once (32 under a limit of 1,024
  descriptors); a connection beyond that gets a short 503 and is closed at once, at most 100 a
  second, and the first refusal of a burst is logged (the burst's count when it ends);
- a request must be in (request line, headers, body) ``REQUEST_TIMEOUT_S`` after the connection
  became ready for it, keep-alive waits included: one thread (``Deadlines``) shuts down the late
  ones, so a client sending a byte now and then is dropped like an idle one;
- every read, and every answer's whole write, times out after ``IO_TIMEOUT_S``;
- event streams and previews leave the pool once they start (``to_stream``): they have their own
  caps (server.py), so an open page never takes a request slot;
- ``accept()`` failing because the process is out of descriptors (EMFILE, ENFILE) backs off, up to
  a second between tries, with one WARNING per episode, instead of retrying at once forever;
- a connection that ends badly (reset, broken pipe, half a request) is one DEBUG line, never a
  traceback on stderr.
"""

from __future__ import annotations

import errno
import logging
import resource
import socket
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any, Callable

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 32        # requests in progress (each a thread and a descriptor)
FD_RESERVE = 64             # descriptors the daemon keeps for itself before sharing with the page
REQUEST_TIMEOUT_S = 5.0     # to get a whole request in, and to idle between keep-alive requests
IO_TIMEOUT_S = 5.0          # one read, or a whole answer's write
STREAM_SEND_TIMEOUT_S = 10.0  # a stream's client that stops reading is dropped after this
REFUSE_PAUSE_S = 0.01       # after each refusal: a flood of connects costs the accept thread <= 100 a second
ACCEPT_BACKOFF_S = (0.05, 1.0)
BURST_QUIET_S = 10.0        # a refusal burst ends after this long without one
TICK_S = 0.25
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def connection_cap(soft_limit: int | None = None) -> int:
    """Request slots: ``MAX_CONNECTIONS``, fewer when the descriptor limit is small (an eighth of
    what is left after ``FD_RESERVE``), so the page can never use up the process's descriptors."""
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(2, min(MAX_CONNECTIONS, (soft_limit - FD_RESERVE) // 8))


def one_line(e: BaseException | None) -> str:
    return "" if e is None else f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")


class Deadlines:
    """Shuts down each connection whose deadline passed; one thread for all, a few times a second.
    Also runs the page's periodic chores (``on_tick``), such as closing a burst's log line."""

    def __init__(self) -> None:
        self._due: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticks: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None

    def on_tick(self, fn: Callable[[], None]) -> None:
        self._ticks.append(fn)

    def arm(self, sock: socket.socket, seconds: float) -> None:
        with self._lock:
            self._due[sock] = time.monotonic() + seconds

    def disarm(self, sock: socket.socket) -> None:
        with self._lock:
            self._due.pop(sock, None)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="web-deadlines", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            now = time.monotonic()
            with self._lock:
                late = [s for s, t in self._due.items() if t <= now]
                for s in late:
                    del self._due[s]
            for s in late:
                try:
                    s.shutdown(socket.SHUT_RDWR)  # the handler's blocked read returns; its thread ends
                except OSError:
                    pass  # already closed by its handler
            if late:
                log.debug("web: %d connection(s) dropped: no whole request within %g s", len(late), REQUEST_TIMEOUT_S)
            for fn in self._ticks:
                try:
                    fn()
                except Exception as e:  # a chore must not end the deadlines
                    log.warning("web: periodic check failed: %s", one_line(e))


class BoundedHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` within the limits above (handlers call ``arm``/``to_stream``)."""

    daemon_threads = True
    request_queue_size = 16

    def __init__(self, address: Any, handler: Any, cap: int | None = None):
        self.cap = connection_cap() if cap is None else cap
        self.deadlines = Deadlines()
        self._held: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._refused = 0
        self._last_refusal = 0.0
        self._starved_since: float | None = None
        self._failed_accepts = 0
        self._backoff = ACCEPT_BACKOFF_S[0]
        super().__init__(address, handler)
        self.deadlines.on_tick(self._end_refusal_burst)
        self.deadlines.start()

    @property
    def open_requests(self) -> int:
        return len(self._held)

    # -------------------------------------------------------------- accepting
    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            got = super().get_request()
        except OSError as e:
            if e.errno in OUT_OF_DESCRIPTORS:
                self._starving(e)
            raise  # socketserver drops it and selects again, after our pause
        if self._starved_since is not None:
            log.info("web page: accepting connections again after %.1f s without file descriptors (%d tries failed)",
                     time.monotonic() - self._starved_since, self._failed_accepts)
            self._starved_since, self._failed_accepts, self._backoff = None, 0, ACCEPT_BACKOFF_S[0]
        return got

    def _starving(self, e: OSError) -> None:
        if self._starved_since is None:
            self._starved_since = time.monotonic()
            log.warning("web page: cannot accept a connection, the process is out of file descriptors (%s): "
                        "backing off (up to %g s between tries) until some are free; frames, journal and MQTT go on",
                        e.strerror or e, ACCEPT_BACKOFF_S[1])
        self._failed_accepts += 1
        time.sleep(self._backoff)  # only the page's accept thread waits
        self._backoff = min(ACCEPT_BACKOFF_S[1], self._backoff * 2)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self._lock:
            ok = len(self._held) < self.cap
            if ok:
                self._held.add(request)
        if not ok:
            self._refuse(request)
        return ok

    def _refuse(self, request: socket.socket) -> None:
        body = f"this page serves {self.cap} connections at once: try again in a few seconds\n".encode()
        busy = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 5\r\n"
                b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        try:
            request.setblocking(False)
            request.send(busy)
        except OSError:
            pass
        if not self._refused:
            log.warning("web page: %d connections open, the most it serves: refusing new ones until some end "
                        "(a client holding many sockets open?)", self.cap)
        self._refused += 1
        self._last_refusal = time.monotonic()
        time.sleep(REFUSE_PAUSE_S)

    def _end_refusal_burst(self) -> None:
        if self._refused and time.monotonic() - self._last_refusal >= BURST_QUIET_S:
            log.info("web page: serving new connections again; %d were refused while %d were open",
                     self._refused, self.cap)
            self._refused = 0

    # -------------------------------------------------------------- per connection
    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.release(request)  # no thread: the slot is not held by anyone
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.release(request)

    def release(self, request: socket.socket) -> None:
        self.deadlines.disarm(request)
        with self._lock:
            self._held.discard(request)

    def to_stream(self, request: socket.socket) -> None:
        """The request became a stream: capped by its route, it leaves the request pool."""
        self.release(request)
        request.settimeout(STREAM_SEND_TIMEOUT_S)

    def handle_error(self, request: Any, client_address: Any) -> None:
        e = sys.exc_info()[1]
        who = client_address[0] if isinstance(client_address, tuple) and client_address else "?"
        if isinstance(e, (OSError, ValueError)):  # reset, broken pipe, timed out, or written after close
            log.debug("web: connection from %s ended: %s", who, one_line(e))
        else:
            log.warning("web: request from %s failed: %s", who, one_line(e))

    def server_close(self) -> None:
        self.deadlines.close()
        super().server_close()
