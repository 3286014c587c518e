"""Timing the stages: frames decoded once, then every frame through the real pipeline, per stage.

Also the settings every bench part builds its models from (the config plus the bench's flags).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_liveness.bench.stats import BenchError, _r, summarize

STAGES = ("decode", "detect", "landmarks", "eyes", "pose", "crop", "classify", "decide", "publish")
WARMUP_FRAMES = 10


def bench_settings(args, threads: int | None = None, liveness: str | None = None, schedule: dict[str, Any] | None = None):
    """The config plus the bench's flags; ``schedule`` overrides keys of the ``[schedule]`` section
    (the before/after comparison runs the same frames with ``every_frame`` on and off)."""
    from edge_liveness.config import load_settings

    models: dict[str, Any] = {}
    if threads:
        models["num_threads"] = threads
    if liveness:
        models["liveness"] = liveness
    overrides: dict[str, Any] = {"models": models} if models else {}
    if getattr(args, "active", None):
        overrides["active"] = {"mode": args.active}
    if getattr(args, "no_eye_model", False):
        overrides["blink"] = {"eye_model": False}
    if schedule:
        overrides["schedule"] = schedule
    return load_settings(getattr(args, "config", None), **overrides)



def decode_frames(path: Path, limit: int, fps: float = 30.0) -> tuple[list, list[float]]:
    """All frames (up to ``limit``; 0 = all) decoded once, and the decode time of each in ms."""
    from edge_liveness.camera.supervisor import CameraError, Frame, ReplaySource, check_frame

    src = ReplaySource(path, fps=fps, realtime=False)
    try:
        src.open()
    except CameraError as e:
        raise BenchError(str(e)) from None
    frames, ms = [], []
    try:
        while not limit or len(frames) < limit:
            t = time.perf_counter()
            img, ts = src.read()
            if img is None:
                break
            img, _problem = check_frame(img)
            dt = (time.perf_counter() - t) * 1e3
            if img is None:
                continue
            ms.append(dt)
            frames.append(Frame(img, float(ts), len(frames)))
    except CameraError as e:
        raise BenchError(str(e)) from None
    finally:
        src.close()
    if not frames:
        raise BenchError(f"{path}: no frame could be decoded")
    return frames, ms



@dataclass
class FrameRecord:
    ms: dict[str, float]
    tracked: bool
    face: bool
    total_ms: float  # pipeline.process + publish of its outputs
    cpu_ms: float
    publish_ms: list[float] = field(default_factory=list)
    attempt: bool = False  # an attempt was collecting (or could start) on this frame


def run_pipeline(settings, models, frames: list, publisher=None) -> tuple[list[FrameRecord], list[dict]]:
    """Warm up on a throwaway pipeline, then time every frame through a fresh one."""
    return run_lockstep({"main": settings}, models, frames, publisher, "main")["main"]


def run_lockstep(settings: dict[str, Any], models, frames: list, publisher=None,
                 main: str | None = None) -> dict[str, tuple[list[FrameRecord], list[dict]]]:
    """Several pipelines (one per settings, sharing the models) timed frame by frame in lockstep: each
    frame goes through every pipeline before the next frame, so a neighbour's job on a shared machine
    hits every variant at the same moments. Only ``main``'s decisions go to ``publisher``."""
    from edge_liveness.overlap import FrameRunner
    from edge_liveness.pipeline import Pipeline

    for st in settings.values():
        warm = Pipeline(st, models)
        for f in frames[:WARMUP_FRAMES]:
            warm.process(f)
        warm.close()
    lv = models.liveness
    zero = np.zeros((lv.crop_size, lv.crop_size, 3), np.uint8)
    for _ in range(3):
        lv.predict_views(zero, zero)
    runners = {k: FrameRunner(Pipeline(st, models)) for k, st in settings.items()}
    out: dict[str, tuple[list[FrameRecord], list[dict]]] = {k: ([], []) for k in runners}
    pc, cpu = time.perf_counter, time.process_time

    carry = {k: [0.0, 0.0] for k in runners}  # wall, CPU ms of this runner's steps that finished no frame

    def timed(k: str, step) -> None:
        # an overlapped runner's step finishes earlier frames (schedule.find_ahead): each record is the
        # time from the end of the one before, so a step that finished none counts towards the next
        # and a flush that finishes several splits between them; the records add up to every step
        records, outputs = out[k]
        c0, t0 = cpu() - carry[k][1] / 1e3, pc() - carry[k][0] / 1e3
        results = step()
        if not results:
            carry[k] = [(pc() - t0) * 1e3, (cpu() - c0) * 1e3]
            return
        carry[k] = [0.0, 0.0]
        for r in results:
            pub = []
            for o in r.outputs:
                t = pc()
                if publisher is not None and k == main:
                    publisher.submit(o.kind, o.body())
                pub.append((pc() - t) * 1e3)
                outputs.append({"frame": r.frame.index, "t": round(r.frame.ts, 3), "kind": o.kind, **_brief(o)})
            records.append(FrameRecord(dict(r.ms), bool(r.tracked), r.obs.n_faces > 0, (pc() - t0) * 1e3,
                                       (cpu() - c0) * 1e3, pub, bool(r.attempt)))
            c0, t0 = cpu(), pc()

    # in lockstep an overlapped runner's finds must not run on while another runner's frame is timed: each
    # step waits for them (the worker then runs one frame ahead, as before schedule.find_ahead); alone, the
    # runner's worker runs ahead as in the daemon
    settle = len(runners) > 1
    for f in frames:
        for k, runner in runners.items():
            timed(k, (lambda: runner.push(f) + runner.settle()) if settle else (lambda: runner.push(f)))
    for k, runner in runners.items():
        while runner.held:
            timed(k, lambda: runner.flush(1))
        runner.close()
        runner.pipeline.close()
    return out


def _brief(out: Any) -> dict[str, Any]:
    b = out.body()
    ev = b.get("evidence") or {}
    return {**{k: b[k] for k in ("result", "reason", "actions", "duration_s") if k in b},
            **{k: ev[k] for k in ("passive_scores", "attempt_frames") if k in ev}}


def _ran(stage: str, r: FrameRecord) -> bool:
    if stage in ("detect", "landmarks"):
        return r.ms.get(stage, 0.0) > 0.0  # the finder reports 0.0 for a model it skipped
    return stage in r.ms


def stage_names(records: list[FrameRecord]) -> list[str]:
    """STAGES without decode, then any stage a pipeline added (a second passive model) in the order first seen."""
    extra = list(dict.fromkeys(k for r in records for k in r.ms if k not in STAGES))
    return [s for s in STAGES[1:] if s != "publish"] + extra


def stage_table(records: list[FrameRecord], decode_ms: list[float]) -> dict[str, dict]:
    n = len(records)
    out = {"decode": summarize(decode_ms, len(decode_ms))}
    for s in stage_names(records) + ["publish"]:
        if s == "publish":
            vals = [v for r in records for v in r.publish_ms]
        else:
            vals = [r.ms[s] for r in records if _ran(s, r)]
        out[s] = summarize(vals, n)
    out["publish"]["note"] = "in-loop submits of the pipeline's own decisions/prompts"
    return out


def pipeline_summary(records: list[FrameRecord], outputs: list[dict]) -> dict[str, Any]:
    n = len(records)
    tot = [r.total_ms for r in records]
    coll = [r.total_ms for r in records if "classify" in r.ms]
    idle = [r.total_ms for r in records if "classify" not in r.ms]
    att = [r.total_ms for r in records if r.attempt]
    staged = [sum(v for k, v in r.ms.items()) for r in records]
    return {"frames": n, "fps": _r(n / (sum(tot) / 1e3), 1) if sum(tot) > 0 else None,
            "frame": summarize(tot), "cpu_ms_per_frame": _r(float(np.mean([r.cpu_ms for r in records]))),
            # CPU-time fps: what one uncontended core would give; cpu_share < 1 means waiting (others' jobs, I/O)
            "fps_from_cpu_time": _r(1e3 / float(np.mean([r.cpu_ms for r in records])), 1) if any(r.cpu_ms for r in records) else None,
            "cpu_share": _r(sum(r.cpu_ms for r in records) / sum(tot), 3) if sum(tot) > 0 else None,
            # the frames of an attempt (collecting, or a face that may start one): when frames matter
            "fps_during_attempts": _r(len(att) / (sum(att) / 1e3), 1) if att else None, "attempt_frames": len(att),
            "fps_while_classifying": _r(len(coll) / (sum(coll) / 1e3), 1) if coll else None,
            "fps_without_classify": _r(len(idle) / (sum(idle) / 1e3), 1) if idle else None,
            "glue_ms_per_frame": _r(float(np.mean([t - s for t, s in zip(tot, staged)]))),
            "face_frames": sum(r.face for r in records), "tracked_frames": sum(r.tracked for r in records),
            "detector_runs": sum(_ran("detect", r) for r in records),
            "classify_runs": sum("classify" in r.ms for r in records), "outputs": outputs}


def fps_of(records: list[FrameRecord], first: int) -> float | None:
    tot = sum(r.total_ms for r in records[:first])
    return _r(min(first, len(records)) / (tot / 1e3), 1) if tot > 0 else None


def attempt_costs(records: list[FrameRecord]) -> dict[str, dict[str, float | int | None]]:
    """Per stage: ms per attempt frame (its total over the attempt frames / their number, so a
    stage the schedule runs on a third of them counts a third) and on how many attempt frames it ran."""
    att = [r for r in records if r.attempt]
    n = len(att)
    out: dict[str, dict[str, float | int | None]] = {}
    for s in stage_names(records):
        ran = [r.ms[s] for r in att if _ran(s, r)]
        out[s] = {"ms_per_attempt_frame": _r(sum(ran) / n) if n else None, "ran_on": len(ran),
                  "p50_ms_when_run": _r(float(np.percentile(ran, 50))) if ran else None}
    tot = [r.total_ms for r in att]
    out["frame"] = {"ms_per_attempt_frame": _r(sum(tot) / n) if n else None, "ran_on": n,
                    "p50_ms_when_run": _r(float(np.percentile(tot, 50))) if tot else None}
    return out
