"""The journal file as the rest of the device sees it: its rows, a failure to write it described in
one line with the fix, and read-only access for the ``events`` command (never creates the file).
The writer is edge_liveness/events/outbox.py."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class OutboxUnavailable(RuntimeError):
    """The journal cannot be written; ``str()`` names the problem and the fix."""


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    event_id: str
    kind: str
    ts: float
    created: float
    delivered_at: float | None
    payload: str

    @property
    def delivered(self) -> bool:
        return self.delivered_at is not None

    def data(self) -> dict[str, Any]:
        return json.loads(self.payload)


def fs_state(directory: Path) -> str | None:
    """"read-only" or "full" when the file system holding ``directory`` is so (SQLite's own
    "unable to open database file" hides the errno)."""
    d = directory
    while not d.exists() and d != d.parent:
        d = d.parent
    try:
        st = os.statvfs(d)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return "read-only"
    if st.f_bavail == 0:
        return "full"
    return None


def describe_failure(e: BaseException, path: Path) -> str:
    name = getattr(e, "sqlite_errorname", "") or ""
    text = str(e)
    fs = fs_state(path.parent)
    if fs == "read-only":
        return (f"{path}: the file system holding {path.parent} is read-only: remount it read-write (a card that "
                f"turned read-only is failing: replace it)")
    if fs == "full" and not name.startswith("SQLITE_CORRUPT"):
        return f"{path}: disk full: free space on the file system holding {path.parent}"
    if isinstance(e, OSError) or "unable to open" in text:
        return f"{path}: cannot open the journal ({text}): make {path.parent} a writable directory"
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return f"{path}: journal is read-only: make {path.parent} and the file writable by the daemon"
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return f"{path}: disk full: free space on the file system holding {path.parent}"
    return f"{path}: journal write failed ({text}): check the disk and permissions of {path.parent}"


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection for the ``events`` command (never creates the file)."""
    p = Path(path)
    if not p.is_file():
        raise OutboxUnavailable(f"{p}: no journal there (the daemon creates it on its first event; check "
                                f"storage.state_dir)")
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=5.0)
        conn.execute("SELECT COUNT(*) FROM events").fetchone()
    except sqlite3.Error as e:
        raise OutboxUnavailable(f"{p}: cannot read the journal ({e}): check permissions, or whether it is an "
                                f"edge-liveness outbox") from None
    return conn
