"""Judging models and the bench: `evaluate` (images and recordings), the held-out report, the bench report,
the seed-style baseline.

Layer: the top of ``converters``: imports ``data``, ``measure``, ``passive`` and the device package.
"""
