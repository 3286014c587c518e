"""Leave-one-person-out validation (converters/lopo/run.py) on a small real data set: NUAA frames and ZJU clips.

Needs TensorFlow (the frozen ImageNet MobileNetV2 features) and Coral's ImageNet .tflite in the shared data.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from converters.data.dataset import DatasetError, extract

pytestmark = pytest.mark.workstation

SIZE = 64
CORAL = ("models", "imagenet_mobilenet_v2_int8_tflite_coral", "tf2_mobilenet_v2_1.0_224_ptq.tflite")


def _tf_or_skip():
    try:
        import tensorflow  # noqa: F401
    except ImportError as e:
        pytest.skip(f"TensorFlow is not importable ({e}): pip install '.[workstation]'")


def _nuaa_subset(shared: Path, dest: Path, subjects: set[str], per_class: int) -> Path:
    src = shared / "liveness" / "nuaa"
    rows = list(csv.DictReader(open(src / "index.csv", newline="")))
    keep = []
    for s in sorted(subjects):
        for folder in ("live", "spoof"):  # NUAA labels spoof rows "spoof_print"; the folder is the class
            keep += [r for r in rows if r["subject"] == s and r["file"].startswith(folder + "/")][:per_class]
    for r in keep:
        (dest / r["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / r["file"], dest / r["file"])
    with open(dest / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    return dest


@pytest.fixture(scope="module")
def lopo_root(shared_data, face_models, tmp_path_factory) -> Path:
    """Both views of 3 NUAA subjects (live + print) and of 4 ZJU people (live only), cut by `dataset extract`."""
    _tf_or_skip()
    tmp = tmp_path_factory.mktemp("lopo")
    nuaa = _nuaa_subset(shared_data, tmp / "nuaa_src", {"0001", "0002", "0003"}, 6)
    root = tmp / "root"
    extract(nuaa / "live", "live", root / "frames_nuaa", size=SIZE, progress=False, context_scale=2.7)
    extract(nuaa / "spoof", "spoof", root / "frames_nuaa", size=SIZE, progress=False, context_scale=2.7,
            attack_type="print")
    zju = shared_data / "blink" / "zju"
    for person in ("1", "2", "4", "5"):
        clip = sorted((zju / person).glob("*.avi"))[0]
        extract(clip, "live", root / "frames_zju", size=SIZE, every=40, progress=False, context_scale=2.7,
                subject=f"zju_{person}")
    return root


def test_threshold_for_bpcer_rejects_at_most_the_target():
    from converters.lopo.run import threshold_for_bpcer

    live = np.linspace(0.01, 1.0, 100)
    thr = threshold_for_bpcer(live, 0.02)
    assert (live < thr).mean() <= 0.02 and (live < thr).sum() == 2
    assert threshold_for_bpcer(live, 0.0) == pytest.approx(0.01)  # reject nobody


def test_threshold_per_attempt_judges_each_attempt_on_its_median():
    from converters.lopo.run import threshold_for_bpcer

    # 50 attempts of 3 frames; attempt k's frames sit around k/50, one frame of each far below (a blink, a glance)
    attempts = np.repeat(np.arange(50), 3)
    live = np.repeat(np.arange(1, 51) / 50, 3) + np.tile([0.0, 0.001, -0.5], 50)
    thr = threshold_for_bpcer(live, 0.02, attempts)
    medians = np.array([np.median(live[attempts == a]) for a in range(50)])
    assert (medians < thr).sum() == 1 and thr == pytest.approx(0.04)  # 2 % of 50 attempts: one may fail
    assert (live < thr).mean() > 0.02  # per frame the same bar refuses far more: the low frames do not decide
    assert threshold_for_bpcer(live, 0.02) < thr


def test_a_pooled_threshold_comes_from_every_other_group_each_scored_without_it():
    # --threshold-groups pooled: the bar from three groups of unseen real people, not one
    from types import SimpleNamespace

    from converters.lopo.data import threshold_for_bpcer
    from converters.lopo.run import _pooled
    from converters.lopo.texture import TextureVeto

    person = np.array(["p"] * 4 + ["e1"] * 4 + [f"g{k}" for k in (1, 2, 3) for _ in range(10)])
    data = SimpleNamespace(person=person, source=np.array([f"{q}_clip" for q in person]))
    logits = np.linspace(-3, 3, len(person))
    fits = []

    class Rec:
        eval_ok = np.ones(len(person), bool)

        def fit(self, mask):
            trained = set(person[mask].tolist())
            fits.append(trained)
            return lambda idx: (logits[idx] + 0.1 * len(trained))  # a score that depends on who trained it

    groups = [{"g1"}, {"g2"}, {"g3"}]
    veto = TextureVeto(lambda idx: logits[idx], np.full(len(person), 0.9))
    thr = _pooled(Rec(), data, "p", {"e1"}, groups, veto, 0.1, per_attempt=False)
    assert len(fits) == 3
    for g, trained in zip(groups, fits):
        assert not trained & (g | {"p", "e1"})  # each group scored by heads that never saw it, the judged or the evaluated
    pooled_scores = np.concatenate([logits[person == f"g{k}"] + 0.1 * len(fits[k - 1]) for k in (1, 2, 3)])
    expect = threshold_for_bpcer(pooled_scores, 0.1)
    assert veto.t == pytest.approx(expect) and thr == pytest.approx(1 / (1 + np.exp(-expect)))
    # 30 frames of three groups: 10 % may be refused, so three are (one group alone would set it on ten)
    assert (pooled_scores < expect).sum() == 3


def test_lopo_holds_out_each_person_and_sets_the_threshold_on_unseen_real_people(lopo_root, shared_data, tmp_path):
    from converters.lopo import run as lopo

    out = tmp_path / "results"
    rc = lopo.main([str(lopo_root), "--out", str(out), "--recipes", "tight,two-view-concat,two-view-mirror", "--shipped", "",
                    "--weights", str(shared_data.joinpath(*CORAL)), "--cache", str(tmp_path / "cache")])
    assert rc == 0
    for recipe in ("tight", "two-view-concat", "two-view-mirror"):
        r = json.loads((out / f"liveness_lopo_{recipe}.json").read_text())
        assert set(r["per_person"]) == {"0001", "0002", "0003"}  # every person with attacks is held out once
        for p, v in r["per_person"].items():
            assert v["attack_type"] == "print" and v["n_live"] == 6 and v["n_attack"] == 6
            assert 0.0 <= v["apcer"] <= 1.0 and 0.0 <= v["bpcer"] <= 1.0
            assert v["acer"] == pytest.approx((v["apcer"] + v["bpcer"]) / 2)
            assert len(v["thresholds"]) == lopo.N_GROUPS  # one model per real-people repetition
            # per recording and label, pooled over the repetitions: the rates are their frame-weighted means
            recs = {(x["recording"], x["label"]): x for x in v["recordings"]}
            assert sum(x["frames"] for x in recs.values()) == 12 * lopo.N_GROUPS
            spoof = [x for x in recs.values() if x["label"] == "spoof"]
            assert sum(x["accepted"] * x["frames"] for x in spoof) / sum(x["frames"] for x in spoof) == pytest.approx(v["apcer"], abs=1e-3)
        # the real-only people are split into groups, and each is judged as unseen
        groups = r["real_only_groups"]
        assert sorted(p for g in groups for p in g) == ["zju_1", "zju_2", "zju_4", "zju_5"]
        assert set(r["bpcer_unseen_real_per_person"]) == {"zju_1", "zju_2", "zju_4", "zju_5"}
        assert r["print"]["people"] == 3 and r["replay"] is None
        # per attempt (one ZJU clip = one attempt, judged on its median score) and per still photo (none here)
        assert 0.0 <= r["bpcer_unseen_real_attempts"] <= 1.0 and r["n_unseen_real_attempt_judgements"] == 3 * lopo.N_GROUPS
        assert r["bpcer_unseen_real_photos"] is None
    # prints of unseen NUAA subjects are separable from frozen ImageNet features even with two training subjects
    aucs = [v["auc"] for v in json.loads((out / "liveness_lopo_two-view-concat.json").read_text())["per_person"].values()]
    assert np.mean(aucs) > 0.8
    assert (out / "liveness_lopo.png").stat().st_size > 10_000
    # the mirror recipe's extra rows are the mirrored crops' own features (cached by the run above)
    from converters.lopo.data import load

    d = load(lopo_root, str(shared_data.joinpath(*CORAL)), None, tmp_path / "cache", mirror=True)
    assert d.tight_mirror.shape == d.tight.shape and d.context_mirror.shape == d.context.shape
    assert not np.allclose(d.tight_mirror, d.tight) and not np.allclose(d.context_mirror, d.context)


def test_mirror_images_spread_a_persons_weight_instead_of_adding_to_it():
    """Adding every crop twice must not change the heads: the mirror images add views, not votes."""
    from converters.lopo.data import Data
    from converters.lopo.recipes import Recipe

    rng = np.random.default_rng(0)
    n = 120
    tight, context = rng.normal(size=(n, 8)).astype(np.float32), rng.normal(size=(n, 6)).astype(np.float32)
    labels = (rng.random(n) < 0.4).astype(int)
    person = np.array([f"p{i % 5}" for i in range(n)])
    ok = np.ones(n, bool)

    def data(mirror: bool) -> Data:
        return Data([str(i) for i in range(n)], labels, person, np.array(["frames"] * n), np.where(labels == 0, "replay", ""),
                    np.zeros(n, bool), person, person, tight, context, tight if mirror else None, context if mirror else None)

    plain = Recipe("two-view-weighted", data(False), 1e-2).two_view_heads(ok)
    doubled = Recipe("two-view-mirror", data(True), 1e-2).two_view_heads(ok)
    for a, b in zip(plain, doubled):
        np.testing.assert_allclose(a.w, b.w, rtol=1e-4, atol=1e-6)
        assert a.b == pytest.approx(b.b, abs=1e-6)


def test_lopo_refuses_folders_without_context_in_one_line(shared_data, face_models, tmp_path):
    _tf_or_skip()
    from converters.lopo import run as lopo

    nuaa = _nuaa_subset(shared_data, tmp_path / "src", {"0001"}, 1)
    extract(nuaa / "live", "live", tmp_path / "root" / "frames_nuaa", size=SIZE, progress=False)
    with pytest.raises(DatasetError, match="re-extract with `dataset extract --context-scale 2.7`"):
        lopo.load(tmp_path / "root", str(shared_data.joinpath(*CORAL)), None, None)
