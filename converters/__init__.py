"""The workstation side: data, the passive model (training, conversion), LOPO, blink training, reports.

TensorFlow and matplotlib are imported inside functions only. Sub-packages, bottom up: ``measure``,
``data``, ``passive`` and ``blink``, ``lopo`` (leave-one-person-out, the two-view model), ``reports``.
"""
