"""`evaluate` on recordings: attempts as a door sees them (ISO/IEC 30107-3 at the attempt level).

Each video is replayed through the daemon's own pipeline and decision engine (``attempts.replay_attempts``,
what ``replay`` runs) and every attempt it yields is scored:
- bona fide: attempts, passes, pass rate (1 - BPCER over decided attempts), reasons of the fails,
  time from the first face to the pass (p50, p95);
- attacks: per attack type the attempts and the share that passed (APCER), reasons;
- attempts still collecting when the recording ended (no decision) are counted apart, never as passes.
A file that cannot be read, a file that is not media and a file without a label are each reported.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.data.labels import FileLabel, label_for
from edge_liveness.cli.progress import progress_line

VIDEO_EXT = {".mp4", ".mov", ".avi", ".webm", ".mkv", ".m4v"}


@dataclass
class VideoResult:
    file: str
    label: FileLabel
    attempts: list[dict[str, Any]] = field(default_factory=list)
    frames: int = 0
    ended_early: str | None = None


@dataclass
class VideoEval:
    results: list[VideoResult] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "path: why"
    unlabelled: list[str] = field(default_factory=list)


def evaluate_videos(pipeline, videos: list[Path], root: Path, progress: bool = True) -> VideoEval:
    from edge_liveness.recordings.attempts import replay_attempts

    ev = VideoEval()
    for n, v in enumerate(videos, 1):
        rel = str(v.relative_to(root)) if v.is_relative_to(root) else str(v)
        lab = label_for(v, root)
        if lab is None:
            ev.unlabelled.append(rel)
            continue
        if progress:
            progress_line(f"{n}/{len(videos)} videos: {rel}")
        rec = replay_attempts(pipeline, v)
        if rec.error is not None:
            ev.unreadable.append(f"{rel}: {rec.error}")
            continue
        ev.results.append(VideoResult(rel, lab, [a.as_dict() for a in rec.attempts], rec.frames, rec.ended_early))
    if progress and videos and sys.stderr.isatty():
        print(file=sys.stderr)
    return ev


def _pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 3) if xs else None


def _group(rows: list[tuple[VideoResult, dict]]) -> dict[str, Any]:
    decided = [a for _, a in rows if a["result"] != "incomplete"]
    passed = [a for a in decided if a["result"] == "pass"]
    ttp = [a["time_to_decision_s"] for a in passed]
    return {"recordings": len({r.file for r, _ in rows}), "attempts": len(rows), "decided": len(decided),
            "passed": len(passed), "pass_rate": round(len(passed) / len(decided), 4) if decided else None,
            "incomplete": len(rows) - len(decided),
            "reasons": dict(Counter(a["reason"] for a in decided if a["result"] == "fail")),
            "time_to_pass_p50_s": _pct(ttp, 50), "time_to_pass_p95_s": _pct(ttp, 95)}


def summarise_videos(ev: VideoEval, settings) -> dict[str, Any]:
    live = [(r, a) for r in ev.results if r.label.label == "live" for a in r.attempts]
    spoof = [(r, a) for r in ev.results if r.label.label == "spoof" for a in r.attempts]
    out: dict[str, Any] = {"active_mode": settings.active.mode, "recordings": len(ev.results)}
    lg = _group(live)
    out["bona_fide"] = dict(lg, bpcer=None if lg["pass_rate"] is None else round(1 - lg["pass_rate"], 4))
    sg = _group(spoof)
    out["attacks"] = dict(sg, apcer=sg["pass_rate"])
    per_attack = {}
    for t in sorted({r.label.attack_type for r, _ in spoof}):
        g = _group([(r, a) for r, a in spoof if r.label.attack_type == t])
        per_attack[t] = dict(g, apcer=g["pass_rate"])
    out["apcer_per_attack"] = {t: g["apcer"] for t, g in per_attack.items()}
    out["attacks_by_type"] = per_attack
    out["recordings_without_attempt"] = [r.file for r in ev.results if not r.attempts]
    out["ended_early"] = [r.ended_early for r in ev.results if r.ended_early]
    out["unreadable"] = ev.unreadable
    out["unlabelled"] = ev.unlabelled
    out["per_file"] = [{"file": r.file, "label": r.label.label, "attack_type": r.label.attack_type,
                        "person": r.label.person, "frames": r.frames, "attempts": r.attempts} for r in ev.results]
    return out


def per_file_line(f: dict[str, Any]) -> str:
    outcome = ", ".join(f"{a['result']}" + (f" ({a['reason']})" if a["reason"] and a["result"] != "pass" else "")
                        + (f" {a['time_to_decision_s']:.2f}s" if a["time_to_decision_s"] is not None else "")
                        for a in f["attempts"]) or "no attempt"
    kind = f["label"] + (f"/{f['attack_type']}" if f["attack_type"] else "")
    return f"{f['file']}  [{kind}]  {outcome}"


def print_summary(s: dict[str, Any]) -> None:
    b, a = s["bona_fide"], s["attacks"]

    def fmt(v):
        return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    print(f"active mode: {s['active_mode']}; recordings: {s['recordings']}")
    print(f"bona fide: {b['attempts']} attempts ({b['incomplete']} incomplete), pass rate {fmt(b['pass_rate'])}, "
          f"BPCER {fmt(b['bpcer'])}, time to pass p50 {fmt(b['time_to_pass_p50_s'])} s, p95 {fmt(b['time_to_pass_p95_s'])} s, "
          f"fails {b['reasons']}")
    print(f"attacks:   {a['attempts']} attempts ({a['incomplete']} incomplete), APCER {fmt(a['apcer'])}, fails {a['reasons']}")
    for t, v in s["apcer_per_attack"].items():
        print(f"  APCER {t}: {fmt(v)}")
    for k in ("recordings_without_attempt", "ended_early", "unreadable", "unlabelled"):
        for f in s[k]:
            print(f"{k.replace('_', ' ')}: {f}", file=sys.stderr)
