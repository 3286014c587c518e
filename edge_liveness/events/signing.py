"""HMAC-SHA256 signatures over a canonical JSON form of an event or command.

The canonical form is what both sides can rebuild from the parsed payload alone: every key except
``sig``, keys sorted at every level, no whitespace, UTF-8 (``ensure_ascii=False``), and no NaN or
Infinity (they are not JSON). Signing the parsed form rather than the wire bytes means a subscriber
may re-serialise (or a broker bridge re-encode) the payload without breaking the signature, as long
as numbers survive the round trip, which Python's float repr guarantees.

What is signed is therefore every field, so binding is done by fields: an event carries ``type``
(``decision``/``prompt``) and ``device_id``; a command carries ``"type": "command"``, ``"command":
<name>`` and ``"device_id": <target>`` (canonical form version 1, docs/mqtt.md), so a signature made
for one command or one device is refused on another, and a signed command is not an event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any

SIG_FIELD = "sig"
KEY_FILE = "signing_key"  # in storage.state_dir, created at first start when none is configured
_HEX = re.compile(r"[0-9a-f]{64}")


class SigningError(ValueError):
    """The payload cannot be put into canonical form (not JSON-serialisable, NaN, lone surrogate)."""


def canonical(payload: dict[str, Any]) -> bytes:
    """The bytes that are signed: ``payload`` minus ``sig``, sorted keys, compact, UTF-8."""
    body = {k: v for k, v in payload.items() if k != SIG_FIELD}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except (TypeError, ValueError) as e:
        # UnicodeEncodeError (lone surrogates) is a ValueError too.
        raise SigningError(f"payload cannot be signed: {e}") from None


def signature(payload: dict[str, Any], key: bytes) -> str:
    """Hex HMAC-SHA256 of the canonical form."""
    return hmac.new(key, canonical(payload), hashlib.sha256).hexdigest()


def sign(payload: dict[str, Any], key: bytes | None) -> dict[str, Any]:
    """A copy of ``payload`` with ``sig`` appended last (or removed when there is no key)."""
    out = {k: v for k, v in payload.items() if k != SIG_FIELD}
    if key:
        out[SIG_FIELD] = signature(out, key)
    return out


def check(payload: dict[str, Any], key: bytes) -> bool:
    """True when ``payload['sig']`` is the right signature (constant-time compare)."""
    sig = payload.get(SIG_FIELD)
    # compare_digest refuses non-ASCII str, so vet the shape first.
    if not isinstance(sig, str) or len(sig) != 64 or not _HEX.fullmatch(sig):
        return False
    try:
        expected = signature(payload, key)
    except SigningError:
        return False
    return hmac.compare_digest(expected, sig)


COMMAND_TYPE = "command"
_cmd_seq = 0
_cmd_lock = threading.Lock()


def next_command_seq() -> int:
    """Microseconds since the epoch, and always above the last one this process handed out (two
    commands in the same millisecond, or microsecond, must not share a seq: the second is a replay)."""
    global _cmd_seq
    with _cmd_lock:
        _cmd_seq = max(time.time_ns() // 1000, _cmd_seq + 1)
        return _cmd_seq


def command(name: str, device_id: str, key: bytes, /, seq: int | None = None, ts: float | None = None,
            **args: Any) -> dict[str, Any]:
    """A signed command for ``<prefix>/<device_id>/set/<name>`` (canonical form version 1): ``type``,
    ``command``, ``device_id``, ``seq`` and ``ts``, then the arguments, then ``sig``."""
    body = {"type": COMMAND_TYPE, "command": name, "device_id": device_id,
            "seq": next_command_seq() if seq is None else seq, "ts": time.time() if ts is None else ts}
    body.update({k: v for k, v in args.items() if k not in body})
    return sign(body, key)


def key_from_text(text: str) -> bytes | None:
    """The HMAC key as configured (the secret's UTF-8 bytes); None when empty."""
    return text.encode("utf-8") or None


def dumps(payload: dict[str, Any]) -> str:
    """Wire form of a payload: compact JSON in the envelope's own key order."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class KeyFileError(ValueError):
    """The key file in the state directory is unusable; the message is one line naming the fix."""


def state_key(state_dir: Path) -> tuple[bytes, bool]:
    """The key kept at ``<state_dir>/signing_key``, created (32 random bytes as hex, mode 0600)
    when it does not exist. Returns (key, created). Raises KeyFileError or OSError."""
    path = Path(state_dir) / KEY_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = secrets.token_hex(32)
        # O_EXCL: two daemons starting at once must not overwrite each other's key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (text + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return text.encode(), True
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a text key file: delete it to have a new one created, or put the key "
                           f"in the secrets directory as signing_key") from None
    if not text:
        raise KeyFileError(f"{path}: key file is empty: delete it to have a new one created, or put the key in "
                           f"the secrets directory as signing_key")
    return text.encode(), False
