"""The learned passive fusion (decision.fusion = "learned"): its file, its refusals, its arithmetic, and the
pipeline's verdict on a real frame built from the frame's own four logits."""

from __future__ import annotations

import json
import math
import shutil

import cv2
import numpy as np
import pytest

from conftest import REPO, shared_file
from edge_liveness.liveness.fusion import FUSION_FILE, LearnedFusion, fuse, fuse_learned, logit, sigmoid
from edge_liveness.vision.runtime import ModelError

MODELS = REPO / "models"
VIEW_WEIGHTS = {"tight": 0.3, "context": 0.7}


def _shas() -> tuple[str, dict[str, str]]:
    doc = json.loads((MODELS / FUSION_FILE).read_text())
    return doc["liveness_model_sha256"], doc["texture_models_sha256"]


def test_the_shipped_fusion_belongs_to_the_shipped_models():
    import hashlib

    doc = json.loads((MODELS / FUSION_FILE).read_text())
    assert doc["liveness_model_sha256"] == hashlib.sha256((MODELS / "liveness_two_view_int8.tflite").read_bytes()).hexdigest()
    for name, sha in doc["texture_models_sha256"].items():
        assert sha == hashlib.sha256((MODELS / name).read_bytes()).hexdigest()
    f = LearnedFusion.load(MODELS / FUSION_FILE, *_shas(), VIEW_WEIGHTS)
    assert len(f.weights) == 4 and 0 < f.threshold < 1 and f.view_scales == (0.6, 1.4)


@pytest.mark.parametrize("damage, says", [
    (lambda p: p.unlink(), "is missing"),
    (lambda p: p.write_text("{not json"), "unreadable"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "weights": [1.0, 2.0]})), "expected 4"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "liveness_model_sha256": "0" * 64})), "other models"),
])
def test_a_bad_fusion_file_is_refused_in_one_line_that_names_the_fix(tmp_path, damage, says):
    p = tmp_path / FUSION_FILE
    shutil.copyfile(MODELS / FUSION_FILE, p)
    damage(p)
    with pytest.raises(ModelError) as e:
        LearnedFusion.load(p, *_shas(), VIEW_WEIGHTS)
    msg = str(e.value)
    assert says in msg and "\n" not in msg and ("fusion_export" in msg or "veto" in msg)


def test_the_margin_is_the_logistic_over_the_raw_heads_and_the_pairs_logits():
    f = LearnedFusion((0.3, 0.5, 0.2, 0.4), -0.1, 0.25, (0.6, 1.4))
    views, pair = (1.2, -0.7), (0.9, 0.35)
    z = 0.3 * 1.2 / 0.6 + 0.5 * -0.7 / 1.4 + 0.2 * logit(0.9) + 0.4 * logit(0.35) - 0.1
    assert f.margin(views, pair) == pytest.approx(z - logit(0.25))
    # on the primary model's scale: exactly at the primary threshold when the margin is 0
    p = fuse_learned(f, views, pair, 0.17, None)
    assert logit(p) - logit(0.17) == pytest.approx(z - logit(0.25))


def test_the_pair_still_vetoes_on_top_of_the_learned_fusion():
    f = LearnedFusion((0.0, 5.0, 0.0, 0.0), 0.0, 0.5, (0.6, 1.4))  # the context head alone, very sure of "live"
    sure_live_context = (0.0, 14.0)
    assert fuse_learned(f, sure_live_context, (0.05, 0.05), 0.17, None) > 0.99  # learned alone: outvoted
    vetoed = fuse_learned(f, sure_live_context, (0.05, 0.05), 0.17, 0.2)
    assert vetoed < 0.17  # a confident "screen" (P(real) 0.05 < 0.2) is not outvoted
    assert vetoed == pytest.approx(sigmoid(logit(0.17) + logit(0.05) - logit(0.2)))


def test_the_pipeline_fuses_each_frames_own_four_logits(face_models, shared_data):
    from edge_liveness.config import load_settings
    from edge_liveness.pipeline import PAIR_MODELS, PRIMARY_PASSIVE, TEXTURE, VIEW_LOGITS, Pipeline, load_models

    cap = cv2.VideoCapture(str(shared_file("video", "lestari_real.mp4")))
    frames = []
    for _ in range(40):
        ok, img = cap.read()
        if ok:
            frames.append(img)
    cap.release()
    settings = load_settings(None)
    models = load_models(settings)
    assert models.fusion is not None  # the default: learned
    pipe = Pipeline(settings, models)
    pipe.always_classify = True
    checked = 0
    for i, img in enumerate(frames):
        r = pipe.process(_frame(img, i / 30.0, i))
        s = r.scores
        if r.scored and all(k in s for k in VIEW_LOGITS + PAIR_MODELS):
            want = fuse_learned(models.fusion, tuple(s[k] for k in VIEW_LOGITS), tuple(s[k] for k in PAIR_MODELS),
                                models.liveness.threshold, settings.decision.learned_veto_threshold)
            assert r.obs.p_live == pytest.approx(want)
            assert s[TEXTURE] == pytest.approx(float(np.mean([s[k] for k in PAIR_MODELS])))
            assert s[PRIMARY_PASSIVE] == pytest.approx(sigmoid(sum(s[k] for k in VIEW_LOGITS) / 2))
            checked += 1
    assert checked >= 3


def test_decision_threshold_moves_the_bar_under_the_learned_fusion(face_models, shared_data):
    """The fused verdict is centred on the model manifest's threshold, so a decision.threshold set in the config
    is a stricter (or looser) bar on it, as on the model's own score: not re-centred away."""
    from edge_liveness.config import load_settings
    from edge_liveness.pipeline import Pipeline, load_models

    cap = cv2.VideoCapture(str(shared_file("video", "tranvanluyt_real.mp4")))
    frames = [img for ok, img in (cap.read() for _ in range(45)) if ok]
    cap.release()
    default = load_settings(None)
    models = load_models(default)
    runs = {}
    for name, settings in (("default", default), ("strict", load_settings(None, decision={"threshold": 0.97}))):
        pipe = Pipeline(settings, models)
        runs[name] = ([pipe.process(_frame(img, i / 30.0, i)) for i, img in enumerate(frames)], pipe.engine.threshold)
    (base, t0), (strict, t1) = runs["default"], runs["strict"]
    assert t0 == models.liveness.threshold and t1 == 0.97
    p0 = [r.obs.p_live for r in base if r.scored]
    assert p0 and p0 == [r.obs.p_live for r in strict if r.scored]  # the same verdicts ...
    live0, live1 = sum(p >= t0 for p in p0), sum(p >= t1 for p in p0)
    assert live0 > live1  # ... judged against a higher bar: fewer frames on the live side


def test_fusion_veto_in_the_config_keeps_the_veto(face_models):
    from edge_liveness.config import load_settings
    from edge_liveness.pipeline import load_models

    settings = load_settings(None)
    settings.decision.fusion = "veto"
    assert load_models(settings).fusion is None
    assert fuse(0.9, 0.17, 0.1, 0.2) < 0.17 and math.isclose(fuse(0.9, 0.17, None, 0.2), 0.9)


def _frame(img, ts, index):
    from edge_liveness.camera.sources import Frame

    return Frame(img, ts, index)


def test_a_copy_of_the_shipped_model_finds_the_shipped_fusion_and_another_model_is_refused(tmp_path):
    from edge_liveness.liveness.fusion import load_for

    lsha, tsha = _shas()
    copy = tmp_path / "liveness_two_view_int8.tflite"
    shutil.copyfile(MODELS / "liveness_two_view_int8.tflite", copy)
    assert load_for(copy, lsha, tsha, VIEW_WEIGHTS).threshold == LearnedFusion.load(MODELS / FUSION_FILE, lsha, tsha, VIEW_WEIGHTS).threshold
    with pytest.raises(ModelError, match="is missing"):
        load_for(tmp_path / "retrained.tflite", "f" * 64, tsha, VIEW_WEIGHTS)
