import json
import subprocess
import sys

from conftest import shared_file


def _run(*args):
    return subprocess.run([sys.executable, "-m", "edge_liveness", "ear", *map(str, args)], capture_output=True, text=True)


def test_ear_cli_gif_and_no_face(face_models, shared_data, tmp_path):
    gif = shared_file("eyes", "yalefaces", "subject01.sleepy.gif")
    r = _run(gif)
    assert r.returncode == 0
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    d = json.loads(lines[0])
    assert d["file"] == str(gif) and d["face"] is True and d["source"] == "eye_model"
    assert 0.0 < d["ear_left"] < 0.5 and 0.0 < d["ear_right"] < 0.5
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "blank.png"), np.full((120, 160, 3), 128, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    r = _run(tmp_path)
    rows = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert rows == [{"file": str(tmp_path / "blank.png"), "face": False}]


def test_ear_cli_bad_path_one_line(face_models, tmp_path):
    r = _run(tmp_path / "nope.jpg")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "does not exist" in r.stderr
