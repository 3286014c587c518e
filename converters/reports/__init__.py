"""Judging models and the bench: `evaluate` (images and recordings), the held-out report, the bench report,
the seed-style baseline, the Pi projection's reference network.

Layer: the top of ``converters``: imports ``data``, ``measure``, ``passive`` and the device package.
"""
