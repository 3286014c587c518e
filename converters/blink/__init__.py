"""Training the blink model (`edge-liveness blinks train`).

Layer: imports the device package (blink, recordings, pipeline); no other part of ``converters``.
"""
