"""`edge-liveness bench` smoke tests: a few real frames through the real pipeline, real models, a real
outbox and broker. They check the report's shape and sanity, never a speed (speed is the benchmark's
job, not a unit test's)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest

from conftest import shared_file
from edge_liveness.bench.command import STAGES
from edge_liveness.cli import main as cli_main


@pytest.fixture(scope="module")
def liveness_model() -> Path:
    from edge_liveness.liveness.model import default_model_path

    # EDGE_LIVENESS_MODELS__LIVENESS (read by the bench's settings too) points at another model
    p = Path(os.environ.get("EDGE_LIVENESS_MODELS__LIVENESS") or default_model_path())
    if not p.is_file():
        pytest.skip(f"the shipped liveness model {p.name} is not in models/ yet (the bench needs it)")
    return p


def _number_ok(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0


def _check_summary(name: str, st: dict, frames: int) -> None:
    assert 0 <= st["runs"], name
    if name != "publish":  # publish counts payloads, several per frame are possible
        assert st["runs"] <= frames, name
    keys = ("p50_ms", "p95_ms", "mean_ms", "max_ms")
    if st["runs"]:
        assert all(_number_ok(st[k]) for k in keys), (name, st)
        assert st["p50_ms"] <= st["p95_ms"] <= st["max_ms"] + 1e-9, (name, st)
    else:
        assert all(st[k] is None for k in keys), (name, st)


def _run(tmp_path: Path, capsys, *extra: str) -> tuple[int, dict, str]:
    src = shared_file("video", "tranvanluyt_real.mp4")
    rc = cli_main(["bench", "--source", str(src), "--out", str(tmp_path), *extra])
    captured = capsys.readouterr()
    files = sorted(tmp_path.glob("bench_*.json"))
    return rc, (json.loads(files[0].read_text()) if files else {}), captured.err


def test_bench_smoke_report(tmp_path, capsys, face_models, liveness_model):
    rc, res, err = _run(tmp_path, capsys, "--frames", "10", "--no-baseline", "--repeat", "1", "--sweep-runs", "5",
                        "--publish-runs", "10", "--startup-runs", "1", "--sweep-threads", "1,2")
    assert rc == 0, err
    assert "bench: timing the pipeline" in err  # progress goes to stderr
    n = res["pipeline"]["frames"]
    assert n == res["source"]["frames"] == 10
    assert set(STAGES) <= set(res["stages"])  # and any stage the pipeline adds (the texture pair), after them
    assert list(res["stages"])[: len(STAGES) - 1] == [s for s in STAGES if s != "publish"]
    for name, st in res["stages"].items():
        _check_summary(name, st, n)
    # every frame runs landmarks or the detector; pose/decide run on every frame, the eyes on those the schedule gives them
    assert res["stages"]["decode"]["runs"] == n
    for s in ("pose", "decide"):
        assert res["stages"][s]["runs"] == n
    assert 1 <= res["stages"]["eyes"]["runs"] <= n
    assert res["stages"]["detect"]["runs"] == res["pipeline"]["detector_runs"] >= 1  # the first face needs the detector
    assert res["stages"]["classify"]["runs"] == res["stages"]["crop"]["runs"] == res["pipeline"]["classify_runs"]
    p = res["pipeline"]
    for k in ("fps", "cpu_ms_per_frame", "fps_from_cpu_time"):
        assert _number_ok(p[k]) and p[k] > 0, k
    # the pipeline's figures from the configured loop alone (as the daemon runs it), the lockstep pass listed beside
    assert len(p["fps_all_passes"]) == len(p["fps_lockstep_passes"]) == 1 and p["fps"] == p["fps_all_passes"][0]
    assert all(_number_ok(f) and f > 0 for f in p["fps_lockstep_passes"])
    assert res["publish"]["submit"]["runs"] == 10 and _number_ok(res["publish"]["submit"]["p50_ms"])
    # the device process: measured in a subprocess that never loaded TensorFlow
    st = res["startup"]
    assert _number_ok(st["startup_s_median"]) and st["startup_s_median"] > 0
    assert _number_ok(st["peak_rss_mb"]) and st["peak_rss_mb"] > st["rss_after_import_mb"] > 0
    assert st["tensorflow_loaded"] is False and st["matplotlib_loaded"] is False
    # thread sweep: every model at 1 and 2 threads
    for model in ("detector", "landmarks", "liveness_int8"):
        for t in ("1", "2"):
            _check_summary(f"{model}/{t}", res["threads"]["models"][model][t]["call"], 10**9)
    assert set(res["threads"]["pipeline"]) == {"1", "2"}
    assert res["baseline"] == {"skipped": "--no-baseline"}
    assert [t["name"] for t in res["targets"]][:1] == ["pipeline fps (decode excluded)"] and len(res["targets"]) == 4
    assert res["machine"]["cpu"] and res["machine"]["usable_cores"] >= 1
    # the headline: attempt frames before (every model on every frame) and after (scheduled, overlapped as the
    # config runs it), same frames, same run; the one-thread scheduled path beside them
    att = res["attempts"]
    # (and overlapped with the worker's share before schedule.split_views, the texture pair's first model)
    assert set(att["variants"]) == {"every_frame", "scheduled", "scheduled_overlap", "scheduled_overlap_pair"}
    assert att["headline"]["variant"] == att["headline"]["scheduled_variant"] == "scheduled_overlap"
    ev, sc, ov = att["variants"]["every_frame"], att["variants"]["scheduled"], att["variants"]["scheduled_overlap"]
    op = att["variants"]["scheduled_overlap_pair"]
    assert ev["attempt_frames"] == sc["attempt_frames"] == ov["attempt_frames"] == op["attempt_frames"] == p["attempt_frames"] >= 1
    assert all(_number_ok(v["fps_during_attempts"]) and v["fps_during_attempts"] > 0 for v in (ev, sc, ov, op))
    assert att["headline"]["fps_during_attempts_scheduled"] == ov["fps_during_attempts"]
    assert att["same_decisions"] is True
    assert ev["stages"]["classify"]["ran_on"] == ev["attempt_frames"] >= sc["stages"]["classify"]["ran_on"]
    assert _number_ok(att["headline"]["speedup_during_attempts"])
    pi = res["pi4_projection"]
    assert pi["ratio"] > 1 and "XNNPACK" in pi["ratio_source"]
    measured = pi["ratio_measured_in_run"]
    if importlib.util.find_spec("tensorflow") is None:  # the device-only install: the stated ratio, and why
        assert measured is None and any("Pi ratio not measured in this run" in n for n in res["notes"])
    else:  # the reference network timed in this run, before the one pass and after it: the ratio is 44 ms over its best block
        assert len(measured["x86_blocks_ms"]) == 2 and all(_number_ok(b) and b > 0 for b in measured["x86_blocks_ms"])
        assert measured["x86_ms"] == min(measured["x86_blocks_ms"]) and pi["ratio"] == round(44.0 / measured["x86_ms"], 2)
    assert set(pi["variants"]) == set(att["variants"]) and all(_number_ok(v["pi4_fps_during_attempts"]) for v in pi["variants"].values())
    stem = next(tmp_path.glob("bench_*.json")).stem
    md = (tmp_path / f"{stem}.md").read_text()
    assert md.startswith("# edge-liveness bench") and md.index("## Attempt frames (the headline)") < md.index("## Targets")
    assert "### Pi 4 projection" in md
    assert (tmp_path / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_missing_source_is_one_line(tmp_path, capsys):
    rc = cli_main(["bench", "--source", str(tmp_path / "nope.mp4"), "--out", str(tmp_path), "--no-baseline"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "nope.mp4" in err[0] and "does not exist" in err[0]
    assert not list(tmp_path.glob("bench_*"))


def test_bench_bad_pi_ratio_is_one_line(tmp_path, capsys):
    src = shared_file("video", "tranvanluyt_real.mp4")
    rc = cli_main(["bench", "--source", str(src), "--out", str(tmp_path), "--pi-ratio", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--pi-ratio" in err[0]


def test_bench_bad_sweep_is_one_line(tmp_path, capsys):
    src = shared_file("video", "tranvanluyt_real.mp4")
    rc = cli_main(["bench", "--source", str(src), "--out", str(tmp_path), "--sweep-threads", "1,x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--sweep-threads" in err[0]


@pytest.mark.slow
@pytest.mark.workstation
def test_bench_with_seed_baseline(tmp_path, capsys, face_models, liveness_model):
    pytest.importorskip("tensorflow")
    rc, res, err = _run(tmp_path, capsys, "--frames", "6", "--baseline-frames", "4", "--repeat", "2", "--sweep-threads", "",
                        "--startup-runs", "1", "--publish-runs", "5", "--no-broker")
    assert rc == 0, err
    b = res["baseline"]
    assert "skipped" not in b, b
    assert set(b["variants"]) == {"predict", "call"}
    for v in b["variants"].values():
        assert v["frames"] == 4 and _number_ok(v["fps"]) and v["fps"] > 0
        # as many seed passes as the pipeline's (--repeat), the upper-middle one reported as with the pipeline's
        assert len(v["fps_each_pass"]) == 2 and v["fps"] == sorted(v["fps_each_pass"])[1]
    assert _number_ok(res["speedup"]["ratio"]) and res["speedup"]["frames"] == 4


def test_bench_smoke_run_as_test_sh_runs_it_judges_no_targets(tmp_path, capsys, face_models, liveness_model):
    """scripts/test.sh's smoke run checks no numbers, so it must not print targets as MISSED (issue 18, item 10)."""
    rc, res, err = _run(tmp_path, capsys, "--frames", "5", "--no-baseline", "--no-targets", "--repeat", "1",
                        "--sweep-threads", "", "--publish-runs", "3", "--startup-runs", "1", "--no-broker", "--parallel")
    assert rc == 0, err
    assert res["targets"] == [] and "MISSED" not in err and "targets not checked (--no-targets)" in err
    # --parallel: both paths also with models due on one frame side by side in two threads
    assert set(res["attempts"]["variants"]) == {"every_frame", "scheduled", "scheduled_overlap", "scheduled_overlap_pair",
                                                "every_frame_parallel", "scheduled_parallel"}
    assert "--no-targets" in (Path(__file__).resolve().parent.parent / "scripts" / "test.sh").read_text()


def test_the_overlap_projection_gives_the_worker_its_share_of_the_judge_stages():
    """The worker runs the face stages and, with a two-view model, its tight view (half the model's
    invokes and crops); with a one-view model the pair's first model (Pipeline.lend_worker)."""
    from edge_liveness.bench.attempt_frames import overlap_halves, worker_shares

    stages = {"detect": 0.1, "landmarks": 1.9, "pose": 0.1, "eyes": 1.2, "texture": 0.8, "classify": 1.0, "crop": 0.2}
    worker, caller = overlap_halves(stages, 5.5, worker_shares(2))
    assert worker == pytest.approx(2.1 + 0.5 + 0.1) and caller == pytest.approx(5.5 - 2.7)
    assert overlap_halves(stages, 5.5) == (worker, caller)  # the default is the two-view split
    worker, caller = overlap_halves(stages, 5.5, worker_shares(1))
    assert worker == pytest.approx(2.1 + 0.4) and caller == pytest.approx(5.5 - 2.5)
    assert worker_shares(2, split_views=False) == worker_shares(1)  # schedule.split_views off: the pair's share


def test_overlap_split_benchmark_compares_both_worker_shares_with_the_same_scores(tmp_path, face_models):
    """benchmarks/overlap_split.py: whole passes of the overlapped loop with the worker taking the tight view
    and taking the pair's first model, on a real source; every score must be the same bits either way."""
    import subprocess
    import sys

    src = shared_file("liveness", "nuaa", "live", "0001")
    out = tmp_path / "split.json"
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "overlap_split.py"), str(src), "--passes", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(out.read_text())["sources"][0]
    assert row["frames"] == 40 and row["attempt_frames"] >= 10 and row["same_scores"] is True
    for k in ("tight_view", "pair_first"):
        assert _number_ok(row[k]["fps_median_pass"]) and row[k]["fps_median_pass"] > 0
        assert _number_ok(row[k]["fps_during_attempts_median_pass"])
    bad = subprocess.run([sys.executable, str(repo / "benchmarks" / "overlap_split.py"), str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=120, cwd=repo)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "not found" in bad.stderr


def test_overlap_limits_benchmark_measures_each_bound_and_the_process_runner_gives_the_same_scores(tmp_path, face_models):
    """benchmarks/overlap_limits.py on real photos: two one-thread processes at once, the overlapped loop's
    fill and drain, extra CPU on either half, passive rates, and the find half in a forked process, whose
    every score must be the thread runner's bits. Bad flags are one line and exit 2."""
    import subprocess
    import sys

    src = shared_file("liveness", "nuaa", "live", "0001")
    out = tmp_path / "limits.json"
    repo = Path(__file__).resolve().parent.parent
    script = str(repo / "benchmarks" / "overlap_limits.py")
    proc = subprocess.run([sys.executable, script, "--source", str(src), "--frames", "10", "--passes", "1",
                           "--seconds", "0.5", "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-2000:]
    d = json.loads(out.read_text())
    assert d["frames"] == 10 and d["one_thread_fps"] > 0 and len(d["two_processes_fps"]) == 2
    assert all(f > 0 for f in d["two_processes_fps"])
    ov = d["overlap"]
    assert ov["fps"] > 0 and ov["fill_ms"] > 0 and ov["drain_ms"] >= 0 and ov["fill_ms"] + ov["drain_ms"] < ov["pass_ms"]
    assert d["which_half_bounds"]["same_scores"] is True and set(d["which_half_bounds"]["fps"]) == {"none", "find", "judge"}
    assert d["find_in_process"]["same_scores"] is True and all(v > 0 for v in d["find_in_process"]["fps"].values())
    scored = d["passive_rates"]["scored_frames"]
    assert scored["12"] >= scored["10"] >= scored["8"] >= 1  # fewer scores a second never scores more frames
    for bad, what in ((["--rates", "ten"], "--rates"), (["--source", str(tmp_path / "nope")], "does not exist")):
        r = subprocess.run([sys.executable, script, *bad], capture_output=True, text=True, timeout=120, cwd=repo)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and what in r.stderr


@pytest.mark.parametrize("name", ["bench_speedup_runs.json", "bench_speedup_runs_confirm.json",
                                  "bench_speedup_runs_takeback.json"])
def test_the_committed_speedup_runs_summary_is_what_its_runs_give(tmp_path, name):
    """Each committed seed speed-up summary (the README's ranges) recomputed, by the command it records, from
    the committed bench runs it names must come out the same."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    committed = json.loads((repo / "benchmarks" / "results" / name).read_text())
    args = committed["command"].split()[2:]
    paths = args[:args.index("--out")] if "--out" in args else args
    out = tmp_path / "runs.json"
    proc = subprocess.run([sys.executable, "benchmarks/speedup_runs.py", *paths, "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    again = json.loads(out.read_text())
    assert again["summary"] == committed["summary"] and again["runs"] == committed["runs"]
    assert all(s["runs"] >= 3 for s in committed["summary"].values())
    empty = subprocess.run([sys.executable, "benchmarks/speedup_runs.py", str(tmp_path)], capture_output=True, text=True,
                           timeout=60, cwd=repo)
    assert empty.returncode == 2 and "no bench JSON" in empty.stderr
    (tmp_path / "bench_x_t1.json").write_text("{not json")
    bad = subprocess.run([sys.executable, "benchmarks/speedup_runs.py", str(tmp_path)], capture_output=True, text=True,
                         timeout=60, cwd=repo)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "bench_x_t1.json" in bad.stderr


def test_the_committed_takeback_ab_is_what_its_runs_give(tmp_path):
    """benchmarks/runs_ab.py on the committed A/B runs (the two trees alternated, NUAA 0001 only by --source)
    gives the committed summary; a --source no file matches is one line and exit 2."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    d = repo / "benchmarks" / "results" / "bench_runs_2026-12-05_takeback_ab"
    out = tmp_path / "ab.json"
    cmd = [sys.executable, "benchmarks/runs_ab.py", str(d / "new"), str(d / "old"), "--names", "takeback,before"]
    proc = subprocess.run(cmd + ["--source", "nuaa-live-0001", "--out", str(out)], capture_output=True, text=True,
                          timeout=60, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    again, committed = json.loads(out.read_text()), json.loads((d / "summary.json").read_text())
    assert again == committed and again["takeback"]["runs"] == again["before"]["runs"] == 8
    every = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=repo)  # without --source: the videos too
    assert every.returncode == 0 and json.loads(every.stdout)["takeback"]["runs"] == 14
    none = subprocess.run(cmd + ["--source", "no-such-source"], capture_output=True, text=True, timeout=60, cwd=repo)
    assert none.returncode == 2 and len(none.stderr.strip().splitlines()) == 1 and "no-such-source" in none.stderr
