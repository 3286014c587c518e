#!/usr/bin/env python3
"""The seed speed-up over repeated `edge-liveness bench` runs: one run's ratio is one draw of a noisy machine.

    python benchmarks/speedup_runs.py BENCH_JSON ... [--out benchmarks/results/bench_speedup_runs.json]

On this shared 2-vCPU VM the seed loop's own speed moves from run to run (NUAA 0001: 11.4 to 16.2 fps on
one afternoon) as much as the pipeline's, so the ratio ``edge-liveness bench`` prints moves with it. This
collects the runs given (their JSON files, any directories) per source: each run's ratio, the two
speeds it divides, the attempt-frame headline and the reference network's time (how fast the machine
was in that run), then the median, least and most ratio per source and whether the median clears 20x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = 20.0


class RunError(ValueError):
    """A bench file that cannot be read (message is one line)."""


def one_run(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path}: not a readable bench JSON ({type(e).__name__}): re-run `edge-liveness bench` or leave it out") from None
    sp = d.get("speedup") or {}
    if not sp.get("ratio"):
        return None
    ref = ((d.get("pi4_projection") or {}).get("ratio_measured_in_run") or {}).get("x86_ms")
    return {"file": path.name, "created": d["created"], "source": Path(d["source"]["path"]).name,
            "ratio": sp["ratio"], "pipeline_fps": sp["pipeline_fps_same_frames"], "seed_fps": sp["baseline_fps"],
            "frames": sp["frames"], "fps_during_attempts": d["attempts"]["headline"]["fps_during_attempts"],
            "reference_network_ms": ref}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", help="bench JSON files, or directories holding them")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_speedup_runs.json"))
    args = ap.parse_args()
    files = [f for p in map(Path, args.paths) for f in (sorted(p.rglob("bench_*_t*.json")) if p.is_dir() else [p])]
    try:
        runs = [r for r in (one_run(f) for f in files if f.is_file()) if r is not None]
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not runs:
        print("error: no bench JSON with a seed speed-up among the paths: run `edge-liveness bench` without --no-baseline",
              file=sys.stderr)
        return 2
    by_source: dict[str, list[dict]] = {}
    for r in sorted(runs, key=lambda r: r["created"]):
        by_source.setdefault(r["source"], []).append(r)
    summary = {}
    for src, rs in by_source.items():
        ratios = [r["ratio"] for r in rs]
        med = statistics.median(ratios)
        summary[src] = {"runs": len(rs), "ratio_median": med, "ratio_min": min(ratios), "ratio_max": max(ratios),
                        "seed_fps_range": [min(r["seed_fps"] for r in rs), max(r["seed_fps"] for r in rs)],
                        "pipeline_fps_range": [min(r["pipeline_fps"] for r in rs), max(r["pipeline_fps"] for r in rs)],
                        f"median_meets_{TARGET:g}x": med >= TARGET}
        print(f"{src}: {len(rs)} runs, ratio median {med:g}x ({min(ratios):g}-{max(ratios):g}); seed "
              f"{summary[src]['seed_fps_range'][0]:g}-{summary[src]['seed_fps_range'][1]:g} fps, pipeline "
              f"{summary[src]['pipeline_fps_range'][0]:g}-{summary[src]['pipeline_fps_range'][1]:g} fps")
    dest = Path(args.out).resolve()
    shown = dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest
    out = {"target": TARGET, "command": f"python benchmarks/speedup_runs.py {' '.join(args.paths)} --out {shown}",
           "summary": summary, "runs": by_source}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
