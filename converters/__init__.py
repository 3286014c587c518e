"""The workstation side: data, the passive model (training, LOPO, conversion), blink training, reports.

TensorFlow and matplotlib are imported inside functions only. Sub-packages, bottom up: ``measure``,
``data``, ``passive`` and ``blink``, ``reports``.
"""
