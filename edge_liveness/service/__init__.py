"""The running daemon: the frame loop (``daemon``) and its parts: transport, key, reload, health,
status file, metrics, sd_notify, opt-in attempt images, logging.

Layer: may import every device layer below the commands (pipeline, recordings, events, web, ...);
nothing below imports it.
"""
