"""edge-liveness: face-liveness daemon for door-access devices."""

import os as _os

# OpenCV and FFmpeg print their own warnings to stderr (a broken file gives three lines before
# ours). We report every camera problem ourselves in one line, so keep theirs to real errors.
_os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
_os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
