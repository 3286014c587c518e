"""Raspberry Pi support that runs on x86: install.sh's Pi plan, the 32-bit refusal, check_pi.sh's skip
lines and the comparison scripts/check_pi.sh makes. The emulated Pi run itself is scripts/check_pi.sh."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "scripts" / "install.sh"
CHECK_PI = REPO / "scripts" / "check_pi.sh"
COMPARE = REPO / "scripts" / "pi" / "compare.py"
VIDEO = REPO.parent / "shared" / "data" / "video" / "tranvanluyt_real.mp4"
CLI = Path(sys.executable).parent / "edge-liveness"

sys.path.insert(0, str(COMPARE.parent))
import compare as pi_compare  # noqa: E402  (scripts/pi is not a package)


def _dry_run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALL), "--dry-run", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_pi_dry_run_takes_numpy_from_apt_and_pins_the_venv_to_it():
    r = _dry_run("--platform", "pi", "--no-start")
    assert r.returncode == 0, r.stderr
    apt = next(line for line in r.stdout.splitlines() if "apt-get install" in line)
    assert "python3-numpy" in apt.split() and "python3-picamera2" in apt.split()
    # the constraint file pins numpy to apt's version, and pip installs under it
    assert "numpy==" in r.stdout and "opencv-python-headless<4.12" in r.stdout
    pip = next(line for line in r.stdout.splitlines() if "pip install" in line)
    assert "-c /opt/edge-liveness/etc/pi-constraints.txt" in pip
    # the order matters: apt first (numpy present), then venv, then pip under the constraint
    out = r.stdout
    assert out.index("apt-get install") < out.index("python3 -m venv") < out.index("pip install")


@pytest.mark.parametrize("platform", ["jetson", "generic"])
def test_other_platforms_get_no_numpy_pin(platform):
    r = _dry_run("--platform", platform, "--no-start")
    assert r.returncode == 0, r.stderr
    assert "pi-constraints" not in r.stdout and "python3-numpy" not in r.stdout


@pytest.mark.parametrize("machine", ["armv7l", "armv6l"])
def test_32bit_arm_is_refused_in_one_line_naming_the_64bit_os(tmp_path, machine):
    fake = tmp_path / "uname"
    fake.write_text(f"#!/bin/sh\necho {machine}\n")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    r = _dry_run("--platform", "pi", env=env)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "ai-edge-litert" in lines[0] and "64-bit Raspberry Pi OS" in lines[0] and machine in lines[0]
    assert "apt-get" not in r.stdout  # refused before any step


def _check_pi(env_extra: dict, user: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_extra)
    cmd = ["bash", str(CHECK_PI)]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=REPO)


def test_check_pi_skips_in_one_line_without_the_video(tmp_path):
    r = _check_pi({"EDGE_LIVENESS_PI_VIDEO": str(tmp_path / "absent.mp4"),
                   "EDGE_LIVENESS_PI_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    skips = [line for line in r.stdout.splitlines() if line.startswith("check_pi: SKIP:")]
    assert len(skips) == 1, r.stdout
    assert "absent.mp4" in skips[0] or "needs root" in skips[0]
    assert not (tmp_path / "cache").exists()  # nothing built


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to drop to a user")
def test_check_pi_skips_in_one_line_when_not_root(tmp_path):
    r = _check_pi({"EDGE_LIVENESS_PI_CACHE": str(tmp_path / "cache")}, user="65534")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("check_pi: SKIP: needs root")


# ------------------------------------------------------------------ the comparison, on a real x86 trace

@pytest.fixture(scope="module")
def x86_trace(tmp_path_factory) -> Path:
    if not VIDEO.is_file():
        pytest.skip(f"no {VIDEO} (shared data)")
    d = tmp_path_factory.mktemp("pi")
    clip = d / "clip.mkv"
    subprocess.run([sys.executable, str(COMPARE), "cut", str(VIDEO), str(clip), "--start", "150", "--frames", "60"],
                   check=True, capture_output=True, timeout=120)
    out = d / "x86.jsonl"
    with out.open("w") as f:
        r = subprocess.run([str(CLI), "replay", "--trace", "--config", str(REPO / "config" / "edge-liveness.toml"),
                            str(clip)], stdout=f, stderr=subprocess.PIPE, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out


def test_the_clip_decides_pass_on_x86(x86_trace):
    t = pi_compare.read_trace(x86_trace)
    assert len(t.frames) == 60
    assert t.decision == ("pass", "live")


def test_identical_traces_compare_clean(x86_trace, tmp_path):
    out = tmp_path / "r.json"
    rc = pi_compare.main(["compare", "--x86", str(x86_trace), "--pi", f"cortex-a72={x86_trace}",
                          "--pi-ms", "cortex-a72=30000", "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    cpu = report["cpus"][0]
    assert cpu["problems"] == [] and cpu["max_abs_p_live_diff"] == 0.0
    assert cpu["frames_compared"] == cpu["identical_p_live_frames"] > 0
    assert cpu["s_per_frame"] == pytest.approx(0.5)
    assert report["x86_decision"] == ["pass", "live"]


def test_compare_runs_without_qemu_on_path(x86_trace, tmp_path):
    """Issue 27: on a machine check_pi.sh never ran on there is no QEMU; comparing traces needs none
    (the report names QEMU's version only where it is installed)."""
    empty = tmp_path / "bin"
    empty.mkdir()
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, str(COMPARE), "compare", "--x86", str(x86_trace), "--pi",
                        f"cortex-a72={x86_trace}", "--out", str(out)], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PATH=str(empty)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    report = json.loads(out.read_text())
    assert report["qemu"] is None and report["cpus"][0]["problems"] == []


def _rewrite(src: Path, dst: Path, change) -> Path:
    lines = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    dst.write_text("".join(json.dumps(change(o)) + "\n" for o in lines))
    return dst


def test_a_score_beyond_tolerance_fails_and_names_the_frame(x86_trace, tmp_path):
    def bump(o):
        if o.get("type") == "frame" and o["i"] == 40 and o.get("p_live") is not None:
            o["p_live"] = round(o["p_live"] + 0.2 * (1 if o["p_live"] < 0.5 else -1), 4)
        return o
    r = pi_compare.compare(pi_compare.read_trace(x86_trace), pi_compare.read_trace(_rewrite(x86_trace, tmp_path / "a.jsonl", bump)), "cortex-a76")
    assert len(r.problems) == 1 and "frame 40" in r.problems[0]
    assert r.max_abs_p_live_diff == pytest.approx(0.2, abs=1e-3)


def test_a_small_score_difference_passes(x86_trace, tmp_path):
    def nudge(o):
        if o.get("type") == "frame" and o.get("p_live") is not None:
            o["p_live"] = round(o["p_live"] + 1 / 256, 6)
        return o
    r = pi_compare.compare(pi_compare.read_trace(x86_trace), pi_compare.read_trace(_rewrite(x86_trace, tmp_path / "b.jsonl", nudge)), "cortex-a72")
    assert r.problems == [] and r.max_abs_p_live_diff == pytest.approx(1 / 256, abs=1e-4)


def test_a_different_or_missing_decision_fails(x86_trace, tmp_path):
    def fail(o):
        if o.get("type") == "decision":
            o["result"], o["reason"] = "fail", "spoof"
        return o
    r = pi_compare.compare(pi_compare.read_trace(x86_trace), pi_compare.read_trace(_rewrite(x86_trace, tmp_path / "c.jsonl", fail)), "cortex-a72")
    assert any("decision" in p for p in r.problems)
    r2 = pi_compare.compare(pi_compare.read_trace(x86_trace), pi_compare.read_trace(_rewrite(
        x86_trace, tmp_path / "d.jsonl", lambda o: o if o.get("type") == "frame" else {"type": "other"})), "cortex-a72")
    assert any("decision None" in p for p in r2.problems)


def test_a_truncated_emulated_run_fails(x86_trace, tmp_path):
    lines = x86_trace.read_text().splitlines()[:30]
    short = tmp_path / "e.jsonl"
    short.write_text("\n".join(lines) + "\n")
    r = pi_compare.compare(pi_compare.read_trace(x86_trace), pi_compare.read_trace(short), "cortex-a72")
    assert any("30 frames traced" in p for p in r.problems)


def test_a_non_trace_file_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("Traceback (most recent call last):\n")
    with pytest.raises(SystemExit) as e:
        pi_compare.read_trace(bad)
    assert "not a JSON line" in str(e.value) and "replay --trace" in str(e.value)


def test_check_pi_scripts_pass_shellcheck():
    sc = shutil.which("shellcheck")
    if sc is None:
        pytest.skip("shellcheck not installed (scripts/test.sh installs it)")
    r = subprocess.run([sc, "-x", str(CHECK_PI)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ci_runs_check_pi_after_pytest_under_a_timeout():
    text = (REPO / "scripts" / "test.sh").read_text()
    assert text.index('-m pytest') < text.index("scripts/check_pi.sh")
    runs = [ln.strip() for ln in text.splitlines() if ln.strip().split()[:1] != ["#"] and "bash scripts/check_pi.sh" in ln]
    assert runs and all(ln.startswith("timeout ") for ln in runs), runs
