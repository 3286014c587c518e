import numpy as np

from conftest import shared_file
from edge_liveness.config import load_settings
from edge_liveness.vision.headpose import HeadMotion, Pose, estimate_pose
from fixtures_models import video_frame, video_frames

VIDEO = ("video", "tranvanluyt_real.mp4")


def _pose(finder, frame):
    finder.reset()
    return estimate_pose(finder.process(frame).landmarks, frame.shape)


def test_pose_signs_on_real_frames(face_finder, shared_data):
    path = shared_file(*VIDEO)
    # frame 10 frontal; 120 nose toward the image's right (turned to his left); 400 looking down; 460 up
    front = _pose(face_finder, video_frame(path, 10))
    assert abs(front.yaw) < 10
    turned = video_frame(path, 120)
    p = _pose(face_finder, turned)
    assert p.yaw > 20
    m = _pose(face_finder, np.ascontiguousarray(turned[:, ::-1]))
    assert m.yaw < -20 and abs(m.yaw + p.yaw) < 8  # mirroring flips the yaw sign
    assert _pose(face_finder, video_frame(path, 400)).pitch < front.pitch - 15
    assert _pose(face_finder, video_frame(path, 460)).pitch > front.pitch + 15


def test_roll_follows_image_rotation(face_finder, shared_data):
    import cv2

    img = video_frame(shared_file(*VIDEO), 10)
    h, w = img.shape[:2]
    base = _pose(face_finder, img).roll
    # rotate the image 15 degrees counter-clockwise: the subject's left eye (image right) goes up
    r = cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), 15, 1.0), (w, h), borderMode=cv2.BORDER_REPLICATE)
    assert _pose(face_finder, r).roll - base < -10


def test_turns_and_nods_in_real_video(face_finder, shared_data):
    face_finder.reset()
    hm = HeadMotion(load_settings().active)
    events = []
    for i, ts, f in video_frames(shared_file(*VIDEO)):
        for e in hm.update(ts, estimate_pose(face_finder.process(f).landmarks, f.shape)):
            events.append((i, e))
    names = [e for _, e in events]
    # the person turns to his left (frames ~60-170), to his right (~220-310), looks down, looks up
    assert "turn_left" in names and "turn_right" in names and "nod" in names
    assert names.index("turn_left") < names.index("turn_right")


def test_head_motion_window_and_baseline():
    cfg = load_settings().active
    hm = HeadMotion(cfg)
    ts = 0.0
    for _ in range(30):  # neutral pose is not zero: baseline is the running median
        assert hm.update(ts, Pose(10.0, -12.0, 0.0)) == []
        ts += 1 / 30
    seen = []
    for y in [10 + cfg.turn_deg + 5] * 20 + [10.0] * 20:
        seen += hm.update(ts, Pose(y, -12.0, 0.0))
        ts += 1 / 30
    assert seen == ["turn_left"]
    # too slow: away longer than turn_window_s -> no event
    seen = []
    for y in [10 - cfg.turn_deg - 5] * int(30 * (cfg.turn_window_s + 1)) + [10.0] * 20:
        seen += hm.update(ts, Pose(y, -12.0, 0.0))
        ts += 1 / 30
    assert seen == []
    assert hm.update(ts, None) == []


def test_departure_is_named_on_the_frame_the_head_passes_the_threshold():
    """``departures`` fires once, when the excursion begins; the completed turn comes when the head is back."""
    cfg = load_settings().active
    hm = HeadMotion(cfg)
    ts, log = 0.0, []
    for y in [0.0] * 30 + [cfg.turn_deg * 1.5] * 15 + [0.0] * 15:
        done = hm.update(ts, Pose(-y, 0.0, 0.0))
        log.append((ts, list(hm.departures), done))
        ts += 1 / 30
    began = [(t, d) for t, d, _ in log if d]
    ended = [(t, e) for t, _, e in log if e]
    assert [d for _, d in began] == [["turn_right"]] and [e for _, e in ended] == [["turn_right"]]
    assert began[0][0] < 1.1 < ended[0][0]  # a few smoothing frames after 1.0 s, well before the return at 1.5 s


def test_the_neutral_pose_median_is_numpys_bit_for_bit():
    # headpose.middle replaces np.median on every frame (its call cost, not its answer)
    from edge_liveness.vision.headpose import middle

    rng = np.random.default_rng(1)
    for n in range(1, 80):
        for vals in (rng.normal(0, 20, n), np.round(rng.normal(0, 20, n), 1)):  # the second with ties
            assert middle(sorted(vals.tolist())) == float(np.median(vals.tolist()))


def test_the_neutral_window_keeps_its_median_as_it_slides():
    # _Axis keeps its window's values sorted as they come and go (base() runs on every frame): the
    # base must stay numpy's median of exactly the values in the 3 s window, ties and expiry included
    from edge_liveness.vision.headpose import NEUTRAL_WINDOW_S, _Axis

    rng = np.random.default_rng(2)
    axis = _Axis(deg=1e9, window_s=1.0)  # never away: every value joins the neutral window
    ts, window = 0.0, []
    for k in range(400):
        v = float(np.round(rng.normal(0, 5), 1))  # rounded: many ties
        ts += float(rng.choice([1 / 30, 1 / 15, 0.5]))  # frame gaps, and gaps that empty half the window
        axis.update(ts, v)
        window = [(t, x) for t, x in window + [(ts, v)] if t >= ts - NEUTRAL_WINDOW_S]
        want = float(np.median([x for _, x in window])) if len(window) >= 3 else None
        assert axis.base() == want, k
