"""Reload (SIGHUP or the `reload` command): what a new config may change while the daemon runs.

Why a module of its own: a reload either takes new settings and models as a whole or keeps the
running ones (one line saying why); the active mode set by command survives unless the config
changed it; camera settings reopen the camera, and mqtt/security/storage/web need a restart. Those
rules live here; the daemon swaps what they give it between two frames.
"""

from __future__ import annotations

import logging
from typing import Any

from edge_liveness.config import ConfigError, Settings, load_settings
from edge_liveness.vision.runtime import ModelError

# The daemon's lines: the same logger name they had inside service/daemon.py, so log lines stay the same.
log = logging.getLogger("edge_liveness.daemon")


class ReloadRejected(Exception):
    """The new config or models are bad; the message is the line to log and to answer with."""


def load_new(config_path: str | None, secrets_dir: str | None, overrides: dict[str, Any]) -> tuple[Settings, Any]:
    """The new settings and the pipeline built from them; ReloadRejected when either is bad."""
    from edge_liveness.pipeline import build_pipeline

    try:
        new = load_settings(config_path, secrets_dir=secrets_dir, **overrides)
        pipeline = build_pipeline(new)
    except ConfigError as e:
        raise ReloadRejected(f"reload rejected, keeping the running config: {'; '.join(e.problems)}") from None
    except ModelError as e:
        raise ReloadRejected(f"reload rejected, keeping the running models: {e}") from None
    return new, pipeline


def active_mode(old: Settings, new: Settings, running: str) -> str:
    """The mode a command set survives a reload unless the config's own mode changed."""
    return running if new.active.mode == old.active.mode else new.active.mode


def camera_must_reopen(old: Settings, new: Settings) -> bool:
    """Logs what the new settings change; True when the camera must be reopened."""
    reopen = new.camera != old.camera
    if reopen:
        log.info("camera settings changed: reopening the camera")
    if new.mqtt != old.mqtt or new.security != old.security or new.storage != old.storage or new.web != old.web:
        log.warning("mqtt/security/storage/web settings changed: they apply after a restart (systemctl restart edge-liveness)")
    return reopen


def reloaded_message(pipeline: Any) -> str:
    li = pipeline.models.liveness
    return f"reloaded: model {li.name} {li.sha256[:12]}"
