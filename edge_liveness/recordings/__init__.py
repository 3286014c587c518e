"""Recordings through the pipeline, offline: attempts out of a video, blink annotations and scoring.

Layer: imports ``pipeline`` and everything below it (camera, vision, liveness, blink, decide, config).
"""
