"""Soak: the real daemon on a looping recording against a live mosquitto that is restarted every
``--restart-every`` seconds. Counts decisions made (the daemon's stdout) against decisions delivered
(a persistent MQTT subscriber, deduplicated by event_id), and samples the daemon's RSS, open file
descriptors and threads. Writes ``benchmarks/results/soak_<minutes>min.json``; exits 1 when a
criterion fails:

  * zero decisions lost (every event_id made arrives, signed);
  * RSS growth after warm-up < 10 %;
  * no file-descriptor or thread growth after warm-up (median of the last samples vs warm-up).

    .venv/bin/python scripts/soak.py --soak-minutes 10            # what the issue asks for, by hand
    .venv/bin/python scripts/soak.py --soak-minutes 60 --restart-every 60

CI runs a 1-minute version from tests/test_faults_soak.py (EDGE_LIVENESS_SOAK_MINUTES, default 1).
Needs the face models (`edge-liveness models fetch`), the shared videos, mosquitto, and the shipped
liveness model or $EDGE_LIVENESS_TEST_LIVENESS_MODEL.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

MAX_RSS_GROWTH = 0.10
DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "video" / "tranvanluyt_real.mp4"


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else 0.0


def verdict(r: dict[str, Any]) -> list[str]:
    """What failed, one line each (empty when the soak passed)."""
    problems = []
    if r["decisions_made"] == 0:
        problems.append("no decisions were made (is there a face in the video?)")
    if r["lost"]:
        problems.append(f"{r['lost']} of {r['decisions_made']} decisions lost")
    if r["bad_signatures"]:
        problems.append(f"{r['bad_signatures']} decisions arrived with a bad signature")
    if r["rss_growth"] >= MAX_RSS_GROWTH:
        problems.append(f"RSS grew {r['rss_growth']:.1%} after warm-up ({r['rss_kb_warm']} -> {r['rss_kb_end']} kB)")
    if r["fds_end"] > r["fds_warm"]:
        problems.append(f"file descriptors grew {r['fds_warm']} -> {r['fds_end']}")
    if r["threads_end"] > r["threads_warm"]:
        problems.append(f"threads grew {r['threads_warm']} -> {r['threads_end']}")
    if r["daemon_exit"] != 0:
        problems.append(f"the daemon exited with {r['daemon_exit']}")
    if r["broker_restarts"] < 1:
        problems.append("the broker was never restarted (soak too short?)")
    return problems


def run_soak(minutes: float, workdir: Path, restart_every_s: float | None = None, video: Path = DEFAULT_VIDEO,
             sample_every_s: float = 2.0, log=print) -> dict[str, Any]:
    from fault_helpers import DaemonProc, EventSink, base_env, liveness_model_path, topic_base
    from fixtures_broker import Broker

    duration = minutes * 60.0
    restart_every_s = restart_every_s or min(60.0, duration / 4)
    warmup_s = min(60.0, duration / 3)
    broker = Broker(workdir / "broker").start()
    sink = EventSink(broker.host, broker.port, topic_base(), client_id="soak-controller")
    d = DaemonProc(workdir, base_env(workdir / "state", video, broker.port), name="soak")
    samples: list[dict[str, Any]] = []
    restarts = 0
    try:
        t0 = d.wait_ready()
        log(f"soak: daemon ready, {minutes:g} min, broker restart every {restart_every_s:g} s, warm-up {warmup_s:g} s")
        next_restart = t0 + restart_every_s
        next_sample = t0
        while (now := time.monotonic()) < t0 + duration:
            if now >= next_restart:
                broker.stop()
                time.sleep(1.0)  # down long enough for the daemon to notice and queue
                broker.start()
                restarts += 1
                next_restart += restart_every_s
                log(f"soak: broker restarted ({restarts}) at {now - t0:.0f} s")
            if now >= next_sample:
                samples.append({"t": round(now - t0, 1), "rss_kb": d.rss_kb(), "fds": d.fds(), "threads": d.threads(),
                                "made": len(d.decisions()), "delivered": len(sink.decisions())})
                next_sample += sample_every_s
            if not d.alive():
                break
            time.sleep(0.1)
        made_ids = {e["event_id"] for e in d.decisions()}
        # Let the last restart's backlog drain, then stop the daemon the way systemd does.
        sink.wait_for(lambda s: made_ids <= s.decisions().keys(), 30)
        code = d.stop(30)
        made_ids = {e["event_id"] for e in d.decisions()}  # plus the shutdown one, if any
        sink.wait_for(lambda s: made_ids <= s.decisions().keys(), 30)
        delivered = sink.decisions()
        warm = [s for s in samples if s["t"] >= warmup_s][:3] or samples[-3:]
        tail = samples[-3:]
        rss_warm = int(_median([s["rss_kb"] for s in warm]))
        rss_end = int(_median([s["rss_kb"] for s in tail]))
        result = {
            "minutes": minutes, "restart_every_s": restart_every_s, "warmup_s": warmup_s,
            "broker_restarts": restarts, "video": video.name,
            "model": liveness_model_path().name,
            "decisions_made": len(made_ids), "delivered_unique": len(made_ids & delivered.keys()),
            "lost": len(made_ids - delivered.keys()), "duplicates": sink.duplicates(),
            "bad_signatures": len(sink.bad_signatures()),
            "rss_kb_warm": rss_warm, "rss_kb_end": rss_end,
            "rss_growth": round((rss_end - rss_warm) / rss_warm, 4) if rss_warm else 0.0,
            "fds_warm": int(_median([s["fds"] for s in warm])), "fds_end": int(_median([s["fds"] for s in tail])),
            "threads_warm": int(_median([s["threads"] for s in warm])),
            "threads_end": int(_median([s["threads"] for s in tail])),
            "daemon_exit": code,
            "reconnect_log_lines": sum("connected to" in s for s in d.log_lines()),
            "host": {"machine": platform.machine(), "python": platform.python_version()},
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "samples": samples,
        }
        result["problems"] = verdict(result)
        result["passed"] = not result["problems"]
        return result
    finally:
        d.close()
        sink.close()
        broker.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--soak-minutes", type=float, default=10.0, help="how long to run (default 10)")
    p.add_argument("--restart-every", type=float, default=None,
                   help="seconds between broker restarts (default 60, or a quarter of a shorter soak)")
    p.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="recording to loop")
    p.add_argument("--out", type=Path, default=None, help="results file (default benchmarks/results/soak_<N>min.json)")
    args = p.parse_args(argv)
    if not args.video.is_file():
        print(f"soak: {args.video} not found: pass --video or put ../shared/data beside the repo", file=sys.stderr)
        return 2
    out = args.out or REPO / "benchmarks" / "results" / f"soak_{args.soak_minutes:g}min.json"
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        r = run_soak(args.soak_minutes, Path(tmp), args.restart_every, args.video)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=1) + "\n")
    summary = {k: r[k] for k in ("decisions_made", "delivered_unique", "lost", "duplicates", "broker_restarts",
                                 "rss_kb_warm", "rss_kb_end", "rss_growth", "fds_warm", "fds_end", "threads_warm",
                                 "threads_end", "passed")}
    print(json.dumps(summary))
    for problem in r["problems"]:
        print(f"soak FAILED: {problem}", file=sys.stderr)
    print(f"soak: results in {out}", file=sys.stderr)
    return 0 if r["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
