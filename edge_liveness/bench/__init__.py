"""`edge-liveness bench`: the frame loop timed per stage, each model alone, publishing, start-up and memory.

Layer: a command: imports any device layer; the workstation report (``converters``) only lazily.
"""
