"""Decisions out, commands in: signing and verification, the SQLite journal, MQTT, command checks.

Layer: imports only ``config``. Independent of the camera and the models: a subscriber can use
``verify`` and ``signing`` alone.
"""
