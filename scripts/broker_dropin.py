#!/usr/bin/env python3
"""Print a systemd drop-in that lets edge-liveness reach only loopback and its MQTT broker.

    broker_dropin.py [--config FILE] [--secrets-dir DIR] [--resolv-conf FILE]

install.sh runs it with the installed venv's Python and writes the output to
/etc/systemd/system/edge-liveness.service.d/50-broker-address.conf. The broker address comes from the
config (``mqtt.host``): an IP literal is allowed as is; a name is resolved now, and the name servers
of /etc/resolv.conf are allowed too so that it can be resolved again at run time. Exit 2 with one
line when the config is bad or the name does not resolve (install.sh then writes no drop-in and
says so: a wrong allow list would cut the door off its broker).
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path


def _nameservers(resolv_conf: Path) -> list[str]:
    out = []
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                out.append(str(ipaddress.ip_address(parts[1].split("%")[0])))
            except ValueError:
                continue
    return out


def allow_list(host: str, resolv_conf: Path) -> tuple[list[str], str]:
    """(addresses to allow besides localhost, a note for the file's comment). Raises OSError."""
    try:
        return [str(ipaddress.ip_address(host))], f"mqtt.host = {host}"
    except ValueError:
        pass
    if host == "localhost":
        return [], "mqtt.host = localhost"
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    addrs = sorted({i[4][0] for i in infos})
    dns = [a for a in _nameservers(resolv_conf) if not ipaddress.ip_address(a).is_loopback]
    note = f"mqtt.host = {host} (resolved at install time: {', '.join(addrs)}; name servers {', '.join(dns) or 'local'})"
    return addrs + [a for a in dns if a not in addrs], note


def render(addrs: list[str], note: str) -> str:
    lines = [
        "# Written by scripts/install.sh: the daemon may talk only to loopback and its MQTT broker.",
        f"# From {note}.",
        "# Re-run install.sh after changing mqtt.host (or when the broker's address changes), or delete",
        "# this file to lift the restriction. Lowers `systemd-analyze security` by the IPAddressDeny= item.",
        "[Service]",
        "IPAddressDeny=any",
        "IPAddressAllow=localhost",
    ]
    if addrs:
        lines.append("IPAddressAllow=" + " ".join(addrs))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config")
    p.add_argument("--secrets-dir")
    p.add_argument("--resolv-conf", default="/etc/resolv.conf")
    args = p.parse_args(argv)
    from edge_liveness.config import ConfigError, load_settings

    try:
        s = load_settings(args.config, secrets_dir=args.secrets_dir)
    except ConfigError as e:
        print("config error: " + "; ".join(e.problems), file=sys.stderr)
        return 2
    if not s.mqtt.enabled:
        addrs, note = [], "mqtt.enabled = false"
    else:
        try:
            addrs, note = allow_list(s.mqtt.host, Path(args.resolv_conf))
        except OSError as e:
            print(f"cannot resolve mqtt.host {s.mqtt.host!r} ({e}): no IP address restriction written",
                  file=sys.stderr)
            return 2
    sys.stdout.write(render(addrs, note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
