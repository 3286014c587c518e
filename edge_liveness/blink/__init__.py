"""The blink check: the eye-signal window, the learned blink model, blink events.

Layer: imports ``vision`` (eye signals, runtime) and ``config``; never the decision, events or service.
"""
