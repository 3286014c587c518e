"""Training the blink model (`edge-liveness blinks train`), and the eye model as int8 (iris_int8.py).

Layer: imports the device package (blink, recordings, pipeline); no other part of ``converters``.
"""
