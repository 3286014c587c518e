"""HMAC-SHA256 signatures over a canonical JSON form of an event or command.

The canonical form is what both sides can rebuild from the parsed payload alone: every key except
``sig``, keys sorted at every level, no whitespace, UTF-8 (``ensure_ascii=False``), and no NaN or
Infinity (they are not JSON). Signing the parsed form rather than the wire bytes means a subscriber
may re-serialise (or a broker bridge re-encode) the payload without breaking the signature, as long
as numbers survive the round trip, which Python's float repr guarantees.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

SIG_FIELD = "sig"
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


def key_from_text(text: str) -> bytes | None:
    """The HMAC key as configured (the secret's UTF-8 bytes); None when empty."""
    return text.encode("utf-8") or None


def dumps(payload: dict[str, Any]) -> str:
    """Wire form of a payload: compact JSON in the envelope's own key order."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
