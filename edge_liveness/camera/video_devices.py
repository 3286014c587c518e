"""Which V4L2 video devices exist, for camera errors a newcomer can act on."""

from __future__ import annotations

from pathlib import Path

DEV = Path("/dev")


def device_path(spec: str) -> Path | None:
    """The device node a camera.source names (``0`` -> /dev/video0), or None for URLs, pipelines, files."""
    if spec.isdigit():
        return DEV / f"video{int(spec)}"
    if spec.startswith("/dev/video"):
        return Path(spec)
    return None


def list_video_devices(dev: Path = DEV) -> list[str]:
    def index(p: Path) -> int:
        tail = p.name[len("video"):]
        return int(tail) if tail.isdigit() else 1 << 30

    return [str(p) for p in sorted(dev.glob("video*"), key=index)]


def missing_device_message(name: str, path: Path, dev: Path = DEV) -> str:
    found = list_video_devices(dev)
    there = (f"video devices here: {', '.join(found)} (set camera.source or --source to one of them)" if found
             else "there are no video devices on this machine (no camera attached, or the driver is not loaded)")
    return (f"cannot open camera {name}: {path} does not exist; {there}; "
            f"to try a recording instead give --source FILE (a video file or a folder of images)")
