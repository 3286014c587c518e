"""Attempt frames before and after the schedule, side by side in one run, and a Pi 4 projection.

An attempt frame (an attempt collecting, or a face that may start one) is when frames matter: the
passive scores and the blink come from those frames. The bench times the same decoded frames through
the pipeline with ``schedule.every_frame`` on (every model on every attempt frame: the path before
scheduling) and off (each model at its rate, one per frame), in lockstep frame by frame so that a
noisy neighbour on a shared machine hits both alike; ``--parallel`` adds both with
``schedule.parallel`` (models due on one frame side by side in two threads). The scheduled path is also
timed with ``schedule.overlap`` (the next frame's face found on a second thread while this one is judged:
``overlap.py``; its frame costs are wall time, about the larger half). Each variant's figure is
the best of the ``--repeat`` passes frame by frame (a frame's cost with the least interference).

The Pi 4 projection multiplies each stage's measured cost per attempt frame by one stated Pi/x86
ratio (``PI4_RATIO`` and its source below, or ``--pi-ratio``). It is a projection, not a measurement.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edge_liveness.bench.stats import _r, cell

EVERY_FRAME, SCHEDULED = "every_frame", "scheduled"

# Pi 4 / this machine, per inference. Pi 4: XNNPACK's published FP32 MobileNet v2 1.0X figure for
# the Raspberry Pi 4 (BCM2711), 44 ms (github.com/google/XNNPACK README, "Raspberry Pi" table,
# end2end-bench, all 4 cores). This machine: the same network (Keras MobileNetV2 1.0, 224 px, float32,
# converted to TFLite: converters/reports/pi_reference.py) through the daemon's runtime on ONE thread,
# timed by the bench between its passes, so the ratio and the stage costs it scales come from the same
# minutes (a shared VM's speed moves up to 2x from one hour to the next). Without TensorFlow (which
# builds the network) the bench falls back to the ratio stated here: 4.07 ms measured 2026-12-02,
# 44 / 4.07 = 10.8. One thread on a Pi 4 is slower still (benchmarks/README.md, "Pi 4 projection").
PI4_MS, X86_MS = 44.0, 4.07
PI4_RATIO = round(PI4_MS / X86_MS, 1)
PI4_RATIO_SOURCE = (f"XNNPACK README (github.com/google/XNNPACK, 'Raspberry Pi' table): FP32 MobileNet v2 1.0X on a "
                    f"Raspberry Pi 4 (BCM2711), 4 threads, {PI4_MS:g} ms; the same network (Keras MobileNetV2 1.0 224 px "
                    f"float32 -> TFLite) on this machine, ai-edge-litert XNNPACK, 1 thread, {X86_MS:g} ms (2026-12-02): "
                    f"ratio {PI4_RATIO:g}")
REFERENCE_INVOKES = 30  # per block; a block before each pass and one after the last
CAMERA_FPS = 30.0


def variants(parallel: bool) -> dict[str, dict[str, Any]]:
    """Variant name -> ``[schedule]`` overrides."""
    # the path before scheduling read both eyes on every frame; the scheduled one keeps the config's eyes_per_run
    off = {"parallel": False, "overlap": False}
    out: dict[str, dict[str, Any]] = {EVERY_FRAME: {"every_frame": True, **off, "eyes_per_run": 2},
                                      SCHEDULED: {"every_frame": False, **off}}
    if parallel:
        out[EVERY_FRAME + "_parallel"] = {"every_frame": True, "parallel": True, "overlap": False, "eyes_per_run": 2}
        out[SCHEDULED + "_parallel"] = {"every_frame": False, "parallel": True, "overlap": False}
    out[SCHEDULED + "_overlap"] = {"every_frame": False, "parallel": False, "overlap": True, "split_views": True}
    # the worker's share before schedule.split_views: the texture pair's first model
    out[SCHEDULED + "_overlap_pair"] = {"every_frame": False, "parallel": False, "overlap": True, "split_views": False}
    return out


def main_variant(schedule) -> str:
    """The variant the config itself runs (the bench's main numbers come from it)."""
    if schedule.every_frame:
        return EVERY_FRAME + ("_parallel" if schedule.parallel else "")
    if schedule.parallel:
        return SCHEDULED + "_parallel"
    if schedule.overlap:
        return SCHEDULED + ("_overlap" if schedule.split_views else "_overlap_pair")
    return SCHEDULED


class ReferenceTimer:
    """The Pi reference network (``converters/reports/pi_reference.py``) timed in blocks between the
    bench's passes: ``block()`` invokes it ``REFERENCE_INVOKES`` times and keeps the block's median; the
    ratio takes the lowest block, as the stages take each frame's least disturbed pass."""

    def __init__(self, path: str, invokes: int = REFERENCE_INVOKES):
        from edge_liveness.vision.runtime import TFLiteModel

        self.model = TFLiteModel(path, num_threads=1, name="pi_reference")
        it = self.model.interpreter
        spec = it.get_input_details()[0]
        it.set_tensor(spec["index"], np.random.default_rng(0).random(spec["shape"]).astype(np.float32))
        for _ in range(3):
            it.invoke()
        self.invokes, self.blocks_ms = invokes, []

    def block(self) -> None:
        it, ts = self.model.interpreter, []
        for _ in range(self.invokes):
            t = time.perf_counter()
            it.invoke()
            ts.append((time.perf_counter() - t) * 1e3)
        self.blocks_ms.append(_r(float(np.median(ts))))

    def ratio(self) -> tuple[float, str, dict[str, Any]]:
        """(ratio, its source in words, the measurement as data)."""
        ms = min(self.blocks_ms)
        ratio = _r(PI4_MS / ms, 2)
        measured = {"pi4_ms": PI4_MS, "x86_ms": ms, "x86_blocks_ms": self.blocks_ms, "invokes_per_block": self.invokes}
        return ratio, (f"XNNPACK README (github.com/google/XNNPACK, 'Raspberry Pi' table): FP32 MobileNet v2 1.0X on a Raspberry "
                       f"Pi 4 (BCM2711), 4 threads, {PI4_MS:g} ms; the same network (Keras MobileNetV2 1.0 224 px float32 -> TFLite) "
                       f"timed in this run between the passes, 1 thread, {ms:g} ms (lowest block median; blocks "
                       f"{', '.join(f'{b:g}' for b in self.blocks_ms)} ms): ratio {ratio:g}"), measured


def run_passes(vset: dict[str, Any], models, frames: list, publisher, main: str, repeat: int,
               reference: ReferenceTimer | None = None) -> dict[str, list]:
    """``repeat`` lockstep passes of every variant over the frames: variant -> [(records, outputs), ...];
    ``reference`` is timed before each pass and after the last."""
    from edge_liveness.bench.stages import pipeline_summary, run_lockstep
    from edge_liveness.bench.stats import _progress

    out: dict[str, list] = {v: [] for v in vset}
    for i in range(repeat):
        if reference is not None:
            reference.block()
        for v, (recs, outs) in run_lockstep(vset, models, frames, publisher, main).items():
            out[v].append((recs, outs))
            ps = pipeline_summary(recs, [])
            _progress(f"  pass {i + 1}/{repeat} {v}: {ps['fps']} fps, {ps['fps_during_attempts']} during attempts")
    if reference is not None:
        reference.block()
        _progress(f"  Pi reference network: {', '.join(f'{b:g}' for b in reference.blocks_ms)} ms a block")
    return out


def reference_for(pi_ratio: float | None) -> tuple[ReferenceTimer | None, str | None]:
    """The timer of the Pi reference network when the ratio is to be measured in this run (no
    ``--pi-ratio`` given), else None; and one line saying why it is not measured, if it is not."""
    if pi_ratio is not None:
        return None, None
    import tempfile
    from pathlib import Path

    from converters.reports import pi_reference
    from edge_liveness.bench.stats import _progress

    _progress("building the Pi reference network (MobileNetV2 224 float32; TensorFlow, subprocess)")
    with tempfile.TemporaryDirectory(prefix="edge-liveness-pi-reference-") as tmp:
        made = pi_reference.make_in_subprocess(Path(tmp) / "mobilenet_v2_1.0_224_float32.tflite")
        if isinstance(made, str):
            return None, f"Pi ratio not measured in this run ({made}): the stated {PI4_RATIO:g} from {X86_MS:g} ms on 2026-12-02"
        return ReferenceTimer(str(made)), None  # the runtime holds the model in memory: the file may go


def projection_ratio(reference: ReferenceTimer | None, pi_ratio: float | None) -> tuple[float, str, dict[str, Any] | None]:
    """(ratio, its source in words, the in-run measurement or None): measured in this run, else ``--pi-ratio``
    as given, else the stated ratio."""
    if reference is not None:
        return reference.ratio()
    if pi_ratio is not None:
        return pi_ratio, f"--pi-ratio {pi_ratio:g} (given)", None
    return PI4_RATIO, PI4_RATIO_SOURCE, None


def best_of_passes(passes: list[tuple[list, list]]) -> list:
    """Frame by frame, the record of the pass that took the least time: the cost of the frame with the
    least interference from others' jobs (every pass ran the same frames through the same code)."""
    return [min(recs, key=lambda r: r.total_ms) for recs in zip(*(p[0] for p in passes))]


def summarize_variant(passes: list[tuple[list, list]]) -> dict[str, Any]:
    """Attempt-frame figures of a variant over its passes: best of the passes frame by frame (the
    headline), and each pass's own figure."""
    from edge_liveness.bench.stages import attempt_costs, pipeline_summary

    sums = [pipeline_summary(recs, outs) for recs, outs in passes]
    best = best_of_passes(passes)
    s = pipeline_summary(best, [])
    att = [r for r in best if r.attempt]
    return {"fps_during_attempts": s["fps_during_attempts"], "fps": s["fps"], "frames": s["frames"],
            "attempt_frames": s["attempt_frames"],
            "cpu_ms_per_attempt_frame": _r(float(np.mean([r.cpu_ms for r in att]))) if att else None,
            "fps_during_attempts_each_pass": [x["fps_during_attempts"] for x in sums],
            "fps_each_pass": [x["fps"] for x in sums], "stages": attempt_costs(best),
            "decisions": [{k2: o[k2] for k2 in ("frame", "t", "result", "reason", "duration_s", "passive_scores", "attempt_frames")
                           if k2 in o} for o in passes[0][1] if o["kind"] == "decision"]}


def compare(res_variants: dict[str, dict[str, Any]], main: str, schedule) -> dict[str, Any]:
    """The headline, the side-by-side stage table and whether the decisions stayed the same."""
    # the headline's "after" is the scheduled path the config runs (overlapped or not), "before" every model on every frame
    after_name = main if main.startswith(SCHEDULED) else SCHEDULED
    before, after = res_variants[EVERY_FRAME], res_variants[after_name]
    a, b = after["fps_during_attempts"], before["fps_during_attempts"]
    same = [(d["result"], d["reason"]) for d in before["decisions"]] == [(d["result"], d["reason"]) for d in after["decisions"]]
    stages = {}
    for name in dict.fromkeys(list(before["stages"]) + list(after["stages"])):
        stages[name] = {v: res_variants[v]["stages"].get(name, {}).get("ms_per_attempt_frame") for v in res_variants}
    m = res_variants[main]
    return {"headline": {"fps_during_attempts": m["fps_during_attempts"], "fps": m["fps"], "variant": main,
                         "fps_during_attempts_every_frame": b, "fps_during_attempts_scheduled": a, "scheduled_variant": after_name,
                         "fps_during_attempts_scheduled_one_thread": res_variants[SCHEDULED]["fps_during_attempts"],
                         "speedup_during_attempts": _r(a / b, 2) if a and b else None},
            "schedule": {"passive_scores_per_s": schedule.passive_scores_per_s, "eye_model_per_s": schedule.eye_model_per_s,
                         "eyes_per_run": schedule.eyes_per_run},
            "ms_per_attempt_frame": stages, "same_decisions": same, "variants": res_variants}


FIND_STAGES = ("detect", "landmarks", "pose")  # Pipeline.find: the half schedule.overlap runs on the worker thread


# the worker's share when it runs the texture pair's first model (a one-view model, or schedule.split_views
# off): the pair's two 80 px models cost about the same
PAIR_FIRST_SHARE = {"texture": 0.5}


def worker_shares(views: int, split_views: bool = True) -> dict[str, float]:
    """The share of each judge stage the worker takes (Pipeline.lend_worker): a two-view model's tight view
    (half the model's two invokes and half its two crops), or else the pair's first model."""
    return {"classify": 0.5, "crop": 0.5} if views == 2 and split_views else dict(PAIR_FIRST_SHARE)


def overlap_halves(stages: dict[str, float | None], whole: float, shares: dict[str, float] | None = None) -> tuple[float, float]:
    """(worker, caller) ms of a frame from a one-thread path's per-stage costs: the worker's the face stages
    and its ``shares`` of judge stages (default: a two-view model's), the caller's the rest of the frame
    (models, decision and the loop's glue). Overlapped, a frame costs about the larger."""
    shares = worker_shares(2) if shares is None else shares
    worker = sum(stages.get(k) or 0.0 for k in FIND_STAGES) + sum((stages.get(k) or 0.0) * f for k, f in shares.items())
    return worker, max(whole - worker, 0.0)


def pi4_projection(cmp_: dict[str, Any], ratio: float, source: str, measured: dict[str, Any] | None = None) -> dict[str, Any]:
    """Each stage's cost per attempt frame times ``ratio``: ms on a Pi 4 and the fps that leaves. The
    overlapped path is projected from the one-thread scheduled path's halves (its own costs here are
    wall time on two shared cores): the larger half times ``ratio``, which assumes each half keeps the
    speed the ratio gives one model (a bound: a Pi 4's 4 cores are then split between the halves)."""
    out: dict[str, Any] = {"ratio": ratio, "ratio_source": source, "ratio_measured_in_run": measured, "camera_fps": CAMERA_FPS,
                           "variants": {}}
    for v, body in cmp_["variants"].items():
        st = {k: x["ms_per_attempt_frame"] for k, x in body["stages"].items() if k != "frame" and x["ms_per_attempt_frame"] is not None}
        staged = sum(st.values())
        whole = body["stages"]["frame"]["ms_per_attempt_frame"] or staged
        pi = {k: _r(x * ratio, 2) for k, x in st.items()}
        pi_frame = whole * ratio  # the whole frame: the stages plus the loop's glue between them
        if "_overlap" in v and SCHEDULED in cmp_["variants"]:
            seq = cmp_["variants"][SCHEDULED]["stages"]
            shares = PAIR_FIRST_SHARE if v.endswith("_pair") else cmp_.get("overlap_worker_shares")
            halves = overlap_halves({k: x["ms_per_attempt_frame"] for k, x in seq.items()}, seq["frame"]["ms_per_attempt_frame"] or 0.0, shares)
            pi_frame = max(halves) * ratio
        out["variants"][v] = {"x86_ms_per_attempt_frame": _r(whole), "pi4_ms_per_stage": pi,
                              "pi4_ms_per_attempt_frame": _r(pi_frame, 1), "pi4_fps_during_attempts": _r(1e3 / pi_frame, 1) if pi_frame else None,
                              "keeps_up_with_camera": bool(pi_frame) and 1e3 / pi_frame >= CAMERA_FPS}
    return out


def _f(x: Any) -> str:
    return cell(x, 2)


def markdown(att: dict[str, Any], pi: dict[str, Any]) -> str:
    h, names = att["headline"], list(att["variants"])
    L = ["## Attempt frames (the headline)", "",
         f"**{_f(h['fps_during_attempts'])} fps during attempts** ({h['variant']}), {_f(h['fps'])} fps overall. "
         f"Same frames, same run: every model on every attempt frame {_f(h['fps_during_attempts_every_frame'])} fps, "
         f"{h.get('scheduled_variant', SCHEDULED)} {_f(h['fps_during_attempts_scheduled'])} fps (**{_f(h['speedup_during_attempts'])}x**; "
         f"schedule.passive_scores_per_s = {_f(att['schedule']['passive_scores_per_s'])}, "
         f"schedule.eye_model_per_s = {_f(att['schedule']['eye_model_per_s'])}, "
         f"schedule.eyes_per_run = {_f(att['schedule'].get('eyes_per_run', 2))}). Decisions the same: {_f(att['same_decisions'])}.", "",
         "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    rows = [("fps during attempts (best of the passes, frame by frame)", "fps_during_attempts"), ("fps overall", "fps"),
            ("attempt frames / frames", None), ("CPU ms per attempt frame", "cpu_ms_per_attempt_frame")]
    for label, key in rows:
        vals = [f"{v['attempt_frames']} / {v['frames']}" if key is None else _f(v[key]) for v in att["variants"].values()]
        L.append(f"| {label} | " + " | ".join(vals) + " |")
    L.append("| fps during attempts, each pass | " + " | ".join(", ".join(_f(x) for x in v["fps_during_attempts_each_pass"]) for v in att["variants"].values()) + " |")
    L.append("| decisions (passive scores / attempt frames) | " + " | ".join(
        ", ".join(f"{d.get('result')} {d.get('reason')} ({d.get('passive_scores', '-')}/{d.get('attempt_frames', '-')})" for d in v["decisions"]) or "none"
        for v in att["variants"].values()) + " |")
    L += ["", "Per stage, ms per attempt frame (a stage's time over the attempt frames / their number; ran on: of the "
          f"{att['variants'][EVERY_FRAME]['attempt_frames']} attempt frames):", "",
          "| stage | " + " | ".join(names) + " | ran on (" + " / ".join(names) + ") |", "|---|" + "---|" * (len(names) + 1)]
    for stage, byv in att["ms_per_attempt_frame"].items():
        ran = " / ".join(str(att["variants"][v]["stages"].get(stage, {}).get("ran_on", "-")) for v in names)
        L.append(f"| {stage} | " + " | ".join(_f(byv.get(v)) for v in names) + f" | {ran} |")
    L += ["", f"### Pi 4 projection (ratio {_f(pi['ratio'])}: {pi['ratio_source']})", "",
          "| | " + " | ".join(pi["variants"]) + " |", "|---|" + "---|" * len(pi["variants"])]
    stages = list(dict.fromkeys(k for v in pi["variants"].values() for k in v["pi4_ms_per_stage"]))
    for s in stages:
        L.append(f"| {s} ms | " + " | ".join(_f(v["pi4_ms_per_stage"].get(s)) for v in pi["variants"].values()) + " |")
    for label, key in (("whole attempt frame ms", "pi4_ms_per_attempt_frame"), ("fps during attempts", "pi4_fps_during_attempts"),
                       (f">= {pi['camera_fps']:g} fps", "keeps_up_with_camera")):
        L.append(f"| {label} | " + " | ".join(_f(v[key]) for v in pi["variants"].values()) + " |")
    L += ["", "A projection from this machine's per-stage costs, not a measurement: run `edge-liveness bench` on the Pi.", ""]
    return "\n".join(L) + "\n"
