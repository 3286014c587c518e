"""Subscriber-side checks of signed payloads, and the ``edge-liveness verify`` command.

A payload passes when its HMAC matches, its ``seq`` is above the last one accepted from that
device (replay protection), and its wall-clock ``ts`` is within ``max_skew_s`` of now. Nothing
here raises on bad input: garbage gets a result with a reason.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_liveness import signing

MAX_PAYLOAD_BYTES = 1 << 20


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    reason: str  # "ok" or a short problem description
    seq: int | None = None
    device_id: str | None = None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_payload(payload: dict | str | bytes | bytearray) -> tuple[dict | None, str]:
    """(object, "") or (None, reason). Rejects NaN/Infinity, which json.loads would accept."""
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
        obj = json.loads(payload, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        # ValueError covers JSONDecodeError and the int-digits limit.
        return None, f"bad JSON: {str(e).splitlines()[0][:80]}"
    if not isinstance(obj, dict):
        return None, f"not a JSON object ({type(obj).__name__})"
    return obj, ""


def verify_event(payload: dict | str | bytes, key: bytes, last_seq: int | None = None, max_skew_s: float = 300.0,
                 now: float | None = None) -> VerifyResult:
    """Check signature, replay (seq <= last_seq) and stale/future ts. Never raises."""
    try:
        return _verify(payload, key, last_seq, max_skew_s, now)
    except RecursionError:
        return VerifyResult(False, "payload nested too deeply")


def _verify(payload: Any, key: bytes, last_seq: int | None, max_skew_s: float, now: float | None) -> VerifyResult:
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
    # Only a signed payload's seq/ts mean anything, so these come after the HMAC.
    if last_seq is not None and seq <= last_seq:
        return VerifyResult(False, f"replay: seq {seq} <= last accepted {last_seq}", seq, device)
    ts = obj.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        return VerifyResult(False, "missing or bad ts (must be unix seconds)", seq, device)
    now = time.time() if now is None else now
    if ts < now - max_skew_s:
        return VerifyResult(False, f"stale: ts {now - ts:.0f} s in the past (limit {max_skew_s:g} s)", seq, device)
    if ts > now + max_skew_s:
        return VerifyResult(False, f"from the future: ts {ts - now:.0f} s ahead (limit {max_skew_s:g} s)", seq, device)
    return VerifyResult(True, "ok", seq, device)


class Verifier:
    """Stateful checker for a stream: remembers the last accepted seq per device."""

    def __init__(self, key: bytes, max_skew_s: float = 300.0, check_time: bool = True):
        self.key = key
        self.max_skew_s = max_skew_s
        self.check_time = check_time
        self.last_seq: dict[str | None, int] = {}

    def check(self, payload: dict | str | bytes, now: float | None = None) -> VerifyResult:
        obj, why = parse_payload(payload)
        if obj is None:
            return VerifyResult(False, why)
        device = obj.get("device_id") if isinstance(obj.get("device_id"), str) else None
        skew = self.max_skew_s if self.check_time else math.inf
        res = verify_event(obj, self.key, self.last_seq.get(device), skew, now)
        if res.ok and res.seq is not None:
            self.last_seq[device] = res.seq
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


def _load_key(args: argparse.Namespace) -> tuple[bytes | None, float, str]:
    if args.key_file:
        try:
            raw = Path(args.key_file).read_bytes()
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
        return None, 300.0, ("no signing key configured: give --key-file, or put signing_key in the secrets "
                             "directory (--secrets-dir)")
    return key, settings.security.max_clock_skew_s, ""


def main(args: argparse.Namespace) -> int:
    key, skew, problem = _load_key(args)
    if key is None:
        print(problem, file=sys.stderr)
        return 2
    verifier = Verifier(key, args.max_skew if args.max_skew is not None else skew, check_time=not args.no_time_check)
    failed = 0
    for n, line in enumerate(sys.stdin.buffer, 1):
        if not line.strip():
            continue
        res = verifier.check(line.strip())
        failed += not res.ok
        out = {"line": n, "ok": res.ok, "reason": res.reason, "seq": res.seq, "device_id": res.device_id}
        print(json.dumps(out, ensure_ascii=True), flush=True)
    return 1 if failed else 0
