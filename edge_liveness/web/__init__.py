"""The commissioning page: a local web server inside the daemon (off by default, loopback by default).

- ``annotate``: draws the face box, eye contours and the numbers on a downscaled copy of a frame
  (shared with ``edge-liveness snapshot``).
- ``hub``: what the frame loop hands over, without ever blocking it: state/decision events for the
  Server-Sent Events clients and the latest frame for the preview encoder, which encodes JPEG only
  while a viewer watches.
- ``server``: the HTTP routes, token checks and the static page (``static/``).
- ``auth``: the token, cookie and loopback rules, and the wrong-token rate limit.
- ``limits``: how many connections the page serves and for how long, so it never takes the
  descriptors the door's own work needs.

Standard library only (``http.server``): nothing to install on the device, no extra attack surface to
keep patched, and a handful of local viewers is all it ever serves.

Layer: imports ``events`` (command checks), ``vision`` (eye rings) and ``config``; the daemon's
``service.web_page`` runs it.
"""

from __future__ import annotations


class WebError(ValueError):
    """The web page cannot be served as configured (message is one line naming the fix)."""
