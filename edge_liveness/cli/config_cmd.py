"""`edge-liveness config check|show`."""

from __future__ import annotations

import argparse
import json
import sys

from edge_liveness.config import ConfigError, load_settings, masked_dict, resolve_config_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_text in (("check", "validate a config: exit 0 when valid, 2 with one line per problem"),
                            ("show", "print the effective config (file + environment + secrets), secrets masked")):
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.add_argument("--config", "-c", help="TOML config (default /etc/edge-liveness/edge-liveness.toml when it exists)")
        q.add_argument("--secrets-dir", help="directory of secret files (default $CREDENTIALS_DIRECTORY)")
        if name == "show":
            q.add_argument("--json", action="store_true", help="JSON instead of TOML-like text")


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return '""  # unset'
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def main(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config, secrets_dir=args.secrets_dir)
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return 2
    path = resolve_config_path(args.config)
    if args.action == "check":
        print(f"{path or 'built-in defaults'}: OK")
        return 0
    data = masked_dict(settings)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"# effective config from {path or 'built-in defaults'} + environment + secrets")
    for section, values in data.items():
        print(f"\n[{section}]")
        for k, v in values.items():
            print(f"{k} = {_toml_value(v)}")
    return 0
