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

Models are frozen ImageNet MobileNetV2 features (converters/features.py) + a logistic head, so a
fold takes about a second. Recipes:
- ``tight``: the daemon's aligned crop (margin 0.25), all data (frames and crops);
- ``tight-frames``: the same on the frames_* data only (same people as the two-view recipes);
- ``context``: the context crop alone, frames_* only;
- ``two-view-concat``: one head on both views' features, frames_* only;
- ``two-view-fusion``: mean logit of a tight head (all data) and a context head (frames_* only);
- ``two-view-weighted``: the same two heads trained with every person weighing the same
  (features.person_balanced_weights), fused 0.3 tight + 0.7 context (``VIEW_WEIGHTS``): the shipped recipe.
``--shipped`` also scores the shipped model as it is (no retraining) at its own threshold, marking the
people it was trained or validated on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import pad_metrics
from .dataset import CONTEXT_DIR, IMAGE_EXT, DatasetError, _rows_of

RECIPES = ("tight", "tight-frames", "context", "two-view-concat", "two-view-fusion", "two-view-weighted")
# two-view-weighted: the fused logit leans on the context view, which generalises to new people and
# prints (NUAA 0006's prints fool the tight view), and keeps the tight view for faces seen up close
VIEW_WEIGHTS = (0.3, 0.7)
# people the shipped model (models/liveness_mnv2_int8.json) was trained or validated on
SHIPPED_SEEN = {"0001", "0002", "0003", "0004", "0005", "0006", "0007", "apfol", "trickyf0x", "krzysiek", "zubair", "balveer"}
FLAGGED = {"apfol": "its fake folder shows a second person: identity leaks into the label; left out of the means"}
N_GROUPS = 4


@dataclass
class Data:
    files: list[str]
    labels: np.ndarray  # 1 live, 0 spoof
    person: np.ndarray  # identity (crops_x and frames of x are one person)
    kind: np.ndarray  # frames | crops | watermarked
    attack: np.ndarray  # print | replay | ""
    photo: np.ndarray  # True: the crop comes from a still photo, not a video frame
    source: np.ndarray  # the video or photo the crop was cut from (one attempt)
    recording: np.ndarray  # the capture session (NUAA: subject_session): its frames of one label are one attempt
    tight: np.ndarray  # features
    context: np.ndarray | None  # features (rows of crops_* hold the replicated-border view: never used)


def _identity(subject: str) -> str:
    return subject[len("crops_"):] if subject.startswith("crops_") else subject


def load(root: Path, weights: str, size: int | None, cache: Path | None) -> Data:
    import cv2

    from .features import compute_features

    folders = sorted(p for p in Path(root).iterdir() if p.is_dir() and (p / "index.csv").is_file())
    if not folders:
        raise DatasetError(f"{root}: no dataset folders (make them with scripts/lopo_data.sh)")
    parts: dict[str, list] = {k: [] for k in ("files", "labels", "person", "kind", "attack", "photo", "source", "recording",
                                               "tight", "context")}
    for d in folders:
        meta = json.loads((d / "dataset.json").read_text())
        if "context" not in meta:
            raise DatasetError(f"{d} has no context crops: re-extract with `dataset extract --context-scale 2.7`")
        rows = _rows_of(d)
        kind = d.name.split("_", 1)[0]
        s = int(meta["crop"]["size"])
        if size and s != size:
            raise DatasetError(f"{d} holds {s} px crops, not {size}: re-extract with --size {size}")
        views = {}
        for view, base in (("tight", d), ("context", d / CONTEXT_DIR)):
            imgs = []
            for r in rows:
                p = base / Path(r["path"]).relative_to(d.resolve())
                img = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if img is None:
                    raise DatasetError(f"{p}: missing or unreadable crop: re-extract {d.name}")
                imgs.append(img[:, :, ::-1])
            views[view] = compute_features(np.ascontiguousarray(np.stack(imgs)), s, weights, cache, label=f"{d.name}_{view}")
        parts["files"] += [str(r["path"]) for r in rows]
        parts["labels"] += [1 if r["label"] == "live" else 0 for r in rows]
        parts["person"] += [_identity(str(r["subject"])) for r in rows]
        parts["kind"] += [kind] * len(rows)
        parts["photo"] += [Path(r.get("source", "")).suffix.lower() in IMAGE_EXT for r in rows]
        parts["source"] += [r.get("source") or str(r["path"]) for r in rows]
        parts["recording"] += [f"{d.name}/{r.get('recording') or r.get('source') or r['path']}" for r in rows]
        parts["attack"] += [(r["attack_type"] or "replay") if r["label"] == "spoof" else "" for r in rows]
        parts["tight"].append(views["tight"])
        parts["context"].append(views["context"])
    return Data(parts["files"], np.array(parts["labels"]), np.array(parts["person"]), np.array(parts["kind"]),
                np.array(parts["attack"]), np.array(parts["photo"], bool), np.array(parts["source"]), np.array(parts["recording"]),
                np.concatenate(parts["tight"]),
                np.concatenate(parts["context"]))


def real_only_groups(data: Data, seed: int = 0) -> list[list[str]]:
    """Bona-fide-only people (no attack samples, not watermarked) in N_GROUPS seeded groups."""
    attackers = set(data.person[data.labels == 0].tolist())
    people = sorted(set(data.person[(data.kind != "watermarked")].tolist()) - attackers)
    rng = np.random.default_rng(seed)
    rng.shuffle(people)
    return [sorted(people[i::N_GROUPS]) for i in range(N_GROUPS)]


class Recipe:
    """fit(mask) -> scorer(mask) -> logits, for one recipe over ``data``."""

    def __init__(self, name: str, data: Data, l2: float):
        if name not in RECIPES:
            raise DatasetError(f"unknown recipe {name!r} (choose from {', '.join(RECIPES)})")
        self.name, self.d, self.l2 = name, data, l2
        frames = data.kind == "frames"
        self.train_ok = (data.kind != "watermarked") & (frames if name not in ("tight",) else True)
        self.eval_ok = frames | (data.kind == "watermarked") if name != "tight" else np.ones(len(data.labels), bool)

    def fit(self, mask: np.ndarray):
        from .features import fit_logistic, fit_weighted_heads

        d, m = self.d, mask & self.train_ok
        if self.name in ("tight", "tight-frames"):
            h = fit_logistic(d.tight[m], d.labels[m], self.l2)
            return lambda idx: h.logit(d.tight[idx])
        if self.name == "context":
            h = fit_logistic(d.context[m], d.labels[m], self.l2)
            return lambda idx: h.logit(d.context[idx])
        if self.name == "two-view-concat":
            x = np.concatenate([d.tight, d.context], 1)
            h = fit_logistic(x[m], d.labels[m], self.l2)
            return lambda idx: h.logit(x[idx])
        # two-view-fusion/-weighted: the tight head learns from every person, the context head from full frames
        mt = mask & (d.kind != "watermarked")
        if self.name == "two-view-weighted":
            ht, hc = fit_weighted_heads(d.tight, d.context, d.labels, d.person, mt, m, self.l2)
            return lambda idx: VIEW_WEIGHTS[0] * ht.logit(d.tight[idx]) + VIEW_WEIGHTS[1] * hc.logit(d.context[idx])
        ht = fit_logistic(d.tight[mt], d.labels[mt], self.l2)
        hc = fit_logistic(d.context[m], d.labels[m], self.l2)
        return lambda idx: 0.5 * (ht.logit(d.tight[idx]) + hc.logit(d.context[idx]))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def threshold_for_bpcer(live_scores: np.ndarray, target: float) -> float:
    """Lowest threshold at which at most ``target`` of these live scores fall below it."""
    s = np.sort(np.asarray(live_scores, np.float64))
    k = int(np.floor(target * len(s)))  # this many may be rejected
    return float(s[k]) if len(s) else 0.5


def run_recipe(data: Data, name: str, target_bpcer: float, l2: float = 1e-2, seed: int = 0) -> dict:
    rec = Recipe(name, data, l2)
    groups = real_only_groups(data, seed)
    attackers = sorted(set(data.person[(data.labels == 0) & rec.eval_ok].tolist()))
    per_person: dict[str, dict] = {}
    real_unseen: dict[str, list] = {}  # person -> accepted flags
    real_photo: list[bool] = []  # accepted flags of still photos of unseen real people
    real_attempts: list[bool] = []  # per video or photo of an unseen real person: median score >= threshold
    watermarked: list[bool] = []  # video frames of td_selfies (the watermark runs across them)
    td_photos: list[bool] = []  # td_selfies' still selfies (no watermark), never trained on
    t0 = time.monotonic()
    for p in attackers:
        acc_l, acc_s, aucs, thrs = [], [], [], []
        att_l, att_s = [], []  # per attempt: one recording's frames of one label, median score
        for r in range(N_GROUPS):
            g_eval, g_thr = set(groups[r]), set(groups[(r + 1) % N_GROUPS])
            train = (data.person != p) & ~np.isin(data.person, list(g_eval | g_thr))
            score = rec.fit(train)
            thr_idx = np.flatnonzero(np.isin(data.person, list(g_thr)) & rec.eval_ok)
            thr = float(threshold_for_bpcer(_sigmoid(score(thr_idx)), target_bpcer))
            idx = np.flatnonzero((data.person == p) & rec.eval_ok)
            s = _sigmoid(score(idx))
            y = data.labels[idx]
            acc_l += (s[y == 1] >= thr).tolist()
            acc_s += (s[y == 0] >= thr).tolist()
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
        atype = sorted(set(data.attack[(data.person == p) & (data.labels == 0)].tolist()))
        per_person[p] = {"attack_type": ",".join(atype), "n_live": int(((data.person == p) & (data.labels == 1) & rec.eval_ok).sum()),
                         "n_attack": int(((data.person == p) & (data.labels == 0) & rec.eval_ok).sum()),
                         "apcer": apcer, "bpcer": bpcer, "acer": acer,
                         "attempts": {"n_live": len(att_l), "n_attack": len(att_s),
                                      "apcer": float(np.mean(att_s)) if att_s else None,
                                      "bpcer": 1 - float(np.mean(att_l)) if att_l else None},
                         "auc": float(np.mean(aucs)) if aucs else None, "thresholds": [round(t, 4) for t in thrs]}
        if p in FLAGGED:
            per_person[p]["flag"] = FLAGGED[p]
        print(f"[{name}] {p}: APCER {apcer:.3f} BPCER {bpcer:.3f} ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
    res = summarise(name, per_person, real_unseen, watermarked, target_bpcer, groups)
    res["bpcer_unseen_real_photos"] = float(1 - np.mean(real_photo)) if real_photo else None
    res["n_unseen_real_photo_judgements"] = len(real_photo)
    res["bpcer_unseen_real_attempts"] = float(1 - np.mean(real_attempts)) if real_attempts else None
    res["attempt_note"] = "one attempt = one video (median score of its frames) or one photo of an unseen real person"
    res["n_unseen_real_attempt_judgements"] = len(real_attempts)
    res["bpcer_td_selfies_photos"] = float(1 - np.mean(td_photos)) if td_photos else None
    res["note_watermarked"] = "bpcer_watermarked_td_selfies counts td_selfies' video frames only (the watermark); its photos are bpcer_td_selfies_photos"
    return res


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


def shipped_report(data: Data, model_path: Path, root: Path, target_bpcer: float) -> dict | None:
    """The shipped model as it is, on the same tight crops, at its own threshold and at a BPCER target."""
    import cv2

    from edge_liveness.liveness import LivenessModel

    m = LivenessModel(model_path, num_threads=1)
    size = cv2.imread(data.files[0], cv2.IMREAD_COLOR).shape[0]
    if size != m.crop_size:
        print(f"not scoring {model_path.name}: it takes {m.crop_size} px crops, the data are {size} px "
              f"(run lopo_data.sh --size {m.crop_size} for it)", file=sys.stderr)
        return None
    scores = np.array([m.predict(np.ascontiguousarray(cv2.imread(f, cv2.IMREAD_COLOR))) for f in data.files])
    ok = data.kind != "watermarked"
    real_only = ~np.isin(data.person, data.person[data.labels == 0]) & ok
    thr2 = threshold_for_bpcer(scores[real_only], target_bpcer)
    out = {"model": str(model_path), "sha256": m.sha256, "seen_people": sorted(SHIPPED_SEEN), "thresholds": {}}
    for tag, thr in (("manifest", m.threshold), (f"bpcer{target_bpcer:g}_on_real_people", thr2)):
        per = {}
        for p in sorted(set(data.person[(data.labels == 0)].tolist())):
            idx = data.person == p
            r = pad_metrics.rates(data.labels[idx], scores[idx], thr)
            per[p] = {**r.to_dict(), "attack_type": ",".join(sorted(set(data.attack[idx & (data.labels == 0)].tolist()))),
                      "seen_in_training": p in SHIPPED_SEEN}
            if p in FLAGGED:
                per[p]["flag"] = FLAGGED[p]
        unseen = {p: v for p, v in per.items() if not v["seen_in_training"] and p not in FLAGGED}
        rep = [v["acer"] for v in unseen.values() if v["attack_type"] == "replay"]
        prn = [p for p, v in unseen.items() if v["attack_type"] == "print"]
        pm = np.isin(data.person, prn)
        pr = pad_metrics.rates(data.labels[pm], scores[pm], thr) if prn else None
        out["thresholds"][tag] = {
            "threshold": thr,
            "replay_unseen": {"people": len(rep), "mean_acer": float(np.mean(rep)) if rep else None,
                              "worst_acer": float(max(rep)) if rep else None},
            "print_unseen": pr.to_dict() if pr else None,
            "bpcer_real_people": float((scores[real_only] < thr).mean()),
            "bpcer_real_people_photos": float((scores[real_only & data.photo] < thr).mean()) if (real_only & data.photo).any() else None,
            "bpcer_real_people_attempts": float(np.mean([np.median(scores[real_only & (data.source == src)]) < thr
                                                         for src in sorted(set(data.source[real_only].tolist()))])),
            "bpcer_watermarked_td_selfies": float((scores[(data.kind == "watermarked") & ~data.photo] < thr).mean()) if (data.kind == "watermarked").any() else None,
            "bpcer_td_selfies_photos": float((scores[(data.kind == "watermarked") & data.photo] < thr).mean()) if (data.kind == "watermarked").any() else None,
            "per_person": per,
        }
    return out


def plot(results: dict[str, dict], shipped: dict | None, out: Path) -> None:
    from .plots import _plt

    plt = _plt()
    people = sorted({p for r in results.values() for p, v in r["per_person"].items() if v["attack_type"] == "replay"})
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(people)), 4.5))
    series = [(n, {p: v["acer"] for p, v in r["per_person"].items()}) for n, r in results.items()]
    if shipped:
        series.append(("shipped model (as is; unseen people only)", {p: v["acer"] for p, v in shipped["thresholds"]["manifest"]["per_person"].items()
                                                                   if not v["seen_in_training"]}))
    w = 0.8 / max(1, len(series))
    for i, (n, acers) in enumerate(series):
        xs = [j + i * w for j, p in enumerate(people) if acers.get(p) is not None]
        ys = [100 * acers[p] for p in people if acers.get(p) is not None]
        ax.bar(xs, ys, w, label=n)
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(people))])
    ax.set_xticklabels(people, rotation=30, ha="right")
    ax.axhline(30, color="grey", lw=0.8, ls="--")
    ax.axhline(15, color="grey", lw=0.8, ls=":")
    ax.set_ylabel("ACER % (unseen person)")
    ax.set_title("Replay attacks, leave-one-person-out (no bar: no context view of that person, or seen by the shipped model)",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.lopo", description=__doc__.split("\n\n")[0])
    ap.add_argument("root", metavar="DATA_ROOT", help="folder made by scripts/lopo_data.sh")
    ap.add_argument("--out", default="benchmarks/results", help="folder for liveness_lopo_*.json and the PNG")
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--target-bpcer", type=float, default=0.02, help="per-frame BPCER on unseen real people that sets the threshold")
    ap.add_argument("--weights", default="../shared/data/models/imagenet_mobilenet_v2_int8_tflite_coral/tf2_mobilenet_v2_1.0_224_ptq.tflite")
    ap.add_argument("--shipped", default="models/liveness_mnv2_int8.tflite", help="also score this model as it is ('' to skip)")
    ap.add_argument("--l2", type=float, default=1e-2)
    ap.add_argument("--cache", default=None, help="feature cache folder (default DATA_ROOT/.features)")
    ap.add_argument("--name", default="liveness_lopo", help="file name stem of the results: NAME_<recipe>.json, NAME.png")
    args = ap.parse_args(argv)
    root = Path(args.root)
    if not Path(args.weights).is_file():
        print(f"error: --weights {args.weights}: no such file (Coral's tf2_mobilenet_v2_1.0_224_ptq.tflite)", file=sys.stderr)
        return 2
    try:
        data = load(root, args.weights, None, Path(args.cache) if args.cache else root / ".features")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        results = {}
        for name in [r.strip() for r in args.recipes.split(",") if r.strip()]:
            res = run_recipe(data, name, args.target_bpcer, args.l2)
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
