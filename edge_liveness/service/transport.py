"""The daemon's way out: the journal (outbox), the MQTT link and the publisher, started and closed.

Why a module of its own: they start in one order (key, journal, link, publisher, the events a
previous run could not journal, then the connection) and close in the reverse one within systemd's
stop timeout; the frame loop only submits events and reads the backlog. Each part is set as soon as
it exists, so a start that fails half-way still closes what it opened. It also knows what the
journal's ERROR line cannot: whether the broker is up; and where unjournaled events are kept.
"""

from __future__ import annotations

import hashlib
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
        self.mqtt_enabled = True

    def start(self, settings: Settings, on_command: Callable[[str, dict], dict]) -> None:
        """Raises mqtt.MqttError or signing.KeyFileError (one line naming the fix)."""
        from edge_liveness.events.mqtt import MqttLink
        from edge_liveness.events.outbox import Outbox
        from edge_liveness.events.publisher import Publisher

        s = settings
        key = signing_key(s)
        self.mqtt_enabled = s.mqtt.enabled
        self.outbox = Outbox.open(s.state_path / "outbox.db", s.storage, fate=self.events_meanwhile)
        self.link = MqttLink(s, on_command=on_command, key=key) if s.mqtt.enabled else None
        self.publisher = Publisher(self.outbox, self.link, s.device.id, key, fallback_dirs=fallback_dirs(s))
        self.publisher.import_fallback()
        if self.link is not None:
            self.link.journal_problem = lambda: self.outbox.problem
            self.link.start()

    def events_meanwhile(self) -> str:
        """What happens to events while the journal cannot be written, as true as the link knows it."""
        link = self.link
        if not self.mqtt_enabled:
            return "MQTT is off (mqtt.enabled = false), so events wait in memory"
        if link is None or (not link.connected and link.last_error is None):
            return "events go out over MQTT from memory once the broker is connected"
        if link.connected:
            return "events still go out over MQTT from memory"
        return f"the broker is down too ({link.last_error}): events wait in memory until one of them is back"

    def close(self) -> int:
        """Flush what is pending, keep what the journal could not take, say offline, close the journal.
        Returns the number of events lost (neither journaled nor kept in a fallback file; each logged)."""
        lost = 0
        if self.publisher is not None:
            self.publisher.flush(timeout=2.0)
            lost = self.publisher.keep_unjournaled()
        if self.link is not None:
            self.link.stop()
        if self.outbox is not None:
            self.outbox.close()
        return lost


def fallback_dirs(settings: Settings) -> list[Path]:
    """Where events the journal could not take are kept, in the order tried: systemd's
    RuntimeDirectory= (a tmpfs, not the state directory's file system), $XDG_RUNTIME_DIR/edge-liveness,
    <state_dir>/unjournaled (survives a reboot when only the journal file is broken), and a private
    directory under $TMPDIR or /tmp named for this state directory (another file system than a full or
    read-only state directory, in every environment: scripts/run.sh and a bare `edge-liveness run` set
    no runtime directory)."""
    dirs: list[Path] = []
    if os.environ.get("RUNTIME_DIRECTORY"):
        dirs.append(Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        dirs.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "edge-liveness")
    state = settings.state_path.absolute()
    dirs.append(state / "unjournaled")
    tag = hashlib.sha256(str(state).encode()).hexdigest()[:12]
    dirs.append(Path(os.environ.get("TMPDIR") or "/tmp") / f"edge-liveness-{os.geteuid()}-{tag}")
    return dirs

