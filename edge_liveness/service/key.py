"""The daemon's signing key: the configured one, else the one kept in the state directory.

Why a module of its own: secure by default (issue 17) means a daemon started without a key still
signs its events and checks its commands, with a key it creates at first start and keeps. The
rules for that (create, reuse, and what happens when the state directory is unusable) are one job,
apart from the frame loop.
"""

from __future__ import annotations

import logging

from edge_liveness.config import Settings

# The daemon's lines: the same logger name they had inside service/daemon.py, so log lines stay the same.
log = logging.getLogger("edge_liveness.daemon")


def signing_key(settings: Settings) -> bytes:
    """The key events are signed with and commands checked against. Raises signing.KeyFileError
    when the key file in the state directory is unusable."""
    key = settings.security.signing_key.get_secret_value().encode() or None
    if key is None:
        key = state_key(settings)
    return key


def state_key(settings: Settings) -> bytes:
    """No key configured: the one kept in the state directory, created at first start."""
    from edge_liveness.events.signing import KEY_FILE, state_key as load_or_create

    path = settings.state_path / KEY_FILE
    try:
        key, created = load_or_create(settings.state_path)
    except OSError as e:
        import secrets

        log.error("no signing_key configured and %s cannot be created (%s): events are signed with a key held "
                  "in memory for this run only (no subscriber can check them) and every command is refused; "
                  "fix the state directory or put the key in the secrets directory", path, e.strerror or e)
        return secrets.token_hex(32).encode()
    if created:
        log.warning("no signing_key configured: created one at %s (mode 0600); events are signed with it and "
                    "commands must be: give it to subscribers and command senders", path)
    else:
        log.info("signing with the key created at first start: %s", path)
    return key
