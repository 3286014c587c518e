"""The texture pair as a veto (issue 26): fusion rules, and the daemon's pipeline on real recordings.

A screen replay that fills the camera's view (no bezel, no hand: scripts/fullview_replays.py cuts one
from a real replay video) must not pass once the texture pair scores beside the liveness model; the
same person's real recording still passes. Real recordings, real models, the daemon's own pipeline.
"""

from __future__ import annotations

import sys

import pytest

from conftest import REPO, shared_file
from edge_liveness.liveness.fusion import fuse, logit

sys.path.insert(0, str(REPO / "scripts"))
import fullview_replays as fv  # noqa: E402


def test_both_models_must_call_it_live():
    t, T = 0.17, 0.5
    assert fuse(0.9, t, 0.9, T) >= t  # both live
    assert fuse(0.9, t, 0.2, T) < t  # the pair's confident "attack" cannot be outvoted
    assert fuse(0.1, t, 0.99, T) < t  # nor can it outvote the liveness model
    assert fuse(0.4, t, None, T) == pytest.approx(0.4)  # not scored yet: the liveness model alone
    # the smaller margin decides, on the liveness model's scale (its threshold keeps its meaning)
    assert logit(fuse(0.9, t, 0.6, T)) - logit(t) == pytest.approx(logit(0.6) - logit(T), abs=1e-9)
    assert fuse(0.3, t, 0.99, T) == pytest.approx(0.3)


def _decisions(settings, path):
    from edge_liveness.pipeline import build_pipeline, load_models
    from edge_liveness.recordings.attempts import replay_attempts

    return replay_attempts(build_pipeline(settings, load_models(settings)), path)


@pytest.fixture(scope="module")
def fullview_tranvanluyt(tmp_path_factory):
    src = shared_file("video", "tranvanluyt_fake_screen_replay.mp4")
    out = tmp_path_factory.mktemp("fullview")
    assert fv.main(["--shared", str(src.parent.parent), "--out", str(out), "--only", src.name, "--max-frames", "330"]) == 0
    return out / "tranvanluyt_fake_screen_replay_fullview.mp4"


def test_a_full_view_screen_replay_is_refused_and_the_real_person_passes(fullview_tranvanluyt, face_models):
    from edge_liveness.config import load_settings

    with_pair = load_settings(None, active={"mode": "blink"})
    assert with_pair.models.texture  # the default
    rec = _decisions(with_pair, fullview_tranvanluyt)
    results = [a.result for a in rec.attempts]
    assert results and "pass" not in results, results
    real = _decisions(with_pair, shared_file("video", "tranvanluyt_real.mp4"))
    assert "pass" in [a.result for a in real.attempts]


def test_lopo_veto_keeps_the_primary_threshold_and_vetoes_below_the_pairs():
    import numpy as np

    from converters.lopo.texture import TextureVeto

    primary_logits = np.array([3.0, 2.0, 1.0, 0.5, -1.0, 2.5])
    p_texture = np.array([0.9, 0.1, 0.9, 0.9, 0.9, 0.25])
    veto = TextureVeto(lambda idx: primary_logits[idx], p_texture, texture_threshold=0.2)
    live = np.arange(4)
    t = veto.align(live, 0.25)  # the primary's own threshold on these (unseen, real) rows
    assert t == pytest.approx(1.0)
    fused = veto(np.arange(6))
    # row 1: the primary says live (2.0 >= 1.0) but the pair says 0.1 < 0.2: vetoed
    assert fused[1] < t and fused[0] >= t and fused[5] >= t
    # the pair never lifts a score the primary put below its threshold
    assert fused[4] == pytest.approx(-1.0)
