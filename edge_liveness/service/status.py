"""The daemon's status file and the `edge-liveness status` command.

The daemon keeps ``<state_dir>/status.json`` current (at most about once a second: the state
directory is on an SD card). The file holds health only, never an image or a face crop.
``edge-liveness status`` reads it and says plainly when the daemon is not running: the pid is gone,
the daemon wrote ``state = "stopped"``, or the file has not been refreshed for ``stale_after_s``.

Exit codes (documented in docs/service.md), so that a monitor can tell the cases apart:
0 running and frames arrive; 1 running but the camera has never delivered a frame (a door without a
camera); 2 bad config; 3 not running, stopped or hung (LSB "not running"); 4 the status file is
unreadable or not what the daemon writes (LSB "unknown").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from edge_liveness.config.files import read_capped

log = logging.getLogger("edge_liveness.status")

FILENAME = "status.json"
DEFAULT_STALE_AFTER_S = 15.0
# Exit codes of `status` (LSB-style: 3 = not running).
EXIT_OK, EXIT_NO_FRAMES, EXIT_CONFIG, EXIT_NOT_RUNNING, EXIT_UNKNOWN = 0, 1, 2, 3, 4


@dataclass
class LastDecision:
    result: str  # "live", "spoof", "timeout", ...
    reason: str
    ts: float  # wall clock (time.time()) of the decision
    seq: int | None = None  # journal sequence number, to look the event up with `events`
    event_id: str | None = None


@dataclass
class DaemonStatus:
    state: str = "starting"  # starting | running | degraded | reloading | stopping | stopped
    fps: float = 0.0
    last_decision: LastDecision | None = None
    broker_connected: bool = False
    backlog: int = 0
    model_name: str = ""
    model_sha256: str = ""
    mode: str = ""  # active check mode (settings.active.mode)
    camera: str = ""  # e.g. "ok", "reopening", "stalled"
    storage_problem: str = ""  # empty when the journal is healthy
    frames: int | None = None  # frames processed since start; None when the writer does not count them
    message: str = ""  # free text, e.g. "reload failed: ..."
    pid: int = field(default_factory=os.getpid)
    updated_at: float = 0.0  # wall clock
    monotonic: float = 0.0  # CLOCK_MONOTONIC at the write: immune to NTP jumps on an RTC-less Pi
    boot_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


class StatusFile:
    """Writes ``<state_dir>/status.json`` atomically (temp file + rename), throttled."""

    def __init__(self, state_dir: str | Path, min_interval_s: float = 1.0):
        self.dir = Path(state_dir)
        self.path = self.dir / FILENAME
        self.min_interval_s = min_interval_s
        self.status = DaemonStatus(boot_id=_boot_id())
        self._last_write = float("-inf")
        self._warned = False

    def update(self, fields: Mapping[str, Any] | None = None, /, **kw: Any) -> bool:
        """Merge fields (a mapping and/or keywords) into the status; write when the last write is
        ``min_interval_s`` old. Cheap to call every frame. Returns True when the file was written.

        Also accepted: ``active_mode`` for ``mode`` and ``model={"name", "sha256"}``.
        """
        self._merge({**(fields or {}), **kw})
        if time.monotonic() - self._last_write < self.min_interval_s:
            return False
        return self.write()

    def decision(self, result: str, reason: str, ts: float | None = None, seq: int | None = None,
                 event_id: str | None = None) -> bool:
        return self.update(last_decision=LastDecision(result, reason, time.time() if ts is None else ts, seq, event_id))

    def set_state(self, state: str, message: str | None = None) -> bool:
        """State changes (ready, reloading, stopping, stopped) are written at once, not throttled."""
        fields: dict[str, Any] = {"state": state} if message is None else {"state": state, "message": message}
        if state == "stopped":
            fields["broker_connected"] = False  # the link closed with the process: never show it "connected"
        self._merge(fields)
        return self.write()

    def _merge(self, fields: dict[str, Any]) -> None:
        if "active_mode" in fields:
            fields["mode"] = fields.pop("active_mode")
        if isinstance(fields.get("model"), Mapping):
            model = fields.pop("model")
            fields["model_name"], fields["model_sha256"] = model.get("name", ""), model.get("sha256", "")
        for k, v in fields.items():
            if k in ("pid", "updated_at", "monotonic", "boot_id") or not hasattr(self.status, k):
                raise TypeError(f"StatusFile.update: unknown or reserved field {k!r}")
            if k == "last_decision" and isinstance(v, Mapping):
                # Only these keys: whatever else a decision carries (scores, crops) stays out.
                v = LastDecision(result=str(v.get("result")), reason=str(v.get("reason") or ""), ts=v.get("ts") or time.time(),
                                 seq=v.get("seq"), event_id=v.get("event_id"))
            elif k in ("storage_problem", "message", "camera", "mode", "model_name", "model_sha256") and v is None:
                v = ""
            setattr(self.status, k, v)

    def write(self) -> bool:
        """Write now. A failure (full or read-only disk) is logged once and never raised."""
        self.status.updated_at = time.time()
        self.status.monotonic = time.monotonic()
        self._last_write = self.status.monotonic
        data = json.dumps(self.status.to_dict(), indent=1, sort_keys=True).encode()
        tmp = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".status.", suffix=".tmp", dir=self.dir)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            # No fsync: readers only need rename's atomicity, and a sync every second would wear
            # the SD card; after a power cut the file is rewritten within a second anyway.
            os.replace(tmp, self.path)
            return True
        except OSError as e:
            if tmp:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            if not self._warned:
                self._warned = True
                log.warning("cannot write %s (%s); `edge-liveness status` will show stale data", self.path, e)
            return False


# ---------------------------------------------------------------- reading (the `status` command)

@dataclass
class Health:
    running: bool
    reason: str  # why not running, or why running is not healthy (empty when all is well)
    age_s: float | None  # seconds since the last write
    data: dict[str, Any] | None
    code: int = -1  # exit code of `status`; derived from running when not given

    def __post_init__(self) -> None:
        if self.code < 0:
            self.code = EXIT_OK if self.running else EXIT_NOT_RUNNING


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user (the service's DynamicUser)
    except (OSError, OverflowError, ValueError):
        return False
    return True


def read_status(path: str | Path) -> dict[str, Any]:
    # Capped: a status.json swapped for /dev/zero (or a link to it) must not be read forever.
    data = json.loads(read_capped(path, "status file", allow_pipe=False))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def assess(path: str | Path, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> Health:
    """Is the daemon that wrote ``path`` alive and keeping it fresh?"""
    path = Path(path)
    try:
        data = read_status(path)
    except FileNotFoundError:
        return Health(False, f"no status file at {path} (the daemon has not run with this state_dir)", None, None)
    except PermissionError:
        return Health(False, f"{path}: permission denied (the service's state is root-only: run with sudo)", None, None)
    except (OSError, ValueError, RecursionError) as e:
        return Health(False, f"{path}: unreadable status file ({_one_line(e)}): the daemon rewrites it within a "
                             f"second while it runs; if it stays so, delete it and restart the daemon", None, None, EXIT_UNKNOWN)
    age = _age(data)
    pid = data.get("pid")
    if data.get("state") == "stopped":
        return Health(False, "the daemon stopped", age, data)
    if not isinstance(pid, int) or not pid_alive(pid):
        return Health(False, f"the daemon (pid {pid}) is not running", age, data)
    if age is None or age > stale_after_s:
        shown = "unknown" if age is None else f"{age:.0f} s"
        return Health(False, f"status not updated for {shown} (the daemon is hung or stalled)", age, data)
    if data.get("frames") == 0:
        cam = data.get("camera") or "?"
        return Health(True, f"the camera has not delivered a single frame since the daemon started (camera: {cam}); "
                            f"check camera.source and the daemon's log", age, data, EXIT_NO_FRAMES)
    return Health(True, "", age, data)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _age(data: dict[str, Any]) -> float | None:
    mono = data.get("monotonic")
    if isinstance(mono, (int, float)) and data.get("boot_id") and data.get("boot_id") == _boot_id():
        return max(0.0, time.monotonic() - mono)
    ts = data.get("updated_at")
    if isinstance(ts, (int, float)):
        return max(0.0, time.time() - ts)
    return None


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def format_human(h: Health) -> str:
    d = h.data or {}
    lines = []
    if h.running:
        lines.append(f"edge-liveness: running, {d.get('state', '?')} (pid {d.get('pid')}, updated {_ago(h.age_s or 0.0)})")
        if h.reason:
            lines.append(f"  NO FRAMES: {h.reason}")
    else:
        lines.append(f"edge-liveness: NOT RUNNING: {h.reason}")
        if d:
            lines.append(f"  last known state: {d.get('state', '?')}" + (f", {_ago(h.age_s)}" if h.age_s is not None else ""))
    if not d:
        return "\n".join(lines)
    fps = d.get("fps")
    fps_text = f"{fps:.1f}" if isinstance(fps, (int, float)) and not isinstance(fps, bool) else "?"
    lines.append(f"  camera:   {d.get('camera') or '?'}, {fps_text} fps")
    lines.append(f"  mode:     {d.get('mode') or '?'}")
    sha = d.get("model_sha256") or ""
    lines.append(f"  model:    {d.get('model_name') or '?'}" + (f" (sha256 {sha[:12]}...)" if sha else ""))
    if h.running:
        broker = "connected" if d.get("broker_connected") else "DISCONNECTED"
    else:
        broker = "not connected (the daemon is not running)"
    lines.append(f"  broker:   {broker}, backlog {d.get('backlog', 0)} event(s) not yet delivered")
    lines.append(f"  storage:  {d.get('storage_problem') or 'ok'}")
    ld = d.get("last_decision")
    if isinstance(ld, dict):
        when = ld.get("ts")
        ago = f", {_ago(max(0.0, time.time() - when))}" if isinstance(when, (int, float)) else ""
        lines.append(f"  last decision: {ld.get('result')} ({ld.get('reason')}){ago}")
    else:
        lines.append("  last decision: none yet")
    if d.get("message"):
        lines.append(f"  message:  {d['message']}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="config file (default /etc/edge-liveness/edge-liveness.toml when present)")
    p.add_argument("--json", action="store_true", help="print the status file plus running/reason as JSON")
    p.add_argument("--stale-after", type=float, default=DEFAULT_STALE_AFTER_S, metavar="S",
                   help=f"count the daemon as hung when the file is older than S seconds (default {DEFAULT_STALE_AFTER_S:g})")


def main(args: argparse.Namespace) -> int:
    from edge_liveness.config import ConfigError, load_settings

    try:
        settings = load_settings(args.config)
    except ConfigError as e:
        for p in e.problems:
            print(f"edge-liveness status: {p}", file=sys.stderr)
        return EXIT_CONFIG
    h = assess(settings.state_path / FILENAME, args.stale_after)
    if args.json:
        out = {"running": h.running, "reason": h.reason, "age_s": None if h.age_s is None else round(h.age_s, 3),
               "status": h.data, "exit_code": h.code}
        print(json.dumps(out, indent=1, sort_keys=True))
    elif h.code == EXIT_UNKNOWN:
        print(f"edge-liveness status: {h.reason}", file=sys.stderr)
    else:
        print(format_human(h))
    return h.code
