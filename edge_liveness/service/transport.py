"""The daemon's way out: the journal (outbox), the MQTT link and the publisher, started and closed.

Why a module of its own: they start in one order (key, journal, link, publisher, the events a
previous run could not journal, then the connection) and close in the reverse one within systemd's
stop timeout; the frame loop only submits events and reads the backlog. Each part is set as soon as
it exists, so a start that fails half-way still closes what it opened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from edge_liveness.config import Settings
from edge_liveness.service.key import signing_key


class Transport:
    def __init__(self) -> None:
        self.outbox: Any = None
        self.link: Any = None
        self.publisher: Any = None

    def start(self, settings: Settings, on_command: Callable[[str, dict], dict]) -> None:
        """Raises mqtt.MqttError or signing.KeyFileError (one line naming the fix)."""
        from edge_liveness.events.mqtt import MqttLink
        from edge_liveness.events.outbox import Outbox
        from edge_liveness.events.publisher import Publisher

        s = settings
        key = signing_key(s)
        self.outbox = Outbox.open(s.state_path / "outbox.db", s.storage)
        self.link = MqttLink(s, on_command=on_command, key=key) if s.mqtt.enabled else None
        self.publisher = Publisher(self.outbox, self.link, s.device.id, key, fallback_dir=fallback_dir())
        self.publisher.import_fallback()
        if self.link is not None:
            self.link.journal_problem = lambda: self.outbox.problem
            self.link.start()

    def close(self) -> None:
        """Flush what is pending, keep what the journal could not take, say offline, close the journal."""
        if self.publisher is not None:
            self.publisher.flush(timeout=2.0)
            self.publisher.keep_unjournaled()
        if self.link is not None:
            self.link.stop()
        if self.outbox is not None:
            self.outbox.close()


def fallback_dir() -> Path | None:
    """Where events the journal could not take are kept: systemd's RuntimeDirectory= (on another file
    system than the state directory), else $XDG_RUNTIME_DIR/edge-liveness; None when neither is set."""
    if os.environ.get("RUNTIME_DIRECTORY"):
        return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "edge-liveness"
    return None
