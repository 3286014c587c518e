#!/usr/bin/env python3
"""Record one `replay --trace`-style frame trace per recording, for tuning the decision policy offline.

    python scripts/record_traces.py --out DIR FILE_OR_DIR ...

Every frame with a face is scored by the passive model and read by the eye model (as the daemon does
while a face could start an attempt), so any policy can be replayed on the trace with
``DecisionEngine`` (scripts/tune_policy.py) without running the models again. Numbers only: no image
is written.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from edge_liveness.recordings.attempts import replay_attempts
from edge_liveness.recordings.blink_annotations import VIDEO_EXTS
from edge_liveness.config import load_settings
from edge_liveness.pipeline import build_pipeline


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--root", default=None, help="name traces by the path relative to this folder")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    videos = []
    for i in map(Path, args.inputs):
        videos += [i] if i.is_file() else sorted(p for p in i.rglob("*") if p.suffix.lower() in VIDEO_EXTS)
    pipeline = build_pipeline(load_settings())
    pipeline.always_classify = pipeline.always_eyes = True
    root = Path(args.root) if args.root else None
    for n, v in enumerate(videos, 1):
        name = str(v.relative_to(root)) if root and v.is_relative_to(root) else v.name
        dst = out / (name.replace("/", "__") + ".jsonl.gz")
        if dst.is_file():
            continue
        print(f"[{n}/{len(videos)}] {name}", file=sys.stderr, flush=True)
        lines: list[str] = []
        replay_attempts(pipeline, v, on_frame=lambda r: lines.append(json.dumps(r.trace("-"), separators=(",", ":"))))
        tmp = dst.with_suffix(".tmp")
        with gzip.open(tmp, "wt") as f:
            f.write("\n".join(lines) + "\n")
        tmp.rename(dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
