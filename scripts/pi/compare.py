#!/usr/bin/env python3
"""The x86 side of scripts/check_pi.sh: cut the clip, and compare emulated Pi replays with the x86 one.

    compare.py cut VIDEO OUT --start N --frames N
    compare.py compare --x86 TRACE --pi CPU=TRACE [--pi-ms CPU=MS] [--pi-versions CPU=FILE] --out JSON

A trace is `edge-liveness replay --trace` output: one JSON line per frame, plus decision lines.
The check passes when every CPU's decision (result and reason, blinks and frames of evidence) equals
x86's, the same frames show a face, and p_live agrees within the tolerances below (per frame, mean, and
the decision's passive median). Exit 1 with one line per
difference otherwise.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Tolerances, from measurements on the same lossless clip (docs/pi.md). The int8 model gives x86's
# outputs exactly on the same input; what differs is its input: the float32 face models and OpenCV's
# warps run other SIMD code on ARM and place the crop a fraction of a pixel apart, and single-frame
# p_live moves by several int8 steps (1/256) with that. Measured: x86 with OpenCV 4.11 vs 5.0 differs
# by up to 0.066 per frame (mean 0.018); the emulated cortex-a72 vs x86 by up to 0.082 (mean 0.021).
# The decision rests on a median over about a second, which moved by at most 0.024.
P_LIVE_TOLERANCE = 0.125  # any one frame (32 int8 steps)
MEAN_TOLERANCE = 0.04  # mean |diff| over the clip
MEDIAN_TOLERANCE = 0.05  # the decision's evidence.passive_median


@dataclass
class Trace:
    frames: list[dict]
    decisions: list[dict]

    @property
    def decision(self) -> tuple[str, str] | None:
        if not self.decisions:
            return None
        d = self.decisions[-1]
        return (d.get("result", ""), d.get("reason", ""))


@dataclass
class CpuResult:
    cpu: str
    decision: list[str] | None
    frames: int
    frames_compared: int
    max_abs_p_live_diff: float
    mean_abs_p_live_diff: float
    identical_p_live_frames: int
    passive_median_diff: float | None = None
    pipeline_ms_per_frame: float | None = None  # the trace's per-stage times summed: emulated work per frame
    replay_s: float | None = None
    s_per_frame: float | None = None
    versions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_trace(path: Path) -> Trace:
    frames, decisions = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise SystemExit(f"compare.py: {path}:{n} is not a JSON line ({line[:60]!r}): is it a replay --trace output?")
        if obj.get("type") == "frame":
            frames.append(obj)
        elif obj.get("type") == "decision":
            decisions.append(obj)
    return Trace(frames, decisions)


def compare(x86: Trace, pi: Trace, cpu: str, tolerance: float = P_LIVE_TOLERANCE) -> CpuResult:
    """Every difference between an emulated replay and x86's, as problem lines."""
    problems: list[str] = []
    if x86.decision is None:
        problems.append("x86 made no decision on the clip: the comparison needs a clip that decides")
    if pi.decision != x86.decision:
        problems.append(f"{cpu}: decision {pi.decision} differs from x86's {x86.decision}")
    if len(pi.frames) != len(x86.frames):
        problems.append(f"{cpu}: {len(pi.frames)} frames traced, x86 traced {len(x86.frames)}")
    diffs: list[float] = []
    for a, b in zip(x86.frames, pi.frames):
        if bool(a.get("face")) != bool(b.get("face")):
            problems.append(f"{cpu}: frame {a.get('i')}: face {b.get('face')} on the Pi, {a.get('face')} on x86")
            continue
        pa, pb = a.get("p_live"), b.get("p_live")
        if pa is None or pb is None:
            if (pa is None) != (pb is None):
                problems.append(f"{cpu}: frame {a.get('i')}: p_live {pb} on the Pi, {pa} on x86")
            continue
        d = abs(float(pa) - float(pb))
        diffs.append(d)
        if d > tolerance:
            problems.append(f"{cpu}: frame {a.get('i')}: p_live {pb} vs x86 {pa} (|diff| {d:.4f} > {tolerance})")
    if not diffs:
        problems.append(f"{cpu}: no frame with a p_live on both sides: nothing was compared")
    elif sum(diffs) / len(diffs) > MEAN_TOLERANCE:
        problems.append(f"{cpu}: mean |p_live diff| {sum(diffs) / len(diffs):.4f} > {MEAN_TOLERANCE}")
    median_diff = None
    if x86.decisions and pi.decisions:
        ea, eb = x86.decisions[-1].get("evidence", {}), pi.decisions[-1].get("evidence", {})
        if ea.get("passive_median") is not None and eb.get("passive_median") is not None:
            median_diff = round(abs(float(ea["passive_median"]) - float(eb["passive_median"])), 5)
            if median_diff > MEDIAN_TOLERANCE:
                problems.append(f"{cpu}: decision evidence passive_median {eb['passive_median']} vs x86 "
                                f"{ea['passive_median']} (|diff| {median_diff} > {MEDIAN_TOLERANCE})")
        for key in ("blinks", "frames"):
            if ea.get(key) != eb.get(key):
                problems.append(f"{cpu}: decision evidence {key} {eb.get(key)} vs x86 {ea.get(key)}")
    return CpuResult(
        cpu=cpu,
        decision=list(pi.decision) if pi.decision else None,
        frames=len(pi.frames),
        frames_compared=len(diffs),
        max_abs_p_live_diff=round(max(diffs, default=0.0), 5),
        mean_abs_p_live_diff=round(sum(diffs) / len(diffs), 5) if diffs else 0.0,
        identical_p_live_frames=sum(1 for d in diffs if d == 0.0),
        passive_median_diff=median_diff,
        pipeline_ms_per_frame=round(sum(sum(f.get("ms", {}).values()) for f in pi.frames) / len(pi.frames), 1)
        if pi.frames else None,
        problems=problems,
    )


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        cpu, sep, value = item.partition("=")
        if not sep or not cpu or not value:
            raise SystemExit(f"compare.py: {what} takes CPU=VALUE (got {item!r})")
        out[cpu] = value
    return out


def cut(video: Path, out: Path, start: int, frames: int) -> int:
    import cv2  # only the cut needs OpenCV: compare runs anywhere

    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise SystemExit(f"compare.py: cannot open {video}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    writer, written, index = None, 0, 0
    # FFV1 is lossless: both sides decode the very same pixels (an mp4v clip decodes differently on
    # ARM and x86, measured: every frame differs), so what the comparison sees is the CPU's arithmetic.
    tmp = out.with_name(out.stem + ".part" + out.suffix)
    while written < frames:
        ok, frame = cap.read()
        if not ok:
            break
        index += 1
        if index <= start:
            continue
        if writer is None:
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"FFV1"), fps, (frame.shape[1], frame.shape[0]))
        writer.write(frame)
        written += 1
    if writer is None or written < frames:
        raise SystemExit(f"compare.py: {video} has fewer than {start + frames} frames")
    writer.release()
    tmp.replace(out)  # a cut interrupted half-way never becomes the cached clip
    return written


def _qemu_version() -> str | None:
    """The emulator's version line for the report; None where QEMU is absent (comparing needs no QEMU)."""
    exe = shutil.which("qemu-aarch64-static")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.splitlines()[0] if out.strip() else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cut")
    c.add_argument("video", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--start", type=int, default=0)
    c.add_argument("--frames", type=int, default=96)
    m = sub.add_parser("compare")
    m.add_argument("--x86", type=Path, required=True)
    m.add_argument("--pi", action="append", default=[], help="CPU=TRACE, once per emulated CPU")
    m.add_argument("--pi-ms", action="append", default=[], help="CPU=MILLISECONDS the emulated replay took")
    m.add_argument("--pi-versions", action="append", default=[], help="CPU=FILE of version lines")
    m.add_argument("--install-seconds", type=float)
    m.add_argument("--clip", default="")
    m.add_argument("--tolerance", type=float, default=P_LIVE_TOLERANCE)
    m.add_argument("--out", type=Path, help="write the measurements here as JSON")
    a = ap.parse_args(argv)

    if a.cmd == "cut":
        n = cut(a.video, a.out, a.start, a.frames)
        print(f"cut {n} frames into {a.out}")
        return 0

    traces = _pairs(a.pi, "--pi")
    if not traces:
        raise SystemExit("compare.py: give at least one --pi CPU=TRACE")
    ms = {k: float(v) for k, v in _pairs(a.pi_ms, "--pi-ms").items()}
    versions = _pairs(a.pi_versions, "--pi-versions")
    x86 = read_trace(a.x86)
    results = []
    for cpu, path in traces.items():
        r = compare(x86, read_trace(Path(path)), cpu, a.tolerance)
        if cpu in ms:
            r.replay_s = round(ms[cpu] / 1000, 1)
            # the whole command: Python, OpenCV and model start-up under emulation included
            r.s_per_frame = round(ms[cpu] / 1000 / max(r.frames, 1), 3)
        if cpu in versions and Path(versions[cpu]).is_file():
            r.versions = Path(versions[cpu]).read_text().splitlines()
        results.append(r)
        status = "FAIL" if r.problems else "ok"
        print(f"check_pi: {cpu}: {status}: decision {r.decision} (x86 {list(x86.decision or [])}), "
              f"{r.frames_compared} frames' p_live compared, max |diff| {r.max_abs_p_live_diff}, "
              f"mean {r.mean_abs_p_live_diff}, {r.identical_p_live_frames} identical, "
              f"passive_median |diff| {r.passive_median_diff}"
              + f", pipeline {r.pipeline_ms_per_frame} ms per emulated frame"
              + (f" ({r.s_per_frame} s per frame with start-up)" if r.s_per_frame else ""))
        for p in r.problems[:20]:
            print(f"check_pi:   {p}")
    if a.out:
        qemu = _qemu_version()
        report = {
            "what": "scripts/check_pi.sh: install.sh --platform pi in an emulated arm64 Debian bookworm, replay of a clip, "
                    "compared with x86",
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "host": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "qemu": qemu,
            "clip": a.clip,
            "tolerance": {"p_live_per_frame": a.tolerance, "p_live_mean": MEAN_TOLERANCE,
                          "passive_median": MEDIAN_TOLERANCE},
            "x86_decision": list(x86.decision) if x86.decision else None,
            "x86_frames": len(x86.frames),
            "install_s": a.install_seconds,
            "cpus": [asdict(r) for r in results],
        }
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
