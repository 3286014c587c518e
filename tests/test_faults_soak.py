"""Soak: the real daemon on a looping recording while the broker restarts; nothing lost, no leaks.

CI runs the short form (1 minute, broker restarted every 15 s). For a longer run by hand:

    EDGE_LIVENESS_SOAK_MINUTES=10 .venv/bin/pytest -q tests/test_faults_soak.py
    .venv/bin/python scripts/soak.py --soak-minutes 10     # also writes benchmarks/results/soak_10min.json
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from conftest import shared_file

pytestmark = pytest.mark.slow

SOAK_MINUTES = float(os.environ.get("EDGE_LIVENESS_SOAK_MINUTES", "1"))
REPO = Path(__file__).resolve().parent.parent


def _soak_module():
    spec = importlib.util.spec_from_file_location("soak", REPO / "scripts" / "soak.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_soak_broker_restarts_lose_nothing_and_leak_nothing(tmp_path, face_models):
    video = shared_file("video", "tranvanluyt_real.mp4")
    soak = _soak_module()
    r = soak.run_soak(SOAK_MINUTES, tmp_path, video=video, log=lambda m: None)
    (tmp_path / "soak.json").write_text(json.dumps(r, indent=1))
    summary = {k: v for k, v in r.items() if k != "samples"}
    assert r["decisions_made"] >= 10 * SOAK_MINUTES, summary
    assert r["broker_restarts"] >= 3 * min(SOAK_MINUTES, 1), summary
    assert r["problems"] == [], summary
    assert r["lost"] == 0 and r["bad_signatures"] == 0
    assert r["rss_growth"] < soak.MAX_RSS_GROWTH
    assert r["fds_end"] <= r["fds_warm"] and r["threads_end"] <= r["threads_warm"]
