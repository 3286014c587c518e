"""Status file round trip, throttling, stale/not-running detection, and the `status` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from edge_liveness.service.status import EXIT_NOT_RUNNING, EXIT_OK, StatusFile, assess, format_human, read_status

REPO = Path(__file__).resolve().parent.parent


def test_round_trip_has_every_field_and_no_images(tmp_path):
    sf = StatusFile(tmp_path)
    assert sf.set_state("running")
    sf.update(fps=12.5, broker_connected=True, backlog=3, model_name="liveness_int8.tflite",
              model_sha256="ab" * 32, mode="blink", camera="ok", storage_problem="")
    sf.write()
    sf.decision("live", "blink", ts=1700000000.0)
    sf.write()
    d = read_status(tmp_path / "status.json")
    assert d["state"] == "running" and d["fps"] == 12.5 and d["backlog"] == 3
    assert d["broker_connected"] is True and d["mode"] == "blink" and d["camera"] == "ok"
    assert d["model_sha256"] == "ab" * 32 and d["pid"] == os.getpid()
    assert d["last_decision"] == {"result": "live", "reason": "blink", "ts": 1700000000.0,
                                 "seq": None, "event_id": None}
    assert abs(d["updated_at"] - time.time()) < 5
    # Privacy: nothing but small scalars; no arrays or encoded images.
    assert len((tmp_path / "status.json").read_bytes()) < 2000
    assert not [f for f in os.listdir(tmp_path) if f != "status.json"]  # temp files cleaned up
    h = assess(tmp_path / "status.json")
    assert h.running, h.reason
    text = format_human(h)
    assert "running" in text and "live (blink)" in text and "backlog 3" in text


def test_daemon_style_mapping_update(tmp_path):
    sf = StatusFile(tmp_path)
    sf.update({"state": "idle", "fps": 3.0, "active_mode": "turn", "model": {"name": "m.tflite", "sha256": "cd" * 32},
               "storage_problem": None, "last_decision": {"result": "spoof", "reason": "model", "ts": 5.0, "seq": 9,
                                                          "event_id": "e1", "crop": [1, 2, 3]}})
    d = read_status(sf.path)
    assert d["mode"] == "turn" and d["model_name"] == "m.tflite" and d["model_sha256"] == "cd" * 32
    assert d["storage_problem"] == ""
    assert d["last_decision"] == {"result": "spoof", "reason": "model", "ts": 5.0, "seq": 9, "event_id": "e1"}


def test_update_is_throttled(tmp_path):
    sf = StatusFile(tmp_path, min_interval_s=60)
    assert sf.update(fps=1.0)  # first write goes through
    assert not sf.update(fps=2.0)  # within the interval: kept in memory only
    assert read_status(sf.path)["fps"] == 1.0
    assert sf.set_state("stopping")  # state changes are written at once
    assert read_status(sf.path)["fps"] == 2.0


def test_unknown_field_is_a_programming_error(tmp_path):
    sf = StatusFile(tmp_path)
    try:
        sf.update(no_such_field=1)
    except TypeError as e:
        assert "no_such_field" in str(e)
    else:
        raise AssertionError("unknown field accepted")


def test_dead_pid_is_not_running(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    sf = StatusFile(tmp_path)
    sf.status.pid = p.pid
    sf.set_state("running")
    h = assess(sf.path)
    assert not h.running and str(p.pid) in h.reason


def test_old_file_is_stale(tmp_path):
    sf = StatusFile(tmp_path)
    sf.set_state("running")
    d = read_status(sf.path)
    # Written 60 s ago by a live process (this one): a hung loop.
    d["monotonic"] -= 60
    d["updated_at"] -= 60
    sf.path.write_text(json.dumps(d))
    h = assess(sf.path, stale_after_s=15)
    assert not h.running and "not updated" in h.reason
    assert assess(sf.path, stale_after_s=120).running


def test_stopped_state_and_missing_file(tmp_path):
    assert "no status file" in assess(tmp_path / "status.json").reason
    sf = StatusFile(tmp_path)
    sf.set_state("stopped")
    assert not assess(sf.path).running


def test_unwritable_dir_never_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    sf = StatusFile(blocker / "sub")  # parent is a file: mkdir fails
    assert sf.write() is False


def _cli(tmp_path, *args):
    env = dict(os.environ, EDGE_LIVENESS_STORAGE__STATE_DIR=str(tmp_path))
    env.pop("CREDENTIALS_DIRECTORY", None)
    return subprocess.run([sys.executable, "-m", "edge_liveness", "status", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_cli_running_and_not_running(tmp_path):
    r = _cli(tmp_path)
    assert r.returncode == EXIT_NOT_RUNNING and "NOT RUNNING" in r.stdout
    sf = StatusFile(tmp_path)  # this test process plays the daemon
    sf.update(fps=9.0, camera="ok", mode="blink")
    sf.set_state("running")
    r = _cli(tmp_path)
    assert r.returncode == EXIT_OK, r.stdout + r.stderr
    assert "edge-liveness: running" in r.stdout and "9.0 fps" in r.stdout
    r = _cli(tmp_path, "--json")
    out = json.loads(r.stdout)
    assert out["running"] is True and out["status"]["fps"] == 9.0
    sf.set_state("stopped")
    r = _cli(tmp_path, "--json")
    assert r.returncode == EXIT_NOT_RUNNING and json.loads(r.stdout)["running"] is False


def test_cli_bad_config_is_one_line(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[camera]\nfps = -1\n")
    r = _cli(tmp_path, "--config", str(cfg))
    assert r.returncode == 2
    assert "camera.fps" in r.stderr and "Traceback" not in r.stderr
