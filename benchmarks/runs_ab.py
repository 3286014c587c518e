#!/usr/bin/env python3
"""Two sets of `edge-liveness bench` runs side by side: the pipeline's own fps (the configured loop alone),
every pass and the median, its CPU per frame, and the seed ratio of each run.

    python benchmarks/runs_ab.py A_DIR B_DIR [--names a,b] [--source TEXT] [--out FILE]

For an A/B of two trees run alternately on one machine (each run's JSON under its directory): one run
is one draw of a noisy shared VM, so the medians over runs, and over all passes, are what to compare.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def runs(d: Path, source: str = "") -> list[dict]:
    """Every bench JSON under ``d`` whose file name contains ``source`` (the source's slug, e.g. nuaa-live-0001)."""
    out = []
    for f in sorted(d.rglob(f"bench_*{source}*.json" if source else "bench_*.json")):
        try:
            j = json.loads(f.read_text())
            p = j["pipeline"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
            print(f"error: {f}: not a readable `edge-liveness bench` JSON ({type(e).__name__}): re-run the bench or "
                  "leave it out", file=sys.stderr)
            raise SystemExit(2) from None
        out.append({"run": str(f.parent.relative_to(d)), "created": j["created"], "pipeline_fps": p["fps"],
                    "fps_all_passes": p["fps_all_passes"], "cpu_ms_per_frame": p["cpu_ms_per_frame"],
                    "seed_fps": (j.get("speedup") or {}).get("baseline_fps"), "ratio": (j.get("speedup") or {}).get("ratio")})
    return out


def side(rs: list[dict]) -> dict:
    ratios = [r["ratio"] for r in rs if r["ratio"]]
    return {"runs": len(rs), "median_pipeline_fps": statistics.median(r["pipeline_fps"] for r in rs),
            "median_of_all_passes_fps": statistics.median(x for r in rs for x in r["fps_all_passes"]),
            "median_cpu_ms_per_frame": statistics.median(r["cpu_ms_per_frame"] for r in rs),
            "median_ratio": statistics.median(ratios) if ratios else None, "each": rs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--names", default="a,b")
    ap.add_argument("--source", default="", help="only the runs of this source: text in the JSON's file name (e.g. nuaa-live-0001)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    names = args.names.split(",")
    if len(names) != 2 or not all(names):
        print(f"error: --names {args.names!r}: give two names, e.g. --names new,old", file=sys.stderr)
        return 2
    na, nb = names
    found = {d: runs(d, args.source) for d in (args.a, args.b)}
    empty = [str(d) for d, rs in found.items() if not rs]
    if empty:
        what = f"bench_*{args.source}*.json" if args.source else "bench_*.json"
        print(f"error: no {what} under {', '.join(empty)}: give the directories `edge-liveness bench --out` wrote"
              + (" (or a --source text found in their file names)" if args.source else ""), file=sys.stderr)
        return 2
    res = {na: side(found[args.a]), nb: side(found[args.b])}
    res["fps_ratio_of_medians"] = round(res[na]["median_pipeline_fps"] / res[nb]["median_pipeline_fps"], 3)
    text = json.dumps(res, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(json.dumps({k: (v if not isinstance(v, dict) else {x: y for x, y in v.items() if x != "each"}) for k, v in res.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
