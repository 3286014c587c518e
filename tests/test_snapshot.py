"""`edge-liveness snapshot`: one annotated frame and the aiming block, on real recordings and on
real frames made too small or faceless."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from conftest import shared_file
from edge_liveness.cli import main as cli

pytestmark = pytest.mark.usefixtures("face_models")


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli(["snapshot", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _row(out: str, name: str) -> str:
    rows = [ln for ln in out.splitlines() if ln.strip().startswith(name)]
    assert len(rows) == 1, out
    return rows[0]


def _first_frame(path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    ok, img = cap.read()
    cap.release()
    assert ok
    return img


def test_snapshot_of_a_recording(capsys, tmp_path, shared_data):
    video = shared_file("video", "apfol_real2.webm")
    out_file = tmp_path / "aim.jpg"
    rc, out, err = _run(capsys, "--source", str(video), "-o", str(out_file), "--frames", "10")
    assert rc == 0, err
    img = cv2.imread(str(out_file))
    assert img is not None and img.shape == (480, 640, 3)
    # annotated: not the camera frame as it came
    raw = [_first_frame(video)]
    assert not any(np.array_equal(img, r) for r in raw)
    assert out.splitlines()[0].startswith(f"snapshot {out_file} (640x480, frame ")
    frac = float(re.search(r"face size\s+([\d.]+) of the frame's short side", out).group(1))
    assert 0.15 < frac < 1.0 and " ok " in _row(out, "face size")
    yaw = float(re.search(r"yaw\s+([+-][\d.]+) deg", out).group(1))
    assert abs(yaw) < 30 and "detection.max_yaw_deg 30" in _row(out, "yaw")
    assert re.search(r"pitch\s+[+-][\d.]+ deg\s+-\s+no detection\.\* limit", out)
    assert re.search(r"brightness\s+\d+ of 255 \(face\)", out)
    assert out.splitlines()[-1].strip().startswith("ready: a face like this starts an attempt")


def test_small_face_and_no_face_say_what_to_fix(capsys, tmp_path, shared_data):
    video = shared_file("video", "apfol_real2.webm")
    frame = _first_frame(video)
    # a door whose installer asks for faces over 60 % of the frame: this recording's 0.44 is too small
    cfg = tmp_path / "strict.toml"
    cfg.write_text("[detection]\nmin_face_frac = 0.6\nmax_yaw_deg = 2\n")
    rc, out, err = _run(capsys, "--config", str(cfg), "--source", str(video), "-o", str(tmp_path / "far.jpg"),
                        "--frames", "5")
    assert rc == 0, err
    row = _row(out, "face size")
    assert " NO " in row and "detection.min_face_frac 0.6" in row
    assert "not ready: fix face size, yaw" in out and "detection.max_yaw_deg 2" in _row(out, "yaw")

    wall = tmp_path / "wall.png"
    cv2.imwrite(str(wall), cv2.resize(frame[300:480, :240], (640, 480)))  # a corner of the room, no face
    rc, out, err = _run(capsys, "--source", str(wall), "-o", str(tmp_path / "wall.jpg"), "--frames", "2")
    assert rc == 0, err
    assert re.search(r"faces\s+0\s+NO", out) and "no face" in _row(out, "face size")
    assert "(whole frame)" in _row(out, "brightness")
    assert "not ready: fix faces, face size" in out

    # the room's dark top corner fools the detector, but the landmarks find no face: not ready either
    ghost = tmp_path / "ghost.png"
    cv2.imwrite(str(ghost), cv2.resize(frame[:120, 520:640], (640, 480)))
    rc, out, err = _run(capsys, "--source", str(ghost), "-o", str(tmp_path / "ghost.jpg"), "--frames", "2")
    assert rc == 0, err
    assert re.search(r"faces\s+1\s+ok", out), out
    assert re.search(r"yaw\s+no landmarks\s+NO", out) and "not ready: fix yaw" in out


@pytest.mark.parametrize("args, needle", [
    (["--source", "/nonexistent/clip.mp4", "-o", "{tmp}/x.jpg"], "does not exist"),
    (["--source", "{video}", "-o", "{tmp}/x.png"], "give a .jpg file name"),
    (["--source", "{video}", "-o", "{tmp}/no/such/dir/x.jpg"], "does not exist: create it"),
    (["--source", "{video}", "-o", "{tmp}/x.jpg", "--frames", "0"], "--frames must be 1 to 1000"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, shared_data, args, needle):
    video = shared_file("video", "apfol_real2.webm")
    argv = [a.format(tmp=tmp_path, video=video) for a in args]
    rc, out, err = _run(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.strip() and "XNNPACK" not in ln]
    assert rc == 2 and out == ""
    assert len(lines) == 1 and needle in lines[0], err
    assert not list(tmp_path.glob("**/*.jpg"))


# ---------------------------------------------------------------- issue 27: the ghost after the EAR text

def _ink_and_outline_columns(img: np.ndarray, rows: slice) -> tuple[int, int]:
    """Rightmost column of the white text and of its black outline within ``rows`` of the top band
    (the band darkens the flat grey frame to about 42: the outline is the only near-black there)."""
    band = img[rows].astype(int)
    ink = np.where((band.min(axis=2) > 200).any(axis=0))[0]
    outline = np.where((band.max(axis=2) < 20).any(axis=0))[0]
    assert ink.size and outline.size
    return int(ink.max()), int(outline.max())


@pytest.mark.parametrize("size", [(480, 640), (720, 1280), (240, 320)])
def test_overlay_text_has_no_ghost_glyph_after_it(size):
    """The outline used to be a second, thicker putText, which OpenCV advances further per glyph:
    its last character showed past the text (after the EAR numbers in the preview and `snapshot`)."""
    from edge_liveness.web.annotate import Overlay, draw

    frame = np.full((*size, 3), 120, np.uint8)
    img = draw(frame, Overlay(ear_left=0.234, ear_right=0.251, p_live=0.987, state="idle"))
    scale = max(0.8, min(img.shape[:2]) / 400)
    first_line = slice(0, round(22 * scale) + 4)
    ink_right, outline_right = _ink_and_outline_columns(img, first_line)
    assert outline_right <= ink_right + 2, (ink_right, outline_right)


def test_overlay_text_leaves_out_what_its_font_cannot_draw():
    """Hershey fonts draw ASCII only; a degree sign or an accent would come out as '?' marks."""
    from edge_liveness.web.annotate import _text

    plain, fancy, question = (np.full((60, 300, 3), 120, np.uint8) for _ in range(3))
    _text(plain, "yaw 5 deg", (6, 30), 0.6, (255, 255, 255))
    _text(fancy, "yaw 5\u00b0 deg", (6, 30), 0.6, (255, 255, 255))
    _text(question, "yaw 5? deg", (6, 30), 0.6, (255, 255, 255))
    assert np.array_equal(fancy, plain) and not np.array_equal(fancy, question)
