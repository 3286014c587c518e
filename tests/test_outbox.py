"""The journal: durability across kill -9, seq across restarts, corruption, unwritable dirs, retention."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

from edge_liveness.events.outbox import Outbox
from edge_liveness.events.publisher import Publisher
from edge_liveness.events.verify import Verifier

KEY = b"outbox-test-key"


def _body(i: int) -> dict:
    return {"result": "pass" if i % 2 else "fail", "reason": None if i % 2 else "no_blink", "attempt_id": f"a{i}"}


def test_events_and_seq_survive_reopen(tmp_path):
    box = Outbox.open(tmp_path / "outbox.db")
    pub = Publisher(box, None, "door", KEY)
    first = [pub.submit("decision", _body(i)) for i in range(5)]
    box.close()
    box2 = Outbox.open(tmp_path / "outbox.db")
    rows = box2.pending()
    assert [r.event_id for r in rows] == [p["event_id"] for p in first]
    assert [r.data() for r in rows] == first  # the journal holds the exact payload that is published
    later = Publisher(box2, None, "door", KEY).submit("decision", _body(9))
    assert later["seq"] > first[-1]["seq"]
    box2.mark_delivered([first[0]["seq"], first[1]["seq"]])
    assert box2.pending_count() == 4 and box2.get(first[0]["seq"]).delivered


KILL_SCRIPT = r"""
import sys, time
from edge_liveness.events.outbox import Outbox
from edge_liveness.events.publisher import Publisher
box = Outbox.open(sys.argv[1])
pub = Publisher(box, None, "door", b"outbox-test-key")
for i in range(int(sys.argv[2])):
    p = pub.submit("decision", {"result": "pass", "reason": None, "attempt_id": str(i)})
    print(p["seq"], p["event_id"], flush=True)
time.sleep(60)
"""


def test_kill_9_loses_nothing_that_was_journaled(tmp_path):
    db = tmp_path / "outbox.db"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(db), "30"], stdout=subprocess.PIPE, text=True)
    lines = [proc.stdout.readline().split() for _ in range(30)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    box = Outbox.open(db)
    rows = box.pending()
    assert [(str(r.seq), r.event_id) for r in rows] == [tuple(x) for x in lines]
    v = Verifier(KEY)
    assert all(v.check(r.payload).ok for r in rows)


def test_corrupt_file_is_moved_aside_and_seq_keeps_rising(tmp_path, caplog):
    db = tmp_path / "outbox.db"
    box = Outbox.open(db)
    before = Publisher(box, None, "door", KEY).submit("decision", _body(1))["seq"]
    box.close()
    for side in ("outbox.db-wal", "outbox.db-shm"):
        (tmp_path / side).unlink(missing_ok=True)
    db.write_bytes(b"this is not sqlite" * 500)
    with caplog.at_level(logging.ERROR):
        box = Outbox.open(db)
    assert box.healthy
    aside = list(tmp_path.glob("outbox.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not sqlite")
    assert any("corrupt" in r.getMessage() and "moved aside" in r.getMessage() for r in caplog.records)
    after = Publisher(box, None, "door", KEY).submit("decision", _body(2))["seq"]
    assert after > before  # a fresh journal must not restart seq (subscribers would call it a replay)


def test_unwritable_state_dir_reports_a_problem_and_recovers(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")  # root ignores modes; this fails for everyone
    box = Outbox.open(blocker / "outbox.db")
    assert not box.healthy and "make" in box.problem and str(blocker) in box.problem
    pub = Publisher(box, None, "door", KEY)
    p = pub.submit("decision", _body(1))  # still built and signed from memory
    assert Verifier(KEY).check(p).ok
    assert pub.backlog == 1
    blocker.unlink()
    blocker.mkdir()
    assert box.retry(force=True) and box.healthy and box.problem is None
    pub._journal_memory()
    assert [r.event_id for r in box.pending()] == [p["event_id"]]


def test_retention_by_age_rows_and_the_pending_hard_cap(tmp_path, caplog):
    box = Outbox(tmp_path / "outbox.db", retention_days=1, retention_rows=100, max_pending_rows=120)
    assert box.retry(force=True)
    pub = Publisher(box, None, "door", None)
    seqs = [pub.submit("decision", _body(i))["seq"] for i in range(150)]
    # Age: nothing delivered yet, so nothing may go, however old.
    assert box.prune(now=time.time() + 10 * 86400) == 30  # only the pending cap (150 > 120) bites
    assert any("DROPPED undelivered" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert box.pending()[0].seq == seqs[30]
    box.mark_delivered(seqs[30:100])
    assert box.prune(now=time.time()) == 20  # rows: 120 > 100, the oldest delivered go first
    assert len(box.rows()) == 100 and box.pending_count() == 50
    assert box.prune(now=time.time() + 2 * 86400) == 50  # age: the remaining delivered rows
    assert box.pending_count() == 50 and len(box.rows()) == 50


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_liveness", "events", *args], capture_output=True, text=True,
                          timeout=60)


def test_events_command_lists_delivered_and_pending(tmp_path):
    db = tmp_path / "outbox.db"
    box = Outbox.open(db)
    pub = Publisher(box, None, "door", KEY)
    ps = [pub.submit("decision", _body(i)) for i in range(3)]
    pub.submit("prompt", {"attempt_id": "a9", "actions": ["blink", "turn_left"], "step_timeout_s": 5})
    box.mark_delivered([ps[0]["seq"]])
    box.close()
    out = _cli("--db", str(db), "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert [r["event_id"] for r in rows[:3]] == [p["event_id"] for p in ps]
    assert rows[0]["_delivered_at"] is not None and rows[1]["_delivered_at"] is None
    text = _cli("--db", str(db), "--pending", "--since", "1h")
    assert text.returncode == 0 and text.stdout.count("PENDING") == 3 and "turn_left" in text.stdout
    assert "no_blink" in text.stdout
    assert _cli("--db", str(db), "--since", "1h", "--json").stdout.count("\n") == 4
    assert _cli("--db", str(db), "--since", "2099-01-01", "--json").stdout == ""
    bad = _cli("--db", str(db), "--since", "yesterday-ish")
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr
    missing = _cli("--db", str(tmp_path / "none.db"))
    assert missing.returncode == 2 and "no journal there" in missing.stderr


def test_unjournaled_events_go_to_the_first_private_fallback_and_the_next_start_journals_them(tmp_path, caplog):
    """The journal cannot be written: each event is appended, as it is made, to the first fallback
    directory that takes it. One writable by others (a planted /tmp directory) is skipped, and so is
    one that is not a directory; the next process journals what any of them holds, then removes it."""
    from edge_liveness.events.fallback import FALLBACK_FILE

    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    planted = tmp_path / "planted"
    planted.mkdir()
    planted.chmod(0o777)
    good = tmp_path / "tmp" / "edge-liveness-x"
    box = Outbox.open(blocker / "outbox.db")
    with caplog.at_level(logging.WARNING):
        pub = Publisher(box, None, "door", KEY, fallback_dirs=[blocker / "unjournaled", planted, good])
        made = [pub.submit("decision", _body(i))["seq"] for i in range(3)]
        assert pub.keep_unjournaled() == 0, "all were kept: nothing lost"
    assert os.stat(good).st_mode & 0o777 == 0o700 and os.stat(good / FALLBACK_FILE).st_mode & 0o777 == 0o600
    assert not (planted / FALLBACK_FILE).exists()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"cannot keep unjournaled events in {planted} (writable by others (mode 777))" in text
    assert f"events the journal cannot take are kept in {good / FALLBACK_FILE}" in text
    assert "3 events (seq" in text and "kept in" in text

    blocker.unlink()
    blocker.mkdir()
    box2 = Outbox.open(blocker / "outbox.db")
    later = Publisher(box2, None, "door", KEY, fallback_dirs=[blocker / "unjournaled", planted, good])
    assert later.import_fallback() == 3
    assert [r.seq for r in box2.pending()] == made
    assert not (good / FALLBACK_FILE).exists()


def test_events_no_fallback_takes_are_each_logged_as_lost_and_counted_at_stop(tmp_path, caplog):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    box = Outbox.open(blocker / "outbox.db")
    with caplog.at_level(logging.WARNING):
        pub = Publisher(box, None, "door", KEY, fallback_dirs=[blocker / "unjournaled"])
        made = [pub.submit("decision", _body(i))["seq"] for i in range(3)]
        assert pub.keep_unjournaled() == 3
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    per_event = [m for m in errors if "is neither journaled nor kept in a fallback file" in m]
    assert [int(m.split("seq ")[1].split()[0]) for m in per_event] == made
    assert per_event[-1].endswith("(3 such events so far)")
    assert sum("cannot be kept in any fallback directory" in m for m in errors) == 1, "said once, not per event"
    assert any(m.startswith(f"3 events (seq {made[0]}..{made[-1]}; 0 of them delivered to the broker) could not "
                            f"be journaled and are NOT kept") for m in errors), errors
