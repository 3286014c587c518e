"""`evaluate` and the ISO/IEC 30107-3 metrics: every file accounted for, never a crash."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest

from conftest import REPO
from converters.reports import evaluate
from converters.measure import pad_metrics
from edge_liveness.liveness.model import default_model_path


def test_rates_follow_the_iso_definitions():
    # 4 attacks (one accepted at 0.5), 4 live (one rejected): APCER 1/4, BPCER 1/4
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.9, 0.4, 0.6, 0.7, 0.8]
    r = pad_metrics.rates(y, s, 0.5)
    assert (r.apcer, r.bpcer, r.acer) == (0.25, 0.25, 0.25)
    assert r.n_live == 4 and r.n_spoof == 4
    # AUC = share of (live, attack) pairs ranked right: 14 of 16 (0.9 beats 0.4, 0.6, 0.7, 0.8 ... )
    pairs = sum((a > b) + 0.5 * (a == b) for a in s[4:] for b in s[:4])
    assert r.auc == pytest.approx(pairs / 16)


def test_auc_handles_ties_and_one_class():
    assert pad_metrics.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert pad_metrics.roc_auc([1, 1], [0.1, 0.9]) is None
    r = pad_metrics.rates([1, 1], [0.1, 0.9], 0.5)
    assert r.apcer is None and r.acer is None and r.bpcer == 0.5


def test_threshold_minimises_acer_on_the_given_scores():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(200, int), np.ones(200, int)]
    s = np.r_[rng.normal(0.3, 0.1, 200), rng.normal(0.7, 0.1, 200)]
    t = pad_metrics.choose_threshold(y, s)
    best = min(pad_metrics.rates(y, s, c).acer for c in np.linspace(0, 1, 1001))
    assert pad_metrics.rates(y, s, t).acer <= best + 1e-9
    # quantised scores (as from an int8 output): the threshold is still optimal
    q = np.round(s * 256) / 256
    tq = pad_metrics.choose_threshold(y, q)
    assert pad_metrics.rates(y, q, tq).acer <= min(pad_metrics.rates(y, q, c).acer for c in np.unique(q)) + 1e-9


def test_apcer_per_attack_type():
    y = [0, 0, 0, 0, 1]
    s = [0.9, 0.1, 0.9, 0.9, 0.9]
    got = pad_metrics.apcer_per_attack(y, s, ["print", "print", "replay", "replay", ""], 0.5)
    assert got == {"print": 0.5, "replay": 1.0}


@pytest.fixture()
def messy_folder(shared_data, tmp_path):
    """live/ and spoof/print/ with real NUAA frames, plus a corrupt image, a non-image file and a faceless image."""
    import cv2

    root = tmp_path / "eval"
    (root / "live").mkdir(parents=True)
    (root / "spoof" / "print").mkdir(parents=True)
    for kind, dest in (("live", root / "live"), ("spoof", root / "spoof" / "print")):
        for f in sorted((shared_data / "liveness" / "nuaa" / kind / "0010").glob("*.jpg"))[:3]:
            shutil.copyfile(f, dest / f.name)
    (root / "live" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (root / "live" / "notes.txt").write_text("not an image")
    cv2.imwrite(str(root / "spoof" / "print" / "wall.png"), np.full((240, 320, 3), 128, np.uint8))
    return root


def _args(**kw):
    base = dict(json=True, no_detect=False, threshold=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_evaluate_counts_every_bad_file_and_finishes(messy_folder, face_models, capsys):
    from converters.reports import evaluate

    model = default_model_path()
    if not model.is_file():
        pytest.fail(f"shipped model {model} missing")
    rc = evaluate.main(_args(model=str(model), data_dir=str(messy_folder)))
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["n_live"] == 3 and out["n_spoof"] == 3
    assert out["no_face"] == 1 and out["unreadable"] == 1 and out["non_image"] == 1
    assert out["skipped_files"]["no_face"][0].endswith("wall.png")
    assert out["skipped_files"]["unreadable"][0].endswith("corrupt.jpg")
    assert out["skipped_files"]["non_image"][0].endswith("notes.txt")
    for k in ("apcer", "bpcer", "acer", "auc", "threshold"):
        assert k in out
    assert set(out["apcer_per_attack"]) == {"print"}
    assert out["acer"] == pytest.approx((out["apcer"] + out["bpcer"]) / 2)


def test_evaluate_text_output_and_no_detect(messy_folder, capsys):
    from converters.reports import evaluate

    one_view = default_model_path().with_name("liveness_mnv2_int8.tflite")  # --no-detect scores crops: one view
    rc = evaluate.main(_args(model=str(one_view), data_dir=str(messy_folder), json=False, no_detect=True, threshold=0.5))
    captured = capsys.readouterr()
    assert rc == 0
    # without detection the faceless image is scored as a (resized) crop: 4 spoof images
    assert "n_spoof: 4" in captured.out and "threshold: 0.5" in captured.out
    assert "skipped (unreadable)" in captured.err and "skipped (non_image)" in captured.err


def test_evaluate_bad_paths_are_one_line(tmp_path, capsys):
    from converters.reports import evaluate

    assert evaluate.main(_args(model=str(tmp_path / "x.tflite"), data_dir=str(tmp_path))) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert evaluate.main(_args(model=str(default_model_path()), data_dir=str(tmp_path / "nope"), no_detect=True)) == 2
    assert "no such folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory, shared_data):
    """Videos and images, labelled by folder and by an index.csv, plus a corrupt video and a stray file."""
    import cv2

    from conftest import shared_file

    root = tmp_path_factory.mktemp("videos")
    (root / "real").mkdir()
    (root / "other").mkdir()
    cap = cv2.VideoCapture(str(shared_file("video", "tranvanluyt_real.mp4")))
    frames = [cap.read()[1] for _ in range(300)]
    cap.release()
    h, w = frames[0].shape[:2]

    def write(path, imgs):
        vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
        for f in imgs:
            vw.write(f)
        vw.release()

    # 1.8 s before his first blink (tests/data/blinks: 161-166) and before his first head turn (from ~60)
    write(root / "real" / "clip.mp4", frames[0:55])
    write(root / "other" / "photo_attack.mp4", [frames[10]] * 240)  # a still photo, 8 s
    cv2.imwrite(str(root / "real" / "frame.jpg"), frames[10])
    (root / "other" / "index.csv").write_text("file,label,attack_type,person\nphoto_attack.mp4,fake,print,p1\n")
    (root / "real" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    (root / "notes.txt").write_text("not media\n")
    return root


def test_evaluate_videos_attempt_level_and_every_bad_file_reported(video_folder, face_models, capsys):
    model = REPO / "models" / "liveness_two_view_int8.tflite"
    rc = evaluate.main(argparse.Namespace(model=str(model), data_dir=str(video_folder), json=True, per_file=False,
                                          no_detect=False, threshold=None, config=None, active=None))
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    v = out["videos"]
    assert v["recordings"] == 2 and len(v["unreadable"]) == 1 and "broken.mp4" in v["unreadable"][0]
    files = {f["file"]: f for f in v["per_file"]}
    # label from index.csv with its attack type; the still photo never blinks
    attack = files["other/photo_attack.mp4"]
    assert attack["label"] == "spoof" and attack["attack_type"] == "print" and attack["person"] == "p1"
    assert [a["result"] for a in attack["attempts"]] == ["fail"] and attack["attempts"][0]["reason"] == "no_blink"
    assert v["apcer_per_attack"] == {"print": 0.0}
    # the 1.8 s real clip ends before a blink or a turn: an attempt with no decision, counted apart
    real = files["real/clip.mp4"]
    assert [a["result"] for a in real["attempts"]] == ["incomplete"] and v["bona_fide"]["incomplete"] == 1
    assert v["bona_fide"]["decided"] == 0 and v["bona_fide"]["pass_rate"] is None
    # images beside the videos are scored as images; the stray file is counted
    assert out["n_images"] == 1 and out["non_image"] == 1


def test_evaluate_videos_per_file_lines(video_folder, face_models, capsys):
    model = REPO / "models" / "liveness_mnv2_int8.tflite"
    rc = evaluate.main(argparse.Namespace(model=str(model), data_dir=str(video_folder / "other"), json=False,
                                          per_file=True, no_detect=False, threshold=None, config=None, active="challenge"))
    text = capsys.readouterr().out
    assert rc == 0
    assert "photo_attack.mp4  [spoof/print]  fail (" in text and "active mode: challenge" in text
    assert "APCER print: 0.000" in text


def test_evaluate_a_two_view_model_cuts_both_views(messy_folder, face_models, capsys):
    """The two-view model through `evaluate`: the detector's anchors give the tight and the context crop."""
    from pathlib import Path

    from converters.reports import evaluate

    two_view = Path(__file__).resolve().parent.parent / "models" / "liveness_two_view_int8.tflite"
    args = argparse.Namespace(model=str(two_view), data_dir=str(messy_folder), json=True, no_detect=False, threshold=None)
    assert evaluate.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_live"] > 0 and out["n_spoof"] > 0 and out["apcer"] is not None
    assert out["threshold"] == json.loads(two_view.with_suffix(".json").read_text())["threshold"]
    args.no_detect = True
    assert evaluate.main(args) == 2
    assert "two-view model" in capsys.readouterr().err
