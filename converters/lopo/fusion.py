"""A fusion of the passive scores learned per LOPO fold (issue 26, "fuse"): the ``+fusion`` and ``+tuneT``
modifiers of converters/lopo/recipes.py.

``+fusion``: one logistic over the logits [the base's view heads (tight; tight and context for the two-view
bases; + native for three-view), MiniFASNet V2, MiniFASNet V1SE], learned on the fold's training people only
(``+ctxcap`` / ``+ctxsplit`` reshape the context head's input: recipes.py).
A head's score on its own training rows is in-sample (overconfident), so the fusion is cross-fitted: the
fold's training people are dealt into ``N_SPLITS`` groups (attackers and real-only people dealt apart, so
every group holds attackers), the heads are trained without each group and score it, the fusion weights
are fitted on those out-of-group scores (every person the same weight per class, as balanced_weights), and
the fold's judged person is then scored by heads trained on all the training people. With ``+texture`` on
top the pair still vetoes: ``min(fused, l_texture - logit(T) + t)``, so a confident "screen" from the
texture view is never outvoted by the context view through the learned weights.

``+tuneT`` (after ``+texture``): the veto's T is chosen per fold on the same out-of-group scores of the
training people (the T of ``T_GRID`` with the lowest mean ACER over the training attackers, at the
threshold their real-only people set), never on the judged person.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from converters.lopo.data import threshold_for_bpcer
from converters.lopo.texture import TextureVeto, logit

N_SPLITS = 4
T_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7)
FUSION_L2 = 1e-3  # a handful of weights on thousands of rows: little shrinkage needed
FUSION_STEPS = 1000

Scorer = Callable[[np.ndarray], np.ndarray]


@dataclass
class CrossFit:
    """The fold's out-of-group inputs (rows ``idx``) and the inputs' scorer trained on all its training people."""

    idx: np.ndarray  # rows of the fold's training people the fusion learns from
    x_oof: np.ndarray  # (len(idx), k) inputs scored by heads that never saw that row's person
    inputs: Scorer  # idx -> (n, k) inputs, heads trained on every training person


def person_splits(person: np.ndarray, labels: np.ndarray, rows: np.ndarray, n: int = N_SPLITS, seed: int = 0) -> list[list[str]]:
    """The people of ``rows`` dealt into ``n`` groups, attackers first, so that every group holds some."""
    people = sorted(set(person[rows].tolist()))
    attackers = sorted(set(person[rows & (labels == 0)].tolist()))
    others = [p for p in people if p not in set(attackers)]
    rng = np.random.default_rng(seed)
    rng.shuffle(attackers)
    rng.shuffle(others)
    groups: list[list[str]] = [[] for _ in range(n)]
    for i, p in enumerate(attackers + others):
        groups[i % n].append(p)
    return [sorted(g) for g in groups]


def cross_fit(fit_inputs: Callable[[np.ndarray], Scorer], mask: np.ndarray, rows: np.ndarray, person: np.ndarray,
              labels: np.ndarray, n: int = N_SPLITS, seed: int = 0) -> CrossFit:
    """Out-of-group inputs for the ``rows`` (within ``mask``): ``fit_inputs(train_mask)`` trains the heads."""
    rows = rows & mask
    idx = np.flatnonzero(rows)
    x_oof: np.ndarray | None = None
    for g in person_splits(person, labels, rows, n, seed):
        if not g:
            continue
        held = np.isin(person, g)
        sel = np.flatnonzero(rows & held)
        scores = fit_inputs(mask & ~held)(sel)
        if x_oof is None:
            x_oof = np.zeros((len(idx), scores.shape[1]))
        x_oof[np.searchsorted(idx, sel)] = scores
    return CrossFit(idx, x_oof, fit_inputs(mask))


def fit_fusion(x: np.ndarray, labels: np.ndarray, person: np.ndarray):
    """The logistic fusion of the inputs ``x`` (logits), every person the same weight within each class."""
    from converters.lopo.recipes import balanced_weights
    from converters.passive.features import fit_logistic

    w = balanced_weights(labels, person, np.zeros(len(labels), bool))
    return fit_logistic(x, labels.astype(np.float32), FUSION_L2, steps=FUSION_STEPS, sample_weight=w)


def tune_threshold(primary: np.ndarray, p_texture: np.ndarray, labels: np.ndarray, person: np.ndarray,
                   target_bpcer: float, grid=T_GRID) -> float:
    """The T of ``grid`` with the lowest mean ACER over the attackers among these (training) rows, each row
    accepted when ``primary >= t`` (t: the real-only people's target BPCER) and ``p_texture >= T``; ties go to
    the lower T (the lighter veto)."""
    attackers = sorted(set(person[labels == 0].tolist()))
    real_only = ~np.isin(person, attackers)
    t = threshold_for_bpcer(primary[real_only & (labels == 1)], target_bpcer) if (real_only & (labels == 1)).any() else 0.0
    best, best_acer = grid[0], np.inf
    for T in grid:
        acc = (primary >= t) & (p_texture >= T)
        acers = []
        for q in attackers:
            a, live = (person == q) & (labels == 0), (person == q) & (labels == 1)
            apcer = float(acc[a].mean())
            bpcer = float((~acc[live]).mean()) if live.any() else 0.0
            acers.append((apcer + bpcer) / 2)
        m = float(np.mean(acers)) if acers else 0.0
        if m < best_acer - 1e-12:
            best, best_acer = T, m
    return float(best)


class Fused:
    """``score(idx)``: the learned fusion's logit over the inputs."""

    def __init__(self, head, inputs: Scorer):
        self.head, self.inputs = head, inputs

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        return self.head.logit(self.inputs(idx))

    def weights(self) -> list[float]:
        """The fusion's weights per input logit (standardisation folded in), then its bias."""
        w, b = self.head.dense_weights()
        return [round(float(v), 4) for v in w] + [round(b, 4)]


class TunedVeto(TextureVeto):
    """A TextureVeto whose T is chosen in ``align`` on the fold's training people (``tune_threshold``)."""

    def __init__(self, primary, p_texture: np.ndarray, oof_primary: np.ndarray, oof_rows: np.ndarray, labels: np.ndarray,
                 person: np.ndarray, notes: list):
        super().__init__(primary, p_texture)
        self.p_tex, self.oof, self.rows, self.labels, self.person, self.notes = p_texture, oof_primary, oof_rows, labels, person, notes

    def align(self, live_idx: np.ndarray, target_bpcer: float, attempts: np.ndarray | None = None) -> float:
        r = self.rows
        T = tune_threshold(self.oof, self.p_tex[r], self.labels[r], self.person[r], target_bpcer)
        self.l_T = float(logit(np.array([T]))[0])
        self.notes.append({"T": T})
        return super().align(live_idx, target_bpcer, attempts)


_CACHE: dict = {}  # (recipe's trained parts, mask) -> (CrossFit, Fused|None): +fusion and +fusion+texture share the fits


def _key(rec, mask: np.ndarray, fusion: bool) -> tuple:
    from converters.lopo.recipes import FUSION, TEXTURE, TUNED

    mods = tuple(sorted(rec.mods - {FUSION, TEXTURE, TUNED}))
    # the rows a recipe may learn from and judge are part of the fit (a caller may narrow them), and so is the
    # class (a subclass may bring its own view heads: converters/finetune/fused_lopo.py)
    rows = hashlib.sha1(rec.train_ok.tobytes() + rec.train_tight.tobytes() + rec.eval_ok.tobytes()).hexdigest()
    return (id(rec.d), type(rec).__name__, rec.base, mods, rec.l2, rec.synth_share, fusion, rows,
            hashlib.sha1(mask.tobytes()).hexdigest())


def fitted(rec, mask: np.ndarray) -> tuple[CrossFit, Fused | None]:
    """The fold's cross-fit of ``rec`` on the rows in ``mask`` (its out-of-group inputs and the inputs' scorer) and,
    for ``+fusion``, the learned fusion; cached, so recipes that differ only in their veto share one fit."""
    from converters.lopo.recipes import FUSION

    d, fusion = rec.d, FUSION in rec.mods
    key = _key(rec, mask, fusion)
    if key not in _CACHE:
        if len(_CACHE) > 400:  # a run holds about 4 x (attackers) folds per base
            _CACHE.clear()
        l_pair = logit(rec.texture_models) if fusion else None

        def fit_inputs(m: np.ndarray) -> Scorer:
            views = rec.views(m) if fusion else (lambda f: (lambda idx: f(idx)[:, None]))(rec._fit_base(m))
            return (lambda idx: np.concatenate([views(idx), l_pair[idx]], 1)) if fusion else views

        # the fusion learns from the real rows the recipe judges (no synthetic recapture)
        cf = cross_fit(fit_inputs, mask, mask & rec.train_ok & rec.eval_ok, d.person, d.labels)
        fused = None
        if fusion:
            fused = Fused(fit_fusion(cf.x_oof, d.labels[cf.idx], d.person[cf.idx]), cf.inputs)
        _CACHE[key] = (cf, fused)
    return _CACHE[key]


def fit_recipe(rec, mask: np.ndarray):
    """The fold's scorer of a ``+fusion`` and/or ``+tuneT`` recipe ``rec`` (converters/lopo/recipes.py)."""
    from converters.lopo.recipes import TEXTURE, TUNED

    d = rec.d
    cf, fused = fitted(rec, mask)
    if fused is not None:
        rec.notes.append({"weights": fused.weights()})
        primary, oof_primary = fused, fused.head.logit(cf.x_oof)
    else:
        primary, oof_primary = (lambda idx: cf.inputs(idx)[:, 0]), cf.x_oof[:, 0]
    if TUNED in rec.mods:
        return TunedVeto(primary, rec.texture, oof_primary, cf.idx, d.labels, d.person, rec.notes)
    if TEXTURE in rec.mods:
        return TextureVeto(primary, rec.texture, rec.texture_threshold)
    return primary


def summary(rec) -> dict:
    """What the folds learned: the mean fusion weights per input and the tuned T's (for the results JSON)."""
    from converters.lopo.recipes import FUSION

    out: dict = {}
    ws = [n["weights"] for n in rec.notes if "weights" in n]
    if FUSION in rec.mods and ws:
        out["fusion_inputs"] = rec.view_names() + ["minifasnet_v2", "minifasnet_v1se", "bias"]
        out["fusion_weights_mean"] = [round(float(v), 4) for v in np.mean(ws, 0)]
        out["fusion_weights_min"] = [round(float(v), 4) for v in np.min(ws, 0)]
        out["fusion_weights_max"] = [round(float(v), 4) for v in np.max(ws, 0)]
        out["fusion_rule"] = (f"per fold: logistic over the inputs' logits, cross-fitted on {N_SPLITS} person groups of the "
                              "fold's training people, person-balanced; the judged person scored by heads on all of them")
    ts = [n["T"] for n in rec.notes if "T" in n]
    if ts:
        out["tuned_texture_threshold"] = {"mean": float(np.mean(ts)), "min": float(min(ts)), "max": float(max(ts)),
                                          "counts": {str(t): ts.count(t) for t in sorted(set(ts))}}
    return out
