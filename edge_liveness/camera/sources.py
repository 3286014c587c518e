"""Frame sources behind one small interface: V4L2/USB, GStreamer, RTSP/HTTP, picamera2, file/folder replay.

A source opens, reads one frame at a time and closes; ``open_source`` picks the kind from
camera.source. Keeping one alive (reopen, checks, capture thread) is ``camera.Camera``'s job.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

# FFmpeg's own decoder messages ("[h264 @ 0x...] Invalid NAL unit size") would otherwise flood
# stderr on a damaged file; the source says what matters in one line. Read at the first capture.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from edge_liveness.config import CameraConfig
from edge_liveness.camera.video_devices import device_path, missing_device_message

log = logging.getLogger("edge_liveness.camera")  # one logger name for everything camera

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
MIN_SIDE = 32
MAX_SIDE = 4096  # an 8K frame would cost ~100 ms per stage on a Pi: skip it, count it


class CameraError(RuntimeError):
    """A source cannot be opened or read (message is one line)."""


@dataclass
class Frame:
    image: np.ndarray  # BGR uint8, HxWx3
    ts: float  # seconds on the source's timeline (monotonic clock, or the file's own timeline)
    index: int
    wall: float = field(default_factory=time.time)


class FrameSource(Protocol):
    name: str
    finite: bool  # a file that ends, as opposed to a live camera

    def open(self) -> None: ...

    def read(self) -> tuple[np.ndarray | None, float | None]:
        """(image, ts) or (None, None) at the end of a finite source; raises CameraError on failure."""
        ...

    def close(self) -> None: ...


def check_frame(img: Any) -> tuple[np.ndarray | None, str | None]:
    """Return a BGR uint8 frame, converting grey/BGRA, or None and why it was skipped."""
    if not isinstance(img, np.ndarray) or img.size == 0:
        return None, "empty frame"
    if img.dtype != np.uint8:
        return None, f"unsupported pixel type {img.dtype}"
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        return None, f"unsupported frame shape {img.shape}"
    h, w = img.shape[:2]
    if min(h, w) < MIN_SIDE:
        return None, f"frame too small ({w}x{h})"
    if max(h, w) > MAX_SIDE:
        return None, f"frame too large ({w}x{h}); set camera.width/height to at most {MAX_SIDE}"
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), None
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR), None
    return img, None


# ---------------------------------------------------------------- sources

class OpenCVSource:
    """USB/V4L2 devices, GStreamer pipelines (Jetson CSI), RTSP/HTTP IP cameras."""

    finite = False

    def __init__(self, spec: str, width: int = 640, height: int = 480, fps: float = 30.0):
        self.spec, self.width, self.height, self.fps = spec, width, height, fps
        self.name = spec if "://" not in spec else spec.split("@")[-1]  # never log credentials in URLs
        self.cap: cv2.VideoCapture | None = None

    def _open_capture(self) -> cv2.VideoCapture:
        s = self.spec
        if s.isdigit():
            return cv2.VideoCapture(int(s))
        if s.startswith("/dev/video"):
            return cv2.VideoCapture(s, cv2.CAP_V4L2)
        if "!" in s:
            if not gstreamer_available():
                raise CameraError("camera.source is a GStreamer pipeline but this OpenCV has no GStreamer: on a Jetson use "
                                  "JetPack's python3-opencv in a venv made with --system-site-packages")
            return cv2.VideoCapture(s, cv2.CAP_GSTREAMER)
        return cv2.VideoCapture(s, cv2.CAP_FFMPEG)

    def open(self) -> None:
        node = device_path(self.spec)
        if node is not None and not node.exists():
            # Checked before OpenCV, which would only say "can't open camera by index" on its own.
            raise CameraError(missing_device_message(self.name, node))
        cap = self._open_capture()
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"cannot open camera {self.name}: check it is plugged in / reachable and camera.source is right")
        if self.spec.isdigit() or self.spec.startswith("/dev/video"):
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        # Network cameras buffer; a door wants the newest frame, not a queue of old ones.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self.cap = cap

    def read(self) -> tuple[np.ndarray | None, float | None]:
        if self.cap is None:
            raise CameraError(f"camera {self.name} is not open")
        ok, img = self.cap.read()
        if not ok:
            raise CameraError(f"camera {self.name} returned no frame (unplugged or stream lost)")
        return img, time.monotonic()

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class Picamera2Source:
    """Raspberry Pi camera via picamera2 (from apt: python3-picamera2); imported only when chosen.

    ``factory`` builds the camera object; tests pass a stand-in with picamera2's methods.
    """

    finite = False
    name = "picamera2"

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, factory: Callable[[], Any] | None = None):
        self.width, self.height, self.fps = width, height, fps
        self.factory = factory
        self.cam: Any = None

    def open(self) -> None:
        factory = self.factory
        if factory is None:
            try:
                from picamera2 import Picamera2  # type: ignore
            except ImportError:
                raise CameraError("camera.source is picamera2 but picamera2 is not installed: `sudo apt install python3-picamera2` "
                                  "and make the venv with --system-site-packages") from None
            factory = Picamera2
        try:
            cam = factory()
            # picamera2's "RGB888" is B,G,R in memory: exactly OpenCV's order, no conversion.
            config = cam.create_video_configuration(main={"size": (self.width, self.height), "format": "RGB888"},
                                                    controls={"FrameRate": float(self.fps)})
            cam.configure(config)
            cam.start()
        except CameraError:
            raise
        except Exception as e:  # libcamera raises many types; all mean "no camera now"
            raise CameraError(f"cannot start the Pi camera: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
        self.cam = cam

    def read(self) -> tuple[np.ndarray | None, float | None]:
        if self.cam is None:
            raise CameraError("Pi camera is not open")
        try:
            img = self.cam.capture_array("main")
        except Exception as e:
            raise CameraError(f"Pi camera read failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
        return img, time.monotonic()

    def close(self) -> None:
        if self.cam is not None:
            for step in ("stop", "close"):
                try:
                    getattr(self.cam, step)()
                except Exception:  # closing a dead camera must not take the daemon down
                    pass
            self.cam = None


class ReplaySource:
    """A video file, an image, or a folder of images, on the file's own timeline.

    ``realtime`` paces frames at the file's rate (a stand-in for a live camera); otherwise frames
    come as fast as the caller reads them. Timestamps come from the file either way, so decisions
    on a recording do not depend on how fast this machine is.
    """

    finite = True

    def __init__(self, path: str | Path, fps: float = 30.0, realtime: bool = False, loop: bool = False):
        self.path = Path(path)
        self.name = str(self.path)
        self.default_fps, self.realtime, self.loop = fps, realtime, loop
        self.finite = not loop
        self.fps = fps
        self._images: list[Path] | None = None
        self._cap: cv2.VideoCapture | None = None
        self._i = 0
        self._offset = 0.0  # timeline offset added on each loop so ts keeps increasing
        self._last_ts = 0.0
        self._t0: float | None = None
        self._undecodable: set[Path] = set()  # logged once each, not on every loop
        self._announced = 0  # frames the container says it holds (0: unknown)
        self._file_ts = 0.0  # file timestamp of the last frame read in this pass
        self._ended_early_said = False
        self.ended_early: str | None = None  # the one-line message, once the file ended early
        self._first: tuple[np.ndarray, float] | None = None  # a video's first frame, read by open()

    def open(self) -> None:
        p = self.path
        if not p.exists():
            raise CameraError(f"replay source {p} does not exist")
        if not os.access(p, os.R_OK):
            raise CameraError(f"replay source {p} is not readable (permission denied)")
        if p.is_dir():
            self._images = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS and f.is_file())
            if not self._images:
                raise CameraError(f"replay folder {p} holds no images ({', '.join(sorted(IMAGE_EXTS))}): give a "
                                  "folder of images, or a video file itself")
            self._first_decodable()
            self.fps = self.default_fps
        elif p.suffix.lower() in IMAGE_EXTS - {".gif"}:
            self._images = [p]
            self._first_decodable()
            self.fps = self.default_fps
        else:
            cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG)
            ok, first = cap.read() if cap.isOpened() else (False, None)
            if not ok:
                cap.release()
                raise CameraError(f"cannot read video {p}: not a video OpenCV/FFmpeg can decode (no frame decodes); "
                                  "give a video file, an image or a folder of images")
            # The first frame is read here so that a file with no decodable frame fails at start
            # (exit 2) instead of replaying zero frames; read() hands it out first.
            self._first = (first, cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = fps if 1.0 <= fps <= 240.0 else self.default_fps
            count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
            self._announced = int(count) if count and count > 0 else 0
            self._cap = cap
        self._i = 0
        self._t0 = None
        self._file_ts = 0.0

    def _first_decodable(self) -> None:
        """A folder (or image) none of whose files decodes is a bad replay file, not a recording of
        zero frames: say so at start. Stops at the first file that decodes."""
        assert self._images is not None
        for f in self._images:
            if read_image(f) is not None:
                return
        fix = "give a video file, an image or a folder of images"
        if not self.path.is_dir():
            raise CameraError(f"cannot read image {self.path}: not an image OpenCV can decode; {fix}")
        names = ", ".join(f.name for f in self._images[:3]) + (", ..." if len(self._images) > 3 else "")
        raise CameraError(f"replay folder {self.path}: none of its {len(self._images)} image files ({names}) can be "
                          f"decoded: they are not images; {fix}")

    def _check_end(self) -> None:
        """At the end of a video: say so (once) when it stopped well short of what the container
        announced. Compared by time, not frame count: WebM/VFR files announce an estimate."""
        if self._cap is None or not self._announced or self._ended_early_said:
            return
        duration = self._announced / self.fps
        if self._file_ts >= duration - max(0.5, 3.0 / self.fps):
            return
        self._ended_early_said = True
        self.ended_early = (f"replay source {self.path} ended early, at {self._file_ts:.1f} s of {duration:.1f} s: "
                            f"{self._i} frames read, the container announced {self._announced} (the file is "
                            f"truncated or corrupt)")
        log.warning("%s", self.ended_early)

    def _next_image(self) -> np.ndarray | None:
        assert self._images is not None
        if self._i >= len(self._images):
            return None
        f = self._images[self._i]
        img = read_image(f)
        if img is None:
            # A broken file in a folder is a corrupt frame, not the end of the folder.
            if f not in self._undecodable:
                self._undecodable.add(f)
                log.warning("replay: cannot decode %s; skipped", f.name)
            return np.zeros((0, 0, 3), np.uint8)
        return img

    def read(self) -> tuple[np.ndarray | None, float | None]:
        if self._images is None and self._cap is None:
            raise CameraError(f"replay source {self.path} is not open")
        while True:
            if self._images is not None:
                img = self._next_image()
                ts_file = self._i / self.fps
            elif self._first is not None:
                (img, pos), self._first = self._first, None
                ts_file = pos if pos > 0 else self._i / self.fps
                self._file_ts = ts_file
            else:
                ok, img = self._cap.read()
                img = img if ok else None
                pos = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                ts_file = pos if pos > 0 else self._i / self.fps
                if img is None:
                    self._check_end()
                else:
                    self._file_ts = ts_file
            if img is not None:
                break
            if not self.loop or self._i == 0:
                return None, None
            # Loop: start again, shifting the timeline past the last frame.
            self._offset = self._last_ts + 1.0 / self.fps
            self.close()
            self.open()
        self._i += 1
        ts = self._offset + ts_file
        self._last_ts = ts
        if self.realtime:
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = now - ts
            delay = self._t0 + ts - now
            if delay > 0:
                time.sleep(delay)
        return img, ts

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._images = None
        self._first = None


def read_image(path: str | Path) -> np.ndarray | None:
    """Any still image as BGR (or grey/BGRA for check_frame); GIFs go through FFmpeg since imread has no GIF."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        cap = cv2.VideoCapture(str(path))
        ok, img = cap.read()
        cap.release()
        return img if ok else None
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None or data.size == 0:
        return None
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


def gstreamer_available() -> bool:
    info = cv2.getBuildInformation()
    for line in info.splitlines():
        if "GStreamer" in line:
            return "YES" in line
    return False


def open_source(spec: str, cfg: CameraConfig, picamera_factory: Callable[[], Any] | None = None) -> FrameSource:
    """Choose the source kind from camera.source (or --source)."""
    s = spec.strip()
    if s.lower() in ("picamera2", "picamera", "libcamera"):
        return Picamera2Source(cfg.width, cfg.height, cfg.fps, factory=picamera_factory)
    if s.isdigit() or s.startswith("/dev/video") or "!" in s or "://" in s:
        return OpenCVSource(s, cfg.width, cfg.height, cfg.fps)
    return ReplaySource(s, fps=cfg.fps, realtime=cfg.realtime, loop=cfg.loop)
