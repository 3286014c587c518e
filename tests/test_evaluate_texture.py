"""`evaluate` on images judges what the daemon decides: the liveness model vetoed by the texture pair.

Real crops of tranvanluyt's screen replay (../shared/data/liveness/selfie_replay): the two-view model
alone calls these attack crops live (the crop has no bezel to see), and the pair calls them screens.
"""

from __future__ import annotations

import argparse
import json
import shutil

import pytest

from conftest import REPO
from converters.reports import evaluate

MODEL = REPO / "models" / "liveness_two_view_int8.tflite"


@pytest.fixture(scope="module")
def replay_crops(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("texture_eval")
    src = shared_data / "liveness" / "selfie_replay" / "tranvanluyt"
    for label, dest in (("fake", root / "spoof" / "replay"), ("real", root / "live")):
        dest.mkdir(parents=True)
        files = sorted((src / label).glob("*.png"))[:6]
        if len(files) < 6:
            pytest.skip(f"{src / label}: fewer than 6 crops")
        for f in files:
            shutil.copyfile(f, dest / f.name)
    return root


def _run(folder, capsys, **kw) -> dict:
    args = argparse.Namespace(model=str(MODEL), data_dir=str(folder), json=True, no_detect=False, threshold=None, **kw)
    assert evaluate.main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_the_pair_vetoes_the_screen_the_model_alone_lets_in(replay_crops, face_models, tmp_path, capsys):
    cfg = tmp_path / "veto.toml"
    cfg.write_text('[decision]\nfusion = "veto"\n')
    fused = _run(replay_crops, capsys, config=str(cfg))
    alone = _run(replay_crops, capsys, no_texture=True)
    assert fused["texture"]["fusion"] == "veto"
    assert fused["n_spoof"] == alone["n_spoof"] == 6 and fused["n_live"] == alone["n_live"] == 6
    assert fused["texture"]["on"] and not alone["texture"]["on"]
    # the JSON's model_alone block is the --no-texture run, so one run shows both
    assert fused["texture"]["model_alone"]["apcer"] == pytest.approx(alone["apcer"])
    assert fused["texture"]["model_alone"]["bpcer"] == pytest.approx(alone["bpcer"])
    assert alone["apcer"] >= 0.5  # the model alone is fooled by most of these crops
    assert fused["apcer"] == 0.0 and fused["texture"]["vetoed_spoof"] >= 3
    assert fused["bpcer"] == alone["bpcer"] == 0.0  # and no real crop of his is vetoed


def test_a_fused_verdict_is_never_above_the_model_alone(replay_crops, face_models):
    scorer = evaluate.load_scorer(MODEL)
    t = evaluate._attach_texture(scorer, argparse.Namespace(no_texture=False, config=None))
    res = evaluate.score_folder(scorer, replay_crops, progress=False)
    v = evaluate.verdicts(res, scorer.threshold, t)
    assert len(v) == 12 and all(p is not None for p in res.texture_scores)
    assert all(f <= s + 1e-9 for f, s in zip(v, res.scores))


def test_config_with_the_texture_off_judges_the_model_alone(replay_crops, face_models, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[models]\ntexture = false\n")
    out = _run(replay_crops, capsys, config=str(cfg))
    assert out["texture"] == {"on": False} and out["apcer"] >= 0.5


def test_the_learned_fusion_judges_images_as_the_daemon_does(replay_crops, face_models, capsys):
    """decision.fusion = "learned" (the default): each image's verdict is the learned fusion of its own four
    logits, the pair vetoing on top; the screen crops the model alone lets in are refused."""
    from edge_liveness.liveness.fusion import fuse_learned

    out = _run(replay_crops, capsys)
    assert out["texture"]["fusion"] == "learned"
    assert out["texture"]["model_alone"]["apcer"] >= 0.5 and out["apcer"] <= 1 / 6
    scorer = evaluate.load_scorer(MODEL)
    t = evaluate._attach_texture(scorer, argparse.Namespace(no_texture=False, config=None))
    assert scorer.fusion is not None
    res = evaluate.score_folder(scorer, replay_crops, progress=False)
    v = evaluate.verdicts(res, scorer.threshold, t, scorer.fusion)
    want = [fuse_learned(scorer.fusion, vl, tm, scorer.threshold, t) for vl, tm in zip(res.view_logits, res.texture_models)]
    assert v.tolist() == pytest.approx(want)
    # a caller's own threshold is a bar on the same verdicts (centred on the manifest's), not a re-centring
    strict = evaluate.summarise(res, 0.97, scorer.name, t, scorer.fusion, centre=scorer.threshold)
    default = evaluate.summarise(res, scorer.threshold, scorer.name, t, scorer.fusion, centre=scorer.threshold)
    assert (default["apcer"], default["bpcer"]) == (0.0, 0.0) and (strict["apcer"], strict["bpcer"]) == (0.0, 1.0)


def test_tight_crops_are_named_as_showing_little_around_the_face(replay_crops, face_models, capsys):
    out = _run(replay_crops, capsys)
    ls = out["little_surroundings"]
    # a repository crop is about 1.5x the face: its 2.7x context view is mostly black border
    assert ls["n_images"] == 12 and ls["n_live"] == 6 and ls["n_spoof"] == 6
    args = argparse.Namespace(model=str(MODEL), data_dir=str(replay_crops), json=False, no_detect=False, threshold=None,
                              per_file=False)
    assert evaluate.main(args) == 0
    err = capsys.readouterr().err
    assert "12 of 12 images show little around the face" in err and "training.md section 9" in err


def test_full_camera_frames_are_not_flagged(face_models, shared_data, tmp_path, capsys):
    src = shared_data / "liveness" / "nuaa" / "live" / "0001"
    files = sorted(src.glob("*.jpg"))[:3]
    if len(files) < 3:
        pytest.skip(f"{src}: fewer than 3 NUAA frames")
    (tmp_path / "live").mkdir()
    for f in files:
        shutil.copyfile(f, tmp_path / "live" / f.name)
    out = _run(tmp_path, capsys)
    assert out["n_images"] == 3 and out["little_surroundings"]["n_images"] == 0
