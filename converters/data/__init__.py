"""Workstation data: aligned crops cut from videos and images, their folders and labels, augmentation.

Layer: imports the device package (vision, config, cli.progress); nothing else in ``converters``.
"""
