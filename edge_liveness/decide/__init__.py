"""Per attempt, pass or fail: what one frame tells the engine, the active checks, the state machine.

Layer: imports only ``config``; it reads observations, not frames, so it runs the same on a trace file.
"""
