"""Who may use the commissioning page: loopback rules, the ``web_token`` and the session cookie.

The cookie holds a value derived from the token, never the token: whatever characters the token has,
and a browser's cookie store never holds the secret the daemon was given.

Wrong tokens (bearer, ``?token=``, the sign-in form), on any route, are counted per client address:
past ``WRONG_TOKENS_PER_MIN`` a minute from one address (or ``WRONG_TOKENS_ALL_PER_MIN`` from all
together) that address's tokens are answered 429 without being compared, so a guesser learns
nothing from the answers; and logged once per burst: one WARNING at its first wrong token, one with
the count when none came for ``BURST_QUIET_S``. A wrong session cookie counts as no credential: it
is an HMAC of the token (nothing to guess), and a browser keeps sending a stale one after the token
changes, which must not lock its installer out.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

from edge_liveness.web import WebError

log = logging.getLogger("edge_liveness.web.server")  # where the page's token lines always were

COOKIE = "edge_liveness_web"
COOKIE_MAX_AGE_S = 12 * 3600
WRONG_TOKENS_PER_MIN = 20       # per client address; then 429, unchecked: no guessing at wire speed
WRONG_TOKENS_ALL_PER_MIN = 100  # all addresses together (a guesser with many addresses)
BURST_QUIET_S = 5.0             # a burst of wrong tokens ends after this long without one
MAX_ADDRESSES = 1024            # addresses remembered (oldest forgotten first)
OK, WRONG, LOCKED, NONE = "ok", "wrong", "locked", "none"

LOGIN_PAGE = """<!doctype html><html lang="en"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>edge-liveness: sign in</title>
<link rel="stylesheet" href="/app.css"><body class="login"><main><h1>edge-liveness</h1><p>{msg}</p>
<form method="post" action="/login"><label>Web token <input name="token" type="password" autocomplete="current-password"
 autofocus></label><button type="submit">Sign in</button></form>
<p class="small">The token is the <code>web_token</code> secret in the daemon's credentials directory.</p></main></body></html>"""


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_web_config(web: Any) -> None:
    """Raise WebError when the page would be open to the network without a token."""
    if web.enabled and not is_loopback(web.host) and not web.token.get_secret_value():
        raise WebError(f"web.host {web.host!r} is not a loopback address and no web token is set: put a token in the "
                       "secret file web_token (credentials directory), or set web.host = \"127.0.0.1\"")


class WrongTokens:
    """Per-address allowance of wrong tokens (refilled at the per-minute rate) and the burst's log lines."""

    def __init__(self, per_min: int = WRONG_TOKENS_PER_MIN, all_per_min: int = WRONG_TOKENS_ALL_PER_MIN,
                 clock: Callable[[], float] = time.monotonic):
        self.per_min, self.all_per_min, self.clock = per_min, all_per_min, clock
        self._left: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (allowance, when)
        self._lock = threading.Lock()
        self._burst: dict[str, int] = {}  # address -> wrong tokens in this burst
        self._unchecked = 0
        self._first = self._last = 0.0

    def _allowance(self, key: str, rate: int, now: float) -> float:
        left, when = self._left.get(key, (float(rate), now))
        return min(float(rate), left + (now - when) * rate / 60.0)

    def locked(self, client: str, what: str) -> bool:
        """True when ``client`` has used up its wrong tokens: its next token is not even compared."""
        with self._lock:
            now = self.clock()
            if self._allowance(client, self.per_min, now) >= 1 and self._allowance("*", self.all_per_min, now) >= 1:
                return False
            self._unchecked += 1
            self._count(client, what, now)
            return True

    def failed(self, client: str, what: str) -> None:
        with self._lock:
            now = self.clock()
            for key, rate in ((client, self.per_min), ("*", self.all_per_min)):
                self._left[key] = (self._allowance(key, rate, now) - 1, now)
                self._left.move_to_end(key)
            while len(self._left) > MAX_ADDRESSES:
                self._left.popitem(last=False)
            self._count(client, what, now)

    def _count(self, client: str, what: str, now: float) -> None:
        if not self._burst:
            self._first = now
            log.warning("web page: a request with a wrong web token from %s was refused (%s); more in this burst "
                        "are counted, not logged", client, what)
        self._burst[client] = self._burst.get(client, 0) + 1
        self._last = now

    def tick(self) -> None:
        """The burst's summary once it is over (called a few times a second)."""
        with self._lock:
            if not self._burst or self.clock() - self._last < BURST_QUIET_S:
                return
            n, who, unchecked = sum(self._burst.values()), sorted(self._burst), self._unchecked
            span = self._last - self._first
            self._burst, self._unchecked = {}, 0
        shown = ", ".join(who[:5]) + (f" and {len(who) - 5} more" if len(who) > 5 else "")
        log.warning("web page: %d request%s with a wrong web token refused in %.0f s from %s; %d of them answered "
                    "429 unchecked (over %d a minute from one address)", n, "" if n == 1 else "s", span, shown, unchecked,
                    self.per_min)


class TokenAuth:
    def __init__(self, token: str):
        self.token = token.encode()
        self._cookie = hmac.new(self.token, b"edge-liveness web session", hashlib.sha256).hexdigest()
        self.wrong = WrongTokens()

    def check(self, token: str | None, cookie: str | None, client: str, what: str) -> str:
        """OK, WRONG (answer 401), LOCKED (answer 429, the token not compared) or NONE (nothing usable)."""
        if token is not None:
            if self.wrong.locked(client, what):
                return LOCKED
            if self.token_ok(token):
                return OK
            self.wrong.failed(client, what)
            return WRONG
        return OK if cookie is not None and self.cookie_ok(cookie) else NONE

    def token_ok(self, presented: str | None) -> bool:
        return bool(self.token) and presented is not None and hmac.compare_digest(presented.encode(), self.token)

    def cookie_ok(self, presented: str) -> bool:
        return bool(self.token) and hmac.compare_digest(presented.encode(), self._cookie.encode())

    def set_cookie(self) -> str:
        return f"{COOKIE}={self._cookie}; Path=/; HttpOnly; SameSite=Strict; Max-Age={COOKIE_MAX_AGE_S}"
