"""Leave-one-person-out validation of a liveness recipe: what it does to people it has never seen.

    python -m converters.lopo DATA_ROOT --out benchmarks/results [--recipes tight,two-view-fusion,...]
                              [--target-bpcer 0.02] [--weights CORAL.tflite] [--shipped models/liveness_mnv2_int8.tflite]

DATA_ROOT is the folder made by ``scripts/lopo_data.sh``: one ``dataset extract`` folder per source,
each with tight crops and (``--context-scale``) context crops under ``context/``. Folder names say
what the context view is worth: ``frames_*`` were cut from full frames (real context), ``crops_*``
from the repositories' tight face crops (tight view only), ``watermarked_*`` (td_selfies: a
"Training Data" overlay across the frame) is never trained on and reported on its own.

For every person with attack presentations (each NUAA subject, each replay person; the same man's
crops and videos count as one person) a fresh model is trained without that person and judged on
them. The threshold is never chosen on the judged person: the bona-fide-only people (td_real, ZJU,
saikan45) are split into four groups; in repetition r the model is trained without groups r and
r+1, the threshold is set so that group r+1 (unseen real people) loses ``--target-bpcer`` of its
frames, and group r measures BPCER on other unseen real people. Rates per person pool the four
repetitions.

Models are frozen ImageNet MobileNetV2 features (converters/passive/features.py) + logistic heads, so a
fold takes about a second. The recipes (``base[+synth][+distil][+texture]``: the daemon's tight crop, the
two-view heads, synthetic recaptures in training, the MiniFASNet pair distilled or as a veto) are
described in converters/lopo/recipes.py. Synthetic rows (``synth_*`` folders) are never judged
and never set a threshold.
``--shipped`` also scores the shipped model as it is (no retraining) at its own threshold, marking the
people it was trained or validated on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from converters.measure import pad_metrics
from converters.data.dataset import DatasetError
from converters.lopo.data import FLAGGED, N_GROUPS, Data, load, real_only_groups, threshold_for_bpcer
from converters.lopo.data import sigmoid as _sigmoid
from converters.lopo.recipes import (RECIPES, SYNTH_SHARE, TEXTURE, TUNED, VIEW_WEIGHTS, Recipe, mirrored, needs_native, needs_texture,
                                     needs_texture_models, parse)
from converters.lopo.report import plot, shipped_report

__all__ = ["RECIPES", "TEXTURE", "VIEW_WEIGHTS", "Recipe", "run_recipe", "main", "threshold_for_bpcer", "load", "N_GROUPS"]

def run_recipe(data: Data, name: str, target_bpcer: float, l2: float = 1e-2, seed: int = 0,
               texture: np.ndarray | None = None, texture_threshold: float = 0.5, synth_share: float = SYNTH_SHARE,
               texture_models: np.ndarray | None = None, people: list[str] | None = None, judge_crops: bool = False,
               per_attempt: bool = False, pooled_threshold: bool = False, recipe: Recipe | None = None) -> dict:
    """``recipe``: a Recipe (or a subclass with its own view heads) to run instead of the one ``name`` builds."""
    rec = recipe or Recipe(name, data, l2, texture, texture_threshold, synth_share, texture_models, judge_crops)
    if pooled_threshold and TUNED in rec.mods:
        raise DatasetError(f"recipe {name}: {TUNED} sets its veto in align(), which a pooled threshold does not call")
    groups = real_only_groups(data, seed)
    attackers = sorted(set(data.person[(data.labels == 0) & rec.eval_ok].tolist()))
    if people:
        missing = sorted(set(people) - set(attackers))
        if missing:
            raise DatasetError(f"--people {','.join(missing)}: no attacks of theirs are judged by {name} "
                               f"(people with attacks: {','.join(attackers)})")
        attackers = sorted(people)
    per_person: dict[str, dict] = {}
    real_unseen: dict[str, list] = {}  # person -> accepted flags
    real_photo: list[bool] = []  # accepted flags of still photos of unseen real people
    real_attempts: list[bool] = []  # per video or photo of an unseen real person: median score >= threshold
    watermarked: list[bool] = []  # video frames of td_selfies (the watermark runs across them)
    td_photos: list[bool] = []  # td_selfies' still selfies (no watermark), never trained on
    t0 = time.monotonic()
    for p in attackers:
        acc_l, acc_s, aucs, thrs = [], [], [], []
        by_rec: dict[tuple[str, int], list[bool]] = {}  # (recording, label) -> accepted flags, pooled over repetitions
        att_l, att_s = [], []  # per attempt: one recording's frames of one label, median score
        for r in range(N_GROUPS):
            g_eval, g_thr = set(groups[r]), set(groups[(r + 1) % N_GROUPS])
            train = (data.person != p) & ~np.isin(data.person, list(g_eval | g_thr))
            score = rec.fit(train)
            thr_idx = np.flatnonzero(np.isin(data.person, list(g_thr)) & rec.eval_ok)
            units = data.source[thr_idx] if per_attempt else None  # the threshold group's attempts, or its frames
            if pooled_threshold:
                thr = _pooled(rec, data, p, g_eval, [set(groups[(r + j) % N_GROUPS]) for j in range(1, N_GROUPS)],
                              score, target_bpcer, per_attempt)
            elif hasattr(score, "align"):  # a veto: the primary's own threshold, on these unseen real people only
                thr = float(_sigmoid(np.array([score.align(thr_idx, target_bpcer, units)]))[0])
            else:
                thr = float(threshold_for_bpcer(_sigmoid(score(thr_idx)), target_bpcer, units))
            idx = np.flatnonzero((data.person == p) & rec.eval_ok)
            s = _sigmoid(score(idx))
            y = data.labels[idx]
            acc_l += (s[y == 1] >= thr).tolist()
            acc_s += (s[y == 0] >= thr).tolist()
            for rec_, lab_, a in zip(data.recording[idx].tolist(), y.tolist(), (s >= thr).tolist()):
                by_rec.setdefault((rec_, int(lab_)), []).append(bool(a))
            for (rec_, lab_) in sorted(set(zip(data.recording[idx].tolist(), y.tolist()))):
                sel = (data.recording[idx] == rec_) & (y == lab_)
                (att_l if lab_ == 1 else att_s).append(bool(np.median(s[sel]) >= thr))
            auc = pad_metrics.roc_auc(y, s)
            if auc is not None:
                aucs.append(auc)
            thrs.append(thr)
            ev = np.flatnonzero(np.isin(data.person, list(g_eval)) & rec.eval_ok)
            se = _sigmoid(score(ev))
            for q, a in zip(data.person[ev], se >= thr):
                real_unseen.setdefault(str(q), []).append(bool(a))
            real_photo += (se[data.photo[ev]] >= thr).tolist()
            # the daemon decides an attempt on the median score of its frames: one video or photo = one attempt
            for src in sorted(set(data.source[ev].tolist())):
                real_attempts.append(bool(np.median(se[data.source[ev] == src]) >= thr))
            wm = np.flatnonzero(data.kind == "watermarked")
            if len(wm):
                acc = _sigmoid(score(wm)) >= thr
                watermarked += acc[~data.photo[wm]].tolist()
                td_photos += acc[data.photo[wm]].tolist()
        apcer = 1.0 - float(np.mean(np.logical_not(acc_s))) if acc_s else None
        bpcer = float(np.mean(np.logical_not(acc_l))) if acc_l else None
        acer = (apcer + bpcer) / 2 if apcer is not None and bpcer is not None else None
        atype = sorted(set(data.attack[(data.person == p) & (data.labels == 0) & rec.eval_ok].tolist()))  # real attacks only
        per_person[p] = {"attack_type": ",".join(atype), "n_live": int(((data.person == p) & (data.labels == 1) & rec.eval_ok).sum()),
                         "n_attack": int(((data.person == p) & (data.labels == 0) & rec.eval_ok).sum()),
                         "apcer": apcer, "bpcer": bpcer, "acer": acer,
                         "attempts": {"n_live": len(att_l), "n_attack": len(att_s),
                                      "apcer": float(np.mean(att_s)) if att_s else None,
                                      "bpcer": 1 - float(np.mean(att_l)) if att_l else None},
                         "auc": float(np.mean(aucs)) if aucs else None, "thresholds": [round(t, 4) for t in thrs],
                         # e.g. a full-view cut apart from its original: the share of its frames called live
                         "recordings": [{"recording": k[0], "label": "live" if k[1] == 1 else "spoof", "frames": len(v),
                                         "accepted": round(float(np.mean(v)), 4)} for k, v in sorted(by_rec.items())]}
        if p in FLAGGED:
            per_person[p]["flag"] = FLAGGED[p]
        print(f"[{name}] {p}: APCER {apcer:.3f} BPCER {bpcer:.3f} ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
    res = summarise(name, per_person, real_unseen, watermarked, target_bpcer, groups)
    if pooled_threshold:
        res["threshold_pooled"] = (f"per fold: the threshold's unseen real people are every real-only group but the evaluation "
                                   f"group ({N_GROUPS - 1} groups), each scored by heads trained without it")
    if per_attempt:
        res["threshold_rule"] = (f"per fold: the threshold at which unseen real people (a group never trained on) lose "
                                 f"{target_bpcer:.0%} of their attempts (one recording or photo each, judged on its median score)")
    res["bpcer_unseen_real_photos"] = float(1 - np.mean(real_photo)) if real_photo else None
    res["n_unseen_real_photo_judgements"] = len(real_photo)
    res["bpcer_unseen_real_attempts"] = float(1 - np.mean(real_attempts)) if real_attempts else None
    res["attempt_note"] = "one attempt = one video (median score of its frames) or one photo of an unseen real person"
    res["n_unseen_real_attempt_judgements"] = len(real_attempts)
    res["bpcer_td_selfies_photos"] = float(1 - np.mean(td_photos)) if td_photos else None
    res["note_watermarked"] = "bpcer_watermarked_td_selfies counts td_selfies' video frames only (the watermark); its photos are bpcer_td_selfies_photos"
    if rec.notes:
        from converters.lopo.fusion import summary

        res.update(summary(rec))
    return res


def _pooled(rec: Recipe, data: Data, p: str, g_eval: set, thr_groups: list[set], score, target_bpcer: float,
            per_attempt: bool) -> float:
    """The threshold from every real-only group but the evaluation group, each scored by heads trained without
    it (and without ``p`` and the evaluation group): three times the unseen people of one group, so the bar
    does not move with which six people set it. ``score`` (trained without the first of them) takes it."""
    live, units = [], []
    for g in thr_groups:
        s = rec.fit((data.person != p) & ~np.isin(data.person, list(g_eval | g)))
        idx = np.flatnonzero(np.isin(data.person, list(g)) & rec.eval_ok)
        live.append((s.primary if hasattr(s, "align") else s)(idx))
        units.append(data.source[idx])
    t = float(threshold_for_bpcer(np.concatenate(live), target_bpcer, np.concatenate(units) if per_attempt else None))
    if hasattr(score, "align"):
        score.t = t  # a veto's primary bar, as align() would set it
    return float(_sigmoid(np.array([t]))[0])


def summarise(name: str, per_person: dict, real_unseen: dict, watermarked: list, target_bpcer: float, groups) -> dict:
    def pooled(types: set[str]):
        ps = [p for p, v in per_person.items() if v["attack_type"] in types and p not in FLAGGED]
        if not ps:
            return None
        acers = [per_person[p]["acer"] for p in ps]
        worst = max(ps, key=lambda p: per_person[p]["acer"])
        n_a = sum(per_person[p]["n_attack"] for p in ps)
        n_l = sum(per_person[p]["n_live"] for p in ps)
        apcer = sum(per_person[p]["apcer"] * per_person[p]["n_attack"] for p in ps) / max(1, n_a)
        bpcer = sum(per_person[p]["bpcer"] * per_person[p]["n_live"] for p in ps) / max(1, n_l)
        att = [per_person[p]["attempts"] for p in ps]
        att_acer = [(a["apcer"] + a["bpcer"]) / 2 for a in att if a["apcer"] is not None and a["bpcer"] is not None]
        return {"people": len(ps), "mean_acer": float(np.mean(acers)), "worst_acer": float(max(acers)), "worst_person": worst,
                "pooled_apcer": apcer, "pooled_bpcer": bpcer, "pooled_acer": (apcer + bpcer) / 2,
                "attempts_mean_acer": float(np.mean(att_acer)) if att_acer else None,
                "attempts_worst_acer": float(max(att_acer)) if att_acer else None}

    flat = [a for v in real_unseen.values() for a in v]
    return {
        "recipe": name,
        "target_bpcer": target_bpcer,
        "threshold_rule": f"per fold: the threshold at which unseen real people (a group never trained on) lose {target_bpcer:.0%} of frames",
        "replay": pooled({"replay"}),
        "print": pooled({"print"}),
        "bpcer_unseen_real_people": float(1 - np.mean(flat)) if flat else None,
        "bpcer_unseen_real_per_person": {p: float(1 - np.mean(v)) for p, v in sorted(real_unseen.items())},
        "bpcer_watermarked_td_selfies": float(1 - np.mean(watermarked)) if watermarked else None,
        "real_only_groups": groups,
        "per_person": per_person,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.lopo", description=__doc__.split("\n\n")[0])
    ap.add_argument("root", metavar="DATA_ROOT", help="folder made by scripts/lopo_data.sh")
    ap.add_argument("--out", default="benchmarks/results", help="folder for liveness_lopo_*.json and the PNG")
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--target-bpcer", type=float, default=0.02, help="per-frame BPCER on unseen real people that sets the threshold")
    ap.add_argument("--threshold-per", choices=("frame", "attempt"), default="frame",
                    help="--target-bpcer counts the threshold group's frames (default) or its attempts (a recording's or "
                         "photo's median score, as the daemon decides)")
    ap.add_argument("--threshold-groups", choices=("one", "pooled"), default="one",
                    help="the threshold's unseen real people: the next group (default) or every group but the "
                         "evaluation group, each scored by heads trained without it")
    ap.add_argument("--weights", default="../shared/data/models/imagenet_mobilenet_v2_int8_tflite_coral/tf2_mobilenet_v2_1.0_224_ptq.tflite")
    ap.add_argument("--shipped", default="models/liveness_mnv2_int8.tflite", help="also score this model as it is ('' to skip)")
    ap.add_argument("--l2", type=float, default=1e-2)
    ap.add_argument("--synth-share", type=float, default=SYNTH_SHARE,
                    help="+synth recipes: the synthetic replays' share of the attack class's training weight")
    ap.add_argument("--texture-threshold", type=float, default=0.5,
                    help="+texture recipes: the pair's P(real) under which it vetoes a frame (0.5: upstream's own call)")
    ap.add_argument("--cache", default=None, help="feature cache folder (default DATA_ROOT/.features)")
    ap.add_argument("--people", default="", help="judge only these people (comma-separated; default: every person with attacks)")
    ap.add_argument("--judge-crops", action="store_true",
                    help="also judge the tight repository crops (crops_*) with the two-view recipes, as the daemon would see them")
    ap.add_argument("--name", default="liveness_lopo", help="file name stem of the results: NAME_<recipe>.json, NAME.png")
    args = ap.parse_args(argv)
    root = Path(args.root)
    if not Path(args.weights).is_file():
        print(f"error: --weights {args.weights}: no such file (Coral's tf2_mobilenet_v2_1.0_224_ptq.tflite)", file=sys.stderr)
        return 2
    try:
        names = [r.strip() for r in args.recipes.split(",") if r.strip()]
        for n in names:
            parse(n)  # an unknown recipe is one line before minutes of features
        data = load(root, args.weights, None, Path(args.cache) if args.cache else root / ".features",
                    mirror=mirrored(names))
        if needs_native(names):
            from converters.lopo.native import native_features

            data.native = native_features(root, data, args.weights, Path(args.cache) if args.cache else root / ".features",
                                          mirror=mirrored(names))
        texture = texture_models = None
        if needs_texture(names):
            from converters.lopo.texture import texture_model_scores, texture_scores

            cache = Path(args.cache) if args.cache else root / ".features"
            if needs_texture_models(names):  # first: one scoring pass caches both
                texture_models = texture_model_scores(root, data, cache)
            texture = texture_scores(root, data, cache)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        results = {}
        for name in names:
            res = run_recipe(data, name, args.target_bpcer, args.l2, texture=texture, texture_threshold=args.texture_threshold,
                             synth_share=args.synth_share, texture_models=texture_models,
                             people=[p.strip() for p in args.people.split(",") if p.strip()] or None, judge_crops=args.judge_crops,
                             per_attempt=args.threshold_per == "attempt", pooled_threshold=args.threshold_groups == "pooled")
            results[name] = res
            (out / f"{args.name}_{name}.json").write_text(json.dumps(res, indent=2) + "\n")
        shipped = shipped_report(data, Path(args.shipped), root, args.target_bpcer) if args.shipped else None
        if shipped:
            (out / f"{args.name}_shipped.json").write_text(json.dumps(shipped, indent=2) + "\n")
        plot(results, shipped, out / f"{args.name}.png")
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for n, r in results.items():
        rp, pr = r["replay"] or {}, r["print"] or {}
        print(f"{n:>16}: replay mean ACER {rp.get('mean_acer', float('nan')):.3f} worst {rp.get('worst_acer', float('nan')):.3f} "
              f"({rp.get('worst_person')}); print pooled ACER {pr.get('pooled_acer', float('nan')):.3f}; "
              f"BPCER unseen real {r['bpcer_unseen_real_people']:.3f} (photos {r['bpcer_unseen_real_photos']}, "
              f"td_selfies photos {r['bpcer_td_selfies_photos']}); "
              f"watermarked {r['bpcer_watermarked_td_selfies']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
