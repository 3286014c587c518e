"""Judge out-of-fold scores from person-disjoint folds (converters/finetune/gpu_lopo.py with ``jobs_k4.json``),
beside the frozen-feature tight head on the very same folds.

    python -m converters.finetune.judge /tmp/edge-liveness-lopo/crops128_ctx2.7 --scores /tmp/ft_cpu \\
        --jobs .gpu/finetune/jobs_k4.json --out benchmarks/results/liveness_finetune_k4_128px.json

Every row's score comes from the one model that never saw its person (watermarked td_selfies, never trained on:
the mean logit over the folds). The bar is never set on the judged people: the real-only people's frames set
it at ``--target-bpcer``; for their own BPCER the real-only people are split in two by fold, and each half is
judged at the bar the other half sets. Per person with attacks: APCER on their attack frames, BPCER on their
own live frames, ACER, and the share of each recording's frames called live (a full-view cut apart from its
original); the same on their tight repository crops alone (``crops``), the view issue 26 says the model fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from converters.lopo.data import FLAGGED, threshold_for_bpcer
from converters.lopo.fusion_export import WEIGHTS
from converters.lopo.recipes import SYNTH_KINDS


def out_of_fold(scores: np.ndarray, jobs: list[dict], person: np.ndarray, never_trained: np.ndarray) -> np.ndarray:
    """(rows,) logits: each row from the job that left its person out; never-trained rows: mean over jobs."""
    oof = np.full(scores.shape[1], np.nan)
    for j, job in enumerate(jobs):
        m = np.isin(person, job["left_out"]) & ~never_trained
        oof[m] = scores[j, m]
    if never_trained.any():
        oof[never_trained] = np.nanmean(scores[:, never_trained], axis=0)
    return oof


def frozen_head_scores(data, jobs: list[dict], balanced: bool) -> np.ndarray:
    """The frozen-feature tight head (converters/passive/features.py) fitted per fold: jobs x rows logits."""
    from converters.lopo.recipes import balanced_weights
    from converters.passive.features import fit_logistic

    trainable = (data.kind != "watermarked") & ~np.isin(data.kind, SYNTH_KINDS)
    out = np.full((len(jobs), len(data.labels)), np.nan)
    for j, job in enumerate(jobs):
        m = trainable & ~np.isin(data.person, job["left_out"])
        w = balanced_weights(data.labels[m], data.person[m], np.zeros(int(m.sum()), bool)) if balanced else None
        head = fit_logistic(data.tight[m], data.labels[m].astype(np.float32), 1e-2, sample_weight=w, classes=data.labels[m])
        out[j] = head.logit(data.tight)
    return out


def _rate(flags: list[bool] | np.ndarray) -> float | None:
    return float(np.mean(flags)) if len(flags) else None


def judge(data, oof: np.ndarray, jobs: list[dict], target: float) -> dict:
    judged = ~np.isin(data.kind, SYNTH_KINDS) & ~np.isnan(oof)
    attackers = sorted(set(data.person[(data.labels == 0) & judged].tolist()))
    real_only = sorted(set(data.person[judged & (data.kind != "watermarked")].tolist()) - set(attackers))
    ro = np.isin(data.person, real_only) & judged
    thr = threshold_for_bpcer(oof[ro], target)
    halves = [sorted(p for j in jobs[h::2] for p in j["left_out"] if p in real_only) for h in (0, 1)]
    bp_frames, bp_attempts, bp_photos = [], [], []
    for h in (0, 1):
        t = threshold_for_bpcer(oof[np.isin(data.person, halves[1 - h]) & judged], target)
        ev = np.isin(data.person, halves[h]) & judged
        bp_frames += (oof[ev] < t).tolist()
        bp_photos += (oof[ev & data.photo] < t).tolist()
        for src in sorted(set(data.source[ev].tolist())):
            bp_attempts.append(bool(np.median(oof[ev & (data.source == src)]) < t))
    per: dict[str, dict] = {}
    for p in attackers:
        m = (data.person == p) & judged
        entry = {"attack_type": ",".join(sorted(set(data.attack[m & (data.labels == 0)].tolist())))}
        for view, sel in (("all", m), ("crops", m & (data.kind == "crops")), ("frames", m & (data.kind == "frames"))):
            apcer = _rate(oof[sel & (data.labels == 0)] >= thr)
            bpcer = _rate(oof[sel & (data.labels == 1)] < thr)
            entry[view] = {"apcer": apcer, "bpcer": bpcer,
                           "acer": (apcer + bpcer) / 2 if apcer is not None and bpcer is not None else None,
                           "n_attack": int((sel & (data.labels == 0)).sum()), "n_live": int((sel & (data.labels == 1)).sum())}
        entry["recordings"] = [{"recording": r, "label": "live" if lab == 1 else "spoof",
                                "frames": int(((data.recording == r) & (data.labels == lab) & m).sum()),
                                "accepted": round(float(np.mean(oof[(data.recording == r) & (data.labels == lab) & m] >= thr)), 4)}
                               for r, lab in sorted(set(zip(data.recording[m].tolist(), data.labels[m].tolist())))]
        if p in FLAGGED:
            entry["flag"] = FLAGGED[p]
        per[p] = entry
    wm = (data.kind == "watermarked") & ~data.photo & judged

    def pooled(attack: str, view: str) -> dict | None:
        ps = [p for p, v in per.items() if v["attack_type"] == attack and p not in FLAGGED and v[view]["acer"] is not None]
        if not ps:
            return None
        acers = {p: per[p][view]["acer"] for p in ps}
        worst = max(acers, key=acers.get)
        return {"people": len(ps), "mean_acer": float(np.mean(list(acers.values()))), "worst_acer": acers[worst], "worst_person": worst}

    return {"threshold": float(thr), "target_bpcer": target,
            "replay": pooled("replay", "all"), "replay_crops": pooled("replay", "crops"), "replay_frames": pooled("replay", "frames"),
            "print": pooled("print", "all"),
            "bpcer_unseen_real_frames": _rate(bp_frames), "bpcer_unseen_real_attempts": _rate(bp_attempts),
            "bpcer_unseen_real_photos": _rate(bp_photos), "n_real_attempts": len(bp_attempts),
            "bpcer_watermarked_td_selfies": _rate(oof[wm] < thr),
            "per_person": per}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.finetune.judge", description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="the LOPO data folder (scripts/lopo_data.sh)")
    ap.add_argument("--scores", type=Path, required=True, help="folder with scores_<variant>.npy (gpu_lopo.py --out)")
    ap.add_argument("--jobs", type=Path, required=True, help="the jobs file the scores were made with")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--target-bpcer", type=float, default=0.02)
    ap.add_argument("--weights", default=WEIGHTS)
    args = ap.parse_args(argv)
    from converters.lopo.data import load

    data = load(args.root, args.weights, 128, args.root / ".features")
    jobs = json.loads(args.jobs.read_text())["jobs"]
    never = data.kind == "watermarked"
    tables = {"frozen_tight_class_balanced": frozen_head_scores(data, jobs, False),
              "frozen_tight_person_balanced": frozen_head_scores(data, jobs, True)}
    for f in sorted(args.scores.glob("scores_*.npy")):
        s = np.load(f)
        if s.shape != (len(jobs), len(data.labels)):
            print(f"judge: {f}: shape {s.shape}, want {(len(jobs), len(data.labels))}: made with other jobs or data", file=sys.stderr)
            return 2
        tables[f.stem[len("scores_"):]] = s
    res = {}
    for name, s in tables.items():
        oof = out_of_fold(s, jobs, data.person, never)
        if np.isnan(oof[~never]).any():
            res[name] = {"incomplete": f"{int(np.isnan(oof[~never]).sum())} rows unscored (jobs that did not run)"}
            continue
        res[name] = judge(data, oof, jobs, args.target_bpcer)
        r = res[name]
        print(f"{name}: replay {r['replay']['mean_acer']:.3f}/{r['replay']['worst_acer']:.3f} crops "
              f"{r['replay_crops']['mean_acer']:.3f}/{r['replay_crops']['worst_acer']:.3f} frames "
              f"{r['replay_frames']['mean_acer']:.3f} print {r['print']['mean_acer']:.3f} real frames "
              f"{r['bpcer_unseen_real_frames']:.3f} attempts {r['bpcer_unseen_real_attempts']:.3f} photos "
              f"{r['bpcer_unseen_real_photos']:.3f} watermarked {r['bpcer_watermarked_td_selfies']:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"folds": jobs, "protocol": __doc__.split("\n\n", 2)[2].strip(), "variants": res}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
