"""Who may use the commissioning page: loopback rules, the ``web_token`` and the session cookie.

The cookie holds a value derived from the token, never the token: whatever characters the token has,
and a browser's cookie store never holds the secret the daemon was given.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Any

from edge_liveness.events.commands import TokenBucket
from edge_liveness.web import WebError

COOKIE = "edge_liveness_web"
COOKIE_MAX_AGE_S = 12 * 3600
WRONG_TOKENS_PER_MIN = 20  # answered 429 past this: no guessing at wire speed

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


class TokenAuth:
    def __init__(self, token: str):
        self.token = token.encode()
        self._cookie = hmac.new(self.token, b"edge-liveness web session", hashlib.sha256).hexdigest()
        self.failures = TokenBucket(WRONG_TOKENS_PER_MIN)

    def token_ok(self, presented: str | None) -> bool:
        return bool(self.token) and presented is not None and hmac.compare_digest(presented.encode(), self.token)

    def cookie_ok(self, presented: str) -> bool:
        return bool(self.token) and hmac.compare_digest(presented.encode(), self._cookie.encode())

    def set_cookie(self) -> str:
        return f"{COOKIE}={self._cookie}; Path=/; HttpOnly; SameSite=Strict; Max-Age={COOKIE_MAX_AGE_S}"
