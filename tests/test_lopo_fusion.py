"""The learned fusion of the passive scores (converters/lopo/fusion.py, issue 26 "fuse"): its weights come
from the fold's training people only, each scored by heads that never saw them, and the texture veto on top
still caps it.

The measured numbers come from real crops (benchmarks/results/liveness_lopo_fusion_128px_*); here the rows
are small arrays so each rule can be seen on its own."""

from __future__ import annotations

import numpy as np
import pytest

from converters.data.dataset import DatasetError
from converters.lopo import fusion
from converters.lopo.data import Data, sigmoid
from converters.lopo.recipes import Recipe, parse
from converters.lopo.texture import TextureVeto, logit


def _data(seed: int = 0) -> tuple[Data, np.ndarray]:
    """Six real-only people (r*), six attackers (a*: live + replay) and the judged person h; the tight and
    context features tell live from attack, the pair's two models are noise. Returns (data, per-model P(real))."""
    rows = []
    for i in range(6):
        rows += [(f"r{i}", 1)] * 8 + [(f"a{i}", 1)] * 4 + [(f"a{i}", 0)] * 4
    rows += [("h", 1)] * 4 + [("h", 0)] * 4
    person = np.array([r[0] for r in rows])
    labels = np.array([r[1] for r in rows])
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(rows), 6)).astype(np.float32)
    x[:, :2] += 1.5 * labels[:, None]
    n = len(rows)
    d = Data([f"r{i}" for i in range(n)], labels, person, np.full(n, "frames"), np.where(labels == 0, "replay", ""),
             np.zeros(n, bool), np.array([f"{p}_src" for p, _ in rows]), np.array([f"{p}_{l}" for p, l in rows]), x, x.copy())
    return d, rng.uniform(0.3, 0.7, size=(n, 2))


def _recipe(name: str, d: Data, models: np.ndarray) -> Recipe:
    return Recipe(name, d, 1e-2, texture=models.mean(1), texture_threshold=0.3, texture_models=models)


def _weights(name: str, d: Data, models: np.ndarray) -> list[float]:
    fusion._CACHE.clear()  # the fits are shared by recipe and mask within a run; each case here starts afresh
    rec = _recipe(name, d, models)
    fusion.fit_recipe(rec, d.person != "h")
    return rec.notes[-1]["weights"]


def test_modifiers_parse_in_order_and_bad_combinations_are_refused():
    assert parse("two-view-mirror+synth+fusion+texture+tuneT") == (
        "two-view-mirror", {"+synth", "+fusion", "+texture", "+tuneT"})
    d, models = _data()
    with pytest.raises(DatasetError, match="unknown recipe"):
        parse("tight+texture+fusion")
    with pytest.raises(DatasetError, match="tunes the veto"):
        _recipe("tight+tuneT", d, models)
    with pytest.raises(DatasetError, match="fuses the view heads"):
        _recipe("context+fusion", d, models)
    with pytest.raises(DatasetError, match="each MiniFASNet"):
        Recipe("tight+fusion", d, 1e-2, texture=models.mean(1))


def test_the_context_view_can_be_kept_from_vouching():
    # +ctxcap: the context head enters the fusion as min(logit, 0); +ctxsplit: both halves, weighed apart
    d, models = _data()
    idx = np.arange(len(d.labels))
    plain, cap, split = (_recipe(f"two-view-weighted+fusion{m}", d, models).views(d.person != "h")(idx)
                         for m in ("", "+ctxcap", "+ctxsplit"))
    assert plain.shape[1] == 2 and cap.shape[1] == 2 and split.shape[1] == 3
    np.testing.assert_array_equal(cap[:, 0], plain[:, 0])  # the tight head untouched
    np.testing.assert_array_equal(cap[:, 1], np.minimum(plain[:, 1], 0))
    assert (plain[:, 1] > 0).any() and (cap[:, 1] <= 0).all()  # some context logits vouched, none do now
    np.testing.assert_allclose(split[:, 1] + split[:, 2], plain[:, 1])
    assert _recipe("two-view-weighted+fusion+ctxsplit", d, models).view_names() == ["tight", "context_accuse", "context_vouch"]
    assert len(_weights("two-view-weighted+fusion+ctxsplit+texture", d, models)) == 3 + 2 + 1
    for bad, why in (("tight+fusion+ctxcap", "base with a context view"), ("two-view-mirror+ctxcap", "base with a context view"),
                     ("two-view-mirror+fusion+ctxcap+ctxsplit", "one of them")):
        with pytest.raises(DatasetError, match=why):
            _recipe(bad, d, models)


def test_each_training_person_is_scored_by_heads_that_never_saw_them():
    d, _ = _data()
    mask = d.person != "h"
    fits: list[set] = []  # people each fit trained on
    seen: list[tuple[set, set]] = []  # (people trained on, people scored)

    def fit_inputs(m: np.ndarray):
        trained = set(d.person[m].tolist())
        fits.append(trained)
        return lambda idx: (seen.append((trained, set(d.person[idx].tolist()))), np.zeros((len(idx), 1)))[1]

    cf = fusion.cross_fit(fit_inputs, mask, np.ones(len(mask), bool), d.person, d.labels)
    assert len(seen) == fusion.N_SPLITS and len(fits) == fusion.N_SPLITS + 1
    assert all(not (trained & scored) for trained, scored in seen)
    assert fits[-1] == set(d.person[mask].tolist())  # the heads that score the judged person: every training person
    assert all("h" not in trained for trained in fits) and all("h" not in scored for _, scored in seen)
    assert sorted(set().union(*(s for _, s in seen))) == sorted(set(d.person[mask].tolist()))
    assert set(d.person[cf.idx].tolist()) == set(d.person[mask].tolist())
    # attackers are dealt apart: every split holds some
    groups = fusion.person_splits(d.person, d.labels, mask)
    assert all(any(p.startswith("a") for p in g) for g in groups)


@pytest.mark.parametrize("name,n_inputs", [("tight+fusion", 3), ("two-view-weighted+fusion", 4)])
def test_the_judged_persons_rows_never_move_the_learned_weights(name, n_inputs):
    d, models = _data()
    w = _weights(name, d, models)
    assert len(w) == n_inputs + 1  # per input logit, then the bias
    h = d.person == "h"
    d2, models2 = _data()
    d2.tight[h] += 50.0  # the judged person's rows changed beyond recognition
    d2.context[h] -= 50.0
    models2[h] = 0.001
    assert _weights(name, d2, models2) == w
    # a training person's rows do move them: the comparison above can fail
    d3, models3 = _data()
    d3.tight[d3.person == "a0"] += 5.0
    assert _weights(name, d3, models3) != w


def test_a_confident_texture_screen_caps_the_fused_score():
    d, models = _data()
    screen = np.flatnonzero((d.person == "h") & (d.labels == 1))[0]  # a live-looking row the pair calls a screen
    d.tight[screen, :2] = 6.0
    d.context[screen, :2] = 6.0
    models[screen] = 0.01
    fusion._CACHE.clear()
    mask = d.person != "h"
    live_idx = np.flatnonzero(np.char.startswith(d.person, "r"))
    fused = fusion.fit_recipe(_recipe("two-view-weighted+fusion", d, models), mask)
    veto = fusion.fit_recipe(_recipe("two-view-weighted+fusion+texture", d, models), mask)
    assert isinstance(veto, TextureVeto)
    t = veto.align(live_idx, 0.02)
    idx = np.arange(len(d.labels))
    assert np.all(veto(idx) <= fused(idx) + 1e-9)
    assert np.all(veto(idx) <= logit(models.mean(1)) - logit(np.array([0.3])) + t + 1e-9)
    assert sigmoid(fused(np.array([screen])))[0] >= sigmoid(np.array([t]))[0]  # the fusion alone lets it in
    assert veto(np.array([screen]))[0] < t  # the veto does not


def test_the_tuned_threshold_comes_from_the_training_rows():
    person = np.array(["a"] * 4 + ["a"] * 4 + ["r"] * 8)
    labels = np.array([1] * 4 + [0] * 4 + [1] * 8)
    primary = np.array([2.0] * 4 + [2.0] * 4 + [2.0] * 8)  # the primary cannot tell: only the veto can
    p_tex = np.array([0.9] * 4 + [0.22] * 4 + [0.9] * 8)
    assert fusion.tune_threshold(primary, p_tex, labels, person, 0.02) == 0.25  # the lightest veto that stops them
    p_tex[4:8] = 0.95  # a screen the pair cannot see: no veto helps, the lightest is kept
    assert fusion.tune_threshold(primary, p_tex, labels, person, 0.02) == fusion.T_GRID[0]
