"""Pack the leave-one-person-out data and its folds for a training run on a GPU machine (issue 26, item 4).

    python -m converters.finetune.pack /tmp/edge-liveness-lopo/crops128_ctx2.7 --out .gpu/finetune

Writes, in a folder small enough to travel with the working tree (the device tool carries 64 MiB):
- ``tight.npz``: every row's tight crop as JPEG (quality ``--quality``, 4:4:4 chroma: one codec for every
  row, so no class or source differs in compression), in the row order of converters/lopo/data.load,
  with labels, person, kind and recording;
- ``jobs.json``: one training job per (judged person, repetition) of the LOPO protocol (run.py): the people
  each job leaves out (the judged person and two real-only groups). converters/finetune/precomputed.py
  finds a job again by that set, so the judging, thresholds and report are run.py's own;
- ``jobs_k4.json`` (``--folds``): the same people in four person-disjoint folds, for a run on a CPU;
- ``mobilenet_v2_imagenet.npz``: the backbone's ImageNet weights (mobilenet_torch.export_weights).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from converters.lopo.fusion_export import WEIGHTS  # the one Coral ImageNet file every LOPO tool reads
from converters.finetune.mobilenet_torch import export_weights


def jobs_of(data) -> list[dict]:
    """Every (judged person, repetition) of run.run_recipe for a recipe that judges every kind of row."""
    from converters.lopo.data import N_GROUPS, real_only_groups
    from converters.lopo.recipes import SYNTH_KINDS

    groups = real_only_groups(data, 0)
    judged = ~np.isin(data.kind, SYNTH_KINDS)
    attackers = sorted(set(data.person[(data.labels == 0) & judged].tolist()))
    jobs = []
    for p in attackers:
        for r in range(N_GROUPS):
            left_out = sorted({p} | set(groups[r]) | set(groups[(r + 1) % N_GROUPS]))
            jobs.append({"judged": p, "repetition": r, "left_out": left_out})
    return jobs


def kfold_jobs(data, k: int, seed: int = 0) -> list[dict]:
    """``k`` jobs that leave out every person once: the people with attacks and the real-only people are dealt
    apart into ``k`` groups (seeded), so each job judges some of each. What a CPU can afford where the
    88 jobs of the LOPO protocol cannot run (a fine-tuned fold is minutes on 2 cores, not seconds)."""
    from converters.lopo.data import real_only_groups
    from converters.lopo.recipes import SYNTH_KINDS

    judged = ~np.isin(data.kind, SYNTH_KINDS)
    spoof = (data.labels == 0) & judged
    rng = np.random.default_rng(seed)
    dealt: list[str] = []
    for attack in ("replay", "print"):  # each kind dealt on its own, so every fold judges and trains on both
        people = sorted(set(data.person[spoof & (data.attack == attack)].tolist()) - set(dealt))
        rng.shuffle(people)
        dealt += people
    real_only = sorted(p for g in real_only_groups(data, seed) for p in g)
    rng.shuffle(real_only)
    return [{"fold": f, "left_out": sorted(dealt[f::k] + real_only[f::k])} for f in range(k)]


def pack(root: Path, out: Path, quality: int, weights: str, folds: int = 4) -> dict:
    import cv2

    from converters.lopo.data import load

    data = load(root, weights, 128, root / ".features")
    out.mkdir(parents=True, exist_ok=True)
    blobs, offsets = [], [0]
    for i, f in enumerate(data.files):
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"pack: {f}: unreadable crop: re-run scripts/lopo_data.sh")
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality,
                                             cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
        blobs.append(buf.ravel())
        offsets.append(offsets[-1] + len(buf))
        if i % 500 == 0:
            print(f"\rpack: {i}/{len(data.files)} crops", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    np.savez(out / "tight.npz", jpeg=np.concatenate(blobs), offsets=np.array(offsets, np.int64),
             labels=data.labels.astype(np.int8), person=data.person.astype(str), kind=data.kind.astype(str),
             recording=data.recording.astype(str), photo=data.photo)
    jobs = jobs_of(data)
    (out / "jobs.json").write_text(json.dumps({"rows": len(data.files), "quality": quality, "jobs": jobs}, indent=1))
    (out / f"jobs_k{folds}.json").write_text(json.dumps({"rows": len(data.files), "quality": quality,
                                                         "jobs": kfold_jobs(data, folds)}, indent=1))
    export_weights(weights, out / "mobilenet_v2_imagenet.npz")
    size = sum(p.stat().st_size for p in out.iterdir())
    return {"rows": len(data.files), "jobs": len(jobs), "megabytes": round(size / 2**20, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.finetune.pack", description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="folder made by scripts/lopo_data.sh")
    ap.add_argument("--out", type=Path, default=Path(".gpu/finetune"))
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--folds", type=int, default=4, help="also write jobs_kN.json: N person-disjoint folds")
    args = ap.parse_args(argv)
    if not (args.root / "frames_nuaa").is_dir():
        print(f"pack: {args.root}: no LOPO data there: make it with scripts/lopo_data.sh --size 128", file=sys.stderr)
        return 2
    print(json.dumps(pack(args.root, args.out, args.quality, args.weights, args.folds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
