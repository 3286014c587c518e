"""Storage faults thrown at the real daemon: the state directory fills up (ENOSPC) mid-run, is
read-only at start, or holds a corrupt journal. Decisions still go out over MQTT, the problem is
reported (log line, ``storage_problem`` in the state topic), and the daemon recovers on its own.

The full and read-only cases use a real small file system: an 8 MiB tmpfs (needs root, or
CAP_SYS_ADMIN; skipped with the reason otherwise).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import shared_file
from fault_helpers import (DEVICE_ID, SIGNING_KEY, DaemonProc, EventSink, base_env, journal_rows, publish, topic_base,
                           wait_until)

pytestmark = pytest.mark.slow


def _video():
    return shared_file("video", "tranvanluyt_real.mp4")


def _env(tmp_path: Path, state: Path, port: int, **extra: str) -> dict[str, str]:
    """base_env, with $TMPDIR (the last fallback for unjournaled events) inside the test's own directory."""
    return {**base_env(state, _video(), port), "TMPDIR": str(tmp_path / "tmp"), **extra}


@pytest.fixture
def small_fs(tmp_path):
    """A small tmpfs mounted for the test (8 MiB: room for SQLite's WAL once the filler is gone)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip() or r.returncode}): run as root for the "
                    "disk-full and read-only tests")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(fs: Path) -> Path:
    """Write a file until the file system says ENOSPC."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    return filler


def _problem_states(sink: EventSink) -> list[str | None]:
    return [s.get("storage_problem") for s in sink.states()]


def test_disk_full_mid_run_decisions_still_go_out_and_it_recovers(small_fs, mosquitto_broker, tmp_path, face_models):
    b = mosquitto_broker
    sink = EventSink(b.host, b.port, topic_base())
    state = small_fs / "state"
    d = DaemonProc(tmp_path, _env(tmp_path, state, b.port))
    try:
        d.wait_ready()
        d.wait_decisions(2)
        wait_until(lambda: len(journal_rows(state)) >= 2, 10, "decisions journaled")

        t_full = time.monotonic()
        filler = _fill(small_fs)
        line = d.wait_log(r"ERROR .*disk full: free space on the file system holding .*events still go out over MQTT",
                          timeout=30, since=t_full)
        assert str(state) in line
        wait_until(lambda: any(p and "disk full" in p for p in _problem_states(sink)), 10, "storage_problem in state")
        n_full = len(d.decisions())
        d.wait_decisions(n_full + 4)
        # While the disk is full, decisions are delivered from memory, each once.
        while_full = {e["event_id"] for e in d.decisions()[n_full:]}
        assert sink.wait_for(lambda s: while_full <= s.decisions().keys(), 20), "decisions lost while the disk was full"

        # Space comes back: the journal reopens by itself and takes in what went out meanwhile.
        t_free = time.monotonic()
        filler.unlink()
        d.wait_log(r"journal .* writable again", timeout=30, since=t_free)
        d.wait_log(r"journaled \d+ events that went out while the journal was unavailable", timeout=15, since=t_free)
        again = [s for s in d.log_lines(t_full) if "writable again" in s]
        assert len(again) == 1 and again == [s for s in d.log_lines(t_free) if "writable again" in s], \
            f"the journal claimed recovery while the disk was still full: {again}"
        wait_until(lambda: _problem_states(sink)[-1] is None, 10, "storage_problem cleared in the state topic")
        made = {e["event_id"] for e in d.decisions()}
        assert sink.wait_for(lambda s: made <= s.decisions().keys(), 20)
        assert sink.duplicates() == 0
        assert d.stop() == 0
        rows = journal_rows(state)
        journaled = {r[1] for r in rows}
        assert while_full <= journaled, "decisions made while the disk was full were not journaled after recovery"
        pending = [r for r in rows if r[1] in made and r[2] is None]
        assert pending == [], f"{len(pending)} delivered decisions left pending: {pending} of {len(rows)} rows"
        seqs = [r[0] for r in rows]
        assert seqs == sorted(set(seqs))
        assert "Traceback" not in d.log()
    finally:
        d.close()
        sink.close()


def test_read_only_state_dir_at_start_then_writable(small_fs, mosquitto_broker, tmp_path, face_models):
    b = mosquitto_broker
    sink = EventSink(b.host, b.port, topic_base())
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    d = DaemonProc(tmp_path, _env(tmp_path, small_fs, b.port))
    try:
        d.wait_ready()
        line = d.wait_log(r"ERROR .*outbox\.db: the file system holding .* is read-only: remount it read-write",
                          timeout=30)
        # Said before the broker connection is up: it cannot claim events "still" go out.
        assert "events go out over MQTT from memory once the broker is connected" in line, line
        d.wait_decisions(3)
        made = {e["event_id"] for e in d.decisions()}
        assert sink.wait_for(lambda s: made <= s.decisions().keys(), 20), "decisions lost with a read-only state dir"
        wait_until(lambda: any(p and "outbox.db" in p for p in _problem_states(sink)), 10, "storage_problem in state")
        assert d.alive()

        t_rw = time.monotonic()
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
        d.wait_log(r"journal .* writable again", timeout=30, since=t_rw)
        wait_until(lambda: _problem_states(sink)[-1] is None, 10, "storage_problem cleared in the state topic")
        assert d.stop() == 0
        journaled = {r[1] for r in journal_rows(small_fs)}
        assert made <= journaled, "decisions sent while read-only were not journaled after recovery"
        assert (small_fs / "status.json").is_file(), "the status file is written again after recovery"
    finally:
        d.close()
        sink.close()


def test_corrupt_journal_is_moved_aside_and_a_new_one_started(mosquitto_broker, tmp_path, face_models):
    b = mosquitto_broker
    sink = EventSink(b.host, b.port, topic_base())
    state = tmp_path / "state"
    state.mkdir()
    garbage = b"SQLite format 3\x00" + os.urandom(8192)  # right magic, wrecked pages
    (state / "outbox.db").write_bytes(garbage)
    d = DaemonProc(tmp_path, _env(tmp_path, state, b.port))
    try:
        line = d.wait_log(r"ERROR .*journal .*outbox\.db is corrupt .*moved aside to outbox\.db\.corrupt-\d{8}T\d{6}, "
                          r"starting a fresh one", timeout=120)
        d.wait_ready()
        d.wait_decisions(2)
        made = {e["event_id"] for e in d.decisions()}
        assert sink.wait_for(lambda s: made <= s.decisions().keys(), 20)
        assert d.stop() == 0
        aside = list(state.glob("outbox.db.corrupt-*"))
        assert len(aside) == 1 and aside[0].read_bytes() == garbage, "the corrupt file must be kept for inspection"
        assert made <= {r[1] for r in journal_rows(state)}
        assert "Traceback" not in d.log(), line
    finally:
        d.close()
        sink.close()


def test_ack_that_comes_while_the_disk_is_full_is_marked_when_space_returns(small_fs, mosquitto_broker):
    """A decision journaled just before the disk filled, acknowledged just after: the journal must
    still end up saying "delivered" (it used to stay pending for ever, and be sent again on the
    next reconnect). The publisher in-process, with a real broker and a real full file system."""
    from edge_liveness.config import load_settings
    from edge_liveness.events.mqtt import MqttLink
    from edge_liveness.events.outbox import Outbox
    from edge_liveness.events.publisher import Publisher

    b = mosquitto_broker
    b.stop()
    state = small_fs / "state"
    settings = load_settings(None, device={"id": "door-ack"}, storage={"state_dir": str(state)},
                             mqtt={"host": b.host, "port": b.port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.3})
    outbox = Outbox.open(state / "outbox.db", settings.storage)
    link = MqttLink(settings)
    pub = Publisher(outbox, link, "door-ack", b"k")
    link.start()
    try:
        seqs = [pub.submit("decision", {"result": "pass", "reason": "live"})["seq"] for _ in range(3)]
        assert outbox.pending_count() == 3  # journaled; the broker is down
        filler = _fill(small_fs)
        b.start()
        wait_until(lambda: outbox.problem and "disk full" in outbox.problem, 20, "the ack's journal write to fail")
        filler.unlink()
        wait_until(lambda: outbox.healthy and outbox.pending_count() == 0, 20, "the acks marked once space returned")
        assert [r.seq for r in outbox.rows() if r.delivered] == seqs
    finally:
        pub.close()
        link.stop()
        outbox.close()


@pytest.fixture
def tiny_fs(tmp_path):
    """A 2 MiB tmpfs: the probe's size, where SQLite's default 4 MB WAL checkpoint is never reached."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip() or r.returncode}): run as root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_2mb_state_dir_filled_and_freed_recovers_and_journals_what_went_out(tiny_fs, mosquitto_broker, tmp_path,
                                                                              face_models):
    b = mosquitto_broker
    sink = EventSink(b.host, b.port, topic_base())
    state = tiny_fs / "state"
    d = DaemonProc(tmp_path, _env(tmp_path, state, b.port))
    try:
        d.wait_ready()
        d.wait_decisions(3)
        wait_until(lambda: len(journal_rows(state)) >= 3, 10, "decisions journaled")
        wal = state / "outbox.db-wal"
        from edge_liveness.events.outbox import WAL_SIZE_LIMIT

        # The WAL stays bounded in normal running (it used to grow until the 2 MB were gone).
        d.wait_decisions(len(d.decisions()) + 10, timeout=120)
        assert wal.stat().st_size <= WAL_SIZE_LIMIT + 64 * 4096, wal.stat().st_size

        t_full = time.monotonic()
        filler = _fill(tiny_fs)
        d.wait_log(r"ERROR .*disk full", timeout=60, since=t_full)
        n_full = len(d.decisions())
        d.wait_decisions(n_full + 5)

        t_free = time.monotonic()
        filler.unlink()
        d.wait_log(r"journal .* writable again", timeout=30, since=t_free)
        d.wait_log(r"journaled \d+ events that went out while the journal was unavailable", timeout=30, since=t_free)
        # It stays recovered: more decisions than an unbounded WAL (~30 KB each) could hold in the
        # 2 MB, no new storage error, no flapping.
        n_after = len(d.decisions())
        d.wait_decisions(n_after + 70, timeout=240)
        after = d.log_lines(t_free)
        assert not [s for s in after if "ERROR" in s and "outbox.db" in s], [s for s in after if "ERROR" in s]
        assert sum("writable again" in s for s in after) == 1
        made = {e["event_id"] for e in d.decisions()}
        assert sink.wait_for(lambda s: made <= s.decisions().keys(), 30), "decisions lost on the wire"
        assert d.stop() == 0
        journaled = {r[1] for r in journal_rows(state)}
        missing = made - journaled
        assert not missing, f"{len(missing)} of {len(made)} decisions never reached the audit log"
        assert "Traceback" not in d.log()
    finally:
        d.close()
        sink.close()


def _fallback_lines(path: Path) -> list[dict]:
    import json

    return [json.loads(s) for s in path.read_text().splitlines() if s.strip()]


def test_unjournaled_decisions_survive_a_stop_in_the_runtime_directory(small_fs, mosquitto_broker, tmp_path,
                                                                      face_models):
    """Journal unwritable mid-run (disk full): decisions live in memory and in $RUNTIME_DIRECTORY;
    SIGTERM says where they were kept; the next start journals them."""
    b = mosquitto_broker
    state = small_fs / "state"
    runtime = tmp_path / "run"  # another file system, as systemd's RuntimeDirectory= is
    env = {**base_env(state, _video(), b.port), "RUNTIME_DIRECTORY": str(runtime)}
    d = DaemonProc(tmp_path, env)
    try:
        d.wait_ready()
        d.wait_decisions(2)
        wait_until(lambda: len(journal_rows(state)) >= 2, 10, "decisions journaled")
        t_ro = time.monotonic()
        filler = _fill(small_fs)
        d.wait_log(r"ERROR .*disk full", timeout=60, since=t_ro)
        n = len(d.decisions())
        d.wait_decisions(n + 3)
        assert d.stop() == 0
        line = d.wait_log(r"WARNING .*events \(seq \d+\.\.\d+; \d+ of them delivered to the broker\) could not be "
                          r"journaled: kept in .*unjournaled\.jsonl, journaled at the next start", timeout=5)
        kept = {e["seq"] for e in _fallback_lines(runtime / "unjournaled.jsonl") if "seq" in e}
        unjournaled = {e["seq"] for e in d.decisions()} - {r[0] for r in journal_rows(state)}
        assert unjournaled and unjournaled <= kept, (unjournaled, kept, line)
    finally:
        d.close()
    # Space again: the next start journals what the last run kept.
    filler.unlink()
    d2 = DaemonProc(tmp_path, env, name="second")
    try:
        d2.wait_log(r"journaled \d+ events kept in .*unjournaled\.jsonl", timeout=120)
        d2.wait_ready()
        assert unjournaled <= {r[0] for r in journal_rows(state)}
        assert not (runtime / "unjournaled.jsonl").exists()
        assert d2.stop() == 0
    finally:
        d2.close()


def _full_disk_and_broker_down(d: DaemonProc, fs: Path, broker) -> tuple[Path, str]:
    """The probe's order: decisions journaled, the broker goes, then the disk fills. Returns the filler
    and the journal's ERROR line, which must not claim events still go out over MQTT."""
    d.wait_ready()
    d.wait_log(r"connected to 127\.0\.0\.1", timeout=30)
    d.wait_decisions(1)
    t_down = time.monotonic()
    broker.stop()
    d.wait_log(r"connection to .* lost", timeout=30, since=t_down)
    filler = _fill(fs)
    line = d.wait_log(r"ERROR .*disk full", timeout=60, since=t_down)
    assert "the broker is down too" in line and "still go out over MQTT" not in line, line
    return filler, line


def _lost_seqs(lines: list[str]) -> set[int]:
    """The seqs the daemon said, one line each as they were made, it could neither journal nor keep."""
    return {int(m.group(1)) for s in lines if (m := re.search(r"ERROR .*seq (\d+) is neither journaled nor kept", s))}


@pytest.mark.parametrize("how", ["sigterm", "kill"])
def test_without_a_runtime_directory_nothing_is_lost_silently(small_fs, mosquitto_broker, tmp_path, face_models, how):
    """The probe: no runtime directory (scripts/run.sh, a bare `run`), the disk full and the broker down;
    kill -9 lost 18 decisions without a line, SIGTERM lost 16 with exit 0. Now they are kept in a
    private directory under $TMPDIR, and the next start journals every decision that was made."""
    state = small_fs / "state"
    tmp = tmp_path / "tmp"  # $TMPDIR: the root file system, as /tmp is
    env = _env(tmp_path, state, mosquitto_broker.port)
    d = DaemonProc(tmp_path, env)  # clean_env() passes neither RUNTIME_DIRECTORY nor XDG_RUNTIME_DIR
    try:
        filler, _ = _full_disk_and_broker_down(d, small_fs, mosquitto_broker)
        kept_line = d.wait_log(r"WARNING .*events the journal cannot take are kept in \S+unjournaled\.jsonl", timeout=10)
        kept = Path(re.search(r"kept in (\S+unjournaled\.jsonl)", kept_line).group(1))
        assert kept.parent.parent == tmp and stat.S_IMODE(kept.parent.stat().st_mode) == 0o700, kept
        n = len(d.decisions())
        d.wait_decisions(n + 3)
        if how == "kill":
            d.proc.kill()
            d.wait_exit(10)
        else:
            assert d.stop() == 0, "nothing was lost: a clean stop"
            d.wait_log(r"WARNING .*events \(seq \d+\.\.\d+; 0 of them delivered to the broker\) could not be "
                       r"journaled: kept in .*unjournaled\.jsonl, journaled at the next start", timeout=5)
    finally:
        d.close()
    made = {e["seq"] for e in d.decisions()}
    assert not _lost_seqs(d.log_lines()), "nothing may be logged as lost when the fallback took it"
    assert made - {r[0] for r in journal_rows(state)}, "the test must leave decisions unjournaled"
    filler.unlink()
    mosquitto_broker.start()
    d2 = DaemonProc(tmp_path, env, name="second")
    try:
        d2.wait_log(r"journaled \d+ events kept in .*unjournaled\.jsonl", timeout=120)
        d2.wait_ready()
        assert d2.stop() == 0
    finally:
        d2.close()
    missing = made - {r[0] for r in journal_rows(state)}
    assert not missing, f"{len(missing)} of {len(made)} decisions made were neither journaled nor logged as lost"
    assert not kept.exists()


@pytest.mark.parametrize("how", ["sigterm", "kill"])
def test_when_no_fallback_takes_them_every_lost_decision_is_logged_and_a_stop_exits_1(
        small_fs, mosquitto_broker, tmp_path, face_models, how):
    """Every place to keep them is on the full file system too ($TMPDIR as well): each decision is
    logged as lost as it is made (a kill -9 leaves no later chance), SIGTERM says how many and exits
    1; made = journaled + logged as lost."""
    state = small_fs / "state"
    env = _env(tmp_path, state, mosquitto_broker.port, TMPDIR=str(small_fs / "tmp"))
    d = DaemonProc(tmp_path, env)
    try:
        filler, _ = _full_disk_and_broker_down(d, small_fs, mosquitto_broker)
        d.wait_log(r"ERROR .*unjournaled events cannot be kept in any fallback directory", timeout=10)
        n = len(d.decisions())
        d.wait_decisions(n + 3)
        if how == "kill":
            d.proc.kill()
            d.wait_exit(10)
        else:
            assert d.stop() == 1, "a stop that lost decisions is a failure"
            line = d.wait_log(r"ERROR .*events \(seq \d+\.\.\d+; 0 of them delivered to the broker\) could not be "
                              r"journaled and are NOT kept", timeout=5)
    finally:
        d.close()
    filler.unlink()
    made = {e["seq"] for e in d.decisions()}
    lost = _lost_seqs(d.log_lines())
    if how == "sigterm":
        n, lo, hi = map(int, re.search(r"(\d+) events \(seq (\d+)\.\.(\d+)", line).groups())
        assert n == len(lost) and (lo, hi) == (min(lost), max(lost)), (line, sorted(lost))
    journaled = {r[0] for r in journal_rows(state)}
    assert lost and not lost & journaled, (lost, journaled)
    assert made == (journaled & made) | lost, f"made {len(made)}, journaled {len(journaled & made)}, logged lost " \
                                            f"{len(lost)}: {sorted(made - journaled - lost)} went without a line"
    assert "Traceback" not in d.log()


def test_broker_drop_while_the_journal_is_full_says_events_wait_in_memory(small_fs, mosquitto_broker, tmp_path,
                                                                          face_models):
    b = mosquitto_broker
    state = small_fs / "state"
    d = DaemonProc(tmp_path, _env(tmp_path, state, b.port))
    try:
        d.wait_ready()
        d.wait_log(r"connected to 127\.0\.0\.1", timeout=30)
        d.wait_decisions(1)
        t_full = time.monotonic()
        filler = _fill(small_fs)
        d.wait_log(r"ERROR .*disk full", timeout=60, since=t_full)
        t_drop = time.monotonic()
        b.stop()
        line = d.wait_log(r"connection to .* lost", timeout=30, since=t_drop)
        assert "events wait in memory (the journal is unavailable)" in line and "in the journal" not in line, line
        assert "Unspecified error" not in line
        filler.unlink()
        b.start()
        d.wait_log(r"connected to .*\(reconnect \d+\)", timeout=30, since=t_drop)
        assert d.stop() == 0
    finally:
        d.close()


def test_unjournaled_decisions_survive_a_kill_in_the_runtime_directory(small_fs, mosquitto_broker, tmp_path,
                                                                      face_models):
    """kill -9 leaves no chance to say anything: what the runtime directory got as each decision was
    made is all there is, and the next start journals it."""
    b = mosquitto_broker
    state = small_fs / "state"
    runtime = tmp_path / "run"
    env = {**base_env(state, _video(), b.port), "RUNTIME_DIRECTORY": str(runtime)}
    d = DaemonProc(tmp_path, env)
    try:
        d.wait_ready()
        d.wait_decisions(1)
        t_full = time.monotonic()
        filler = _fill(small_fs)
        d.wait_log(r"ERROR .*disk full", timeout=60, since=t_full)
        n = len(d.decisions())
        d.wait_decisions(n + 3)
        d.proc.kill()
        d.wait_exit(10)
    finally:
        d.close()
    unjournaled = {e["seq"] for e in d.decisions()} - {r[0] for r in journal_rows(state)}
    kept = {e["seq"] for e in _fallback_lines(runtime / "unjournaled.jsonl") if "seq" in e}
    assert unjournaled and unjournaled <= kept, (unjournaled, kept)
    filler.unlink()
    d2 = DaemonProc(tmp_path, env, name="second")
    try:
        d2.wait_log(r"journaled \d+ events kept in .*unjournaled\.jsonl", timeout=120)
        d2.wait_ready()
        assert unjournaled <= {r[0] for r in journal_rows(state)}
        assert d2.stop() == 0
    finally:
        d2.close()


def _answer(sink: EventSink, broker, name: str, payload: str) -> dict:
    n = len(sink.results(name))
    publish(broker.host, broker.port, [(f"{topic_base()}/set/{name}", payload)])
    assert sink.wait_for(lambda s: len(s.results(name)) > n, 20), f"no answer on set/{name}/result"
    return sink.results(name)[-1]


def test_a_command_whose_seq_cannot_be_kept_is_refused_and_never_accepted_twice(small_fs, mosquitto_broker,
                                                                                tmp_path, face_models):
    """The probe: a signed command accepted while command_seq could not be written (disk full) was
    accepted again after a restart within 300 s. Now it is refused, with the cause; once the seq can
    be kept it is accepted, once."""
    import json

    from edge_liveness.events import signing

    b = mosquitto_broker
    state = small_fs / "state"
    env = _env(tmp_path, state, b.port)
    sink = EventSink(b.host, b.port, topic_base())
    key = SIGNING_KEY.encode()
    first = json.dumps(signing.command("active", DEVICE_ID, key, mode="blink"))
    second = json.dumps(signing.command("active", DEVICE_ID, key, mode="turn"))
    d = DaemonProc(tmp_path, env)
    try:
        d.wait_ready()
        d.wait_log(r"connected to 127\.0\.0\.1", timeout=30)
        assert _answer(sink, b, "active", first) == {"ok": True, "active_mode": "blink"}
        filler = _fill(small_fs)
        answer = _answer(sink, b, "active", second)
        assert answer["ok"] is False, f"accepted while its seq could not be kept: {answer}"
        assert f"cannot record its seq {json.loads(second)['seq']} in {state / 'command_seq'} (disk full)" \
            in answer["error"] and "free space" in answer["error"], answer
        d.wait_log(r"ERROR .*command active refused: .*cannot record its seq", timeout=10)
        assert sink.wait_for(lambda s: s.states() and s.states()[-1]["active_mode"] == "blink", 10), \
            "a refused command must change nothing"
        d.proc.kill()  # and back within seconds, well inside the 300 s skew
        d.wait_exit(10)
    finally:
        d.close()
    filler.unlink()
    d2 = DaemonProc(tmp_path, env, name="second")
    try:
        d2.wait_ready()
        d2.wait_log(r"connected to 127\.0\.0\.1", timeout=30)
        assert "replay" in _answer(sink, b, "active", first)["error"]
        assert _answer(sink, b, "active", second) == {"ok": True, "active_mode": "turn"}
        assert "replay" in _answer(sink, b, "active", second)["error"]
        assert d2.stop() == 0
    finally:
        d2.close()
        sink.close()
