"""Logging set-up: plain text for a terminal/journald, or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        for k, v in getattr(record, "fields", {}).items():
            out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = getattr(record, "fields", {})
        extra = (" " + " ".join(f"{k}={v}" for k, v in fields.items())) if fields else ""
        line = f"{t} {record.levelname:<7} {record.name.removeprefix('edge_liveness.')}: {record.getMessage()}{extra}"
        if record.exc_info:
            line += " | " + self.formatException(record.exc_info).splitlines()[-1]
        return line


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Logs go to stderr: stdout is reserved for data (replay's JSON lines, events)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("paho", "urllib3", "matplotlib", "PIL", "h5py", "absl", "tensorflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def kv(**fields) -> dict:
    """`log.info("msg", extra=kv(a=1))` attaches structured fields to a log line."""
    return {"fields": fields}
