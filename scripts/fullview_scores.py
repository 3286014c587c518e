#!/usr/bin/env python3
"""What the shipped passive model says on the full-view replays (scripts/fullview_replays.py).

    python scripts/fullview_scores.py [--dir ~/.cache/edge-liveness/fullview] [--originals]
                                      [--out benchmarks/results/fullview_replays_baseline.json]

Each full-view video in DIR (its manifest.json) goes through the daemon's pipeline and decision
engine in `blink` mode (the default active mode), scoring the passive model on every frame with a
face, as `edge-liveness replay VIDEO --trace --active blink` does. Per video: the fraction of scored
frames with P(live) >= the model's threshold, the median P(live), and every attempt with its result
(an attack passes when any attempt passes). ``--originals`` also scores the source recordings (bezel,
hand and room in view) for comparison. Numbers only: no frame is written. The shipped model trained
on these people's replays with their surroundings, so this is a measure of what full view does to
it, not of unseen people.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
from check_attempts import LIVE_FACE_IN_ATTACK  # noqa: E402
from fullview_replays import DEFAULT_OUT, SHARED, sha256  # noqa: E402

RESULT = REPO / "benchmarks" / "results" / "fullview_replays_baseline.json"


def score_video(settings, models, path: Path) -> dict[str, Any]:
    """One recording through a fresh pipeline on ``models`` (as one `replay` run: no head-motion or
    schedule state carried over from the previous recording), scoring every face the way
    `replay --trace` does: frame statistics and attempts."""
    from edge_liveness import pipeline as stages
    from edge_liveness.recordings.attempts import replay_attempts

    pipeline = stages.build_pipeline(settings, models)
    primary = getattr(stages, "PRIMARY_PASSIVE", "classify")

    scores: list[float] = []
    faces = 0
    evidence: list[dict] = []

    def on_frame(r) -> None:
        nonlocal faces
        if r.obs.n_faces > 0:
            faces += 1
        # the trace line's p_live: every face's score, also on frames the decision's schedule skipped
        p = getattr(r, "scores", {}).get(primary, r.obs.p_live)
        if p is not None:
            scores.append(float(p))
        for out in r.outputs:
            if out.kind == "decision":
                evidence.append({k: out.evidence.get(k) for k in ("passive_median", "passive_recent_median", "passive_min",
                                                                  "blinks", "sign_of_life", "frames")})

    pipeline.always_classify = True
    t = time.perf_counter()
    rec = replay_attempts(pipeline, path, on_frame)
    thr = pipeline.engine.threshold
    close = getattr(pipeline, "close", None)
    if close is not None:
        close()
    attempts = []
    for k, a in enumerate(rec.attempts):
        d = a.as_dict()
        if a.result != "incomplete" and k < len(evidence):
            d["evidence"] = evidence[k]
        attempts.append(d)
    return {
        "frames": rec.frames, "frames_with_face": faces, "frames_scored": len(scores),
        "frac_live": round(sum(s >= thr for s in scores) / len(scores), 4) if scores else None,
        "median_p_live": round(statistics.median(scores), 4) if scores else None,
        "mean_p_live": round(statistics.fmean(scores), 4) if scores else None,
        "attempts": attempts,
        "results": [a.result for a in rec.attempts],
        "any_pass": any(a.result == "pass" for a in rec.attempts),
        "error": rec.error, "seconds": round(time.perf_counter() - t, 1),
    }


def _code_state() -> dict[str, Any]:
    """The commit and the device files changed on top of it: attempt outcomes depend on the
    decision code as much as on the model."""
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], capture_output=True, text=True, cwd=REPO, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return ""
    changed = [line[3:] for line in git("status", "--porcelain", "--", "edge_liveness", "models").splitlines() if len(line) > 3]
    return {"git_head": git("rev-parse", "HEAD").strip() or None, "uncommitted_device_files": sorted(changed)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=str(DEFAULT_OUT), help=f"the full-view videos and their manifest.json (default {DEFAULT_OUT})")
    ap.add_argument("--shared", default=str(SHARED), help="the shared data folder, for --originals")
    ap.add_argument("--originals", action="store_true", help="also score the source recordings, as filmed")
    ap.add_argument("--out", default=str(RESULT))
    args = ap.parse_args(argv)
    folder = Path(args.dir)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        print(f"error: {manifest_path} is absent: make the videos first (python scripts/fullview_replays.py --out {folder})",
              file=sys.stderr)
        return 2
    manifest = json.loads(manifest_path.read_text())

    from edge_liveness.config import load_settings
    from edge_liveness.pipeline import load_models

    settings = load_settings(None, active={"mode": "blink"})
    models = load_models(settings)
    model = models.liveness
    # the engine's threshold: the config's when set, else the model manifest's
    threshold = settings.decision.threshold if settings.decision.threshold is not None else model.threshold
    result: dict[str, Any] = {
        "note": " ".join(__doc__.split("\n\n", 2)[2].split()),
        "command": "python scripts/fullview_replays.py && python scripts/fullview_scores.py" + (" --originals" if args.originals else ""),
        "same_as": ("edge-liveness replay <video> --trace --active blink (frames: p_live of the trace lines; attempts: the "
                    "decision lines). The trace prints P(live) to 4 decimals, so an int8 output level just under the "
                    "threshold prints as 0.1699, above it; frac_live here compares the unrounded score, as the engine does"),
        "model": {"name": model.name, "sha256": model.sha256, "threshold": threshold},
        "active_mode": settings.active.mode, "code": _code_state(), "videos": {},
    }
    for name, entry in sorted(manifest["videos"].items()):
        video = folder / name
        if entry.get("video_sha256") and sha256(video) != entry["video_sha256"]:
            print(f"error: {video} differs from its manifest: make it again (python scripts/fullview_replays.py --out {folder})",
                  file=sys.stderr)
            return 2
        print(f"{name} ...", file=sys.stderr, flush=True)
        row: dict[str, Any] = {"person": entry["person"], "source": entry["source"], "size": entry["size"],
                               "video_sha256": entry.get("video_sha256"), "full_view": score_video(settings, models, video)}
        if args.originals:
            src = Path(args.shared) / "video" / entry["source"]
            if src.is_file():
                print(f"{entry['source']} (as filmed) ...", file=sys.stderr, flush=True)
                row["as_filmed"] = score_video(settings, models, src)
                if entry["source"] in LIVE_FACE_IN_ATTACK:
                    row["as_filmed_note"] = LIVE_FACE_IN_ATTACK[entry["source"]]
        fv = row["full_view"]
        print(f"  {fv['frames_scored']}/{fv['frames']} frames scored, {fv['frac_live']} live, median {fv['median_p_live']}, "
              f"attempts {fv['results']}", file=sys.stderr, flush=True)
        result["videos"][name] = row
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
