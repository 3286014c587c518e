"""What a command (MQTT or the commissioning page) does to the running daemon, between two frames.

Why a module of its own: events/commands.py decides whether a command is valid and allowed; this decides
what an allowed one changes (the active mode, a new attempt, a reload) and what it answers. The
daemon's frame loop only hands each one over here.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from edge_liveness.config import Settings

# The daemon's lines: the same logger name they had inside service/daemon.py, so log lines stay the same.
log = logging.getLogger("edge_liveness.daemon")


def handle_command(name: str, args: dict, engine: Any, settings: Settings,
                   reload: Callable[[], tuple[bool, str]]) -> dict:
    """The answer to one command; ``engine`` is the running pipeline's decision engine."""
    if name == "active":
        mode = args.get("mode")
        if mode is None and "enabled" in args:
            mode = settings.active.mode if args["enabled"] else "off"
            if mode == "off" and args["enabled"]:
                mode = "blink"
        engine.active_mode = mode
        log.info("active check set to %s by command", mode)
        return {"ok": True, "active_mode": engine.active_mode}
    if name == "attempt":
        engine.start_attempt()
        return {"ok": True, "state": engine.state}
    if name == "reload":
        ok, msg = reload()
        return {"ok": True, "message": msg} if ok else {"ok": False, "error": msg}
    return {"ok": False, "error": f"unknown command {name}"}
