"""The fine-tuning measurement's bookkeeping (converters/finetune): folds, out-of-fold scores, sample weights,
the judged rates, and the ImageNet weights it starts from. The training itself needs torch (the GPU
machine's or a workstation's) and is measured, not unit-tested: docs/training.md section 14."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from conftest import shared_file


def _data(rows: list[tuple[str, int, str, str]]):
    """rows: (person, label, kind, attack)."""
    person, labels, kind, attack = (np.array(c) for c in zip(*rows))
    n = len(rows)
    return SimpleNamespace(person=person, labels=labels.astype(int), kind=kind, attack=attack,
                           photo=np.zeros(n, bool), source=np.char.add(person, "/v"),
                           recording=np.char.add(np.char.add(kind, "/"), person), files=[f"f{i}" for i in range(n)])


def _people():
    rows = []
    for p in ("r1", "r2", "r3", "r4"):  # replay people: live and replay frames, one has tight crops too
        rows += [(p, 1, "frames", "")] * 6 + [(p, 0, "frames", "replay")] * 6
    rows += [("r1", 1, "crops", ""), ("r1", 0, "crops", "replay")] * 3
    for p in ("n1", "n2", "n3", "n4"):  # print people
        rows += [(p, 1, "frames", "")] * 4 + [(p, 0, "frames", "print")] * 4
    for p in ("a", "b", "c", "d", "e", "f", "g", "h"):  # real-only people
        rows += [(p, 1, "frames", "")] * 5
    rows += [("w", 1, "watermarked", "")] * 3
    return _data(rows)


def test_kfold_jobs_leave_every_person_out_once_and_every_fold_judges_both_attacks():
    from converters.finetune.pack import kfold_jobs

    d = _people()
    jobs = kfold_jobs(d, 4)
    left = [p for j in jobs for p in j["left_out"]]
    assert sorted(left) == sorted(set(d.person.tolist()) - {"w"})  # each once; the watermarked set never trains anyway
    for j in jobs:
        kinds = {d.attack[(d.person == p) & (d.labels == 0)][0] for p in j["left_out"] if ((d.person == p) & (d.labels == 0)).any()}
        assert kinds == {"replay", "print"}
        assert any(p in "abcdefgh" for p in j["left_out"])  # real-only people in every fold: the bar's unseen people


def test_out_of_fold_takes_the_score_of_the_model_that_never_saw_the_person():
    from converters.finetune.judge import out_of_fold

    d = _people()
    jobs = [{"left_out": ["r1", "n1", "a"]}, {"left_out": sorted(set(d.person.tolist()) - {"r1", "n1", "a", "w"})}]
    scores = np.stack([np.full(len(d.person), 1.0), np.full(len(d.person), 2.0)])
    wm = d.kind == "watermarked"
    oof = out_of_fold(scores, jobs, d.person, wm)
    assert np.all(oof[np.isin(d.person, ["r1", "n1", "a"])] == 1.0)
    assert np.all(oof[np.isin(d.person, ["r2", "b"])] == 2.0)
    assert np.all(oof[wm] == 1.5)  # never trained on: the mean over the folds


def test_sample_weights_give_every_person_one_share_and_synthetic_attacks_their_share():
    from converters.finetune.gpu_lopo import SYNTH_SHARE, weights_for

    labels = np.array([1] * 10 + [1] * 2 + [0] * 4 + [0] * 6)
    person = np.array(["big"] * 10 + ["small"] * 2 + ["r"] * 4 + ["big"] * 6)
    synth = np.array([False] * 16 + [True] * 6)
    w = weights_for(labels, person, synth)
    assert w.sum() == pytest.approx(1.0)
    assert w[:10].sum() == pytest.approx(w[10:12].sum())  # ten frames of one person weigh what two of another do
    assert w[labels == 1].sum() == pytest.approx(w[labels == 0].sum())
    assert w[synth].sum() / w[labels == 0].sum() == pytest.approx(SYNTH_SHARE)


def test_judge_counts_a_perfect_ranking_as_no_error_and_a_reversed_one_as_all_error():
    from converters.finetune.judge import judge
    from converters.finetune.pack import kfold_jobs

    d = _people()
    jobs = kfold_jobs(d, 4)
    good = np.where(d.labels == 1, 3.0, -3.0)
    r = judge(d, good, jobs, 0.02)
    assert r["replay"]["mean_acer"] == 0.0 and r["print"]["mean_acer"] == 0.0
    assert r["per_person"]["r1"]["crops"]["acer"] == 0.0
    assert r["bpcer_unseen_real_attempts"] == 0.0
    bad = np.where(d.labels == 1, -3.0, 3.0)
    bad[np.isin(d.person, list("abcdefgh"))] = 3.0  # the real-only people still read live: the bar sits at 3
    r = judge(d, bad, jobs, 0.02)
    assert r["replay"]["mean_acer"] == 1.0  # every attack accepted, every judged person's live frame refused
    rec = {e["recording"]: e["accepted"] for e in r["per_person"]["r2"]["recordings"] if e["label"] == "spoof"}
    assert rec == {"frames/r2": 1.0}


def test_imagenet_weights_export_in_torch_layout_and_network_order(shared_data, tmp_path):
    from converters.finetune.mobilenet_torch import N_CONVS, STAGES, export_weights
    from converters.passive.imagenet_tflite import read_tflite_weights

    coral = shared_file("models", "imagenet_mobilenet_v2_int8_tflite_coral", "tf2_mobilenet_v2_1.0_224_ptq.tflite")
    z = np.load(export_weights(coral, tmp_path / "w.npz"))
    src = read_tflite_weights(coral)
    assert len([k for k in z.files if k.startswith("w")]) == N_CONVS
    assert z["w0"].shape == (32, 3, 3, 3)  # stem conv [O,I,H,W]
    assert z["w1"].shape == (32, 1, 3, 3)  # first depthwise [C,1,H,W]
    assert z[f"w{N_CONVS - 1}"].shape == (1280, 320, 1, 1)
    # the expand convs follow the stage table: block 1 expands 16 -> 96
    assert z["w3"].shape == (16 * STAGES[1][0], 16, 1, 1)
    np.testing.assert_allclose(z["w0"].astype(np.float32), np.transpose(src.convs[0].kernel, (3, 2, 0, 1)), atol=2e-3)
    np.testing.assert_allclose(z["b5"].astype(np.float32), src.convs[5].bias, rtol=2e-3, atol=2e-3)


def test_the_fusion_fit_cache_tells_apart_recipes_that_learn_from_other_rows():
    """A caller that narrows a recipe's rows (scripts/lopo_crop_regime.py's crops-only variant) or brings its own
    tight view (FineTunedTight) must not be handed another recipe's cached fit."""
    from converters.lopo.fusion import _key

    class Other(SimpleNamespace):
        pass

    every = np.ones(6, bool)
    rec = SimpleNamespace(d=0, base="tight", mods={"+fusion"}, l2=1e-2, synth_share=0.5,
                          train_ok=every, train_tight=every, eval_ok=every)
    narrowed = SimpleNamespace(**{**vars(rec), "train_ok": np.array([1, 1, 0, 0, 1, 1], bool)})
    mask = every
    assert _key(rec, mask, True) == _key(SimpleNamespace(**vars(rec)), mask, True)
    assert _key(rec, mask, True) != _key(narrowed, mask, True)
    assert _key(rec, mask, True) != _key(Other(**vars(rec)), mask, True)
