#!/usr/bin/env python3
"""Attempts of people the passive model never trained on: the two-view recipe retrained three times,
each time without some of the recorded people, and each model judging its held-out people's recordings
with `edge-liveness evaluate` (the daemon's pipeline and engine, default `blink` mode), each with its
own learned passive fusion (``converters.lopo.fusion_export --hold-out``: fitted without them too).
Each fold also judges its held-out people's full-view replays (scripts/fullview_replays.py: the
screen's picture only, no bezel or hand). An attack shorter than ``LOOP_S`` seconds is played back and
forth to that length, as an attacker would loop a clip, so it reaches a decision instead of ending
incomplete. Real recordings are judged as they are: a loop of a person is not a person (a short clip
without a blink would be refused for want of one).

    python scripts/heldout_attempts.py [--work /tmp/edge-liveness-lopo] [--out benchmarks/results/attempts_heldout.json]

Needs the crops of scripts/lopo_data.sh under WORK/crops128_ctx2.7 (scripts/train_two_view_model.sh
makes them) and TensorFlow (the workstation extra) to rebuild the two models; about 10 minutes on
2 cores. The shipped model trained on all of these people, so its own attempt results
(attempts_td_real.json, attempts_video.json) say less about unseen people than this file does.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))
from check_attempts import evaluate  # noqa: E402  (the CI gate's own `evaluate` call)
TD = "liveness/real_people/td_real/0001e96803--"
# fold -> (people held out of training (ids as in the lopo data), recordings: (path under shared data, label, attack))
FOLDS = {
    "A": (["d549a76a2deee40ae5a0ae285c0a0062", "b8ab8bcc7eca685f4edf3bed30ae8095", "1692c0cc5e15f4d0b4eedd278b76fae6",
           "98916f030157fb4c7ba078bbf6e32c49", "lestari", "apfol"],
          [(TD + "621ea6b1e2c5d221d5131267/live_video.MOV", "live", ""),
           (TD + "621ea6f51185323cad2533b8/live_video.mp4", "live", ""),
           (TD + "6238f1fa0478c01e4272b19c/live_video.MOV", "live", ""),
           (TD + "622e5d6b21965b1ff1380c0e/live_video.mp4", "live", ""),
           ("video/lestari_real.mp4", "live", ""), ("video/lestari_fake_phone_replay.mp4", "spoof", "replay"),
           ("video/apfol_real2.webm", "live", ""), ("video/apfol_fake2.webm", "spoof", "replay")]),
    "B": (["f4d768d2381d90bf11a4651e9f19bd1f", "24b759a13087ac0ffabad77b7e6e29d6", "tranvanluyt", "krzysiek"],
          [(TD + "621ea6c1b99da7739f2be705/live_video.MOV", "live", ""),
           (TD + "62421a6b74c10315675b9eb3/live_video.MOV", "live", ""),
           ("video/tranvanluyt_real.mp4", "live", ""), ("video/tranvanluyt_fake_screen_replay.mp4", "spoof", "replay"),
           ("liveness/selfie_replay_more/krzysiek/real/real.mp4", "live", "")]),
    # zubair alone, as LOPO holds him out: a third training without B's people too would leave two of the
    # four people with full-frame replays in training (measured 2026-12-04: his webcam refused, docs/training.md)
    "C": (["zubair"], [("video/zubair_real.mov", "live", "")]),
}
# fold -> its held-out people's full-view replays (stems of scripts/fullview_screens.json's videos)
FULLVIEW = {"A": ["lestari_fake_phone_replay", "apfol_fake2"],
            "B": ["tranvanluyt_fake_screen_replay"], "C": ["zubair_fake_phone_replay"]}
LOOP_S = 12.0  # past decision.attempt_timeout_s (10 s): every looped attempt ends in a decision


def place(src: Path, folder: Path, name: str, loop: bool, seconds: float = LOOP_S) -> str:
    """Put ``src`` in ``folder`` for `evaluate`: a link, or with ``loop`` when it lasts less than ``seconds`` a
    copy played forward, backward, forward ... (no jump cut a tracker could read as motion) until it does,
    lossless (FFV1: every frame the source's decoded frame); return the file name used."""
    import cv2

    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    if not loop or cap.get(cv2.CAP_PROP_FRAME_COUNT) >= seconds * fps:
        cap.release()
        (folder / name).symlink_to(src)
        return name
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    if not frames:
        raise SystemExit(f"{src}: no frames: re-make it (full-view cuts: scripts/fullview_replays.py)")
    order = list(range(len(frames)))
    bounce = order + order[-2:0:-1] if len(frames) > 1 else order
    name = f"{Path(name).stem}_looped.avi"
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(folder / name), cv2.VideoWriter_fourcc(*"FFV1"), fps, (w, h))
    for k in range(max(len(frames), int(round(seconds * fps)))):
        out.write(frames[bounce[k % len(bounce)]])
    out.release()
    return name


def pooled(evaluations: list[dict]) -> dict:
    """Every fold's attempts together: real and attack attempts decided and passed, time to pass p50 / p95."""
    import numpy as np

    out: dict = {}
    for label, key in (("live", "bona_fide"), ("spoof", "attacks")):
        attempts = [a for ev in evaluations for f in ev["videos"]["per_file"] if f["label"] == label for a in f["attempts"]]
        decided = [a for a in attempts if a["result"] != "incomplete"]
        passed = [a for a in decided if a["result"] == "pass"]
        times = [a["time_to_decision_s"] for a in passed]
        out[key] = {"attempts": len(attempts), "decided": len(decided), "passed": len(passed),
                    "pass_rate": round(len(passed) / len(decided), 4) if decided else None,
                    "time_to_pass_p50_s": round(float(np.percentile(times, 50)), 3) if times else None,
                    "time_to_pass_p95_s": round(float(np.percentile(times, 95)), 3) if times else None}
    return out


def _made_by_this_recipe(model: Path, people: list[str]) -> bool:
    """A model left by an earlier run is reused only if today's recipe made it without these people."""
    from converters.lopo.two_view import RECIPE

    try:
        training = json.loads(model.with_suffix(".json").read_text())["training"]
    except (OSError, ValueError, KeyError):
        return False
    return model.is_file() and training.get("recipe") == RECIPE and training.get("held_out") == sorted(people)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/edge-liveness-lopo")
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "attempts_heldout.json"))
    args = ap.parse_args()
    work, shared = Path(args.work), Path(args.shared)
    weights = shared / "models/imagenet_mobilenet_v2_int8_tflite_coral/tf2_mobilenet_v2_1.0_224_ptq.tflite"
    result: dict = {"note": __doc__.split("\n\n")[0].replace("\n", " ")}
    fullview = Path(tempfile.mkdtemp(prefix="fullview-"))  # faces: a temporary folder, removed at the end
    try:
        return _run(args, work, shared, weights, result, fullview)
    finally:
        shutil.rmtree(fullview, ignore_errors=True)


def _run(args, work: Path, shared: Path, weights: Path, result: dict, fullview: Path) -> int:
    print("making the full-view replays ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, str(REPO / "scripts" / "fullview_replays.py"), "--out", str(fullview),
                    "--shared", str(shared)], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    for fold, (people, recordings) in FOLDS.items():
        model = work / f"heldout_{fold}" / "liveness_two_view_int8.tflite"
        if not _made_by_this_recipe(model, people):
            print(f"[{fold}] training the two-view model without {len(people)} people ...", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, "-m", "converters.lopo.two_view", str(work / "crops128_ctx2.7"), "-o", str(model),
                            "--weights", str(weights), "--hold-out", ",".join(people)], check=True, cwd=REPO)
        # the learned fusion (decision.fusion = "learned") fitted to this model, without these people either
        print(f"[{fold}] fitting the passive fusion without them ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "converters.lopo.fusion_export", str(work / "crops128_ctx2.7"), "--model", str(model),
                        "--out", str(model.parent / "liveness_fusion.json"), "--weights", str(weights),
                        "--hold-out", ",".join(people)], check=True, cwd=REPO)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / f"heldout_{fold}"
            folder.mkdir()
            rows = []
            todo = [(shared / rel, rel.replace("/", "__"), label, attack) for rel, label, attack in recordings]
            todo += [(fullview / f"{stem}_fullview.mp4", f"{stem}_fullview.mp4", "spoof", "replay") for stem in FULLVIEW[fold]]
            for src, name, label, attack in todo:
                rows.append({"file": place(src, folder, name, loop=label == "spoof"), "label": label, "attack_type": attack, "person": ""})
            with open(folder / "index.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["file", "label", "attack_type", "person"])
                w.writeheader()
                w.writerows(rows)
            print(f"[{fold}] evaluating {len(rows)} recordings ...", file=sys.stderr, flush=True)
            result_fold = evaluate(folder, model)
        manifest = json.loads(model.with_suffix(".json").read_text())
        result[fold] = {"held_out_of_training": people, "threshold": manifest["threshold"],
                        "model_sha256": manifest["sha256"], "evaluate": result_fold}
    result["all_folds"] = pooled([result[fold]["evaluate"] for fold in FOLDS])
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
