"""Camera sources and the supervisor: real files, a Pi camera stand-in, reopen with backoff."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from conftest import shared_file
from edge_liveness.camera.supervisor import (Camera, CameraError, OpenCVSource, Picamera2Source, ReplaySource, check_frame,
                                  open_source)
from edge_liveness.config import CameraConfig

FAST = CameraConfig(realtime=False, reopen_initial_s=0.05, reopen_max_s=0.2, read_timeout_s=0.5)


def collect(cam: Camera, limit: int = 10_000, stop: threading.Event | None = None) -> list:
    stop = stop or threading.Event()
    out = []
    for f in cam.frames(stop):
        if f is not None:
            out.append(f)
        if len(out) >= limit:
            stop.set()
    return out


class StandInPicamera2:
    """Stands in for picamera2.Picamera2 (no Pi camera here): same methods, real pixel arrays."""

    instances = 0

    def __init__(self, fail_after: int | None = None):
        StandInPicamera2.instances += 1
        self.fail_after = fail_after
        self.n = 0
        self.started = False
        self.config = None

    def create_video_configuration(self, main, controls):
        return {"main": main, "controls": controls}

    def configure(self, config):
        self.config = config

    def start(self):
        self.started = True

    def capture_array(self, name="main"):
        assert self.started and name == "main"
        self.n += 1
        if self.fail_after is not None and self.n > self.fail_after:
            raise RuntimeError("Dequeue timer of 1000000.00us has expired!")
        w, h = self.config["main"]["size"]
        return np.full((h, w, 3), self.n % 255, np.uint8)

    def stop(self):
        self.started = False

    def close(self):
        pass


def test_replay_video_every_frame_on_file_timeline():
    video = shared_file("video", "tranvanluyt_real.mp4")
    frames = collect(Camera(open_source(str(video), FAST), FAST, threaded=False))
    assert len(frames) == 621
    ts = [f.ts for f in frames]
    assert all(b > a for a, b in zip(ts, ts[1:]))
    assert abs(ts[-1] - 620 / 30) < 0.05
    assert frames[0].image.dtype == np.uint8 and frames[0].image.ndim == 3


def test_replay_loop_keeps_time_increasing(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((64, 64, 3), i * 40, np.uint8))
    cfg = FAST.model_copy(update={"loop": True})
    frames = collect(Camera(open_source(str(tmp_path), cfg), cfg, threaded=False), limit=7)
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 40, 80, 0, 40, 80, 0]
    assert all(b.ts > a.ts for a, b in zip(frames, frames[1:]))


def test_image_folder_skips_and_counts_broken_files(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((100, 80, 3), np.uint8))
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg at all")
    cv2.imwrite(str(tmp_path / "c.png"), np.zeros((100, 80), np.uint8))  # greyscale: converted
    (tmp_path / "notes.txt").write_text("ignored")
    cam = Camera(open_source(str(tmp_path), FAST), FAST, threaded=False)
    frames = collect(cam)
    assert len(frames) == 2 and all(f.image.shape == (100, 80, 3) for f in frames)
    assert cam.stats.corrupt == 1


def test_single_gif_image():
    gif = shared_file("eyes", "yalefaces", "subject01.normal.gif")
    frames = collect(Camera(open_source(str(gif), FAST), FAST, threaded=False))
    assert len(frames) == 1 and frames[0].image.shape[2] == 3


def test_unreadable_files_fail_at_once(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    for path in (tmp_path / "missing.mp4", junk, tmp_path):
        with pytest.raises(CameraError) as e:
            collect(Camera(ReplaySource(path), FAST, threaded=False))
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("img,ok,why", [
    (np.zeros((0, 0, 3), np.uint8), False, "empty"),
    (np.zeros((480, 640, 2), np.uint8), False, "shape"),
    (np.zeros((480, 640), np.uint8), True, None),
    (np.zeros((480, 640, 4), np.uint8), True, None),
    (np.zeros((1, 1, 3), np.uint8), False, "too small"),
    (np.zeros((4320, 7680, 3), np.uint8), False, "too large"),
    (np.zeros((480, 640, 3), np.float32), False, "pixel type"),
    (None, False, "empty"),
])
def test_check_frame(img, ok, why):
    out, problem = check_frame(img)
    assert (out is not None) == ok
    if ok:
        assert out.shape == (480, 640, 3) and out.dtype == np.uint8
    else:
        assert why in problem


def test_picamera2_source_behind_the_same_interface():
    cfg = FAST.model_copy(update={"width": 320, "height": 240})
    made: list[StandInPicamera2] = []
    src = open_source("picamera2", cfg, picamera_factory=lambda: made.append(StandInPicamera2()) or made[-1])
    assert isinstance(src, Picamera2Source)
    frames = collect(Camera(src, cfg, threaded=False), limit=5)
    assert len(frames) == 5 and frames[0].image.shape == (240, 320, 3)
    assert made[0].config["main"]["format"] == "RGB888"
    assert not made[0].started and src.cam is None  # closed when the loop ended


def test_picamera2_missing_names_the_apt_package():
    src = Picamera2Source()
    with pytest.raises(CameraError, match="python3-picamera2"):
        src.open()


def test_camera_dies_mid_run_and_is_reopened():
    StandInPicamera2.instances = 0
    src = Picamera2Source(160, 120, 30, factory=lambda: StandInPicamera2(fail_after=3))
    cam = Camera(src, FAST, threaded=False)
    frames = collect(cam, limit=8)
    assert len(frames) == 8
    assert cam.stats.reopens >= 2 and StandInPicamera2.instances >= 3


def test_reopen_backoff_is_capped_exponential_and_waits():
    # A real OpenCV network source pointed at a port where nothing listens.
    states: list[tuple[float, str]] = []
    cfg = CameraConfig(reopen_initial_s=0.05, reopen_max_s=0.2)
    src = OpenCVSource("http://127.0.0.1:9/nothing.mjpg")
    cam = Camera(src, cfg, threaded=True, on_state=lambda s: states.append((time.monotonic(), s)))
    stop = threading.Event()
    t0 = time.monotonic()
    for f in cam.frames(stop, poll_s=0.05):
        assert f is None
        if time.monotonic() - t0 > 1.5:
            stop.set()
    delays = [float(s.split("in ")[1].split("s")[0]) for _, s in states if s.startswith("reopening in")]
    assert delays[:3] == [0.05, 0.1, 0.2] and max(delays) == 0.2
    assert 4 <= len(delays) <= 20  # waited between attempts: no busy loop


def test_threaded_capture_drops_frames_for_a_slow_consumer(tmp_path):
    for i in range(60):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((64, 64, 3), i, np.uint8))
    cfg = CameraConfig(realtime=True, fps=200)
    cam = Camera(open_source(str(tmp_path), cfg), cfg, threaded=True)
    seen = []
    for f in cam.frames(threading.Event()):
        if f is not None:
            seen.append(int(f.image[0, 0, 0]))
            time.sleep(0.03)  # a slow stage
    assert seen == sorted(seen) and len(seen) < 60 and cam.stats.dropped > 0
    assert len(seen) + cam.stats.dropped == 60


def test_gstreamer_pipeline_without_gstreamer_is_one_clear_line():
    from edge_liveness.camera.supervisor import gstreamer_available

    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer")
    src = open_source("nvarguscamerasrc ! video/x-raw(memory:NVMM) ! nvvidconv ! appsink", CameraConfig())
    with pytest.raises(CameraError, match="no GStreamer"):
        src.open()


def test_frame_waiting_says_whether_the_camera_or_the_consumer_sets_the_pace(tmp_path):
    """The daemon judges every held frame at once while no newer frame waits (overlap.py): a camera at
    5 fps leaves nothing waiting right after a frame, a consumer slower than it finds the next one there.
    Unthreaded the next frame is read on demand: "waiting" for a file replayed as fast as it reads, not for a
    paced replay (a live camera's stand-in), where a held frame would only add latency."""
    for i in range(8):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((64, 64, 3), i, np.uint8))
    cfg = CameraConfig(realtime=True, fps=5)
    assert Camera(open_source(str(tmp_path), FAST), FAST, threaded=False).frame_waiting()
    assert not Camera(open_source(str(tmp_path), cfg), cfg, threaded=False).frame_waiting()
    cam = Camera(open_source(str(tmp_path), cfg), cfg, threaded=True)
    stop, right_after, after_a_slow_stage = threading.Event(), [], []
    for f in cam.frames(stop):
        if f is None:
            continue
        right_after.append(cam.frame_waiting())
        time.sleep(0.3)  # slower than the camera's 0.2 s
        after_a_slow_stage.append(cam.frame_waiting())
        if len(right_after) == 3:
            stop.set()
    assert right_after == [False] * 3 and after_a_slow_stage == [True] * 3
