"""The commissioning page (web.enabled) as the daemon runs it: start, publish each frame, close.

Why a module of its own: the page is optional and lives in its own package (`web/`); the daemon
needs only three things from it, and none of its imports when the page is off.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from edge_liveness.config import Settings

# The daemon's lines: the same logger name they had inside service/daemon.py, so log lines stay the same.
log = logging.getLogger("edge_liveness.daemon")


class WebPage:
    def __init__(self) -> None:
        self.hub: Any = None
        self.server: Any = None

    def start(self, settings: Settings, on_command: Callable[[str, dict], dict],
              health: Callable[[], dict[str, Any]]) -> bool:
        """Serve the page when web.enabled; False (after one ERROR line) when it cannot be served as configured."""
        if not settings.web.enabled:
            return True
        from edge_liveness.web import WebError
        from edge_liveness.web.hub import WebHub
        from edge_liveness.web.server import WebServer

        hub = WebHub(settings.web.preview_fps)
        try:
            server = WebServer.from_settings(settings, hub, on_command, health)
            server.start()
        except WebError as e:
            log.error("%s", e)
            return False
        self.hub, self.server = hub, server
        return True

    def publish(self, result: Any, pipeline: Any) -> None:
        """One processed frame to the page's viewers (the hub drops what they cannot take)."""
        if self.hub is not None:
            self.hub.publish(result, pipeline)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
