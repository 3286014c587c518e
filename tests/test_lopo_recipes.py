"""The LOPO recipes' names, and the rules that keep synthetic recaptures out of every judgement
(converters/lopo/recipes.py, converters.lopo.data.real_only_groups).

The recipes' measured numbers come from real crops (tests/test_lopo.py, benchmarks/results/liveness_lopo_*);
here the rows are small arrays so each rule can be seen on its own."""

from __future__ import annotations

import numpy as np
import pytest

from converters.data.dataset import DatasetError
from converters.lopo.data import Data, real_only_groups
from converters.lopo.recipes import DISTIL_ALPHA, SYNTH_SHARE, Recipe, balanced_weights, parse


def _data(n_feat: int = 8, seed: int = 0) -> Data:
    """Two real-only people (a, b), one attacker (p: live + replay), synthetic replays of a and p (frames)
    and of b (tight crops)."""
    rows = ([("a", 1, "frames")] * 6 + [("b", 1, "frames")] * 6 + [("p", 1, "frames")] * 4 + [("p", 0, "frames")] * 4
            + [("a", 0, "synth")] * 10 + [("p", 0, "synth")] * 2 + [("b", 0, "synthcrops")] * 3)
    person = np.array([r[0] for r in rows])
    labels = np.array([r[1] for r in rows])
    kind = np.array([r[2] for r in rows])
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(rows), n_feat)).astype(np.float32) + labels[:, None]
    attack = np.where(labels == 0, "replay", "")
    return Data([f"r{i}" for i in range(len(rows))], labels, person, kind, attack, np.zeros(len(rows), bool),
                np.array([f"{p}_{k}" for p, _, k in rows]), np.array([f"{p}_{k}_{l}" for p, l, k in rows]), x, x.copy())


def test_recipe_names_parse_into_a_base_and_modifiers_in_one_order():
    assert parse("two-view-mirror") == ("two-view-mirror", set())
    assert parse("two-view-mirror+synth+distil+texture") == ("two-view-mirror", {"+synth", "+distil", "+texture"})
    for bad in ("tight+texture+synth", "two-view", "tight+synth+synth", "+texture"):
        with pytest.raises(DatasetError, match="unknown recipe"):
            parse(bad)


def test_a_person_with_only_synthetic_attacks_stays_a_real_only_person():
    d = _data()
    people = sorted(p for g in real_only_groups(d) for p in g)
    assert people == ["a", "b"]  # p has a real attack: judged as an attacker, not used for thresholds


def test_synthetic_rows_are_trained_on_only_by_synth_recipes_and_never_judged():
    d = _data()
    plain, synth = Recipe("two-view-mirror", d, 1e-2), Recipe("two-view-mirror+synth", d, 1e-2)
    is_synth = np.isin(d.kind, ("synth", "synthcrops"))
    assert not (plain.train_ok & is_synth).any() and not (plain.train_tight & is_synth).any()
    assert synth.train_tight[is_synth].all()  # the tight head learns from both kinds of recapture
    # the context head: recaptured frames only; around a recaptured tight crop the context is black padding
    assert synth.train_ok[d.kind == "synth"].all() and not synth.train_ok[d.kind == "synthcrops"].any()
    assert not (plain.eval_ok & is_synth).any() and not (synth.eval_ok & is_synth).any()
    with pytest.raises(DatasetError, match="synth_"):
        Recipe("tight+synth", _data_without_synth(), 1e-2)


def _data_without_synth() -> Data:
    d = _data()
    keep = ~np.isin(d.kind, ("synth", "synthcrops"))
    return Data([f for f, k in zip(d.files, keep) if k], d.labels[keep], d.person[keep], d.kind[keep], d.attack[keep],
                d.photo[keep], d.source[keep], d.recording[keep], d.tight[keep], d.context[keep])


def test_synthetic_replays_hold_their_share_of_the_attack_weight_and_real_people_weigh_the_same():
    d = _data()
    synth = np.isin(d.kind, ("synth", "synthcrops"))
    w = balanced_weights(d.labels, d.person, synth)
    attack = d.labels == 0
    assert w[attack & synth].sum() / w[attack].sum() == pytest.approx(SYNTH_SHARE)
    # each synthetic person weighs the same as another synthetic person, whatever their row counts
    assert w[synth & (d.person == "a")].sum() == pytest.approx(w[synth & (d.person == "p")].sum())
    live = d.labels == 1
    assert w[live & (d.person == "a")].sum() == pytest.approx(w[live & (d.person == "p")].sum())


def test_distil_targets_blend_the_label_with_the_pairs_opinion():
    d = _data()
    pair = np.linspace(0.0, 1.0, len(d.labels))
    with pytest.raises(DatasetError, match="texture"):
        Recipe("tight+distil", d, 1e-2)
    y = Recipe("tight+distil", d, 1e-2, texture=pair).targets()
    assert y == pytest.approx(DISTIL_ALPHA * d.labels + (1 - DISTIL_ALPHA) * pair)
    score = Recipe("tight+distil", d, 1e-2, texture=pair).fit(np.ones(len(d.labels), bool))
    assert np.isfinite(score(np.arange(len(d.labels)))).all()
