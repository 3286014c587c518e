"""Synthetic screen replays (converters/data/recapture.py, scripts/recapture_synth.py): the physics leaves
what a screen leaves (a periodic grid, colour moire, a bezel only where asked), deterministically, and the
script mirrors a tree with each file's person carried into OUT/index.csv the way `dataset extract` reads it."""

from __future__ import annotations

import csv
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, shared_file
from converters.data.dataset import _source_index
from converters.data.recapture import RecaptureParams, recapture, recapture_jpeg

SCRIPT = REPO / "scripts" / "recapture_synth.py"


def _params(seed: int = 0, **fixed) -> RecaptureParams:
    return replace(RecaptureParams.draw(np.random.default_rng(seed)), **fixed)


# a sharp camera a little off-axis, one screen pixel on 1.6 camera pixels: the grid's fundamental is
# near the camera's Nyquist frequency, as in a phone filming a phone at arm's length
SHARP = dict(px_scale=1.6, defocus=0.0, lens_blur=0.3, aperture=0.7, roll_deg=1.5, glare=0.0, fingers=0)


@pytest.fixture(scope="module")
def selfie() -> np.ndarray:
    img = cv2.imread(str(shared_file("liveness", "real_people", "td_real", "0001e96803--621f73fc7c3ae23005b89f74", "live_selfie.jpg")))
    return cv2.resize(img, (240, 320), interpolation=cv2.INTER_AREA)


def test_same_params_same_bytes_other_seed_other_bytes(selfie):
    for framing in ("fill", "bezel"):
        a = recapture_jpeg(selfie, _params(3), framing)
        assert a == recapture_jpeg(selfie, _params(3), framing)
        assert a != recapture_jpeg(selfie, _params(4), framing)
    # frames of one video share the screen and camera but not the sensor noise
    assert recapture_jpeg(selfie, _params(3), "fill", frame_index=1) != recapture_jpeg(selfie, _params(3), "fill")


@pytest.mark.parametrize("shape", [(320, 240), (480, 640), (97, 131)])
def test_output_is_bgr_uint8_of_the_input_size(shape):
    img = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    for framing in ("fill", "bezel"):
        out = recapture(img, _params(1), framing)
        assert out.shape == img.shape and out.dtype == np.uint8
    with pytest.raises(ValueError, match="framing"):
        recapture(img, _params(1), "hand")


def _peak_ratio(channel: np.ndarray) -> float:
    """Strongest spectral line away from DC over the median magnitude (a flat image + noise: ~6)."""
    x = channel.astype(np.float32)
    mag = np.abs(np.fft.fftshift(np.fft.fft2(x - x.mean())))
    h, w = mag.shape
    yy, xx = np.ogrid[:h, :w]
    mag[(yy - h // 2) ** 2 + (xx - w // 2) ** 2 < 8 ** 2] = 0  # DC and the slow shading
    return float(mag.max() / np.median(mag))


def _luma_chroma(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ycc = cv2.cvtColor(img, cv2.COLOR_BGR2YCrCb)
    return ycc[..., 0], ycc[..., 1]


def test_flat_grey_gets_the_grid_and_colour_moire_blur_and_noise_do_not():
    grey = np.full((480, 640, 3), 128, np.uint8)
    out = recapture(grey, _params(5, **SHARP, jpeg_quality=95), "fill")
    # the same grey through what a camera without a screen does: noise of the output's strength, blurred
    noise = np.random.default_rng(0).normal(0, out.std(), grey.shape)
    plain = cv2.GaussianBlur(np.clip(128 + noise, 0, 255).astype(np.uint8), (0, 0), 0.5)
    (luma, chroma), (plain_luma, plain_chroma) = _luma_chroma(out), _luma_chroma(plain)
    assert _peak_ratio(luma) > 5 * _peak_ratio(plain_luma), (_peak_ratio(luma), _peak_ratio(plain_luma))
    # colour moire: the Bayer mosaic aliases the R, G, B stripes into coloured bands, a line in chroma too
    assert _peak_ratio(chroma) > 5 * _peak_ratio(plain_chroma), (_peak_ratio(chroma), _peak_ratio(plain_chroma))
    # the grid is the screen's: far out of focus it is gone, the image is flat again
    blurred = _luma_chroma(recapture(grey, _params(5, **{**SHARP, "defocus": 3.0}), "fill"))[0]
    assert _peak_ratio(blurred) < _peak_ratio(luma) / 3


def _dark_run_from_centre(img: np.ndarray) -> int:
    """Longest run of dark pixels (< 40 % of the centre's level) on the lines from the centre to the 4 edges."""
    luma = cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32), (0, 0), 2)
    h, w = luma.shape
    dark = luma < 0.4 * luma[h // 2, w // 2]
    best = 0
    for line in (dark[h // 2, w // 2:], dark[h // 2, w // 2::-1], dark[h // 2:, w // 2], dark[h // 2::-1, w // 2]):
        run = 0
        for d in line:
            run = run + 1 if d else 0
            best = max(best, run)
    return best


def test_bezel_framing_has_a_dark_border_band_fill_has_none():
    bright = np.full((360, 480, 3), 200, np.uint8)
    for seed in range(3):
        p = _params(seed, glare=0.0, fingers=0, background="gradient", background_colors=((0.9, 0.9, 0.9), (0.5, 0.5, 0.5)))
        assert _dark_run_from_centre(recapture(bright, p, "bezel")) >= 3
        assert _dark_run_from_centre(recapture(bright, p, "fill")) == 0


def _write_tree(src: Path) -> None:
    rng = np.random.default_rng(0)
    (src / "p1").mkdir(parents=True)
    (src / "p2" / "sub").mkdir(parents=True)
    cv2.imwrite(str(src / "p1" / "a.jpg"), rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    cv2.imwrite(str(src / "p2" / "sub" / "b.png"), rng.integers(0, 256, (90, 70, 3), dtype=np.uint8))
    vw = cv2.VideoWriter(str(src / "p2" / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (96, 64))
    for i in range(10):
        vw.write(np.full((64, 96, 3), 20 * i, np.uint8))
    vw.release()
    (src / "p1" / "notes.txt").write_text("not media")
    with open(src / "index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "person"])
        w.writerows([["p1/a.jpg", "real", "alice"], ["p2/sub/b.png", "real", "bob"], ["p2/clip.avi", "real", "bob"]])


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_script_mirrors_the_tree_and_carries_persons(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    _write_tree(src)
    r = _run(src, "--out", out, "--framing", "both", "--seed", "7")
    assert r.returncode == 0, r.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "index.csv", "p1/a.jpg", "p2/clip.avi", "p2/sub/b.jpg"]
    assert cv2.imread(str(out / "p2" / "sub" / "b.jpg")).shape == (90, 70, 3)
    cap = cv2.VideoCapture(str(out / "p2" / "clip.avi"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 4  # frames 0, 3, 6, 9 of 10 (--every 3)
    rows = {r["file"]: r for r in csv.DictReader(open(out / "index.csv", newline=""))}
    assert {f: (r["person"], r["label"], r["attack_type"]) for f, r in rows.items()} == {
        "p1/a.jpg": ("alice", "fake", "replay"), "p2/sub/b.jpg": ("bob", "fake", "replay"), "p2/clip.avi": ("bob", "fake", "replay")}
    # `edge-liveness dataset extract OUT` keys OUT/index.csv by resolved path: every output finds its person
    index = _source_index(out)
    assert {index[str((out / f).resolve())]["person"] for f in rows} == {"alice", "bob"}
    assert r.stderr.strip().splitlines()[-1].startswith("recapture_synth: 3 media files")

    before = {p: p.read_bytes() for p in out.rglob("*.jpg")}
    again = _run(src, "--out", out, "--framing", "both", "--seed", "7")
    assert again.returncode == 0 and "3 already there" in again.stderr
    assert before == {p: p.read_bytes() for p in out.rglob("*.jpg")}


def test_script_limit_and_bad_input(tmp_path):
    src = tmp_path / "src"
    _write_tree(src)
    r = _run(src, "--out", tmp_path / "one", "--limit", "1", "--framing", "bezel", "--subject", "carol")
    assert r.returncode == 0, r.stderr
    assert len([p for p in (tmp_path / "one").rglob("*") if p.suffix in (".jpg", ".avi")]) == 1
    # --subject wins over the sources' index.csv, as in `dataset extract`: the LOPO holds people out by it
    assert {r["person"] for r in csv.DictReader(open(tmp_path / "one" / "index.csv", newline=""))} == {"carol"}
    for args in ([tmp_path / "missing", "--out", tmp_path / "o"], [src, "--out", src / "inside"]):
        bad = _run(*args)
        assert bad.returncode == 2
        assert len(bad.stderr.strip().splitlines()) == 1 and bad.stderr.startswith("error: "), bad.stderr
