"""Journal-then-publish: every decision and prompt is built, signed, written to the outbox, then sent.

Delivery is at-least-once: an event is marked delivered only on the broker's PUBACK, and whatever
is still pending is sent again (in seq order) after a reconnect or a restart. Subscribers drop
duplicates by ``event_id`` (or by ``seq`` with ``verify.Verifier``).

Ordering. paho keeps every QoS 1 message it was handed until its PUBACK and re-sends them in order
after a reconnect, so within one process the publisher hands each event to paho exactly once
("dedupe in flight"). Events that paho does not hold (a backlog left by an earlier process, or more
than ``MAX_HANDED`` at once) are paged in from the journal in seq order by a small worker thread;
while such a backlog exists, new events wait behind it in the journal rather than overtaking it.

Threads. paho calls ``on_publish`` holding its own message lock, so that callback only notes the
mid under a tiny lock that is never held while calling paho; the worker thread matches mids to
seqs and does the database writes. (``MQTTMessageInfo.is_published()`` cannot be used: it raises
for a message queued while disconnected even after paho has delivered it.)
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from edge_liveness.events import signing
from edge_liveness.events.fallback import FallbackStore
from edge_liveness.events.outbox import Outbox

log = logging.getLogger("edge_liveness.publisher")

Kind = Literal["decision", "prompt"]
KINDS = ("decision", "prompt")
MAX_HANDED = 1000  # events held by paho at once; the rest wait in the journal
TICK_S = 0.2
MAX_MEMORY = 10000  # events kept in memory while the journal is unwritable


class Publisher:
    def __init__(self, outbox: Outbox | None, link: Any | None, device_id: str, key: bytes | None,
                 fallback_dirs: list[Path] | None = None):
        self.outbox = outbox
        # Events the journal cannot take are also appended to a file in the first of these that
        # works, as they are made, so a stop or a kill does not lose them; the next start journals them.
        self.fallback = FallbackStore(fallback_dirs or [])
        self._kept: set[int] = set()  # seqs in memory that a fallback file holds too
        self.unkept = 0  # events neither journaled nor kept in a fallback file, each logged as made
        self.link = link
        self.device_id = device_id
        self.key = key or None
        self._lock = threading.RLock()  # held while calling paho.publish; never taken by paho callbacks
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._handed: dict[int, int] = {}  # seq -> mid, handed to paho, not yet acked
        self._ack_lock = threading.Lock()  # guards the two below; never held while calling paho
        self._mid_seq: dict[int, int] = {}
        self._acks: list[tuple[int, float]] = []  # (mid, when) from on_publish, not matched yet
        self._memory: dict[int, tuple[str, str, str, float]] = {}  # seq -> (kind, event_id, text, ts) not journaled
        self._acked_memory: set[int] = set()
        # Journaled seqs whose PUBACK came while the journal could not be written: marked later.
        self._unmarked: set[int] = set()
        self._mem_seq = 0  # seq source when there is no outbox (replay)
        # A backlog in the journal that paho does not hold yet (from an earlier run).
        self._journal_backlog = bool(outbox is not None and outbox.pending_count() > 0)
        self._thread: threading.Thread | None = None
        if link is not None:
            link.add_publish_listener(self._on_publish)
            link.add_connect_listener(self._on_connect)
            self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
            self._thread.start()
            self._wake.set()

    # ------------------------------------------------------------------ API
    def _next_seq(self) -> int:
        if self.outbox is not None:
            return self.outbox.allocate_seq()
        self._mem_seq += 1
        return self._mem_seq

    def build(self, kind: str, body: dict[str, Any], seq: int) -> dict[str, Any]:
        """The envelope: type, device_id, event_id, seq, ts, the body, then sig."""
        env: dict[str, Any] = {"type": kind, "device_id": self.device_id, "event_id": str(uuid.uuid4()),
                               "seq": seq, "ts": round(time.time(), 3)}
        for k, v in body.items():
            if k not in env and k != signing.SIG_FIELD:
                env[k] = v
        return signing.sign(env, self.key)

    def submit(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """Build, sign, journal (fsync'd) and publish one event; returns the payload as sent."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r} (expected one of {KINDS})")
        with self._lock:
            seq = self._next_seq()
            payload = self.build(kind, body, seq)
            text = signing.dumps(payload)
            journaled = False
            if self.outbox is not None:
                journaled = self.outbox.record(seq, payload["event_id"], kind, payload["ts"], text)
                if not journaled:
                    self._memory[seq] = (kind, payload["event_id"], text, payload["ts"])
                    self._keep(seq, {"seq": seq, "event_id": payload["event_id"], "kind": kind,
                                     "ts": payload["ts"], "payload": text})
            if self.link is not None:
                if journaled and (self._journal_backlog or len(self._handed) >= MAX_HANDED):
                    self._journal_backlog = True  # the worker pages it in behind the older ones
                    self._wake.set()
                else:
                    self._hand(seq, kind, text)
        return payload

    @property
    def backlog(self) -> int:
        """Events not yet acknowledged by the broker."""
        with self._lock:
            mem = len(self._memory) - len(self._acked_memory & self._memory.keys())
            journal = self.outbox.pending_count() if self.outbox is not None else 0
            return journal + mem

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until everything is acknowledged (or timeout); True when drained."""
        if self.link is None:
            return True
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self._wake.set()
            if self._drained():
                return True
            time.sleep(0.02)
        return self._drained()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    # ------------------------------------------------------------------ the fallback file
    def _keep(self, seq: int, entry: dict[str, Any]) -> None:
        """Under self._lock: append an unjournaled event to the fallback file; when no fallback
        directory takes it either, say so now, with a count (a kill -9 gives no later chance)."""
        if self.fallback.append(entry) is not None:
            self._kept.add(seq)
            return
        self.unkept += 1
        # Why (journal, each fallback directory) was logged once above; this line counts each event.
        log.error("%s seq %d is neither journaled nor kept in a fallback file: it is lost if the daemon stops "
                  "before the journal is writable again (%d such events so far)", entry["kind"], seq, self.unkept)

    def import_fallback(self) -> int:
        """Journal what an earlier run (or this one) kept in the fallback files, then remove them.
        Returns the number of events journaled from them."""
        if self.outbox is None or not self.outbox.healthy:
            return 0
        with self._lock:  # no append may slip in between reading the files and removing them
            kept = self.fallback.load()
            n = 0
            for seq, e in sorted(kept.entries.items()):
                try:
                    ok = self.outbox.record(seq, str(e["event_id"]), str(e["kind"]), float(e["ts"]),
                                            str(e["payload"]), delivered=seq in kept.delivered)
                except (KeyError, TypeError, ValueError):
                    continue
                if not ok:
                    return n  # the journal failed again: keep the files for the next try
                n += 1
            self.fallback.remove(kept.paths)
            self._kept -= kept.entries.keys()
        pending = [s for s in kept.entries if s not in kept.delivered]
        if n:
            log.info("journaled %d events kept in %s while the journal was unavailable (%d still to send)",
                     n, ", ".join(str(p) for p in kept.paths), len(pending))
        if pending and self.link is not None:
            with self._lock:
                self._journal_backlog = True
            self._wake.set()
        return n

    def keep_unjournaled(self) -> int:
        """At stop: journal what only memory holds if the journal works again; otherwise say where
        it was kept, and how many events were not kept (their seq range). Returns that number: the
        events this stop loses."""
        if self.outbox is None:
            return 0
        with self._lock:
            left = sorted(self._memory)
        if left and self.outbox.retry(force=True):
            self._journal_memory()
            with self._lock:
                left = sorted(self._memory)
        kept = [s for s in left if s in self._kept]
        lost = [s for s in left if s not in self._kept]
        if kept:
            log.warning("%s could not be journaled: kept in %s, journaled at the next start", self._some(kept),
                        self.fallback.current or ", ".join(str(p) for p in self.fallback.paths))
        if lost:
            log.error("%s could not be journaled and are NOT kept (no fallback directory took them): %s",
                      self._some(lost), self.outbox.problem or "journal unavailable")
        return len(lost)

    def _some(self, seqs: list[int]) -> str:
        """"<n> events (seq <a>..<b>; <k> of them delivered to the broker)"."""
        sent = sum(1 for s in seqs if s in self._acked_memory)
        return f"{len(seqs)} events (seq {seqs[0]}..{seqs[-1]}; {sent} of them delivered to the broker)"

    # ------------------------------------------------------------------ internals
    def _drained(self) -> bool:
        with self._lock:
            if self._handed or self._journal_backlog:
                return False
            if any(s not in self._acked_memory for s in self._memory):
                return False
        return self.outbox is None or self.outbox.pending_count() == 0 or not self.outbox.healthy

    def _hand(self, seq: int, kind: str, text: str) -> None:
        """Give one event to paho (under self._lock). paho queues it when disconnected."""
        if seq in self._handed:
            return
        info = self.link.publish_event(kind, text)
        if info is None or info.rc == 15:  # MQTT_ERR_QUEUE_SIZE: paho did not keep it
            return
        self._handed[seq] = info.mid
        with self._ack_lock:
            self._mid_seq[info.mid] = seq

    def _on_publish(self, mid: int) -> None:
        with self._ack_lock:
            self._acks.append((mid, time.monotonic()))
        self._wake.set()

    def _matched_acks(self) -> list[int]:
        """Seqs whose PUBACK came. An ack can beat the mid->seq mapping (paho's thread is fast), so
        unmatched acks wait a while; those of availability/state messages simply expire."""
        now = time.monotonic()
        done, keep = [], []
        with self._ack_lock:
            for mid, when in self._acks:
                seq = self._mid_seq.pop(mid, None)
                if seq is not None:
                    done.append(seq)
                elif now - when < 30.0:
                    keep.append((mid, when))
            self._acks = keep
        return done

    def _on_connect(self) -> None:
        # paho re-sends what it holds by itself; look for anything else pending in the journal.
        if self.outbox is not None:
            with self._lock:
                self._journal_backlog = True
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(TICK_S)
            self._wake.clear()
            try:
                self._step()
            except Exception:  # the worker must survive anything; the next tick tries again
                log.exception("publisher step failed")

    def _step(self) -> None:
        with self._lock:
            done = [s for s in self._matched_acks() if self._handed.pop(s, None) is not None]
            mem_done = [s for s in done if s in self._memory]
            self._acked_memory.update(mem_done)
        if mem_done:
            with self._lock:
                self.fallback.append({"delivered": mem_done})
        journal_done = [s for s in done if s not in self._memory]
        if self.outbox is None:
            return
        if journal_done and not self.outbox.mark_delivered(journal_done):
            self._unmarked.update(journal_done)  # else they would stay pending and be sent again
        if self._memory and self.outbox.retry():
            self._journal_memory()
        elif len(self._memory) > MAX_MEMORY:
            with self._lock:  # the journal stays unwritable: forget the oldest already-delivered ones
                forgotten = sorted(self._acked_memory)[: len(self._memory) - MAX_MEMORY]
                for s in forgotten:
                    self._memory.pop(s, None)
                    self._acked_memory.discard(s)
                unkept = [s for s in forgotten if s not in self._kept]
                self._kept -= set(forgotten)
            if unkept:
                log.error("%d delivered events (seq %d..%d) dropped from memory after %d unjournaled: they are in "
                          "no journal and no fallback file", len(unkept), unkept[0], unkept[-1], MAX_MEMORY)
        if self._unmarked and self.outbox.retry() and self.outbox.mark_delivered(sorted(self._unmarked)):
            self._unmarked.clear()
        if self._journal_backlog and self.outbox.healthy:
            self._page_in()

    def _journal_memory(self) -> None:
        """The journal is writable again: write what went out (or is still going) from memory."""
        with self._lock:
            items = sorted(self._memory.items())
        written = []
        for seq, (kind, event_id, text, ts) in items:
            if not self.outbox.record(seq, event_id, kind, ts, text, delivered=seq in self._acked_memory):
                break
            written.append(seq)
        with self._lock:
            for s in written:
                self._memory.pop(s, None)
                self._acked_memory.discard(s)
                self._kept.discard(s)
            # Those still in flight are now journal rows: mark them when the ack comes.
        if written:
            log.info("journaled %d events that went out while the journal was unavailable", len(written))
        with self._lock:
            empty = not self._memory
        if empty:
            self.import_fallback()  # what the file holds beyond memory (an earlier run's), then it goes

    def _page_in(self) -> None:
        with self._lock:
            room = MAX_HANDED - len(self._handed)
            if room <= 0:
                return
            rows = [r for r in self.outbox.pending(limit=room + len(self._handed) + len(self._unmarked))
                    if r.seq not in self._handed and r.seq not in self._unmarked]
            rows = rows[:room]
            for r in rows:
                self._hand(r.seq, r.kind, r.payload)
            if len(rows) < room:
                self._journal_backlog = False
