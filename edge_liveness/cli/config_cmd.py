"""`edge-liveness config check|show`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pydantic import SecretStr

from edge_liveness.config import ConfigError, Settings, load_settings, masked_dict, resolve_config_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = ("print the effective config (file + environment + secrets) as TOML that `config check` accepts; "
            "secrets are comments that never show the value")
    for name, help_text in (("check", "validate a config: exit 0 when valid, 2 with one line per problem"),
                            ("show", show)):
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.add_argument("--config", "-c", help="TOML config (default /etc/edge-liveness/edge-liveness.toml when it exists)")
        q.add_argument("--secrets-dir", help="directory of secret files (default $CREDENTIALS_DIRECTORY)")
        if name == "show":
            q.add_argument("--json", action="store_true", help="JSON instead of TOML (secrets as '********')")


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, but TOML also forbids DEL and lone surrogates."""
    body = json.dumps(text, ensure_ascii=False)[1:-1].replace("\x7f", "\\u007f")
    return '"' + "".join(c if not 0xD800 <= ord(c) <= 0xDFFF else "\ufffd" for c in body) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_string(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return _toml_string(str(v))


def _toml_line(section: str, key: str, v: Any, model: Settings) -> str:
    """One ``key = value`` line that ``config check`` reads back as the same value. TOML has no null
    and a secret is never printed, so an unset key and a secret are comments."""
    if isinstance(getattr(getattr(model, section), key), SecretStr):
        return f"# {key}: {'set, not shown' if v else 'not set'} (a secret: from the secrets directory)"
    if v is None:
        return f"# {key} = (unset)"
    return f"{key} = {_toml_value(v)}"


def _web_problem(settings: Settings) -> str | None:
    """What `run` refuses about [web] (the same check, not a copy of it)."""
    from edge_liveness.web import WebError
    from edge_liveness.web.auth import check_web_config

    try:
        check_web_config(settings.web)
    except WebError as e:
        return str(e)
    return None


def main(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config, secrets_dir=args.secrets_dir)
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return 2
    path = resolve_config_path(args.config)
    if args.action == "check":
        problem = _web_problem(settings)
        if problem:
            print(problem, file=sys.stderr)
            return 2
        print(f"{path or 'built-in defaults'}: OK")
        return 0
    data = masked_dict(settings)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    source = repr(str(path)) if path else "built-in defaults"  # repr: a newline in a name must not end the comment
    print(f"# effective config from {source} + environment + secrets")
    for section, values in data.items():
        print(f"\n[{section}]")
        for k, v in values.items():
            print(_toml_line(section, k, v, settings))
    return 0
