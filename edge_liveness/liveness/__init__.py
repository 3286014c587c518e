"""The passive live-vs-spoof check: the int8 classifier(s) on the face crops and their verdict.

Layer: imports ``vision`` (runtime, crops) and ``config``; never the decision, events or service.
"""
