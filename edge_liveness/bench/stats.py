"""Numbers for `edge-liveness bench`: percentiles, the machine they were measured on, this process's memory."""

from __future__ import annotations

import math
import os
import platform
import re
import resource
import sys
from pathlib import Path
from typing import Any

import numpy as np


class BenchError(ValueError):
    """The bench cannot run as asked (message is one line naming the fix)."""


def _progress(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- statistics


def summarize(values: list[float], frames: int | None = None) -> dict[str, Any]:
    """p50/p95/mean/max in ms over the runs; ``per_frame_ms``: the total spread over all frames."""
    out: dict[str, Any] = {"runs": len(values)}
    if values:
        a = np.asarray(values, np.float64)
        out.update(p50_ms=_r(np.percentile(a, 50)), p95_ms=_r(np.percentile(a, 95)), mean_ms=_r(a.mean()),
                   max_ms=_r(a.max()))
    else:
        out.update(p50_ms=None, p95_ms=None, mean_ms=None, max_ms=None)
    if frames:
        out["runs_pct"] = round(100.0 * len(values) / frames, 1)
        out["per_frame_ms"] = _r(sum(values) / frames)
    return out


def _r(x: float | None, n: int = 3) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), n)


# ---------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (platform.node() says nothing here: a container name)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "arch": platform.machine(),
                            "kernel": platform.release(), "python": platform.python_version(),
                            "numpy": np.__version__}
    try:
        import cv2

        info["opencv"] = cv2.__version__
    except ImportError:
        pass
    for dist in ("ai-edge-litert", "tflite-runtime"):
        try:
            from importlib.metadata import version

            info[dist] = version(dist)
        except Exception:  # noqa: BLE001 - absent distribution
            pass
    try:
        info["mem_total_mb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20)
    except (ValueError, OSError):
        pass
    return info


def machine_slug(info: dict[str, Any]) -> str:
    cpu = re.sub(r"\(r\)|\(tm\)|cpu|processor|@.*", "", str(info["cpu"]).lower())
    cpu = re.sub(r"[^a-z0-9]+", "-", cpu).strip("-")[:32] or "cpu"
    return f"{cpu}-{info['usable_cores']}c"


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (VmRSS, VmHWM, ...) in MB; None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _rss_mb() -> float | None:
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak RSS of THIS process image. VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec,
    so a child started by a big parent would report the parent's size as its own peak."""
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(v / (2**20 if sys.platform == "darwin" else 1024), 1)


def cell(x: Any, digits: int = 3) -> str:
    """One value in a Markdown table of the bench: '-' for none, yes/NO, floats to ``digits`` (one
    decimal from 10 up)."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if isinstance(x, float):
        return f"{x:.{digits}f}" if abs(x) < 10 else f"{x:.1f}"
    return str(x)
