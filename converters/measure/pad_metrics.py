"""Presentation-attack-detection metrics in ISO/IEC 30107-3 terms (numpy only).

Scores are P(live); a sample is *accepted as live* when ``score >= threshold``.
- APCER: share of attack presentations accepted as live.
- BPCER: share of bona fide (live) presentations rejected.
- ACER:  (APCER + BPCER) / 2.
Labels: 1 = live (bona fide), 0 = spoof (attack).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class PadRates:
    threshold: float
    n_live: int
    n_spoof: int
    apcer: float | None  # None when there is no attack sample
    bpcer: float | None  # None when there is no live sample
    acer: float | None
    accuracy: float | None
    auc: float | None  # None unless both classes are present

    def to_dict(self) -> dict:
        return asdict(self)


def _arrays(labels: Iterable[int], scores: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels).astype(np.int64).ravel()
    s = np.asarray(list(scores) if not isinstance(scores, np.ndarray) else scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    return y, s


def roc_auc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged); None with one class."""
    y, s = _arrays(labels, scores)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    # average ranks over ties so int8 (few distinct values) scores are scored fairly
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-accept rate = APCER, true-accept rate = 1 - BPCER, thresholds), thresholds descending."""
    y, s = _arrays(labels, scores)
    thr = np.concatenate([[np.inf], np.unique(s)[::-1]])
    n_pos, n_neg = max(1, int((y == 1).sum())), max(1, int((y == 0).sum()))
    tpr = np.array([((s >= t) & (y == 1)).sum() / n_pos for t in thr])
    fpr = np.array([((s >= t) & (y == 0)).sum() / n_neg for t in thr])
    return fpr, tpr, thr


def rates(labels, scores, threshold: float) -> PadRates:
    y, s = _arrays(labels, scores)
    accepted = s >= threshold
    live, spoof = y == 1, y == 0
    n_live, n_spoof = int(live.sum()), int(spoof.sum())
    apcer = float(accepted[spoof].mean()) if n_spoof else None
    bpcer = float((~accepted[live]).mean()) if n_live else None
    acer = (apcer + bpcer) / 2.0 if apcer is not None and bpcer is not None else None
    acc = float((accepted == live).mean()) if len(y) else None
    return PadRates(float(threshold), n_live, n_spoof, apcer, bpcer, acer, acc, roc_auc(y, s))


def choose_threshold(labels, scores) -> float:
    """The threshold with the lowest ACER on these (validation) scores.

    Among equally good thresholds take the one in the middle of the optimal score interval: on
    quantised scores many thresholds tie, and the middle one leaves the most room for drift.
    """
    y, s = _arrays(labels, scores)
    if (y == 1).sum() == 0 or (y == 0).sum() == 0:
        raise ValueError("choosing a threshold needs both live and spoof samples")
    cand = np.unique(s)
    # thresholds between adjacent distinct scores (and just above the largest)
    mids = np.concatenate([[cand[0]], (cand[:-1] + cand[1:]) / 2.0, [cand[-1] + 1e-6]])
    acers = np.array([rates(y, s, t).acer for t in mids])
    best = np.flatnonzero(acers <= acers.min() + 1e-12)
    lo, hi = mids[best[0]], mids[best[-1]]
    centre = (lo + hi) / 2.0
    pick = best[np.argmin(np.abs(mids[best] - centre))]
    return float(np.clip(mids[pick], 1e-6, 1.0))


def per_group(labels, scores, groups: Sequence[str], threshold: float) -> dict[str, dict]:
    """Rates per group (e.g. person, attack type)."""
    y, s = _arrays(labels, scores)
    g = np.asarray(groups)
    return {str(k): rates(y[g == k], s[g == k], threshold).to_dict() for k in sorted(set(g.tolist()))}


def apcer_per_attack(labels, scores, attack_types: Sequence[str | None], threshold: float) -> dict[str, float]:
    """APCER for each named attack type (spoof samples only; unnamed types are left out)."""
    y, s = _arrays(labels, scores)
    out: dict[str, float] = {}
    types = np.asarray([t or "" for t in attack_types])
    for t in sorted(set(types[y == 0].tolist()) - {""}):
        m = (y == 0) & (types == t)
        out[t] = float((s[m] >= threshold).mean())
    return out
