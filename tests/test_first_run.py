"""Issue 18, "the first ten minutes": what a newcomer types, run as the real commands.

Each test names the item it covers. The daemon tests start the real `edge-liveness run` (real
models, real replay files); nothing stands in for the parts they check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, shared_file
from fault_helpers import DaemonProc, base_env, clean_env
from edge_liveness.service.status import EXIT_NO_FRAMES, EXIT_NOT_RUNNING, EXIT_UNKNOWN, StatusFile


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full = clean_env()
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "edge_liveness", *args], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=timeout)


def _one_clear_line(r: subprocess.CompletedProcess, *needles: str) -> str:
    lines = [s for s in r.stderr.splitlines() if s.strip()]
    assert "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


# ---------------------------------------------------------------- item 3: no camera

def test_missing_camera_names_the_device_the_devices_there_and_the_recording_hint(tmp_path, face_models):
    missing = "/dev/video" + str(90 + os.getpid() % 9)  # a device node that does not exist
    assert not Path(missing).exists()
    d = DaemonProc(tmp_path, base_env(tmp_path / "state", missing, None), args=["--quiet"])
    try:
        line = d.wait_log(r"cannot open camera", timeout=120)
        assert f"{missing} does not exist" in line
        present = sorted(str(p) for p in Path("/dev").glob("video*"))
        if present:
            assert all(p in line for p in present), line
        else:
            assert "there are no video devices" in line, line
        assert "--source FILE" in line and "retrying in" in line
        # Keeps retrying as before (the camera may be plugged in later) ...
        d.wait(lambda: d.proc.poll() is None and len(d.log_lines()) > 0, 5, "still running")
        # ... and `status` tells a monitor that no frame ever came (item 6).
        d.wait(lambda: (tmp_path / "state" / "status.json").is_file(), 30, "status.json")
        r = _cli("status", env={"EDGE_LIVENESS_STORAGE__STATE_DIR": str(tmp_path / "state")})
        assert r.returncode == EXIT_NO_FRAMES, r.stdout + r.stderr
        assert "running" in r.stdout and "has not delivered a single frame" in r.stdout, r.stdout
    finally:
        d.stop()
        d.close()


# ---------------------------------------------------------------- item 4: a recording ends

def _tiny_recording(folder: Path, n: int = 3) -> Path:
    folder.mkdir()
    img = np.full((240, 320, 3), 90, np.uint8)
    for i in range(n):
        cv2.imwrite(str(folder / f"f{i:03d}.png"), img)
    return folder


def test_replay_end_names_exit_at_end_and_exit_at_end_exits(tmp_path, face_models):
    rec = _tiny_recording(tmp_path / "rec")
    d = DaemonProc(tmp_path, base_env(tmp_path / "state", rec, None, camera__loop=False), args=["--quiet"])
    try:
        line = d.wait_log(r"replay source ended", timeout=120)
        assert "--exit-at-end" in line, line
    finally:
        d.stop()
        d.close()
    d = DaemonProc(tmp_path, base_env(tmp_path / "state2", rec, None, camera__loop=False), args=["--quiet", "--exit-at-end"], name="d2")
    try:
        assert d.wait_exit(timeout=120) == 0, d.log()[-2000:]
    finally:
        d.close()


def test_exit_at_end_wins_over_camera_loop(tmp_path, face_models):
    """Issue 27: `camera.loop = true` in the config kept a `run --exit-at-end` going for ever. The flag
    typed for this run wins, and the log says the loop setting was set aside."""
    rec = _tiny_recording(tmp_path / "rec")
    d = DaemonProc(tmp_path, base_env(tmp_path / "state", rec, None, camera__loop=True),
                   args=["--quiet", "--exit-at-end"])
    try:
        assert d.wait_exit(timeout=120) == 0, d.log()[-2000:]
        assert "camera.loop = true is ignored" in d.log() and "Traceback" not in d.log()
    finally:
        d.close()


# ---------------------------------------------------------------- issue 27: a folder of things that are not images

def _not_images(tmp_path: Path) -> dict[str, Path]:
    named_like_images = tmp_path / "named_like_images"
    named_like_images.mkdir()
    (named_like_images / "door.jpg").write_text("not a JPEG\n")
    (named_like_images / "door2.png").write_bytes(b"")
    other = tmp_path / "other_files"
    other.mkdir()
    (other / "notes.txt").write_text("hello\n")
    (other / "clip.mp4").write_text("not a video\n")
    fake_video = tmp_path / "fake.mp4"
    fake_video.write_text("not a video either\n")
    return {"a folder of files named like images": named_like_images, "a folder without images": other,
            "a file that is no video": fake_video}


def test_replay_of_files_that_are_not_images_exits_2_in_one_line(tmp_path):
    for what, path in _not_images(tmp_path).items():
        r = _cli("replay", str(path))
        assert r.returncode == 2, (what, r.returncode, r.stderr)
        line = _one_clear_line(r, str(path))
        assert "give a" in line, (what, line)  # names the fix
        assert r.stdout == "", what


def test_run_on_files_that_are_not_images_exits_2_in_one_line(tmp_path, face_models):
    from fault_helpers import assert_one_clear_error

    for i, (what, path) in enumerate(_not_images(tmp_path).items()):
        d = DaemonProc(tmp_path / f"d{i}", base_env(tmp_path / "state", path, None, camera__loop=False),
                       args=["--quiet", "--exit-at-end"])
        try:
            line = assert_one_clear_error(d, d.wait_exit(timeout=120), str(path))
            assert "give a" in line, (what, line)
        finally:
            d.close()


# ---------------------------------------------------------------- item 6 and issue 17: `status`

def test_status_of_a_corrupt_file_is_one_line_and_exit_4(tmp_path):
    (tmp_path / "status.json").write_text('{"state": "running", "pid": ')
    r = _cli("status", env={"EDGE_LIVENESS_STORAGE__STATE_DIR": str(tmp_path)})
    assert r.returncode == EXIT_UNKNOWN == 4
    _one_clear_line(r, "status.json", "unreadable status file", "restart")
    assert r.stdout == ""


def test_status_after_a_stop_never_says_broker_connected(tmp_path):
    sf = StatusFile(tmp_path)  # this process plays the daemon: connected, then a clean stop
    sf.update(broker_connected=True, camera="streaming", frames=12, backlog=2)
    sf.set_state("running")
    r = _cli("status", env={"EDGE_LIVENESS_STORAGE__STATE_DIR": str(tmp_path)})
    assert r.returncode == 0 and "broker:   connected" in r.stdout, r.stdout
    sf.set_state("stopped")
    r = _cli("status", env={"EDGE_LIVENESS_STORAGE__STATE_DIR": str(tmp_path)})
    assert r.returncode == EXIT_NOT_RUNNING, r.stdout
    assert "NOT RUNNING" in r.stdout and "connected (" not in r.stdout.replace("not connected (", "")
    assert "broker:   not connected (the daemon is not running)" in r.stdout, r.stdout


# ---------------------------------------------------------------- issue 17: events, env config

def test_events_refuses_a_negative_limit_with_one_line(tmp_path):
    r = _cli("events", "--limit", "-5", "--db", str(tmp_path / "none.db"))
    assert r.returncode == 2
    _one_clear_line(r, "--limit -5", "1 or more")


def test_events_counts_one_event_in_the_singular(tmp_path):
    from edge_liveness.events.outbox import Outbox

    ob = Outbox.open(tmp_path / "outbox.db")
    seq = ob.allocate_seq()
    ob.record(seq, "0b6f3c52-5d0a-4a4e-9a53-8f1c2d3e4f50", "decision", time.time(),
              json.dumps({"type": "decision", "result": "pass", "reason": "live", "seq": seq}))
    ob.close()
    r = _cli("events", "--db", str(tmp_path / "outbox.db"))
    assert r.returncode == 0, r.stderr
    assert "1 event, 1 pending" in r.stderr and "1 events" not in r.stderr, r.stderr


@pytest.mark.parametrize("var,value,needles", [
    ("EDGE_LIVENESS_CAMERA", "notjson", ("EDGE_LIVENESS_CAMERA:", "JSON", "EDGE_LIVENESS_CAMERA__FPS=")),
    ("EDGE_LIVENESS_CAMERA__FPS", "fast", ("camera.fps", "(from environment variable EDGE_LIVENESS_CAMERA__FPS)")),
    ("EDGE_LIVENESS_CAMERA", '{"fps": -1}', ("camera.fps", "(from environment variable EDGE_LIVENESS_CAMERA)")),
])
def test_config_errors_from_the_environment_name_the_variable(var, value, needles):
    r = _cli("config", "check", env={var: value})
    assert r.returncode == 2
    _one_clear_line(r, *needles)


# ---------------------------------------------------------------- item 10: noise

def test_no_xnnpack_info_line_from_a_command_that_loads_models(face_models):
    img = shared_file("faces", "coral_test_data", "face.jpg")
    r = _cli("ear", str(img))
    assert r.returncode == 0, r.stderr
    assert "XNNPACK" not in r.stderr and "INFO: Created TensorFlow Lite" not in r.stderr, r.stderr


def test_progress_lines_are_separate_lines_when_stderr_is_not_a_terminal(capsys):
    from edge_liveness.cli.progress import progress_line

    progress_line("100/801 files")
    progress_line("200/801 files")
    err = capsys.readouterr().err
    assert err == "100/801 files\n200/801 files\n"


def test_native_stderr_filter_passes_other_native_output_on(capfd):
    from edge_liveness.vision.runtime import _native_stderr_filtered

    with _native_stderr_filtered():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nERROR: a real problem\n")
    err = capfd.readouterr().err
    assert "a real problem" in err and "XNNPACK" not in err


# ---------------------------------------------------------------- item 1/5: scripts/run.sh

def test_run_sh_resolves_a_relative_source_against_where_it_was_typed(tmp_path):
    """The argument rewrite of scripts/run.sh, run by bash itself (no install: EDGE_LIVENESS_RUN_DRY)."""
    rec = _tiny_recording(tmp_path / "clip")
    r = subprocess.run(["bash", str(REPO / "scripts" / "run.sh"), "--source", "clip", "--exit-at-end",
                        "--config=cfg.toml"], cwd=tmp_path, env=dict(os.environ, EDGE_LIVENESS_RUN_DRY="1"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    args = r.stdout.split("\n")[-2].split("\t")
    assert args[:2] == ["run", "--source"] and args[2] == str(rec), args
    assert args[3] == "--exit-at-end" and args[4] == f"--config={tmp_path / 'cfg.toml'}", args


def _installed_venv_or_skip() -> Path:
    """The venv this suite runs in, when scripts/_env.sh installed it and nothing asks for a re-install
    (a test must not pip-install into it)."""
    import hashlib

    venv = Path(sys.prefix)
    stamp = venv / ".edge-liveness-installed"
    if not stamp.is_file():
        pytest.skip(f"{venv} was not installed by scripts/_env.sh (no {stamp.name}): run scripts/test.sh")
    extras, digest = (stamp.read_text().split() + ["", ""])[:2]
    if digest != hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest() or "metrics" not in extras.split(","):
        pytest.skip("pyproject.toml changed since the venv was installed: run.sh would re-install (scripts/test.sh does it)")
    if subprocess.run(["dpkg", "-s", "python3-venv"], capture_output=True).returncode != 0:
        pytest.skip("python3-venv is not installed: run.sh would apt-get it (scripts/test.sh installs it)")
    return venv


def test_run_sh_prints_decisions_alone_on_stdout_and_progress_on_stderr(tmp_path, face_models, shared_data):
    """Issue 27: the README says stdout carries the decision JSON; run.sh's `==>` lines were mixed in.
    The real run.sh, install steps (already done: no-ops) and daemon, on a real clip that ends mid-attempt."""
    venv = _installed_venv_or_skip()
    cap = cv2.VideoCapture(str(shared_file("video", "tranvanluyt_real.mp4")))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    clip = tmp_path / "clip.mkv"
    writer = None
    for _ in range(round(0.6 * fps)):  # too short for a decision: the stop ends the attempt (fail/shutdown)
        ok, img = cap.read()
        assert ok
        writer = writer or cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"FFV1"), fps, (img.shape[1], img.shape[0]))
        writer.write(img)
    cap.release()
    writer.release()
    env = clean_env()
    env.update(base_env(tmp_path / "state", clip, None, camera__loop=False), EDGE_LIVENESS_VENV=str(venv))
    r = subprocess.run(["bash", str(REPO / "scripts" / "run.sh"), "--source", "clip.mkv", "--exit-at-end"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert lines, r.stderr[-3000:]
    payloads = [json.loads(ln) for ln in lines]  # every stdout line is one JSON payload
    assert [(p["type"], p["result"], p["reason"]) for p in payloads] == [("decision", "fail", "shutdown")], payloads
    assert "==>" not in r.stdout
    assert "==> for the other edge-liveness commands, in your shell: source" in r.stderr


# ---------------------------------------------------------------- item 2: install once, without warnings

def test_the_package_builds_without_setuptools_warnings(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path / "w"), str(REPO)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    if r.returncode != 0 and "setuptools" in r.stdout + r.stderr and "No matching distribution" in r.stdout + r.stderr:
        pytest.skip("pip cannot reach a package index for the build backend here")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    out = r.stdout + r.stderr
    for bad in ("SetuptoolsDeprecationWarning", "is absent from the `packages` configuration", "_DeprecatedConfig"):
        assert bad not in out, bad
    import zipfile

    names = zipfile.ZipFile(next((tmp_path / "w").glob("edge_liveness-*.whl"))).namelist()
    assert "edge_liveness/schemas/event.schema.json" in names
    assert "edge_liveness/bundled_models/liveness_mnv2_int8.tflite" in names


def test_pip_install_is_skipped_when_nothing_changed(tmp_path):
    """scripts/_env.sh's pip_install on the venv the suite runs in: installed by test.sh, so a no-op now
    (and where pyproject.toml changed since, skipped: the test must not re-install a venv in use)."""
    venv = _installed_venv_or_skip()
    stamp = venv / ".edge-liveness-installed"
    extras = stamp.read_text().split()[0]
    r = subprocess.run(["bash", "-c", f'source scripts/_env.sh; pip_install {extras}'], cwd=REPO, capture_output=True,
                       text=True, timeout=600, env=dict(os.environ, EDGE_LIVENESS_VENV=str(venv)))
    assert r.returncode == 0, r.stderr
    # progress goes to stderr (issue 27): run.sh's stdout carries decisions only
    assert r.stdout == "" and r.stderr.strip().splitlines() == [
        f"==> edge-liveness already installed in {venv} (pyproject.toml unchanged)"], r.stdout + r.stderr
    # a changed pyproject.toml changes the stamp, so the next start re-installs
    r2 = subprocess.run(["bash", "-c", f'source scripts/_env.sh; cd "$1"; install_stamp {extras}', "_", str(tmp_path)],
                        cwd=REPO, capture_output=True, text=True, timeout=60)
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text() + "\n# changed\n")
    r3 = subprocess.run(["bash", "-c", f'source scripts/_env.sh; cd "$1"; install_stamp {extras}', "_", str(tmp_path)],
                        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r3.stdout.strip() and r3.stdout != stamp.read_text() and r2.stdout.split()[0] == extras


def test_scripts_pass_shellcheck():
    import shutil

    sc = shutil.which("shellcheck")
    if sc is None:
        pytest.skip("shellcheck not installed (scripts/test.sh installs it)")
    scripts = [str(REPO / "scripts" / n) for n in ("run.sh", "_env.sh", "test.sh")]
    r = subprocess.run([sc, "-e", "SC1091", *scripts], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


# ---------------------------------------------------------------- item 1: the README's commands as typed

def test_readme_says_how_to_reach_the_commands_and_that_works():
    readme = (REPO / "README.md").read_text()
    assert "source .venv/bin/activate" in readme
    venv = REPO / ".venv"
    if not (venv / "bin" / "activate").is_file():
        pytest.skip(f"no {venv} here (scripts/run.sh or scripts/test.sh makes it)")
    r = subprocess.run(["bash", "-c", "source .venv/bin/activate && command -v edge-liveness && edge-liveness --version"],
                       cwd=REPO, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == str(venv / "bin" / "edge-liveness")


def test_evaluate_progress_in_a_log_is_one_line_per_update(tmp_path, face_models):
    """`edge-liveness evaluate` with stderr to a pipe (CI, a log file): no "100/801 files200/801 files"."""
    face = shared_file("faces", "coral_test_data", "face.jpg")
    for label in ("live", "spoof"):
        (tmp_path / label).mkdir()
        for i in range(100):
            (tmp_path / label / f"{i:03d}.jpg").write_bytes(face.read_bytes())
    from edge_liveness.liveness.model import default_model_path

    r = _cli("evaluate", str(default_model_path()), str(tmp_path), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stderr.splitlines()
    assert "100/200 files" in lines and "200/200 files" in lines, r.stderr[-2000:]
    assert "\r" not in r.stderr
