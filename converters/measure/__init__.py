"""Workstation measures: ISO/IEC 30107-3 rates (numpy only) and the PNG plots.

Layer: the bottom of ``converters``; imports no other part of the project.
"""
