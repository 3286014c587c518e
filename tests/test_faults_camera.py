"""Camera faults thrown at the real daemon: an IP camera that is absent at start, unplugged and
plugged back mid-run, and a source that returns corrupt frames. The daemon must keep running,
say what is going on (log line, STATUS=), and resume on its own.
"""

from __future__ import annotations

import re
import time

import cv2
import numpy as np
import pytest

from conftest import shared_file
from fault_helpers import DaemonProc, MjpegServer, base_env, video_jpegs

pytestmark = pytest.mark.slow


def test_ip_camera_absent_at_start_then_unplugged_mid_run(tmp_path, face_models):
    video = shared_file("video", "tranvanluyt_real.mp4")
    cam = MjpegServer(video_jpegs(video, 60), fps=15)
    d = DaemonProc(tmp_path, base_env(tmp_path / "state", cam.url, None))
    try:
        # Absent: retried with backoff, named in the log and in STATUS=, not ready, not dead.
        line = d.wait_log(r"cannot open camera http://127\.0\.0\.1:\d+/stream\.mjpg.*retrying in", timeout=60)
        assert "plugged in" in line
        # Every attempt shows in STATUS=; the log repeats the same reason only once a minute.
        d.wait_notify("STATUS", "(attempt 3)", timeout=30)
        assert len([x for x in d.log_lines() if "cannot open camera" in x]) == 1
        assert d.alive() and not d.notify.times("READY")

        # Plugged in: opened, ready, frames flow (watchdog pings), decisions come.
        cam.start()
        d.wait_log(r"camera .*stream\.mjpg open again after \d+ attempt", timeout=30)
        ready = d.wait_ready(timeout=30)
        d.wait_decisions(1, timeout=60)
        assert d.notify.times("WATCHDOG", since=ready)

        # Unplugged mid-run: the read fails, the camera is reopened with backoff.
        t_unplug = time.monotonic()
        cam.stop()
        d.wait_log(r"returned no frame \(unplugged or stream lost\); reopening", timeout=20, since=t_unplug)
        d.wait_notify("STATUS", "camera reopening", timeout=10, since=t_unplug)
        time.sleep(2.0)
        assert d.alive()
        quiet_from = time.monotonic()
        time.sleep(1.5)
        assert d.notify.times("WATCHDOG", since=quiet_from) == [], "watchdog pinged with no camera"

        # Plugged back: frames and decisions again, same process.
        n_before = len(d.decisions())
        t_back = time.monotonic()
        cam.start()
        d.wait_log(r"open again after \d+ attempt", timeout=30, since=t_back)
        d.wait(lambda: d.notify.times("WATCHDOG", since=t_back), 30, "watchdog pings after the camera came back")
        d.wait_decisions(n_before + 1, timeout=60)
        assert d.stop() == 0
        assert "Traceback" not in d.log()
    finally:
        cam.stop()
        d.close()


def _corrupt_folder(folder, video) -> dict[str, str]:
    """Real frames from a recording plus every kind of broken frame; returns {file: expected reason}."""
    folder.mkdir()
    for i, jpg in enumerate(video_jpegs(video, 12)):
        (folder / f"m_{i:02d}_good.jpg").write_bytes(jpg)
    good = cv2.imdecode(np.frombuffer((folder / "m_00_good.jpg").read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    # Readable but unusual: converted and processed, never a crash.
    cv2.imwrite(str(folder / "m_20_grey.png"), cv2.cvtColor(good, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "m_21_bgra.png"), cv2.cvtColor(good, cv2.COLOR_BGR2BGRA))
    # Broken: skipped and counted. The first three (by name) are the ones the log names.
    expected = {
        "a_8k.png": "frame too large (7680x4320)",
        "b_1x1.png": "frame too small (1x1)",
        "c_empty.jpg": "empty frame",
        "d_garbage.jpg": "empty frame",
        "e_16bit.png": "unsupported pixel type uint16",
        "f_float.tiff": "unsupported pixel type float32",
    }
    cv2.imwrite(str(folder / "a_8k.png"), np.zeros((4320, 7680, 3), np.uint8))
    cv2.imwrite(str(folder / "b_1x1.png"), np.zeros((1, 1, 3), np.uint8))
    for i in range(20):  # cheap broken frames, so the count climbs fast
        cv2.imwrite(str(folder / f"g_1x1_{i:02d}.png"), np.zeros((1, 1, 3), np.uint8))
    (folder / "c_empty.jpg").write_bytes(b"")
    (folder / "d_garbage.jpg").write_bytes(b"\xff\xd8 this is not a jpeg " * 40)
    cv2.imwrite(str(folder / "e_16bit.png"), np.full((120, 160, 3), 40000, np.uint16))
    cv2.imwrite(str(folder / "f_float.tiff"), good.astype(np.float32) / 255)
    assert cv2.imread(str(folder / "f_float.tiff"), cv2.IMREAD_UNCHANGED).dtype == np.float32
    return expected


def test_corrupt_frames_are_skipped_and_counted(tmp_path, face_models):
    video = shared_file("video", "tranvanluyt_real.mp4")
    folder = tmp_path / "frames"
    expected = _corrupt_folder(folder, video)
    # 60 "fps" over a looping folder of 40 files, 26 of them broken.
    d = DaemonProc(tmp_path, base_env(tmp_path / "state", folder, None, camera__fps=60, camera__threaded=False))
    try:
        d.wait_ready()
        first = [expected[n] for n in sorted(expected)[:3]]
        for i, reason in enumerate(first, 1):
            d.wait_log(r"corrupt frame skipped: " + re.escape(reason) + rf".*\({i} so far\)", timeout=30)
        # Every kind keeps being skipped loop after loop: the count reaches 100, one line says so.
        d.wait_log(r"corrupt frame skipped: .* \(100 so far\)", timeout=90)
        d.wait_decisions(1, timeout=60)  # the good, grey and BGRA frames still reach a decision
        assert d.alive()
        assert d.stop() == 0
        text = d.log()
        assert "Traceback" not in text
        # Bounded logging: 100+ broken frames, one line per kind of breakage plus one per hundred.
        lines = [s for s in text.splitlines() if "corrupt frame skipped" in s]
        kinds = set(expected.values())
        assert all(any(k in s for s in lines) for k in kinds), "every kind of broken frame is named once"
        assert len(lines) <= len(kinds) + 2
    finally:
        d.close()


def test_replay_source_missing_fails_at_once_with_one_line(tmp_path, face_models):
    """A file does not heal by waiting: one line and an exit, not a retry loop."""
    missing = tmp_path / "no-such-clip.mp4"
    d = DaemonProc(tmp_path, base_env(tmp_path / "state", missing, None))
    try:
        code = d.wait_exit(120)
        errors = [s for s in d.log().splitlines() if " ERROR " in s]
        assert code == 2 and errors == [errors[0]] and f"replay source {missing} does not exist" in errors[0], d.log()
        assert "Traceback" not in d.log() and not d.notify.times("READY")
    finally:
        d.close()


def _damaged_copies(tmp_path):
    """The real recording cut in half, and with 200 KB zeroed mid-file (both still open)."""
    data = shared_file("video", "tranvanluyt_real.mp4").read_bytes()
    cut = tmp_path / "truncated.mp4"
    cut.write_bytes(data[: len(data) // 2])
    wrecked = bytearray(data)
    mid = len(wrecked) // 2
    wrecked[mid: mid + 200_000] = bytes(200_000)
    bad = tmp_path / "corrupt_mid.mp4"
    bad.write_bytes(bytes(wrecked))
    return cut, bad


def test_replay_of_a_truncated_or_corrupt_video_says_it_ended_early(tmp_path, face_models):
    import subprocess
    import sys

    from fault_helpers import REPO, clean_env

    for path in _damaged_copies(tmp_path):
        r = subprocess.run([sys.executable, "-m", "edge_liveness", "replay", str(path)], cwd=REPO, env=clean_env(),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
        said = [s for s in r.stderr.splitlines() if "ended early" in s]
        assert len(said) == 1, r.stderr[-2000:]
        assert re.search(rf"replay source {re.escape(str(path))} ended early, at [\d.]+ s of 20\.7 s: 3\d\d frames read, "
                         r"the container announced 621 \(the file is truncated or corrupt\)", said[0]), said[0]
        assert "[h264 @" not in r.stderr, "FFmpeg's own decoder spam must not reach stderr"
    # The whole file says nothing of the kind.
    whole = shared_file("video", "tranvanluyt_real.mp4")
    r = subprocess.run([sys.executable, "-m", "edge_liveness", "replay", str(whole)], cwd=REPO, env=clean_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "ended early" not in r.stderr


def test_daemon_on_a_truncated_video_says_it_ended_early_once(tmp_path, face_models):
    cut, _ = _damaged_copies(tmp_path)
    d = DaemonProc(tmp_path, base_env(tmp_path / "state", cut, None, camera__loop=True, camera__realtime=False))
    try:
        d.wait_ready()
        d.wait_log(r"WARNING .*replay source .*truncated\.mp4 ended early, at [\d.]+ s of 20\.7 s: \d+ frames read, "
                   r"the container announced 621", timeout=60)
        time.sleep(3.0)  # several loops
        assert len([s for s in d.log_lines() if "ended early" in s]) == 1, "said once, not on every loop"
        assert d.stop() == 0
    finally:
        d.close()
