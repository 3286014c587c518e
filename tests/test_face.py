"""Detector and crop geometry on real labelled faces (dlib's examples/faces with its XML boxes)."""

import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from conftest import shared_file
from edge_liveness.vision.align import FaceAnchors, align_crop
from edge_liveness.vision.face import LEFT_EYE, RIGHT_EYE, FaceDetector, ssd_anchors

# dlib 68-point eye corners (image-left eye = subject's right) and the matching mesh indices
DLIB_TO_MESH = {36: 33, 39: 133, 42: 362, 45: 263}


def dlib_faces():
    out = []
    for xml in ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml"):
        root = ET.parse(shared_file("faces", "dlib_examples_faces", xml)).getroot()
        for img in root.iter("image"):
            for box in img.iter("box"):
                b = {k: int(box.get(k)) for k in ("left", "top", "width", "height")}
                parts = {int(p.get("name")): (int(p.get("x")), int(p.get("y"))) for p in box.iter("part")}
                out.append((img.get("file"), b, parts))
    return out


@pytest.fixture(scope="module")
def detector(face_models):
    return FaceDetector(face_models / "face_detection_short_range.tflite", min_score=0.5)


def test_anchor_count():
    assert ssd_anchors().shape == (896, 2)


def window(img, b, k=4.0):
    """A crop k x the labelled box around it: the short-range model wants faces that fill the frame."""
    cx, cy, s = b["left"] + b["width"] / 2, b["top"] + b["height"] / 2, max(b["width"], b["height"]) * k
    x0, y0 = int(max(0, cx - s / 2)), int(max(0, cy - s / 2))
    return img[y0:int(cy + s / 2), x0:int(cx + s / 2)], np.array([x0, y0], np.float32)


def test_detector_finds_every_dlib_face(detector, shared_data):
    faces = dlib_faces()
    assert len(faces) >= 40
    missed = []
    for file, b, _ in faces:
        img = cv2.imread(str(shared_data / "faces" / "dlib_examples_faces" / file))
        win, off = window(img, b)
        found = False
        for f in detector.detect(win):
            cx, cy = (f.box[0] + f.box[2]) / 2 + off[0], (f.box[1] + f.box[3]) / 2 + off[1]
            inside = b["left"] <= cx <= b["left"] + b["width"] and b["top"] <= cy <= b["top"] + b["height"]
            found |= inside and 0.7 <= f.side / max(b["width"], b["height"]) <= 2.5
        if not found:
            missed.append((file, b))
    assert not missed, f"{len(missed)} of {len(faces)} labelled faces missed: {missed}"


def test_mesh_eye_corners_match_dlib(detector, face_models, shared_data):
    from edge_liveness.vision.landmarks import Landmarker

    lm = Landmarker(face_models / "face_landmark.tflite")
    errs = []
    for file, b, parts in dlib_faces():
        img = cv2.imread(str(shared_data / "faces" / "dlib_examples_faces" / file))
        win, off = window(img, b)
        dets = detector.detect(win)
        if not dets:
            continue
        # the detection of THIS labelled face (windows can hold a neighbour too)
        c = np.array([b["left"] + b["width"] / 2, b["top"] + b["height"] / 2])
        f = min(dets, key=lambda d: np.linalg.norm(np.array([(d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2]) + off - c))
        a = FaceAnchors(f.keypoints[LEFT_EYE] + off, f.keypoints[RIGHT_EYE] + off, f.keypoints[3] + off)
        mesh = lm.run(img, a)
        assert mesh.presence > 0.5, file
        side = max(b["width"], b["height"])
        for d, m in DLIB_TO_MESH.items():
            p = mesh.points[m, :2]
            assert b["left"] <= p[0] <= b["left"] + b["width"] and b["top"] <= p[1] <= b["top"] + b["height"], (file, m)
            errs.append(np.linalg.norm(p - np.array(parts[d])) / side)
    assert len(errs) >= 4 * 40
    # eye corners within a few percent of the face size of dlib's own predictor
    assert np.median(errs) < 0.06, np.median(errs)


def test_keypoint_sides_and_whole_frame(detector, shared_data):
    img = cv2.imread(str(shared_file("faces", "face_recognition_examples", "obama.jpg")))
    faces = detector.detect(img)
    assert len(faces) == 1 and faces[0].score > 0.8
    k = faces[0].keypoints
    assert k[RIGHT_EYE, 0] < k[LEFT_EYE, 0]  # subject's right eye is on the image's left
    mirrored = detector.detect(np.ascontiguousarray(img[:, ::-1]))
    assert mirrored[0].keypoints[RIGHT_EYE, 0] < mirrored[0].keypoints[LEFT_EYE, 0]
    two = detector.detect(cv2.imread(str(shared_file("faces", "face_recognition_examples", "two_people.jpg"))))
    assert len(two) == 2


def test_align_crop_geometry(shared_data):
    img = cv2.imread(str(shared_file("faces", "face_recognition_examples", "obama.jpg")))
    a = FaceAnchors(left_eye=(550.0, 260.0), right_eye=(430.0, 230.0), mouth=(480.0, 380.0))
    c = align_crop(img, a, 128, 0.25)
    assert c.image.shape == (128, 128, 3) and c.image.dtype == img.dtype
    eyes = c.to_crop(np.array([a.right_eye, a.left_eye]))
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-6  # eye line level in the crop
    assert eyes[0, 0] < eyes[1, 0]
    pts = np.array([[10.0, 20.0], [300.0, 400.0]])
    assert np.allclose(c.to_frame(c.to_crop(pts)), pts)
    # a pixel of the crop is the frame sampled where the inverse matrix says
    u, v = 64, 40
    x, y = c.to_frame(np.array([u, v], float))
    assert np.abs(c.image[v, u].astype(int) - img[int(round(y)), int(round(x))].astype(int)).max() < 40
    bigger = align_crop(img, a, 128, 0.5)
    assert bigger.side > c.side * 1.19


def test_context_crop_is_the_same_square_scaled(shared_data):
    from edge_liveness.vision.align import context_crop

    img = cv2.imread(str(shared_file("faces", "face_recognition_examples", "obama.jpg")))
    a = FaceAnchors(left_eye=(550.0, 260.0), right_eye=(430.0, 230.0), mouth=(480.0, 380.0))
    tight = align_crop(img, a, 128, 0.25)
    ctx = context_crop(img, a, 128, 2.7)
    face_box = tight.side / 1.5
    assert ctx.image.shape == (128, 128, 3)
    assert abs(ctx.side - 2.7 * face_box) < 1e-6
    # same centre and eye line: the crop centre maps to the same frame point in both views
    centre = np.array([63.5, 63.5])
    assert np.allclose(tight.to_frame(centre), ctx.to_frame(centre))
    eyes = ctx.to_crop(np.array([a.right_eye, a.left_eye]))
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-6
    # the face box (the middle 1/2.7 of the context view) holds the tight view's face, resampled
    inner = cv2.resize(ctx.image[40:88, 40:88], (128, 128), interpolation=cv2.INTER_LINEAR)
    face_only = align_crop(img, a, 128, 0.0 + (48 / 128 * 2.7 - 1) / 2).image
    assert np.abs(inner.astype(int) - face_only.astype(int)).mean() < 12
    with pytest.raises(ValueError, match="context scale must be >= 1"):
        context_crop(img, a, 128, 0.5)


def test_inside_share_is_the_part_of_a_crop_that_shows_the_frame():
    from edge_liveness.vision.align import context_crop

    frame = np.full((480, 640, 3), 128, np.uint8)
    level = FaceAnchors(left_eye=(350.0, 220.0), right_eye=(290.0, 220.0), mouth=(320.0, 290.0))
    assert align_crop(frame, level, 64, 0.25).inside_share(frame.shape) == 1.0  # a face well inside the frame
    assert context_crop(frame, level, 64, 2.7).inside_share(frame.shape) == 1.0
    near = FaceAnchors(left_eye=(380.0, 220.0), right_eye=(260.0, 220.0), mouth=(320.0, 292.0))  # twice as close
    wide = context_crop(frame, near, 64, 2.7)
    border = (wide.image == 0).all(-1).mean()  # the crop's black border is the part outside the frame
    assert 0.3 < wide.inside_share(frame.shape, grid=64) < 0.8
    assert wide.inside_share(frame.shape, grid=64) == pytest.approx(1 - border, abs=0.03)
    # the same face at the frame's left edge: about half its tight crop runs off the frame
    edge = FaceAnchors(left_eye=(30.0, 220.0), right_eye=(-30.0, 220.0), mouth=(0.0, 290.0))
    assert align_crop(frame, edge, 64, 0.25).inside_share(frame.shape) == pytest.approx(0.5, abs=0.07)
