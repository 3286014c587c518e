import dataclasses

import cv2
import numpy as np

from conftest import shared_file
from edge_liveness.vision.landmarks import LEFT_EYE_OUTER, RIGHT_EYE_OUTER, Landmarker
from fixtures_models import video_frames


def test_mesh_on_real_faces(face_finder):
    for name in ("obama.jpg", "biden.jpg", "alex-lacamoire.png", "obama-240p.jpg"):
        img = cv2.imread(str(shared_file("faces", "face_recognition_examples", name)))
        face_finder.reset()
        v = face_finder.process(img)
        lm = v.landmarks
        assert lm is not None and lm.presence > 0.9, name
        assert lm.points.shape == (468, 3)
        x0, y0, x1, y1 = v.face.box
        inside = ((lm.points[:, 0] > x0 - 0.1 * (x1 - x0)) & (lm.points[:, 0] < x1 + 0.1 * (x1 - x0))).mean()
        assert inside > 0.95, name
        # subject's right eye (33) on the image's left, eyes above the mouth
        assert lm.points[RIGHT_EYE_OUTER, 0] < lm.points[LEFT_EYE_OUTER, 0]
        assert lm.right_eye[1] < lm.mouth[1] and lm.left_eye[1] < lm.mouth[1]
        # mesh-derived anchors are on the detector's scale (the crop from either is the same size)
        assert 0.85 < lm.anchors().eye_distance / v.face.anchors().eye_distance < 1.15, name
        # computed once per mesh (asked three times a frame), the same answer every time
        assert lm.anchors() is lm.anchors() and lm == dataclasses.replace(lm)


def test_presence_low_off_face(face_models):
    img = cv2.imread(str(shared_file("faces", "face_recognition_examples", "obama.jpg")))
    from edge_liveness.vision.align import FaceAnchors

    lm = Landmarker(face_models / "face_landmark.tflite")
    # a patch of background (the top-left corner) is not a face
    off = lm.run(img, FaceAnchors(left_eye=(140.0, 100.0), right_eye=(60.0, 100.0), mouth=(100.0, 180.0)))
    assert off.presence < 0.5


def test_tracking_skips_detector_and_redetects(face_finder, shared_data):
    path = shared_file("video", "tranvanluyt_real.mp4")
    views = [face_finder.process(f) for _, _, f in video_frames(path, 0, 40)]
    face_finder.reset()
    assert all(v.landmarks is not None for v in views)
    tracked = [v.tracked for v in views]
    assert sum(tracked) >= 30
    ran = [i for i, v in enumerate(views) if v.faces is not None]
    # periodic re-detection while tracking holds
    assert len(ran) >= 2 and ran[1] - ran[0] <= face_finder.cfg.redetect_frames
    assert all(set(v.timings) == {"detect", "landmarks"} for v in views)


def test_multiple_face_policy(face_models):
    from edge_liveness.config import load_settings
    from edge_liveness.vision.tracking import FaceFinder

    img = cv2.imread(str(shared_file("faces", "face_recognition_examples", "two_people.jpg")))
    s = load_settings()
    s.detection.min_face_frac = 0.1
    v = FaceFinder.from_settings(s).process(img)
    assert v.n_faces == 2 and v.n_large_faces == 2 and v.reject_multiple
    s.detection.multiple_faces = "largest"
    v = FaceFinder.from_settings(s).process(img)
    assert not v.reject_multiple and v.face.area == max(f.area for f in v.faces)


def test_the_unit_scale_table_gives_the_multiplys_values_exactly():
    # Landmarker feeds the mesh through cv2.LUT: every pixel value, and a whole crop, as numpy's multiply
    from edge_liveness.vision.landmarks import _UNIT_SCALE

    rgb = np.random.default_rng(3).integers(0, 256, (192, 192, 3), dtype=np.uint8)
    want = np.empty(rgb.shape, np.float32)
    np.multiply(rgb, 1.0 / 255.0, out=want, casting="unsafe")
    got = np.zeros((1, *rgb.shape), np.float32)
    cv2.LUT(rgb, _UNIT_SCALE, dst=got[0])
    assert np.array_equal(got[0], want)
    assert np.array_equal(_UNIT_SCALE, (np.arange(256) / 255.0).astype(np.float32))
