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


def _with_native(d: Data, mirror: bool = True, seed: int = 1) -> Data:
    """``d`` with native-patch features: (N, D), or (2, N, D) with the mirrored patches' features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(d.labels), 5)).astype(np.float32) + d.labels[:, None]
    d.native = np.stack([x, x + rng.normal(0, 0.1, x.shape).astype(np.float32)]) if mirror else x
    return d


def _with_crops(d: Data) -> Data:
    """``d`` with person b's rows as repository tight crops (crops_*) and one watermarked live row."""
    kind = d.kind.copy()
    kind[(d.person == "b") & (kind == "frames")] = "crops"
    kind[0] = "watermarked"
    d.kind = kind
    return d


def test_native_bases_need_the_native_features_and_are_named_by_needs_native():
    from converters.lopo.recipes import needs_native

    assert needs_native(["tight", "three-view+texture"]) and needs_native(["native"])
    assert not needs_native(["tight", "two-view-mirror+texture"])
    for name in ("native", "three-view"):
        with pytest.raises(DatasetError, match="native"):
            Recipe(name, _data(), 1e-2)
    with pytest.raises(DatasetError, match="mirrored patches"):  # three-view mirrors the patch like the crops
        d = _with_native(_data(), mirror=False)
        Recipe("three-view", d, 1e-2).fit(np.ones(len(d.labels), bool))


def test_native_trains_and_is_judged_on_every_kind_like_tight_and_three_view_on_frames_like_two_view():
    d = _with_native(_with_crops(_data()))
    tight, native = Recipe("tight", d, 1e-2), Recipe("native", d, 1e-2)
    three, two = Recipe("three-view", d, 1e-2), Recipe("two-view-mirror", d, 1e-2)
    assert (native.train_ok == tight.train_ok).all() and (native.eval_ok == tight.eval_ok).all()
    assert native.train_ok[d.kind == "crops"].all() and not native.train_ok[d.kind == "watermarked"].any()
    assert (three.train_ok == two.train_ok).all() and (three.eval_ok == two.eval_ok).all()
    assert not three.eval_ok[d.kind == "crops"].any() and three.train_tight[d.kind == "crops"].all()


def test_three_view_fuses_the_two_view_heads_and_a_native_head_with_its_weights():
    from converters.lopo.recipes import THREE_VIEW_WEIGHTS, VIEW_WEIGHTS

    d = _with_native(_data())
    d.tight_mirror, d.context_mirror = d.tight[:, ::-1].copy(), d.context[:, ::-1].copy()
    mask, idx = np.ones(len(d.labels), bool), np.arange(len(d.labels))
    three, two = Recipe("three-view", d, 1e-2), Recipe("two-view-mirror", d, 1e-2)
    ht, hc = three.two_view_heads(mask)
    two_view = two.fit(mask)(idx)
    assert two_view == pytest.approx(VIEW_WEIGHTS[0] * ht.logit(d.tight) + VIEW_WEIGHTS[1] * hc.logit(d.context), abs=1e-5)
    fused = three.fit(mask)(idx)
    wt, wc, wn = THREE_VIEW_WEIGHTS
    native_part = (fused - wt * ht.logit(d.tight) - wc * hc.logit(d.context)) / wn
    # what is left is one head's logit on the native features: linear in them, and it tells live from spoof
    a = np.c_[d.native[0], np.ones(len(idx))]
    coef = np.linalg.lstsq(a, native_part, rcond=None)[0]
    assert a @ coef == pytest.approx(native_part, abs=1e-4)
    judged = three.eval_ok
    assert native_part[judged & (d.labels == 1)].mean() > native_part[judged & (d.labels == 0)].mean()
    assert sum(THREE_VIEW_WEIGHTS) == pytest.approx(1.0)


def test_texture_veto_works_on_the_native_bases():
    from converters.lopo.texture import TextureVeto

    d = _with_native(_data())
    d.tight_mirror, d.context_mirror = d.tight.copy(), d.context.copy()
    pair = np.where(np.arange(len(d.labels)) % 2 == 0, 0.05, 0.95)  # the pair vetoes every other row
    mask, idx = np.ones(len(d.labels), bool), np.arange(len(d.labels))
    for base in ("native", "three-view"):
        plain = Recipe(base, d, 1e-2).fit(mask)(idx)
        vetoed = Recipe(base + "+texture", d, 1e-2, texture=pair, texture_threshold=0.3).fit(mask)
        assert isinstance(vetoed, TextureVeto)
        vetoed.align(idx[d.labels == 1], 0.02)
        s = vetoed(idx)
        assert (s <= plain + 1e-9).all() and (s[::2] < plain[::2]).any()


def test_judge_crops_adds_the_tight_crops_to_what_a_two_view_recipe_judges_never_to_what_it_trains_on():
    d = _with_crops(_data())
    plain, judged = Recipe("two-view-mirror", d, 1e-2), Recipe("two-view-mirror", d, 1e-2, judge_crops=True)
    crops = d.kind == "crops"
    assert not plain.eval_ok[crops].any() and judged.eval_ok[crops].all()
    assert (judged.eval_ok[~crops] == plain.eval_ok[~crops]).all()
    assert (judged.train_ok == plain.train_ok).all() and not judged.train_ok[crops].any()


# two real-only people dealt into four groups leave two groups empty: numpy warns on their empty means
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_run_recipe_judges_only_the_named_people_and_names_an_unknown_one():
    from converters.lopo.run import run_recipe

    d = _data()
    with pytest.raises(DatasetError, match="--people zed: no attacks of theirs"):
        run_recipe(d, "tight", 0.02, people=["zed"])
    res = run_recipe(d, "tight", 0.02, people=["p"])
    assert set(res["per_person"]) == {"p"}
    assert {r["label"] for r in res["per_person"]["p"]["recordings"]} == {"live", "spoof"}
