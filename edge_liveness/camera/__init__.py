"""Frames in: picamera2, V4L2/USB, GStreamer, RTSP/HTTP, a file or folder for replay; the supervisor that reopens them.

Layer: imports only ``edge_liveness.config`` (the camera section).
"""
