"""Cut the recorded frame trace into challenge cases (see README.md). Run from this folder:

    ../../../.venv/bin/python make_cases.py

Each case is a gzip JSON-lines file: a header line {"type": "case", ...} naming the challenge and the
expected outcome, then frame lines retimed so the cut pieces follow each other at the source fps.
"""

import gzip
import json
from pathlib import Path

HERE = Path(__file__).parent
SOURCE = "tranvanluyt_real.frames.jsonl.gz"
FPS = 30.0
# threshold: the shipped model's (models/liveness_mnv2_int8.json), whose scores the trace carries
COMMON = {"threshold": 0.2969, "active": {"challenge_step_timeout_s": 5.0},
          "decision": {"min_frames": 8, "attempt_timeout_s": 10.0}}

CASES = {
    # answers turn_right (10.8 s) then nod (14.1 s)
    "challenge_pass": {"segments": [[8.0, 15.0]], "actions": ["turn_right", "nod"],
                       "expect": {"result": "pass", "reason": "live"}},
    # the same movements against a challenge asking for them the other way round
    "challenge_wrong_order": {"segments": [[8.0, 15.0]], "actions": ["nod", "turn_right"],
                              "expect": {"result": "fail", "reason": "challenge_failed", "why": "wrong_action"}},
    # the turn, then 4.5 s of the recording's still opening spliced in, then the nod: > 5 s between steps
    "challenge_too_late": {"segments": [[8.0, 11.5], [0.5, 5.0], [13.0, 15.0]], "actions": ["turn_right", "nod"],
                           "expect": {"result": "fail", "reason": "challenge_failed", "why": "missing_action"}},
    # the first 5.5 s: a face looking at the camera, no head motion
    "challenge_never_moves": {"segments": [[0.0, 5.5]], "actions": ["turn_left"],
                              "expect": {"result": "fail", "reason": "challenge_failed", "why": "missing_action"}},
}


def main() -> None:
    frames = [json.loads(line) for line in gzip.open(HERE / SOURCE, "rt")]
    for name, case in CASES.items():
        out, t = [], 0.0
        for a, b in case["segments"]:
            for f in frames:
                if a <= f["t"] < b:
                    out.append({**f, "t": round(t, 4)})
                    t += 1.0 / FPS
        head = {"type": "case", "source": SOURCE, **COMMON, **case}
        with gzip.open(HERE / f"{name}.jsonl.gz", "wt") as g:
            g.write(json.dumps(head) + "\n")
            for f in out:
                g.write(json.dumps(f) + "\n")
        print(name, len(out), "frames")


if __name__ == "__main__":
    main()
