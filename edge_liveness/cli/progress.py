"""Progress lines on stderr: rewritten in place on a terminal, one line each in a log or a pipe."""

from __future__ import annotations

import sys


def progress_line(text: str) -> None:
    # "\r" without a newline runs the updates together in a file or CI log ("100/801 files200/801 files").
    if sys.stderr.isatty():
        print(f"\r{text}", end="", file=sys.stderr, flush=True)
    else:
        print(text, file=sys.stderr, flush=True)
