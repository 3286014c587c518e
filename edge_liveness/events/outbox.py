"""The local journal of every event: written before it is published, marked when the broker acks.

SQLite in WAL mode with ``synchronous=FULL``. WAL+NORMAL would survive a crashed *process* (the
WAL is in the OS cache), but a door device loses *power* without warning, and NORMAL may then roll
back the last commits. FULL fsyncs the WAL on every commit; that costs one fsync per event, and
events are a handful per minute, so durability wins.

The journal also holds the ``seq`` counter (table ``meta``) and doubles as the audit log
(``edge-liveness events``). When the file cannot be written (read-only directory, disk full, I/O
error) the outbox says so through ``healthy``/``problem`` instead of raising: the publisher keeps
the events in memory and sends them anyway, and ``retry()`` re-opens the file once it is writable.
A corrupt file is moved aside as ``outbox.db.corrupt-<time>`` and a fresh one started.

The WAL is kept small, so that a state directory of a few MB (a tmpfs, a small partition) can hold
it and recover once space returns: SQLite's default checkpoints only at a 4 MB WAL, which such a
file system never reaches, so the WAL grew until the disk was full and stayed so. Here it is
checkpointed every ``WAL_CHECKPOINT_PAGES`` pages, truncated to ``WAL_SIZE_LIMIT`` afterwards, and
truncated to zero (``wal_checkpoint(TRUNCATE)``) whenever a write fails and before a re-open is
trusted.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from edge_liveness.events.journal_file import OutboxRow, describe_failure

log = logging.getLogger("edge_liveness.outbox")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    ts REAL NOT NULL,
    created REAL NOT NULL,
    delivered_at REAL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_pending ON events(seq) WHERE delivered_at IS NULL;
CREATE INDEX IF NOT EXISTS events_created ON events(created);
"""

_CORRUPT = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}
WAL_CHECKPOINT_PAGES = 32  # ~128 KB with 4 KB pages: a checkpoint every few events
WAL_SIZE_LIMIT = 128 * 1024  # bytes the WAL file keeps after a checkpoint
RETRY_EVERY_S = 5.0
PRUNE_EVERY = 200


def _now_ms() -> int:
    return int(time.time() * 1000)


class Outbox:
    """Thread-safe journal. Use ``Outbox.open(path, storage_cfg)``; it never raises for I/O."""

    def __init__(self, path: Path, retention_days: float = 30.0, retention_rows: int = 100000,
                 max_pending_rows: int = 1000000, fate: Callable[[], str] | None = None):
        self.path = Path(path)
        # What happens to events meanwhile, for the ERROR line: only the caller knows (is the broker up?).
        self.fate = fate
        self.retention_days = retention_days
        self.retention_rows = retention_rows
        self.max_pending_rows = max_pending_rows
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._problem: str | None = None
        self._last_try = 0.0
        self._since_prune = 0
        # Every process starts seq at least at its start time in ms: a journal that was lost,
        # corrupt or unwritable last run then still cannot make seq go backwards.
        self._last_seq = _now_ms()

    @classmethod
    def open(cls, path: str | Path, storage: Any = None, fate: Callable[[], str] | None = None) -> "Outbox":
        kw: dict[str, Any] = {"fate": fate}
        if storage is not None:
            kw.update(retention_days=storage.retention_days, retention_rows=storage.retention_rows,
                      max_pending_rows=getattr(storage, "max_pending_rows", 1000000))
        box = cls(Path(path), **kw)
        box.retry(force=True)
        return box

    # ------------------------------------------------------------------ health
    @property
    def healthy(self) -> bool:
        return self._conn is not None and self._problem is None

    @property
    def problem(self) -> str | None:
        return self._problem

    def _fail(self, e: BaseException) -> None:
        msg = describe_failure(e, self.path)
        if msg != self._problem:
            fate = self.fate() if self.fate is not None else "events still go out over MQTT from memory"
            log.error("%s; %s", msg, fate)
        self._problem = msg
        self._last_try = time.monotonic()
        if getattr(e, "sqlite_errorname", "") in _CORRUPT:
            self._drop_conn()  # retry() will move the file aside
        else:
            self._truncate_wal()  # give the space the WAL holds back to the file system

    def _truncate_wal(self) -> bool:
        """Copy the WAL into the database and cut it to zero bytes; False when that failed too."""
        if self._conn is None:
            return False
        try:
            busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            return busy == 0
        except sqlite3.Error:
            return False

    def _drop_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def retry(self, force: bool = False) -> bool:
        """(Re)open the file when it is not healthy; at most every few seconds unless forced."""
        with self._lock:
            if self.healthy:
                return True
            if not force and time.monotonic() - self._last_try < RETRY_EVERY_S:
                return False
            self._last_try = time.monotonic()
            self._drop_conn()
            try:
                self._connect()
            except sqlite3.DatabaseError as e:
                if getattr(e, "sqlite_errorname", "") in _CORRUPT or "not a database" in str(e) \
                        or "malformed" in str(e):
                    self._drop_conn()
                    if not self._move_aside(str(e)):
                        return False
                    try:
                        self._connect()
                    except (sqlite3.Error, OSError) as e2:
                        self._drop_conn()
                        self._fail(e2)
                        return False
                else:
                    self._drop_conn()
                    self._fail(e)
                    return False
            except OSError as e:
                self._drop_conn()
                self._fail(e)
                return False
            if self._problem is not None:
                self._truncate_wal()
                if not self._probe_write():
                    return False
            if self._problem is not None:
                log.warning("journal %s writable again", self.path)
            self._problem = None
            self.prune()
            return True

    def _probe_write(self) -> bool:
        """Opening needs no free space; prove a commit works before calling the journal writable
        again (otherwise a full disk flaps between "writable again" and "disk full" every retry)."""
        assert self._conn is not None
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("INSERT INTO meta(key, value) VALUES ('probe', ?) ON CONFLICT(key) DO UPDATE "
                               "SET value = excluded.value", (str(time.time()),))
            self._conn.execute("COMMIT")
            return True
        except sqlite3.Error as e:
            self._rollback()
            self._drop_conn()
            self._fail(e)
            return False

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=5.0, isolation_level=None, check_same_thread=False)
        self._conn = conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        status = conn.execute("PRAGMA quick_check").fetchone()[0]
        if status != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed ({status})")
        conn.executescript(SCHEMA)
        row = conn.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        stored = int(row[0]) if row else 0
        top = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0
        self._last_seq = max(self._last_seq, stored, top)

    def _move_aside(self, why: str) -> bool:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            os.replace(self.path, target)
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    os.replace(side, target.with_name(target.name + suffix))
        except OSError as e:
            self._fail(e)
            return False
        log.error("journal %s is corrupt (%s): moved aside to %s, starting a fresh one", self.path, why, target.name)
        return True

    # ------------------------------------------------------------------ writing
    @property
    def last_seq(self) -> int:
        return self._last_seq

    def allocate_seq(self) -> int:
        """The next seq. Not persisted until ``record``: an allocated seq that was never recorded
        was never published either, so reusing it after a crash is harmless."""
        with self._lock:
            self._last_seq += 1
            return self._last_seq

    def record(self, seq: int, event_id: str, kind: str, ts: float, payload: str, delivered: bool = False) -> bool:
        """Journal one event (committed and fsync'd on return). False when the journal is unavailable."""
        with self._lock:
            if not self.healthy and not self.retry():
                return False
            assert self._conn is not None
            now = time.time()
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute(
                    "INSERT OR IGNORE INTO events(seq, event_id, kind, ts, created, delivered_at, payload) "
                    "VALUES (?,?,?,?,?,?,?)", (seq, event_id, kind, ts, now, now if delivered else None, payload))
                self._conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('last_seq', ?) ON CONFLICT(key) DO UPDATE "
                    "SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))", (str(seq),))
                self._conn.execute("COMMIT")
            except sqlite3.Error as e:
                self._rollback()
                self._fail(e)
                return False
            self._since_prune += 1
            if self._since_prune >= PRUNE_EVERY:
                self.prune()
            return True

    def _rollback(self) -> None:
        try:
            if self._conn is not None and self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def mark_delivered(self, seqs: Iterable[int]) -> bool:
        seqs = list(seqs)
        if not seqs:
            return True
        with self._lock:
            if not self.healthy:
                return False
            assert self._conn is not None
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany("UPDATE events SET delivered_at=? WHERE seq=? AND delivered_at IS NULL",
                                       [(time.time(), s) for s in seqs])
                self._conn.execute("COMMIT")
                return True
            except sqlite3.Error as e:
                self._rollback()
                self._fail(e)
                return False

    def prune(self, now: float | None = None) -> int:
        """Apply retention; returns rows deleted. Undelivered rows go only past max_pending_rows."""
        with self._lock:
            if not self.healthy:
                return 0
            assert self._conn is not None
            self._since_prune = 0
            now = time.time() if now is None else now
            c = self._conn
            try:
                c.execute("BEGIN IMMEDIATE")
                n = c.execute("DELETE FROM events WHERE delivered_at IS NOT NULL AND created < ?",
                              (now - self.retention_days * 86400,)).rowcount
                total = c.execute("SELECT COUNT(*) FROM events").fetchone()[0]
                if total > self.retention_rows:
                    n += c.execute("DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE delivered_at IS NOT "
                                   "NULL ORDER BY seq LIMIT ?)", (total - self.retention_rows,)).rowcount
                pending = c.execute("SELECT COUNT(*) FROM events WHERE delivered_at IS NULL").fetchone()[0]
                dropped: tuple[int, int] | None = None
                if pending > self.max_pending_rows:
                    extra = pending - self.max_pending_rows
                    lo, hi = c.execute("SELECT MIN(seq), MAX(seq) FROM (SELECT seq FROM events WHERE delivered_at "
                                       "IS NULL ORDER BY seq LIMIT ?)", (extra,)).fetchone()
                    n += c.execute("DELETE FROM events WHERE delivered_at IS NULL AND seq <= ?", (hi,)).rowcount
                    dropped = (lo, hi)
                c.execute("COMMIT")
            except sqlite3.Error as e:
                self._rollback()
                self._fail(e)
                return 0
            if dropped:
                log.error("journal over its hard cap of %d undelivered events: DROPPED undelivered seq %d..%d "
                          "(the broker has been unreachable too long; raise storage.max_pending_rows or fix the link)",
                          self.max_pending_rows, dropped[0], dropped[1])
            return n

    # ------------------------------------------------------------------ reading
    def _select(self, where: str, params: tuple, limit: int | None, order: str = "seq") -> list[OutboxRow]:
        with self._lock:
            if not self.healthy:
                return []
            assert self._conn is not None
            sql = f"SELECT seq, event_id, kind, ts, created, delivered_at, payload FROM events {where} ORDER BY {order}"
            if limit is not None:
                sql += f" LIMIT {int(limit)}"
            try:
                return [OutboxRow(*r) for r in self._conn.execute(sql, params).fetchall()]
            except sqlite3.Error as e:
                self._fail(e)
                return []

    def pending(self, limit: int | None = None, after: int | None = None) -> list[OutboxRow]:
        """Undelivered rows in seq order (optionally with seq > after)."""
        if after is None:
            return self._select("WHERE delivered_at IS NULL", (), limit)
        return self._select("WHERE delivered_at IS NULL AND seq > ?", (after,), limit)

    def pending_count(self) -> int:
        with self._lock:
            if not self.healthy:
                return 0
            assert self._conn is not None
            try:
                return self._conn.execute("SELECT COUNT(*) FROM events WHERE delivered_at IS NULL").fetchone()[0]
            except sqlite3.Error as e:
                self._fail(e)
                return 0

    def rows(self, since: float | None = None, pending_only: bool = False, limit: int | None = None) -> list[OutboxRow]:
        where, params = [], []
        if since is not None:
            where.append("created >= ?")
            params.append(since)
        if pending_only:
            where.append("delivered_at IS NULL")
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return self._select(clause, tuple(params), limit)

    def get(self, seq: int) -> OutboxRow | None:
        rows = self._select("WHERE seq = ?", (seq,), 1)
        return rows[0] if rows else None

    # ------------------------------------------------------------------ small key/value (command seq)
    def get_meta(self, key: str) -> str | None:
        with self._lock:
            if not self.healthy:
                return None
            assert self._conn is not None
            try:
                row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            except sqlite3.Error as e:
                self._fail(e)
                return None
            return row[0] if row else None

    def set_meta(self, key: str, value: str) -> bool:
        with self._lock:
            if not self.healthy:
                return False
            assert self._conn is not None
            try:
                self._conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                                   "SET value = excluded.value", (key, value))
                return True
            except sqlite3.Error as e:
                self._fail(e)
                return False

    def close(self) -> None:
        with self._lock:
            self._drop_conn()
