#!/usr/bin/env python3
"""Issue 26, tight crops: can a fusion of its own (a "crop regime") judge a face crop with no frame around it?

    .venv/bin/python scripts/lopo_crop_regime.py [/tmp/edge-liveness-lopo/crops128_ctx2.7] [--out benchmarks/results]

A tight repository crop (``crops_*``: 11 replay people's own live and replay crops) has no surroundings, so the
context view sees a black border and the learned fusion (docs/training.md section 8) is not its data. This
tries the fusion without the context view: ``tight+fusion`` (one logistic over the tight head's and each
MiniFASNet's logit, cross-fitted on the fold's training people, converters/lopo/fusion.py), each crops person
held out, learned either from every kind of row or from crops rows only, with the threshold set where the
training people's OUT-OF-GROUP live crops lose 5 % or 10 % (the real-only people have no tight crops, and the
judged person never sets it). Also per person: how well each input alone ranks their crops (ROC AUC; the tight
head trained without them, the pair frozen). Writes ``liveness_lopo_crop_regime_128px.json``. About 2 minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from converters.lopo import fusion as F  # noqa: E402
from converters.lopo.data import FLAGGED, load, sigmoid, threshold_for_bpcer  # noqa: E402
from converters.lopo.recipes import Recipe  # noqa: E402
from converters.lopo.texture import texture_model_scores, texture_scores  # noqa: E402
from converters.measure import pad_metrics  # noqa: E402
from converters.passive.features import fit_logistic  # noqa: E402

WEIGHTS = REPO.parent / "shared/data/models/imagenet_mobilenet_v2_int8_tflite_coral/tf2_mobilenet_v2_1.0_224_ptq.tflite"
VARIANTS = (("all_kinds", 0.05), ("crops_only", 0.05), ("crops_only", 0.10))


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    a = pad_metrics.roc_auc(y, s)
    return round(float(a), 3) if a is not None else None


def input_aucs(d, tm: np.ndarray, crops: np.ndarray, p: str) -> dict:
    idx = (d.person == p) & crops
    tr = (d.person != p) & (d.kind != "watermarked")
    head = fit_logistic(d.tight[tr], d.labels[tr].astype(np.float32), 1e-2)
    y = d.labels[idx]
    return {"tight": _auc(y, head.logit(d.tight[idx])), "minifasnet_v2": _auc(y, tm[idx, 0]), "minifasnet_v1se": _auc(y, tm[idx, 1])}


def run_variant(d, tm, tx, crops: np.ndarray, learn_from: str, target: float, tight: np.ndarray | None = None) -> dict:
    if tight is None:
        rec = Recipe("tight+fusion", d, 1e-2, tx, 0.5, texture_models=tm)
    else:  # the fine-tuned tight view's out-of-fold logits (converters/finetune, docs/training.md section 14)
        from converters.finetune.fused_lopo import FineTunedTight

        rec = FineTunedTight("tight+fusion", d, 1e-2, tx, 0.5, texture_models=tm, tight_logits=tight)
    if learn_from == "crops_only":
        rec.train_ok, rec.eval_ok = rec.train_ok & crops, rec.eval_ok & crops
    per: dict[str, dict] = {}
    for p in sorted(set(d.person[crops].tolist())):
        train = (d.person != p) & (d.kind != "watermarked")
        score = F.fit_recipe(rec, train)
        cf, fused = F.fitted(rec, train)  # the same fit (cached): its out-of-group scores set the threshold
        live_crops = crops[cf.idx] & (d.labels[cf.idx] == 1)
        thr = threshold_for_bpcer(sigmoid(fused.head.logit(cf.x_oof)[live_crops]), target)
        idx = np.flatnonzero((d.person == p) & crops)
        s, y = sigmoid(score(idx)), d.labels[idx]
        apcer, bpcer = float((s[y == 0] >= thr).mean()), float((s[y == 1] < thr).mean())
        per[p] = {"n_live": int((y == 1).sum()), "n_attack": int((y == 0).sum()), "apcer": round(apcer, 3),
                  "bpcer": round(bpcer, 3), "acer": round((apcer + bpcer) / 2, 3), "threshold": round(float(thr), 3),
                  "weights_tight_v2_v1se_bias": fused.weights()}
        print(f"[{learn_from} {target:.0%}] {p}: APCER {apcer:.3f} BPCER {bpcer:.3f}", file=sys.stderr, flush=True)
    judged = [p for p in per if p not in FLAGGED]
    acers = [per[p]["acer"] for p in judged]
    return {"learn_from": learn_from, "threshold_rule": f"training people's out-of-group live crops lose {target:.0%}",
            "mean_acer": round(float(np.mean(acers)), 4), "worst_acer": max(acers),
            "worst_person": max(judged, key=lambda p: per[p]["acer"]), "per_person": per}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", nargs="?", default="/tmp/edge-liveness-lopo/crops128_ctx2.7")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--tight-scores", type=Path, help="fine-tuned tight view: scores_<variant>.npy (converters/finetune/gpu_lopo.py)")
    ap.add_argument("--jobs", type=Path, help="the jobs file those scores were made with (with --tight-scores)")
    args = ap.parse_args(argv)
    root = Path(args.root)
    if not (root / "crops_vishal").is_dir():
        print(f"error: {root} has no crops_* folders: make them with `scripts/lopo_data.sh --size 128`", file=sys.stderr)
        return 2
    cache = root / ".features"
    d = load(root, str(WEIGHTS), None, cache)
    tm, tx = texture_model_scores(root, d, cache), texture_scores(root, d, cache)
    crops = d.kind == "crops"
    tight, name = None, "liveness_lopo_crop_regime_128px.json"
    if args.tight_scores:
        from converters.finetune.judge import out_of_fold

        tight = np.nan_to_num(out_of_fold(np.load(args.tight_scores), json.loads(args.jobs.read_text())["jobs"], d.person,
                                          d.kind == "watermarked"))
        name = "liveness_lopo_crop_regime_finetuned_128px.json"
    res = {"what": "tight repository crops (crops_*), each person held out: a fusion without the context view",
           "means_leave_out": sorted(FLAGGED),
           "input_auc_per_person": {p: input_aucs(d, tm, crops, p) for p in sorted(set(d.person[crops].tolist()))},
           "variants": [run_variant(d, tm, tx, crops, lf, t, tight) for lf, t in VARIANTS],
           "command": "python scripts/lopo_crop_regime.py /tmp/edge-liveness-lopo/crops128_ctx2.7"
                      + (f" --tight-scores {args.tight_scores} --jobs {args.jobs}" if tight is not None else "")}
    if tight is not None:
        res["tight_view"] = ("fine-tuned (ft_synth), out-of-fold logits from 4 person-disjoint folds; the input AUCs above "
                             "are the frozen head's")
    out = Path(args.out) / name
    out.write_text(json.dumps(res, indent=1) + "\n")
    for v in res["variants"]:
        print(f"{v['learn_from']:>10} ({v['threshold_rule']}): mean ACER {v['mean_acer']:.3f}, worst {v['worst_acer']:.3f} ({v['worst_person']})")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
