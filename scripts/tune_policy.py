#!/usr/bin/env python3
"""Replay recorded frame traces through the decision engine under candidate policies (no models run).

    python scripts/tune_policy.py TRACES_DIR --labels labels.json [--out results.json]

``labels.json`` maps each trace file name to {"label", "attack_type", "person", "set"}. People named in
``--holdout`` (and every set named in ``--report-only``) are never used to choose the policy; the
chosen policy is then reported on them apart. The objective, in order: no attack attempt passes; the
most real attempts pass; the shortest median time to pass.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

from edge_liveness.config import load_settings
from edge_liveness.decide.decision import DecisionEngine, ModelInfo
from edge_liveness.decide.observation import load_trace

GRID = {
    "threshold": [None, 0.2, 0.15, 0.1, 0.06],
    "min_evidence_s": [0.25, 0.5, 1.0, 1.5, 2.0],
    "score_window_s": [0.0, 1.0, 2.0],
    "early_fail": [True, False],
    "blink_timeout": [6.0, 8.0],
}
ACTIVE_KEYS = {"blink_timeout"}


def run(obs, settings, policy: dict, model_threshold: float) -> list[dict]:
    dec = settings.decision.model_copy(update={k: v for k, v in policy.items() if k not in ACTIVE_KEYS})
    act = settings.active.model_copy(update={k: v for k, v in policy.items() if k in ACTIVE_KEYS})
    eng = DecisionEngine(dec, act, settings.detection, ModelInfo("m", "0", model_threshold))
    first = None
    out = []
    for o in obs:
        if first is None and o.n_large_faces >= 1:
            first = o.ts
        for d in eng.update(o):
            if d.kind == "decision":
                out.append({"result": d.result, "reason": d.reason,
                            "ttd": d.started_at + d.duration_s - (first if first is not None else d.started_at)})
                first = None
    if eng.pending() is not None:
        out.append({"result": "incomplete", "reason": None, "ttd": None})
    return out


def score(results: dict[str, list[dict]], labels: dict[str, dict], names: list[str]) -> dict:
    real = [a for n in names if labels[n]["label"] == "live" for a in results[n]]
    fake = [a for n in names if labels[n]["label"] == "spoof" for a in results[n]]
    rd = [a for a in real if a["result"] != "incomplete"]
    passed = [a for a in rd if a["result"] == "pass"]
    ttp = sorted(a["ttd"] for a in passed)
    q = statistics.quantiles(ttp, n=20) if len(ttp) >= 2 else ttp
    return {"real_attempts": len(real), "real_decided": len(rd), "real_passed": len(passed),
            "real_pass_rate": round(len(passed) / len(rd), 4) if rd else None,
            "ttp_p50": round(statistics.median(ttp), 3) if ttp else None,
            "ttp_p95": round(q[-1], 3) if ttp else None,
            "attack_attempts": len(fake), "attack_passed": sum(a["result"] == "pass" for a in fake)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("traces")
    ap.add_argument("--labels", required=True)
    ap.add_argument("--holdout", nargs="*", default=[], help="people kept out of the choice")
    ap.add_argument("--report-only", nargs="*", default=[], help="sets kept out of the choice (e.g. td_selfies)")
    ap.add_argument("--out")
    ap.add_argument("--mode", default=None, help="active.mode to judge (default: the config's)")
    ap.add_argument("--policy", help="judge this one policy (JSON) instead of searching the grid")
    args = ap.parse_args()
    settings = load_settings(**({"active": {"mode": args.mode}} if args.mode else {}))
    labels = json.loads(Path(args.labels).read_text())
    traces = {n: load_trace(Path(args.traces) / n) for n in sorted(labels) if (Path(args.traces) / n).is_file()}
    from edge_liveness.liveness.model import LivenessModel, default_model_path

    model_thr = LivenessModel(default_model_path()).threshold
    tune = [n for n in traces if labels[n]["person"] not in args.holdout and labels[n]["set"] not in args.report_only]
    held = [n for n in traces if n not in tune]
    rows = []
    keys = list(GRID)
    grid = [json.loads(args.policy)] if args.policy else [dict(zip(keys, v)) for v in itertools.product(*(GRID[k] for k in keys))]
    for policy in grid:
        res = {n: run(traces[n], settings, policy, model_thr) for n in tune}
        s = score(res, labels, tune)
        rows.append((policy, s))
    def key(r):
        s = r[1]
        return (-s["attack_passed"], s["real_pass_rate"] or 0, -(s["ttp_p50"] or 99))
    rows.sort(key=key, reverse=True)
    best = rows[0][0]
    print("top policies on the tuning people:", file=sys.stderr)
    for p, s in rows[:8]:
        print(f"  {p} -> {s}", file=sys.stderr)
    report = {"policy": best, "model_threshold": model_thr, "tuning_people": sorted({labels[n]["person"] for n in tune}),
              "held_out_people": sorted({labels[n]["person"] for n in held}), "grid": GRID,
              "top": [{"policy": p, **s} for p, s in rows[:15]], "by_set": {}, "per_file": {}}
    for sname in sorted({labels[n]["set"] for n in traces}):
        for part, names in (("tuning", tune), ("held_out", held)):
            ns = [n for n in names if labels[n]["set"] == sname]
            if ns:
                res = {n: run(traces[n], settings, best, model_thr) for n in ns}
                report["by_set"][f"{sname} ({part})"] = score(res, labels, ns)
                report["per_file"].update({n: res[n] for n in ns})
    for k, v in report["by_set"].items():
        print(f"{k:28s} {v}", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
