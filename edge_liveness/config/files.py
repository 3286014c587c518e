"""The small files a user names (a config, a key, a secret, a state file): read with a size cap, and
why one cannot be read said in one line.

A path from the command line, a config key or an environment variable can be anything: 10,000
characters, ``/dev/zero`` (endless), ``/dev/full``, ``/proc/self/mem`` (EIO on read). Reading such a
name must end in one line naming the file and the fix, never in a traceback or a read that fills
memory. Layer: config (imports nothing of the project).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

MAX_FILE_BYTES = 1 << 20  # a config, key or state file is a few KiB; anything past this is not one
PATH_MAX = 4095  # bytes, without the final NUL (Linux)
NAME_MAX = 255  # bytes per path component (ext4, vfat, tmpfs)
SHOWN_CHARS = 200  # a real path fits; a 10,000-character one is cut


class UserFileError(ValueError):
    """A user-named file cannot be used; the message is one line naming the file and the fix."""


def shown(path: str | os.PathLike[str]) -> str:
    """The path for a message: whole when short, else its two ends and its length."""
    text = str(path)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:120]}...{text[-60:]} ({len(text)} characters)"


def path_problem(text: str) -> str | None:
    """Why ``text`` can never name a file on this system (too long, a NUL in it) and the fix, or None."""
    if "\x00" in text:
        return "contains a NUL character, which no file name can hold: remove it"
    try:
        raw = os.fsencode(text)
    except UnicodeError:
        return "is not a valid file name in this system's encoding: give the name as UTF-8"
    if len(raw) > PATH_MAX:
        return f"is too long ({len(raw)} bytes; the system allows {PATH_MAX} per path): give a shorter path"
    longest = max(len(part) for part in raw.split(b"/"))
    if longest > NAME_MAX:
        return f"has a name too long ({longest} bytes; the system allows {NAME_MAX} per file name): give a shorter path"
    return None


_REASONS = {
    errno.ENAMETOOLONG: ("file name too long", "give a shorter path"),
    errno.ENOENT: ("does not exist", "check the path"),
    errno.EACCES: ("permission denied", "fix its owner/mode"),
    errno.EPERM: ("operation not permitted", "fix its owner/mode"),
    errno.EISDIR: ("is a directory", "give a file"),
    errno.ENOTDIR: ("a part of the path is not a directory", "check the path"),
    errno.ELOOP: ("too many symbolic links", "check the path"),
    errno.EIO: ("input/output error on reading", "give a regular file (a special file like /proc/self/mem cannot be "
                "read; on a plain file, check the disk)"),
    errno.ENXIO: ("no such device", "give a regular file"),
    errno.ENODEV: ("no such device", "give a regular file"),
}


def describe_os_error(e: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """One line for an OSError on a user-named path: the path (shortened), what went wrong, the fix."""
    where = path if path is not None else e.filename
    reason, fix = _REASONS.get(e.errno or 0, (e.strerror or type(e).__name__, "check the path"))
    if where is None:
        return f"{reason}: {fix}"
    return f"{shown(os.fsdecode(where) if isinstance(where, bytes) else where)}: {reason}: {fix}"


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def read_capped(path: str | os.PathLike[str], what: str, *, limit: int = MAX_FILE_BYTES,
                allow_pipe: bool = True) -> bytes:
    """The bytes of a small user-named file (``what``: "config file", "key file", ...).

    Raises UserFileError (one line) on a name no file can have, a special file (a device, socket or
    directory; a pipe too unless ``allow_pipe``: ``--key-file <(pass show door)`` is a pipe), more
    than ``limit`` bytes, or any OSError. FileNotFoundError and PermissionError propagate unchanged, so
    callers keep their own wording for the two common cases.
    """
    text = os.fsdecode(path)
    problem = path_problem(text)
    if problem:
        raise UserFileError(f"{shown(text)}: {what} path {problem}")
    try:
        # O_NONBLOCK: opening a FIFO that no one writes must not hang before the type check below.
        fd = os.open(text, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, PermissionError):
        raise
    except OSError as e:
        raise UserFileError(f"{what} {describe_os_error(e, text)}") from None
    try:
        mode = os.fstat(fd).st_mode
        pipe = stat.S_ISFIFO(mode)
        if not (stat.S_ISREG(mode) or (pipe and allow_pipe)):
            kind = "a pipe" if pipe else _kind(mode)
            raise UserFileError(f"{shown(text)}: is {kind}, not a {what}: give a regular file")
        if pipe:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise UserFileError(f"{what} {describe_os_error(e, text)}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise UserFileError(f"{shown(text)}: larger than {limit // 1024} KiB, too large for a {what}: "
                            f"give the {what} itself")
    return b"".join(chunks)


def is_dir(path: str | os.PathLike[str]) -> bool:
    """``Path.is_dir`` that answers False, not OSError, for a name no directory can have."""
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):
        return False


def exists(path: str | os.PathLike[str]) -> bool:
    """``Path.exists`` that answers False, not OSError, for a name no file can have."""
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return False
