"""Faces in a frame: the TFLite runtime, the face model files, detector, mesh, tracking, crops, eyes, head pose.

Layer: imports only ``edge_liveness.config``. Knows nothing of liveness, decisions or transports.
"""
