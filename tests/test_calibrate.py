"""`edge-liveness calibrate`: the passive bar for one camera from its own real people.

The arithmetic (decide/calibration.py) on made-up scores: the bar where the share of frames asked for
falls under, never below the bar in force unless allowed, and one line naming what to record when there
is too little. The command on real recordings (td_real people and a shared video) through the daemon's
real models: it prints the config lines, the bar it prints is what the arithmetic gives on the scores the
pipeline reads, and a config's own decision.threshold is the floor.
"""

from __future__ import annotations

import pytest

from conftest import shared_file
from edge_liveness.cli import main as cli_main
from edge_liveness.decide.calibration import CalibrationError, calibrate, quantile_bar


def _five(level: float, n: int = 40) -> dict[str, list[float]]:
    return {f"person{k}": [level + 0.001 * i for i in range(n)] for k in range(5)}


def test_the_bar_is_where_the_share_of_frames_asked_for_falls_under():
    scores = [i / 100 for i in range(100)]
    assert quantile_bar(scores, 0.02) == 0.02 and quantile_bar(scores, 0.0) == 0.0 and quantile_bar(scores, 0.1) == 0.1
    cal = calibrate(_five(0.6), current=0.17, frames_lost=0.05)
    assert cal.site_bar == pytest.approx(0.602) and cal.bar == cal.site_bar and not cal.lowered
    assert cal.frames == 200 and cal.recordings == 5 and cal.frames_refused == pytest.approx(0.05)
    assert cal.recordings_refused == []


def test_a_camera_whose_real_people_sit_low_keeps_the_bar_in_force_unless_allowed():
    low = _five(0.05)
    kept = calibrate(low, current=0.17)
    assert kept.bar == 0.17 and kept.site_bar < 0.17 and not kept.lowered
    assert kept.recordings_refused == sorted(low)  # every one of them is under the bar it keeps: said, not hidden
    lowered = calibrate(low, current=0.17, allow_lower=True)
    assert lowered.bar == lowered.site_bar < 0.17 and lowered.lowered


@pytest.mark.parametrize("scores, fix", [({"a": [0.5] * 200, "b": [0.5] * 200}, "record at least 5 real people"),
                                         ({f"p{k}": [0.5] * 10 for k in range(5)}, "100 scored frames"),
                                         ({**{f"p{k}": [0.5] * 40 for k in range(4)}, "empty": []}, "4 recordings with a scored face")])
def test_too_little_to_calibrate_on_is_one_line_naming_what_to_record(scores, fix):
    with pytest.raises(CalibrationError) as e:
        calibrate(scores, current=0.17)
    assert fix in str(e.value) and "\n" not in str(e.value)


def _recordings() -> list[str]:
    td = "liveness/real_people/td_real/0001e96803--"
    return [str(shared_file(*f"{td}{k}/live_video.{x}".split("/"))) for k, x in
            (("621ea6b1e2c5d221d5131267", "MOV"), ("6238f1fa0478c01e4272b19c", "MOV"))]


def test_calibrate_prints_the_config_lines_from_the_pipelines_own_verdicts(face_models, shared_data, capsys, tmp_path):
    recs = _recordings()
    assert cli_main(["calibrate", *recs, "--min-recordings", "2", "--json"]) == 0
    got = __import__("json").loads(capsys.readouterr().out)
    assert got["recordings"] == 2 and got["frames"] >= 100 and got["current_threshold"] == pytest.approx(0.1699, abs=1e-4)
    assert got["threshold"] >= got["current_threshold"] and got["threshold"] == pytest.approx(max(got["site_bar"], got["current_threshold"]))
    # the same recordings with the bar in force set above the site's: the floor holds, the lines say so
    cfg = tmp_path / "c.toml"
    cfg.write_text("[decision]\nthreshold = 0.995\n")
    assert cli_main(["calibrate", *recs, "--min-recordings", "2", "-c", str(cfg)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1:] == ["[decision]", "threshold = 0.9950"]
    assert "the bar stays at the one in force" in err and "recordings" in err


def test_calibrate_with_a_missing_recording_is_one_line(capsys, tmp_path):
    assert cli_main(["calibrate", str(tmp_path / "nope.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.mp4" in err[0] and "no such recording" in err[0]


@pytest.mark.parametrize("bad", [["--frames-lost", "2"], ["--frames-lost", "-0.1"], ["--min-recordings", "0"]])
def test_calibrate_refuses_a_bad_option_before_reading_anything(bad, capsys):
    assert cli_main(["calibrate", "any.mp4", *bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --frames-lost")
