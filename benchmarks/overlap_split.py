#!/usr/bin/env python3
"""What the overlapped loop's worker should take on a scored frame: the two-view model's tight view
(``schedule.split_views = true``, a second interpreter of the model) or the texture pair's first model.

    python benchmarks/overlap_split.py [SOURCE ...] [--passes N] [--out benchmarks/results/overlap_split.json]

Each source's frames are decoded once; then whole passes of the configured loop (overlapped, 1 thread a
model), one with each setting, in alternating order, on the same models: a pass runs one pipeline over
consecutive frames, as the daemon does. (``edge-liveness bench`` times both too, but frame by frame in
lockstep with four or six other pipelines between a pipeline's frames; that measures them alike,
benchmarks/README.md "Overlap".) Per setting: the median pass's fps over all frames and over the attempt
frames, the best of the passes frame by frame, and whether every score is the same bits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from edge_liveness.bench.stages import bench_settings, decode_frames  # noqa: E402
from edge_liveness.bench.stats import _loadavg, _progress, _r, machine_info  # noqa: E402

DATA = REPO.parent / "shared" / "data"
SOURCES = (("liveness/nuaa/live/0001", 40), ("video/apfol_real2.webm", 214), ("video/tranvanluyt_real.mp4", 300))
SETTINGS = {"tight_view": True, "pair_first": False}  # name -> schedule.split_views


def run_pass(settings, models, frames: list) -> tuple[np.ndarray, list]:
    """Wall ms of each frame's push (overlapped: a push finishes the frame before) and the results."""
    from edge_liveness.overlap import FrameRunner
    from edge_liveness.pipeline import Pipeline

    runner, ms, results = FrameRunner(Pipeline(settings, models)), [], []
    pc = time.perf_counter
    for f in frames:
        t = pc()
        results += runner.push(f)
        ms.append((pc() - t) * 1e3)
    t = pc()
    results += runner.flush()
    ms[-1] += (pc() - t) * 1e3
    runner.close()
    return np.array(ms), results


def compare(path: Path, limit: int, passes: int) -> dict:
    from edge_liveness.pipeline import load_models

    args = SimpleNamespace(config=None)
    st = {k: bench_settings(args, 1, schedule={"overlap": True, "split_views": v}) for k, v in SETTINGS.items()}
    frames, _ = decode_frames(path, limit)
    models = load_models(st["tight_view"])
    for k in st:  # warm both paths
        run_pass(st[k], models, frames[:10])
    walls: dict[str, list[np.ndarray]] = {k: [] for k in st}
    last: dict[str, list] = {}
    for p in range(passes):
        for k in (list(st) if p % 2 == 0 else list(st)[::-1]):
            ms, last[k] = run_pass(st[k], models, frames)
            walls[k].append(ms)
        if (p + 1) % max(1, passes // 4) == 0:
            _progress(f"  {path.name}: pass {p + 1}/{passes}")
    ahead = st["tight_view"].schedule.find_ahead  # the push that judges frame i is push i + find_ahead
    att = [min(r.frame.index + ahead, len(frames) - 1) for r in last["tight_view"] if r.attempt]
    out = {"source": str(path.relative_to(DATA)) if path.is_relative_to(DATA) else str(path), "frames": len(frames),
           "attempt_frames": len(att), "passes": passes,
           "same_scores": [r.scores for r in last["tight_view"]] == [r.scores for r in last["pair_first"]]}
    for k, ws in walls.items():
        a = np.array(ws)
        aa = a[:, att] if att else a[:, :0]
        out[k] = {"fps_median_pass": _r(a.shape[1] / np.median(a.sum(1)) * 1e3, 1),
                  "fps_during_attempts_median_pass": _r(aa.shape[1] / np.median(aa.sum(1)) * 1e3, 1) if att else None,
                  "fps_during_attempts_best_per_frame": _r(aa.shape[1] / aa.min(0).sum() * 1e3, 1) if att else None}
    t, p_ = out["tight_view"], out["pair_first"]
    if att:
        out["attempt_speedup_median_pass"] = _r(t["fps_during_attempts_median_pass"] / p_["fps_during_attempts_median_pass"], 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sources", nargs="*", help="videos or photo folders (default: NUAA live 0001, apfol_real2, tranvanluyt_real)")
    ap.add_argument("--passes", type=int, default=20, help="passes of each setting (default 20)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "overlap_split.json"))
    args = ap.parse_args()
    if args.passes < 1:
        print("error: --passes must be at least 1", file=sys.stderr)
        return 2
    todo = [(Path(s), 0) for s in args.sources] or [(DATA / s, n) for s, n in SOURCES]
    missing = [str(p) for p, _ in todo if not p.exists()]
    if missing:
        print(f"error: {', '.join(missing)} not found: give sources that exist (../shared/data holds the defaults)", file=sys.stderr)
        return 2
    load0, rows = _loadavg(), []
    for path, n in todo:
        _progress(f"{path.name}: {args.passes} passes of each setting")
        rows.append(compare(path, n, args.passes))
        r = rows[-1]
        _progress(f"  attempt frames {r['tight_view']['fps_during_attempts_median_pass']} fps (tight view on the worker) vs "
                  f"{r['pair_first']['fps_during_attempts_median_pass']} (pair's first model); same scores: {r['same_scores']}")
    res = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(), "loadavg_start": load0,
           "loadavg_end": _loadavg(), "threads_per_model": 1,
           "command": "python benchmarks/overlap_split.py" + (f" --passes {args.passes}" if args.passes != 20 else ""),
           "sources": rows}
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({"out": args.out, "attempt_speedup_median_pass": {r["source"]: r.get("attempt_speedup_median_pass") for r in rows}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
