"""Subscriber-side checks of signed payloads, and the ``edge-liveness verify`` command.

A payload passes when it is a JSON object without a duplicated key (at any depth: parsers disagree
on which copy wins, so a signed ``fail`` with an inserted ``"result":"pass"`` would verify here and
read as a pass elsewhere), its HMAC matches, its ``type`` is one the reader expects (a signed
command is not an event), its ``seq`` is above the last one accepted from that device (replay
protection, optionally kept in a state file across runs), and its wall-clock ``ts`` is within
``max_skew_s`` of now. Nothing here raises on bad input: garbage gets a result with a reason.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_liveness.config.files import UserFileError, read_capped
from edge_liveness.events import signing

MAX_PAYLOAD_BYTES = 1 << 20
EVENT_TYPES = ("decision", "prompt")


class DuplicateKey(ValueError):
    """A JSON object names the same key twice."""


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    reason: str  # "ok" or a short problem description
    seq: int | None = None
    device_id: str | None = None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for k, v in pairs:
        if k in obj:
            raise DuplicateKey(k)
        obj[k] = v
    return obj


def parse_payload(payload: dict | str | bytes | bytearray) -> tuple[dict | None, str]:
    """(object, "") or (None, reason). Rejects NaN/Infinity, which json.loads would accept, and any
    object with a duplicated key."""
    if isinstance(payload, dict):
        return payload, ""
    if isinstance(payload, (bytes, bytearray)):
        if len(payload) > MAX_PAYLOAD_BYTES:
            return None, f"payload too large ({len(payload)} bytes)"
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeDecodeError:
            return None, "not UTF-8"
    if not isinstance(payload, str):
        return None, f"unsupported payload type {type(payload).__name__}"
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None, f"payload too large ({len(payload)} chars)"
    try:
        obj = json.loads(payload, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except DuplicateKey as e:
        return None, f"duplicate key {str(e)[:40]!r} (a JSON object may name each key once)"
    except RecursionError:
        return None, "bad JSON: nested too deeply"
    except ValueError as e:
        # JSONDecodeError and the int-digits limit; cut at a word, not mid-word.
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        if len(text) > 100:
            text = text[:100].rsplit(" ", 1)[0] + " ..."
        return None, f"bad JSON: {text}"
    if not isinstance(obj, dict):
        return None, f"not a JSON object ({type(obj).__name__})"
    return obj, ""


def verify_event(payload: dict | str | bytes, key: bytes, last_seq: int | None = None, max_skew_s: float = 300.0,
                 now: float | None = None, types: tuple[str, ...] | None = EVENT_TYPES) -> VerifyResult:
    """Check signature, ``type`` (one of ``types``; None: any), replay (seq <= last_seq) and
    stale/future ts. A dict payload is taken as parsed; give the wire text to have duplicated keys
    refused. Never raises."""
    try:
        return _verify(payload, key, last_seq, max_skew_s, now, types)
    except RecursionError:
        return VerifyResult(False, "payload nested too deeply")


def _verify(payload: Any, key: bytes, last_seq: int | None, max_skew_s: float, now: float | None,
            types: tuple[str, ...] | None) -> VerifyResult:
    obj, why = parse_payload(payload)
    if obj is None:
        return VerifyResult(False, why)
    device = obj.get("device_id") if isinstance(obj.get("device_id"), str) else None
    seq = obj.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int):
        seq = None
    if "sig" not in obj:
        return VerifyResult(False, "unsigned (no sig field)", seq, device)
    if seq is None or seq < 0:
        return VerifyResult(False, "missing or bad seq (must be a non-negative integer)", None, device)
    if not key:
        return VerifyResult(False, "no key to verify with", seq, device)
    if not signing.check(obj, key):
        return VerifyResult(False, "bad signature", seq, device)
    kind = obj.get("type")
    if types is not None and kind not in types:
        return VerifyResult(False, f"wrong type {str(kind)[:20]!r}: expected {' or '.join(types)}", seq, device)
    # Only a signed payload's seq/ts mean anything, so these come after the HMAC.
    if last_seq is not None and seq <= last_seq:
        return VerifyResult(False, f"replay: seq {seq} <= last accepted {last_seq}", seq, device)
    if math.isnan(max_skew_s) or max_skew_s < 0:
        return VerifyResult(False, f"no usable clock-skew limit ({max_skew_s!r}): cannot check ts", seq, device)
    ts = obj.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        return VerifyResult(False, "missing or bad ts (must be unix seconds)", seq, device)
    now = time.time() if now is None else now
    if ts < now - max_skew_s:
        return VerifyResult(False, f"stale: ts {now - ts:.0f} s in the past (limit {max_skew_s:g} s)", seq, device)
    if ts > now + max_skew_s:
        return VerifyResult(False, f"from the future: ts {ts - now:.0f} s ahead (limit {max_skew_s:g} s)", seq, device)
    return VerifyResult(True, "ok", seq, device)


class VerifyStateError(ValueError):
    """The ``--state`` file cannot be read or written; the message is one line naming the fix."""


def load_state(path: Path) -> dict[str | None, int]:
    """Last accepted seq per device from a state file; {} when it does not exist yet."""
    try:
        # A regular file only: the state is replaced by rename, which must never land on /dev/full.
        text = read_capped(path, "verify state file", allow_pipe=False).decode("utf-8")
    except FileNotFoundError:
        return {}
    except UserFileError as e:
        raise VerifyStateError(f"{e} (--state)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise VerifyStateError(f"{path}: cannot read the verify state ({getattr(e, 'strerror', None) or e}): "
                               f"give a readable --state file") from None
    obj, why = parse_payload(text)
    seqs = obj.get("last_seq") if obj is not None else None
    if not isinstance(seqs, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                             for v in seqs.values()):
        raise VerifyStateError(f"{path}: not a verify state file ({why or 'no last_seq map of device -> seq'}): "
                               f"move it away to start afresh (replays older than it are then not caught)")
    return {(k or None): v for k, v in seqs.items()}


def save_state(path: Path, last_seq: dict[str | None, int]) -> None:
    """Write atomically (temp file, fsync, rename): a crash leaves the old state or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = json.dumps({"last_seq": {(k or ""): v for k, v in sorted(last_seq.items(), key=lambda kv: kv[0] or "")}},
                      separators=(",", ":"))
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(data + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise VerifyStateError(f"{path}: cannot write the verify state ({e.strerror or e}): make its directory "
                               f"writable") from None


class Verifier:
    """Stateful checker for a stream: remembers the last accepted seq per device, in memory or,
    with ``state_path``, in a file that outlives the process (written on every accepted payload)."""

    def __init__(self, key: bytes, max_skew_s: float = 300.0, check_time: bool = True,
                 state_path: str | Path | None = None, types: tuple[str, ...] | None = EVENT_TYPES):
        if check_time and not (math.isfinite(max_skew_s) and max_skew_s > 0):
            # NaN compares false both ways: every stale payload would pass the ts check.
            raise ValueError(f"max_skew_s must be a number of seconds > 0 (got {max_skew_s!r})")
        self.key = key
        self.max_skew_s = max_skew_s
        self.check_time = check_time
        self.types = types
        self.state_path = Path(state_path) if state_path else None
        self.last_seq: dict[str | None, int] = load_state(self.state_path) if self.state_path else {}

    def check(self, payload: dict | str | bytes, now: float | None = None) -> VerifyResult:
        obj, why = parse_payload(payload)
        if obj is None:
            return VerifyResult(False, why)
        device = obj.get("device_id") if isinstance(obj.get("device_id"), str) else None
        skew = self.max_skew_s if self.check_time else math.inf
        res = verify_event(obj, self.key, self.last_seq.get(device), skew, now, self.types)
        if res.ok and res.seq is not None:
            self.last_seq[device] = res.seq
            if self.state_path is not None:
                save_state(self.state_path, self.last_seq)
        return res


# ---------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Check event payloads (one JSON object per line on stdin): signature, replay and "
                          "timestamp. Prints one JSON result line per input line; exits 1 if any fails.")
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--key-file", help="file holding the HMAC key (a trailing newline is ignored)")
    g.add_argument("--config", help="take security.signing_key from this config (and --secrets-dir)")
    parser.add_argument("--secrets-dir", help="secrets directory (with --config)")
    parser.add_argument("--max-skew", type=float, default=None,
                        help="allowed |now - ts| in seconds (default: security.max_clock_skew_s, 300)")
    parser.add_argument("--no-time-check", action="store_true",
                        help="skip the ts check (for old journal exports)")
    parser.add_argument("--state", metavar="FILE",
                        help="keep the last accepted seq per device in FILE across runs (replays of payloads "
                             "accepted by an earlier run are refused too); written atomically")


def _load_key(args: argparse.Namespace) -> tuple[bytes | None, float, str]:
    if args.key_file:
        try:
            raw = read_capped(args.key_file, "key file")
        except UserFileError as e:
            return None, 300.0, f"{e} (--key-file)"
        except OSError as e:
            return None, 300.0, f"{args.key_file}: cannot read key file ({e.strerror}): give a readable --key-file"
        key = raw.rstrip(b"\r\n")
        return (key or None), 300.0, "" if key else f"{args.key_file}: key file is empty"
    from edge_liveness.config import ConfigError, load_settings

    try:
        settings = load_settings(args.config, secrets_dir=args.secrets_dir)
    except ConfigError as e:
        return None, 300.0, "config error: " + "; ".join(e.problems)
    key = signing.key_from_text(settings.security.signing_key.get_secret_value())
    if key is None:
        # The key the daemon created at first start, when this runs on the device itself.
        try:
            key = signing.key_from_text(read_capped(settings.state_path / signing.KEY_FILE, "key file").decode().strip())
        except (OSError, UnicodeDecodeError, UserFileError):
            key = None
    if key is None:
        return None, 300.0, ("no signing key configured: give --key-file, or put signing_key in the secrets "
                             "directory (--secrets-dir)")
    return key, settings.security.max_clock_skew_s, ""


def main(args: argparse.Namespace) -> int:
    if args.max_skew is not None and not (math.isfinite(args.max_skew) and args.max_skew > 0):
        print(f"edge-liveness verify: --max-skew {args.max_skew:g}: give the allowed clock difference in seconds, "
              f"a number > 0 (or --no-time-check to skip the ts check)", file=sys.stderr)
        return 2
    key, skew, problem = _load_key(args)
    if key is None:
        print(problem, file=sys.stderr)
        return 2
    try:
        verifier = Verifier(key, args.max_skew if args.max_skew is not None else skew,
                            check_time=not args.no_time_check, state_path=args.state)
    except VerifyStateError as e:
        print(e, file=sys.stderr)
        return 2
    failed = 0
    for n, line in enumerate(sys.stdin.buffer, 1):
        if not line.strip():
            continue
        try:
            res = verifier.check(line.strip())
        except VerifyStateError as e:
            print(e, file=sys.stderr)
            return 2
        failed += not res.ok
        out = {"line": n, "ok": res.ok, "reason": res.reason, "seq": res.seq, "device_id": res.device_id}
        print(json.dumps(out, ensure_ascii=True), flush=True)
    return 1 if failed else 0
