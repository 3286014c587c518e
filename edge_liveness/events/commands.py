"""Commands that arrive on ``<base>/set/<name>``: size, rate, JSON, signature and argument checks.

Only a command that passes every check reaches the daemon's handler ``handler(name, args) -> dict``.
Each rejection is logged as one line and answered as ``{"ok": false, "error": "..."}`` (the link
publishes the answer on ``set/<name>/result``). Commands must be signed like events (``seq`` above
the last accepted one, ``ts`` within the allowed skew, ``sig`` = HMAC of the canonical JSON) and
bound to what they do: ``"type": "command"``, ``"command": <name>``, ``"device_id": <this device>``
are part of the signed body. Unsigned commands pass only with ``security.allow_unsigned_commands``.
The last accepted seq is kept in a small file so a captured command cannot be replayed after a
restart either; a command whose seq cannot be written there (disk full, read-only) is refused, so
none is ever accepted twice.

Floods. ``screen`` runs the checks anyone can fail without the key (size, name, JSON, signature,
binding, replay, skew) on the MQTT thread, before a command is queued: a forged command costs one
JSON parse and one HMAC and never takes a place in the queue. Its answer and log line come from a
budget (``REFUSALS_PER_MIN``); beyond it a flood is counted, logged once when it starts and once
when it ends, and dropped unanswered, so answering it cannot delay the signed controller's answers.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edge_liveness.events.journal_file import fs_state
from edge_liveness.events.signing import COMMAND_TYPE
from edge_liveness.events.verify import parse_payload, verify_event

log = logging.getLogger("edge_liveness.commands")

ACTIVE_MODES = ("off", "blink", "turn", "blink_and_turn", "challenge")
ENVELOPE_KEYS = ("seq", "ts", "sig", "device_id", "type", "event_id", "command")
COMMANDS = ("active", "attempt", "reload")
REFUSALS_PER_MIN = 20  # commands failing screen() that are answered and logged one by one; the rest are counted
Handler = Callable[[str, dict], dict]


class CommandError(ValueError):
    """A command is malformed; the message is the one-line answer."""


def validate_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """The arguments a command accepts; raises CommandError naming the problem."""
    if name == "active":
        keys = set(args)
        if keys == {"mode"}:
            mode = args["mode"]
            if not isinstance(mode, str) or mode not in ACTIVE_MODES:
                raise CommandError(f"active: mode must be one of {', '.join(ACTIVE_MODES)} (got {str(mode)[:40]!r})")
            return {"mode": mode}
        if keys == {"enabled"}:
            if not isinstance(args["enabled"], bool):
                raise CommandError("active: enabled must be true or false")
            return {"enabled": args["enabled"]}
        raise CommandError('active: give exactly one of {"mode": "..."} or {"enabled": true|false} '
                           f"(got keys {sorted(str(k)[:20] for k in keys)[:5]})")
    if name in ("attempt", "reload"):
        if args:
            raise CommandError(f"{name}: takes no arguments (got keys {sorted(str(k)[:20] for k in args)[:5]})")
        return {}
    raise CommandError(f"unknown command {name[:40]!r} (known: {', '.join(COMMANDS)})")


class TokenBucket:
    """``rate_per_min`` commands per minute, bursts up to the same number."""

    def __init__(self, rate_per_min: int, clock: Callable[[], float] = time.monotonic):
        self.capacity = float(rate_per_min)
        self.rate = rate_per_min / 60.0
        self.tokens = self.capacity
        self.clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class CommandStats:
    accepted: int = 0
    rejected: int = 0
    rate_limited: int = 0
    dropped: int = 0  # refused by screen() beyond the answer budget: counted, not answered


@dataclass(frozen=True)
class Screened:
    """What the MQTT thread learnt about a command before queueing it."""

    passed: bool
    error: str = ""
    seq: int | None = None  # a signed command's seq
    signed: bool = False


class FloodGate:
    """Answers and log lines for refused commands: one each up to ``per_min`` a minute; beyond that the
    refusals are counted, with one WARNING when a flood starts and one when it has been quiet for
    ``quiet_s``. Thread-safe (the MQTT thread refuses, the command thread calls ``tick``)."""

    def __init__(self, per_min: int = REFUSALS_PER_MIN, quiet_s: float = 3.0,
                 monotonic: Callable[[], float] = time.monotonic):
        self.bucket = TokenBucket(per_min, clock=monotonic)
        self.per_min = per_min
        self.quiet_s = quiet_s
        self.monotonic = monotonic
        self.dropped = 0  # in the current flood
        self._last = 0.0
        self._lock = threading.Lock()

    def refuse(self, name: str, error: str) -> dict[str, Any] | None:
        """The answer to send, or None: drop it unanswered (counted)."""
        with self._lock:
            self._end_if_quiet()
            if not self.dropped and self.bucket.take():
                log.warning("command %s rejected: %s", name[:40], error)
                return {"ok": False, "error": error}
            self._last = self.monotonic()
            self.dropped += 1
            if self.dropped == 1:
                log.warning("command flood: over %d refused commands a minute; the rest are dropped unanswered and "
                            "counted until it stops (signed commands are still served); first dropped: %s",
                            self.per_min, error[:120])
            return None

    def tick(self) -> None:
        """Ends a flood that has been quiet for ``quiet_s``: one line with its count."""
        with self._lock:
            self._end_if_quiet()

    def _end_if_quiet(self) -> None:
        if self.dropped and self.monotonic() - self._last >= self.quiet_s:
            log.warning("command flood over: %d refused commands were dropped unanswered", self.dropped)
            self.dropped = 0


class CommandProcessor:
    def __init__(self, handler: Handler | None, key: bytes | None = None, max_bytes: int = 4096,
                 rate_per_min: int = 30, max_skew_s: float = 300.0, seq_file: Path | None = None,
                 clock: Callable[[], float] = time.time, device_id: str | None = None,
                 allow_unsigned: bool = False, monotonic: Callable[[], float] = time.monotonic):
        self.handler = handler
        self.key = key or None
        self.device_id = device_id
        self.allow_unsigned = allow_unsigned
        self.monotonic = monotonic
        # Under a flood a token comes back every 60/rate s; "lifted" only after a quiet spell longer
        # than that, so the log does not alternate "rate limited"/"lifted" at the refill rate.
        self.lift_after_s = max(2.0, 60.0 / rate_per_min)
        self._last_limited: float | None = None
        self.max_bytes = max_bytes
        self.max_skew_s = max_skew_s
        self.bucket = TokenBucket(rate_per_min)
        self._log_bucket = TokenBucket(20)  # rejections logged at WARNING per minute; the rest at DEBUG
        self.seq_file = seq_file
        self.clock = clock
        self.stats = CommandStats()
        self.gate = FloodGate(monotonic=monotonic)
        self._lock = threading.Lock()
        self._limited_since_log = 0
        self.last_seq: int | None = self._load_seq()

    @classmethod
    def from_settings(cls, settings: Any, handler: Handler | None, key: bytes | None = None) -> "CommandProcessor":
        """``key``: the daemon's key when it is not in the config (created at first start)."""
        from edge_liveness.events.signing import key_from_text

        m = settings.mqtt
        allow = settings.security.allow_unsigned_commands
        if allow:
            log.warning("security.allow_unsigned_commands = true: any client of the broker can switch the "
                        "active check off or start attempts (unsafe; sign commands instead)")
        return cls(handler, key or key_from_text(settings.security.signing_key.get_secret_value()),
                   max_bytes=m.max_command_bytes, rate_per_min=m.command_rate_per_min,
                   max_skew_s=settings.security.max_clock_skew_s, seq_file=settings.state_path / "command_seq",
                   device_id=settings.device.id, allow_unsigned=allow)

    # ------------------------------------------------------------------ replay state
    def _load_seq(self) -> int | None:
        if self.seq_file is None:
            return None
        try:
            return int(self.seq_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _save_seq(self, seq: int) -> str:
        """"" once ``seq`` is on disk (fsync'd), else why not: the command must then be refused, or
        it could be accepted again after a restart."""
        if self.seq_file is None:
            self.last_seq = seq
            return ""
        path = self.seq_file
        tmp = path.with_name(path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                data = str(seq).encode()
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, "short write")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except OSError as e:
            try:
                tmp.unlink()
            except OSError:
                pass
            return _seq_write_problem(path, seq, e)
        self.last_seq = seq
        return ""

    # ------------------------------------------------------------------ entry point
    def _reject(self, name: str, error: str, quiet: bool = False) -> dict[str, Any]:
        self.stats.rejected += 1
        quiet = quiet or not self._log_bucket.take()
        (log.debug if quiet else log.warning)("command %s rejected: %s", name[:40], error)
        return {"ok": False, "error": error}

    def handle(self, name: str, payload: bytes | str) -> dict[str, Any]:
        """Check one raw command; call the handler when it is valid. Returns the answer. Never raises."""
        with self._lock:
            try:
                return self._handle(name, payload)
            except RecursionError:
                return self._reject(name, "payload nested too deeply: send a flat JSON object")

    def screen(self, name: str, payload: bytes | str) -> Screened:
        """The checks a forger fails, without the lock ``handle`` holds while the handler runs (so the
        MQTT thread never waits on the frame loop); ``handle`` checks again in full."""
        try:
            obj, error = self._parse(name, payload)
            if obj is None:
                return Screened(False, error)
            if "sig" not in obj:
                return Screened(not error, error)
            problem = self._check_signed(name, obj)
            if problem:
                return Screened(False, f"signature check failed: {problem}")
            return Screened(True, seq=obj["seq"], signed=True)
        except RecursionError:
            return Screened(False, "payload nested too deeply: send a flat JSON object")

    def refuse(self, name: str, error: str) -> dict[str, Any] | None:
        """A command that failed ``screen``: its answer, or None when a flood is dropped unanswered."""
        answer = self.gate.refuse(name, error)
        if answer is None:
            self.stats.dropped += 1
        else:
            self.stats.rejected += 1
        return answer

    def _parse(self, name: str, payload: bytes | str) -> tuple[dict[str, Any] | None, str]:
        """(object, "") for a well-formed command; (None, error) for a bad one; (object, error) for an
        unsigned one that is not allowed."""
        size = len(payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload)
        if size > self.max_bytes:
            return None, f"payload too large: {size} bytes > mqtt.max_command_bytes {self.max_bytes}"
        if name not in COMMANDS:
            return None, f"unknown command {name[:40]!r} (known: {', '.join(COMMANDS)})"
        raw = payload if isinstance(payload, str) else bytes(payload)
        if not raw.strip():
            obj: dict[str, Any] | None = {}
        else:
            obj, why = parse_payload(raw)
            if obj is None:
                return None, f"{why}: send a JSON object"
        assert obj is not None
        if "sig" not in obj and not self.allow_unsigned:
            return obj, "unsigned command refused: sign it with the device's signing key (docs/mqtt.md, Commands)"
        return obj, ""

    def _check_signed(self, name: str, obj: dict[str, Any]) -> str:
        """"" when the signed command is good for this name and device, else the reason."""
        if self.key is None:
            return "no signing key on this device to check it with"
        res = verify_event(obj, self.key, self.last_seq, self.max_skew_s, self.clock(), types=(COMMAND_TYPE,))
        if not res.ok:
            return res.reason
        # Both are inside the signed body: a signature made for another command or device fails here.
        if obj.get("command") != name:
            return f"signed for command {str(obj.get('command'))[:40]!r}, not {name!r}"
        if self.device_id is not None and obj.get("device_id") != self.device_id:
            return f"signed for device {str(obj.get('device_id'))[:64]!r}, not {self.device_id!r}"
        return ""

    def _handle(self, name: str, payload: bytes | str) -> dict[str, Any]:
        obj, error = self._parse(name, payload)
        if obj is None or error:
            return self._reject(name, error)
        signed = "sig" in obj
        if signed:
            problem = self._check_signed(name, obj)
            if problem:
                return self._reject(name, f"signature check failed: {problem}")
        # The budget is spent only by commands that passed the signature check, so a flood of
        # forged or unsigned commands cannot lock the real controller out.
        now = self.monotonic()
        if not self.bucket.take():
            self.stats.rate_limited += 1
            self._limited_since_log += 1
            self._last_limited = now
            # One WARNING per burst, the rest at DEBUG: a flood must not flood the log too.
            quiet = self._limited_since_log > 1
            return self._reject(name, "rate limited: over mqtt.command_rate_per_min; try again later", quiet)
        if self._limited_since_log and self._last_limited is not None \
                and now - self._last_limited >= self.lift_after_s:
            if self._limited_since_log > 1:
                log.warning("rate limit lifted: %d commands were rejected", self._limited_since_log)
            self._limited_since_log = 0
        args = {k: v for k, v in obj.items() if k not in ENVELOPE_KEYS}
        try:
            args = validate_args(name, args)
        except CommandError as e:
            return self._reject(name, str(e))
        if signed:
            problem = self._save_seq(obj["seq"])
            if problem:
                log.error("command %s refused: %s", name, problem)
                self.stats.rejected += 1
                return {"ok": False, "error": problem}
        self.stats.accepted += 1
        log.info("command %s accepted %s", name, args or "")
        if self.handler is None:
            return {"ok": True}
        try:
            result = self.handler(name, args)
        except Exception as e:  # the daemon's handler must not take the MQTT thread down
            log.error("command %s failed in the handler: %s", name, e)
            return {"ok": False, "error": f"failed: {e}"}
        if not isinstance(result, dict):
            return {"ok": True}
        return {"ok": True, **result} if "ok" not in result else result


def _fsync_dir(directory: Path) -> None:
    """The rename itself survives a power cut only once the directory is synced."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _seq_write_problem(path: Path, seq: int, e: OSError) -> str:
    """One line: the command is refused because its seq cannot be kept, why, and the fix."""
    fs = fs_state(path.parent)
    if fs == "read-only":
        why, fix = "read-only file system", f"remount the file system holding {path.parent} read-write"
    elif fs == "full" or e.errno == errno.ENOSPC:
        why, fix = "disk full", f"free space on the file system holding {path.parent}"
    else:
        why, fix = e.strerror or str(e), f"make {path.parent} writable by the daemon"
    return (f"cannot record its seq {seq} in {path} ({why}), and without that it could be replayed after a "
            f"restart: {fix}, then send it again")
