"""`edge-liveness events`: the local journal (audit log) with delivered/pending, read-only."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

from edge_liveness.events.journal_file import OutboxUnavailable, open_readonly

_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """'90m', '2h', '7d', unix seconds, or an ISO date/time (local time unless it has an offset)."""
    now = time.time() if now is None else now
    t = text.strip()
    m = _REL.match(t)
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        return float(t)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(t).timestamp()
    except ValueError:
        raise ValueError(f"--since {text!r}: give a duration like 30m, 2h, 7d, unix seconds, "
                         f"or a date like 2024-05-01T08:00") from None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="only events journaled since: 30m, 2h, 7d, unix seconds or ISO date/time")
    parser.add_argument("--config", help="config file (for storage.state_dir)")
    parser.add_argument("--secrets-dir", help="secrets directory")
    parser.add_argument("--db", help="journal file (default: <storage.state_dir>/outbox.db)")
    parser.add_argument("--pending", action="store_true", help="only events the broker has not acknowledged")
    parser.add_argument("--limit", type=int, default=None, help="at most this many (the newest)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line: the payload plus _delivered_at")


def _db_path(args: argparse.Namespace) -> Path:
    if args.db:
        return Path(args.db)
    from edge_liveness.config import load_settings

    return load_settings(args.config, secrets_dir=args.secrets_dir).state_path / "outbox.db"


def _fmt(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t is not None else "-"


def main(args: argparse.Namespace) -> int:
    from edge_liveness.config import ConfigError

    if args.limit is not None and args.limit < 1:
        print(f"edge-liveness events: --limit {args.limit}: give a whole number of events, 1 or more", file=sys.stderr)
        return 2
    try:
        since = parse_since(args.since) if args.since else None
        path = _db_path(args)
        conn = open_readonly(path)
    except ConfigError as e:
        print("config error: " + "; ".join(e.problems), file=sys.stderr)
        return 2
    except (ValueError, OutboxUnavailable) as e:
        print(str(e), file=sys.stderr)
        return 2
    where, params = [], []
    if since is not None:
        where.append("created >= ?")
        params.append(since)
    if args.pending:
        where.append("delivered_at IS NULL")
    sql = "SELECT seq, kind, created, delivered_at, payload FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY seq DESC"
    if args.limit:
        sql += f" LIMIT {int(args.limit)}"
    rows = list(reversed(conn.execute(sql, params).fetchall()))
    conn.close()
    if not args.json:
        print(f"{'seq':>14}  {'journaled':19}  {'kind':8}  {'result':6}  {'reason':18}  delivered")
    for seq, kind, created, delivered_at, payload in rows:
        try:
            data = json.loads(payload)
        except ValueError:
            data = {}
        if args.json:
            data["_delivered_at"] = delivered_at
            print(json.dumps(data, ensure_ascii=False, separators=(",", ":")))
        else:
            result = str(data.get("result", "")) if kind == "decision" else ""
            reason = str(data.get("reason") or "") if kind == "decision" else ",".join(data.get("actions", []) or [])
            state = _fmt(delivered_at) if delivered_at else "PENDING"
            print(f"{seq:>14}  {_fmt(created):19}  {kind:8}  {result:6}  {reason[:18]:18}  {state}")
    if not args.json:
        pending = sum(1 for r in rows if r[3] is None)
        print(f"{_plural(len(rows), 'event')}, {pending} pending", file=sys.stderr)
    return 0
