"""Reports of a leave-one-person-out run (converters/lopo/run.py): the shipped model scored as it is on
the same crops, and the chart of every replay person's ACER per recipe."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from converters.measure import pad_metrics
from converters.lopo.data import FLAGGED, Data, threshold_for_bpcer

# people the shipped model (models/liveness_mnv2_int8.json) was trained or validated on
SHIPPED_SEEN = {"0001", "0002", "0003", "0004", "0005", "0006", "0007", "apfol", "trickyf0x", "krzysiek", "zubair", "balveer"}


def shipped_report(data: Data, model_path: Path, root: Path, target_bpcer: float) -> dict | None:
    """The shipped model as it is, on the same tight crops, at its own threshold and at a BPCER target."""
    import cv2

    from edge_liveness.liveness.model import LivenessModel

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
    from converters.measure.plots import _plt

    plt = _plt()
    people = sorted({p for r in results.values() for p, v in r["per_person"].items() if v["attack_type"] == "replay"})
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(people)), 4.5))
    series = [(n, {p: v["acer"] for p, v in r["per_person"].items()}) for n, r in results.items()]
    if shipped:
        series.append(("shipped model (as is; unseen people only)", {p: v["acer"] for p, v in shipped["thresholds"]["manifest"]["per_person"].items()
                                                                   if not v["seen_in_training"]}))
    w = 0.8 / max(1, len(series))
    colours = plt.get_cmap("tab10" if len(series) <= 10 else "tab20").colors  # one colour per recipe
    for i, (n, acers) in enumerate(series):
        xs = [j + i * w for j, p in enumerate(people) if acers.get(p) is not None]
        ys = [100 * acers[p] for p in people if acers.get(p) is not None]
        ax.bar(xs, ys, w, label=n, color=colours[i % len(colours)])
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(people))])
    ax.set_xticklabels(people, rotation=30, ha="right")
    ax.axhline(25, color="grey", lw=0.8, ls="--")  # issue 26's targets: worst person <= 25 %, mean <= 10 %
    ax.axhline(10, color="grey", lw=0.8, ls=":")
    ax.set_ylabel("ACER % (unseen person)")
    ax.set_title("Replay attacks, leave-one-person-out (no bar: no context view of that person, or seen by the shipped model)",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
