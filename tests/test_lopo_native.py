"""The native-resolution patch of converters/lopo/native.py on real frames: the camera's own pixels,
centred on the face's central skin, shifted inside the frame, edge-replicated only when the frame is
smaller than the patch."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import shared_file
from converters.lopo.native import cut_patch, face_centre


@pytest.fixture(scope="module")
def lestari_frame() -> np.ndarray:
    """Frame 30 of lestari_real.mp4 (1080x720, a face of some 300 px: what 128 px crops shrink)."""
    cap = cv2.VideoCapture(str(shared_file("video", "lestari_real.mp4")))
    try:
        for _ in range(30):
            cap.grab()
        ok, frame = cap.read()
    finally:
        cap.release()
    assert ok, "lestari_real.mp4 has no frame 30"
    return frame


def test_the_patch_is_the_frames_own_pixels_between_the_nose_tip_and_the_eyes(face_finder, lestari_frame):
    from edge_liveness.vision.landmarks import NOSE_TIP

    face_finder.reset()
    lm = face_finder.process(lestari_frame).landmarks
    assert lm is not None, "the mesh finds no face in lestari_real.mp4 frame 30"
    cx, cy = face_centre(lm.points)
    eyes_y = (lm.left_eye[1] + lm.right_eye[1]) / 2
    assert eyes_y < cy < lm.points[NOSE_TIP, 1]  # below the eyes, above the nose tip
    assert min(lm.left_eye[0], lm.right_eye[0]) < cx < max(lm.left_eye[0], lm.right_eye[0])
    for size in (96, 128):
        patch, padded = cut_patch(lestari_frame, cx, cy, size)
        x0, y0 = round(cx - size / 2), round(cy - size / 2)
        assert not padded and patch.shape == (size, size, 3)
        assert (patch == lestari_frame[y0:y0 + size, x0:x0 + size]).all()  # no resampling at all
        # most of it is skin, not background: its colour spread stays far below the whole frame's
        assert patch.reshape(-1, 3).std(0).mean() < 0.5 * lestari_frame.reshape(-1, 3).std(0).mean()


def test_a_patch_near_the_border_is_shifted_inside_and_a_small_image_is_edge_replicated(lestari_frame):
    h, w = lestari_frame.shape[:2]
    patch, padded = cut_patch(lestari_frame, 5.0, h - 3.0, 128)  # bottom-left corner
    assert not padded and (patch == lestari_frame[h - 128:, :128]).all()
    small = np.ascontiguousarray(lestari_frame[200:300, 400:480])  # 100 x 80: smaller than the patch
    patch, padded = cut_patch(small, 40.0, 50.0, 128)
    assert padded and patch.shape == (128, 128, 3)
    top, left = (128 - 100) // 2, (128 - 80) // 2
    assert (patch[top:top + 100, left:left + 80] == small).all()  # the image itself, unscaled, in the middle
    assert (patch[:top, left:left + 80] == small[:1]).all() and (patch[top:top + 100, :left] == small[:, :1]).all()
