"""Where events the journal could not take are kept until it can: ``unjournaled.jsonl``, appended to
as each event is made, in the first of several directories that takes the write.

Why several: the journal fails because its file system is full or read-only, and then so does any
file beside it; a kill -9 leaves no chance to write anything later. So each event is appended at
once, trying the directories in order (the caller's list: a runtime directory, a directory under
the state directory, one under /tmp), and the next start journals what any of them holds. A
directory this module creates is mode 0700; one it finds must be a real directory (no symlink),
owned by this user and writable by no one else, or it is skipped (a shared /tmp must not let another
user plant or read the file). A write that fails half-way is cut back, so no line is ever glued to
a torn one. Every change of where events are kept (or that they cannot be kept at all) is logged once.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("edge_liveness.publisher")

FALLBACK_FILE = "unjournaled.jsonl"


@dataclass
class Kept:
    """What the fallback files hold: events by seq, the seqs marked delivered, the files read."""

    entries: dict[int, dict[str, Any]] = field(default_factory=dict)
    delivered: set[int] = field(default_factory=set)
    paths: list[Path] = field(default_factory=list)


class FallbackStore:
    def __init__(self, dirs: list[Path]):
        self.dirs: list[Path] = list(dict.fromkeys(Path(d) for d in dirs))
        self.current: Path | None = None  # the file the last append went to
        self.problem: str | None = None  # why the last append was kept nowhere
        self._failing: dict[Path, str] = {}  # directory -> why it was skipped (logged once)

    @property
    def paths(self) -> list[Path]:
        return [d / FALLBACK_FILE for d in self.dirs]

    def append(self, entry: dict[str, Any]) -> Path | None:
        """Append one JSON line to the first directory that takes it; the file, or None when none did."""
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        for d in self.dirs:
            why = _append(d, line)
            if why is None:
                self._failing.pop(d, None)
                if self.current != d / FALLBACK_FILE:
                    self.current = d / FALLBACK_FILE
                    log.warning("events the journal cannot take are kept in %s until it can (the next start "
                                "journals them)", self.current)
                self.problem = None
                return self.current
            if self._failing.get(d) != why:
                self._failing[d] = why
                log.warning("cannot keep unjournaled events in %s (%s)", d, why)
        problem = "; ".join(f"{d}: {w}" for d, w in self._failing.items()) or "no fallback directory"
        if self.current is not None or self.problem is None:
            log.error("unjournaled events cannot be kept in any fallback directory (%s)", problem)
        self.current, self.problem = None, problem
        return None

    def load(self) -> Kept:
        """Everything the files hold (a line cut by a kill mid-write is skipped)."""
        kept = Kept()
        for path in self.paths:
            try:
                if not path.is_file():
                    continue
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError as e:
                log.error("cannot read the unjournaled events kept in %s (%s)", path, e.strerror or e)
                continue
            kept.paths.append(path)
            for line in lines:
                try:
                    e = json.loads(line)
                    if "delivered" in e:
                        kept.delivered.update(int(s) for s in e["delivered"])
                    else:
                        kept.entries[int(e["seq"])] = e
                except (ValueError, TypeError, KeyError):
                    continue
        return kept

    def remove(self, paths: list[Path]) -> None:
        for path in paths:
            try:
                path.unlink()
            except OSError:
                pass
        if self.current in paths:
            self.current = None


def _private_dir(d: Path) -> str | None:
    """None when ``d`` is (now) a directory only this user can write; else why not."""
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(d)
    except OSError as e:
        return e.strerror or str(e)
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory (a symlink?)"
    if st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not this user"
    if st.st_mode & 0o022:
        return f"writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _append(d: Path, line: bytes) -> str | None:
    why = _private_dir(d)
    if why is not None:
        return why
    try:
        fd = os.open(d / FALLBACK_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        return e.strerror or str(e)
    try:
        size = os.fstat(fd).st_size
        try:
            if os.write(fd, line) == len(line):
                return None
            why = "disk full (short write)"
        except OSError as e:
            why = e.strerror or str(e)
        try:
            if size == 0:
                os.unlink(d / FALLBACK_FILE)  # leave no empty file behind to be "imported" later
            else:
                os.ftruncate(fd, size)  # a torn line must not swallow the next one
        except OSError:
            pass
        return why
    finally:
        os.close(fd)
