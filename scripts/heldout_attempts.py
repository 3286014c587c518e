#!/usr/bin/env python3
"""Attempts of people the passive model never trained on: the two-view recipe retrained twice, each
time without half of the recorded people, and each model judging its held-out half's recordings
with `edge-liveness evaluate` (the daemon's pipeline and engine, default `blink` mode), each with its
own learned passive fusion (``converters.lopo.fusion_export --hold-out``: fitted without them too).

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
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))
from check_attempts import evaluate  # noqa: E402  (the CI gate's own `evaluate` call)
TD = "liveness/real_people/td_real/0001e96803--"
# half -> (people held out of training (ids as in the lopo data), recordings: (path under shared data, label, attack))
HALVES = {
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
}


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
    for half, (people, recordings) in HALVES.items():
        model = work / f"heldout_{half}" / "liveness_two_view_int8.tflite"
        if not _made_by_this_recipe(model, people):
            print(f"[{half}] training the two-view model without {len(people)} people ...", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, "-m", "converters.lopo.two_view", str(work / "crops128_ctx2.7"), "-o", str(model),
                            "--weights", str(weights), "--hold-out", ",".join(people)], check=True, cwd=REPO)
        # the learned fusion (decision.fusion = "learned") fitted to this model, without these people either
        print(f"[{half}] fitting the passive fusion without them ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "converters.lopo.fusion_export", str(work / "crops128_ctx2.7"), "--model", str(model),
                        "--out", str(model.parent / "liveness_fusion.json"), "--weights", str(weights),
                        "--hold-out", ",".join(people)], check=True, cwd=REPO)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / f"heldout_{half}"
            folder.mkdir()
            rows = []
            for rel, label, attack in recordings:
                src = shared / rel
                name = rel.replace("/", "__")
                (folder / name).symlink_to(src)
                rows.append({"file": name, "label": label, "attack_type": attack, "person": ""})
            with open(folder / "index.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["file", "label", "attack_type", "person"])
                w.writeheader()
                w.writerows(rows)
            print(f"[{half}] evaluating {len(rows)} recordings ...", file=sys.stderr, flush=True)
            result_half = evaluate(folder, model)
        manifest = json.loads(model.with_suffix(".json").read_text())
        result[half] = {"held_out_of_training": people, "threshold": manifest["threshold"],
                        "model_sha256": manifest["sha256"], "evaluate": result_half}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
