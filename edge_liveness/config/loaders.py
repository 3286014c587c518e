"""The two files the settings are read from besides the environment: the TOML config and the secrets
directory, as plain data, or one line saying why not (``ConfigFileError``).

Layer: config (imports nothing of the project but ``files`` beside it).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from edge_liveness.config import files as _files


class ConfigFileError(ValueError):
    """The TOML file or a secret file cannot be read or parsed (message is one line)."""


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML file as data; ConfigFileError (one line) for anything else: a device, a pipe that never
    ends, 10,000 characters of name, EIO, nesting deeper than the parser's stack."""
    name = _files.shown(path)
    try:
        raw = _files.read_capped(path, "config file")
    except FileNotFoundError:
        raise ConfigFileError(f"{name}: config file not found (give an existing --config or leave it out for defaults)")
    except PermissionError:
        raise ConfigFileError(f"{name}: config file not readable (permission denied): fix its owner/mode")
    except _files.UserFileError as e:
        if "is a directory" in str(e):
            raise ConfigFileError(f"{name}: is a directory, not a TOML config file") from None
        raise ConfigFileError(str(e)) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigFileError(f"{name}: bad TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigFileError(f"{name}: not a text file: a TOML config must be UTF-8") from None
    except RecursionError:
        raise ConfigFileError(f"{name}: bad TOML: arrays or tables nested too deeply (a config needs a few levels)") from None


def read_secrets(d: Path, aliases: dict[str, tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Secret files: ``<section>__<key>`` or one of ``aliases``; contents stripped of the final newline.
    A directory that is not there gives {} (systemd sets $CREDENTIALS_DIRECTORY only with credentials)."""
    if problem := _files.path_problem(str(d)):
        raise ConfigFileError(f"{_files.shown(d)}: secrets directory {problem}")
    if not _files.is_dir(d):
        if _files.exists(d):
            raise ConfigFileError(f"{_files.shown(d)}: secrets directory is not a directory: give the directory that "
                                  f"holds the secret files (mqtt_password, signing_key, web_token)")
        return {}
    out: dict[str, dict[str, Any]] = {}
    try:
        entries = sorted(d.iterdir())
    except OSError as e:
        raise ConfigFileError(f"secrets directory {_files.describe_os_error(e, d)}") from None
    for f in entries:
        if f.is_dir():
            continue
        if f.name in aliases:
            section, key = aliases[f.name]
        elif "__" in f.name:
            section, key = f.name.split("__", 1)
        else:
            continue
        try:
            value = _files.read_capped(f, "secret file").decode("utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigFileError(f"{f}: secret file unreadable ({getattr(e, 'strerror', None) or 'not UTF-8 text'}): "
                                  f"fix its owner/mode or contents") from None
        except _files.UserFileError as e:
            raise ConfigFileError(str(e)) from None
        if (section, key) == ("security", "signing_key") and not value.strip():
            # An empty key file used to mean "unsigned"; a key that was meant to be there is not.
            raise ConfigFileError(f"{f}: signing key file is empty: write the key into it (e.g. `head -c 32 "
                                  f"/dev/urandom | xxd -p -c 64`) or remove the file")
        out.setdefault(section, {})[key] = value
    return out
