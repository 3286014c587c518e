"""`edge-liveness bench`: the whole frame loop on real frames, timed per stage.

What it measures, in one run on one source (a video, an image or a folder of images):

- decode: frames are decoded ONCE up front and timed on their own; every other number excludes it.
- the real pipeline (``pipeline.Pipeline.process``) on every frame, after a short warm-up on a
  throwaway pipeline: per-stage p50/p95 and how often each stage ran (the detector is skipped while
  landmark tracking holds; crop/classify run only while an attempt can use them), frames per
  second, CPU time per frame; each decision goes through ``Publisher.submit`` into a real SQLite
  outbox in a temp dir (and a real mosquitto on 127.0.0.1 when one is given or installed).
- attempt frames (the headline, ``attempt_frames``): the same frames through the pipeline with every
  model on every attempt frame (``schedule.every_frame``, the path before scheduling) and scheduled,
  frame by frame in lockstep; fps during attempts and per-stage ms per attempt frame side by side
  (``--parallel`` adds both with ``schedule.parallel``; the scheduled one is also timed with
  ``schedule.overlap``), and a Pi 4 projection (``--pi-ratio``).
- publish: ``Publisher.submit`` of a decision payload, repeated to get percentiles.
- num_threads: every model timed with 1 and 2 threads, and the whole pipeline with each.
- int8 vs float32 liveness models on the same crops (latency, agreement of their live/spoof calls)
  and, when the float model has a manifest, the decisions of the whole pipeline with each.
- start-up to the first processed frame and peak RSS of the device process, in a SUBPROCESS timed
  from outside (imports + models + source + one frame), never polluted by this process's frames.
- the seed-style baseline (Keras + OpenCV, ``converters.reports.seed_baseline``) in another subprocess on
  the same frames, and the speed-up over it; skipped, with the reason, when TensorFlow is absent.

Writes ``bench_<machine>_<source>_<WxH>_t<threads>.json``/``.md``/``.png`` under ``--out``.
No TensorFlow or matplotlib at import time (matplotlib is imported only to draw the PNG).

This module is the command and the order of the runs; the parts live beside it: ``bench_stages``
(timing the stages), ``attempt_frames`` (before/after side by side, Pi 4 projection), ``bench_models`` (per model, threads, int8 vs float32), ``bench_publish``,
``bench_probe`` (start-up and RSS in a subprocess), ``bench_stats``. What a device never runs is in
``converters/``: the seed-style baseline (``converters.reports.seed_baseline``) and the report
(``converters.reports.bench_report``: targets, Markdown, PNG).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_liveness.bench import attempt_frames
from edge_liveness.bench.models import (CropRecorder, RawFloatLiveness, compare_int8_float, find_sample, float_sibling,
                                        load_float, sweep_models)
from edge_liveness.bench.probe import run_probe
from edge_liveness.bench.publish import broker, publish_bench, publisher_for
from edge_liveness.bench.stages import (STAGES, WARMUP_FRAMES, bench_settings, decode_frames, fps_of, pipeline_summary,
                                        run_pipeline, stage_table)
from edge_liveness.bench.stats import BenchError, _loadavg, _progress, _r, machine_info, machine_slug, peak_rss_mb

__all__ = ["STAGES", "add_arguments", "main"]

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE_PARTS = ("video", "tranvanluyt_real.mp4")
DEFAULT_OUT = REPO / "benchmarks" / "results"
SCHEMA = 1


def default_source() -> Path:
    root = Path(os.environ.get("EDGE_LIVENESS_SHARED_DATA", REPO.parent / "shared" / "data"))
    return root.joinpath(*DEFAULT_SOURCE_PARTS)


def resolve_source(arg: str | None, settings) -> Path:
    if arg:
        p = Path(arg)
        if not p.exists():
            raise BenchError(f"--source {p} does not exist: give a video file, an image or a folder of images")
        return p
    cfg = Path(settings.camera.source)
    if settings.camera.source not in ("", "0") and cfg.exists():
        return cfg
    p = default_source()
    if not p.exists():
        raise BenchError(f"default bench source {p} is absent: give --source FILE (a face video, image or image folder) "
                         "or set EDGE_LIVENESS_SHARED_DATA")
    return p



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="face video, image or image folder (default: ../shared/data/video/tranvanluyt_real.mp4)")
    p.add_argument("--frames", type=int, default=0, help="frames to use (default 0: all of the source)")
    p.add_argument("--threads", type=int, help="num_threads for every model (default: models.num_threads from the config)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="where the JSON/Markdown/PNG go (default benchmarks/results/)")
    p.add_argument("--no-baseline", action="store_true", help="skip the seed-style TensorFlow baseline")
    p.add_argument("--baseline-frames", type=int, default=150, help="frames for the baseline (default 150; it is slow)")
    p.add_argument("--config", "-c", help="TOML config (default /etc/edge-liveness/edge-liveness.toml when it exists)")
    p.add_argument("--model", help="liveness .tflite (int8) to bench instead of models.liveness / the shipped one")
    p.add_argument("--float-model", help="float32 liveness .tflite to compare (default: a *float32* sibling of the int8 model)")
    p.add_argument("--repeat", type=int, default=3, help="timed passes over the frames, the pipeline's and the seed baseline's each way; the median pass is reported (default 3)")
    p.add_argument("--sweep-threads", default="1,2", help="thread counts for the per-model and pipeline sweep ('' to skip)")
    p.add_argument("--sweep-runs", type=int, default=100, help="calls per model per thread count (default 100)")
    p.add_argument("--publish-runs", type=int, default=200, help="decision payloads for the publish timing (default 200)")
    p.add_argument("--startup-runs", type=int, default=3, help="start-up probes (default 3; the first also measures peak RSS)")
    p.add_argument("--broker", help="HOST:PORT of an MQTT broker for the publish stage (default: start mosquitto if installed)")
    p.add_argument("--no-broker", action="store_true", help="publish into the SQLite outbox only")
    p.add_argument("--active", choices=["off", "blink", "turn", "blink_and_turn", "challenge"], help="override active.mode")
    p.add_argument("--no-eye-model", action="store_true", help="blink.eye_model off: blinks from the face mesh only (to see what the eye model costs)")
    p.add_argument("--parallel", action="store_true",
                   help="also time both paths with schedule.parallel (models due on one frame side by side in two threads)")
    p.add_argument("--pi-ratio", type=float, default=None,
                   help="Pi 4 / this machine per inference, for the Pi 4 projection (default: measured in this run between the passes, "
                        f"with TensorFlow; without it {attempt_frames.PI4_RATIO:g}: see benchmarks/README.md)")
    p.add_argument("--tag", default="", help="extra word in the result file names")
    p.add_argument("--no-targets", action="store_true",
                   help="do not judge the numbers against the acceptance targets (smoke runs: too few frames to judge)")


def _parse_threads(text: str) -> list[int]:
    try:
        vals = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise BenchError(f"--sweep-threads {text!r}: give a comma list of thread counts, e.g. 1,2") from None
    if any(v < 1 or v > 16 for v in vals):
        raise BenchError(f"--sweep-threads {text!r}: thread counts must be 1..16")
    return vals


def main(args: argparse.Namespace) -> int:
    from edge_liveness.config import ConfigError
    from edge_liveness.service.logs import setup_logging
    from edge_liveness.vision.runtime import ModelError

    setup_logging("WARNING")
    try:
        return _run(args)
    except ConfigError as e:
        for p in e.problems:
            print(f"config error: {p}", file=sys.stderr)
        return 2
    except (BenchError, ModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from converters.reports import bench_report as report
    from converters.reports import seed_baseline
    from edge_liveness.pipeline import Pipeline, load_models

    if args.frames < 0 or min(args.baseline_frames, args.sweep_runs, args.publish_runs, args.startup_runs, args.repeat) < 1:
        raise BenchError("--frames must be >= 0 and --baseline-frames/--sweep-runs/--publish-runs/--startup-runs/--repeat >= 1")
    if args.pi_ratio is not None and not args.pi_ratio > 0:
        raise BenchError(f"--pi-ratio must be > 0 (got {args.pi_ratio:g})")
    sweep = _parse_threads(args.sweep_threads)
    load_start = _loadavg()
    base = bench_settings(args, None, args.model)
    threads = args.threads or base.models.num_threads
    settings = bench_settings(args, threads, args.model)
    source = resolve_source(args.source, settings)
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BenchError(f"--out {out_dir}: cannot create it ({e.strerror}): give a writable directory") from None
    notes: list[str] = []

    _progress(f"loading models ({threads} thread(s))")
    models = load_models(settings)
    lv = models.liveness
    standin = "stand-in" in str(lv.manifest.get("note", "")).lower()
    if standin:
        notes.append("the liveness model is a STAND-IN (untrained, same architecture and size): its speed is real, its scores are not")

    float_path = Path(args.float_model) if args.float_model else float_sibling(Path(lv.path))
    if float_path is not None:
        if not float_path.is_file():
            raise BenchError(f"--float-model {float_path} does not exist")
        flt = load_float(float_path, lv, threads)
        if (flt.crop_size, flt.crop_margin) != (lv.crop_size, lv.crop_margin):
            raise BenchError(f"--float-model {float_path.name} takes {flt.crop_size} px crops (margin {flt.crop_margin}) but "
                             f"{Path(lv.path).name} takes {lv.crop_size} px (margin {lv.crop_margin}): give the float twin of the same model")

    _progress(f"decoding {source} once up front")
    frames, decode_ms = decode_frames(source, args.frames, settings.camera.fps)
    h, w = frames[0].image.shape[:2]
    _progress(f"{len(frames)} frames of {w}x{h}, decode p50 {np.percentile(decode_ms, 50):.2f} ms")

    with broker(args.broker, allow_start=not args.no_broker) as baddr:
        if baddr is None and not args.no_broker:
            notes.append("no mosquitto installed and no --broker: publish measured into the SQLite outbox only")
        _progress("timing the pipeline on every frame: every model on every attempt frame and scheduled, frame by frame in lockstep")
        main_v = attempt_frames.main_variant(settings.schedule)
        vset = {v: bench_settings(args, threads, args.model, schedule=ov) for v, ov in attempt_frames.variants(args.parallel).items()}
        ref, why = attempt_frames.reference_for(args.pi_ratio)
        notes += [why] if why else []
        with publisher_for(settings, baddr) as (pub, _link, pub_how):
            vpasses = attempt_frames.run_passes(vset, models, frames, pub, main_v, args.repeat, ref)
            # The pipeline's own figures (and the seed speed-up) come from the configured loop ALONE over
            # consecutive frames, as the daemon runs it (and as the seed loop runs): in the lockstep the other
            # variants run between two of its frames and slow it (both are in the report: fps_all_passes,
            # fps_lockstep_passes). The lockstep stays for comparing the variants with one another.
            _progress(f"timing the configured loop ({main_v}) alone, {args.repeat} pass(es)")
            solo = [run_pipeline(vset[main_v], models, frames, pub) for _ in range(args.repeat)]
        passes = [(pipeline_summary(recs, outs)["fps"] or 0.0, i, recs, outs) for i, (recs, outs) in enumerate(solo)]
        # the median pass by fps: one noisy pass (others' jobs on a shared machine) does not decide
        passes.sort(key=lambda x: x[:2])
        _, _, records, outputs = passes[len(passes) // 2]
        pipe = pipeline_summary(records, outputs)
        pipe["fps_all_passes"] = [p[0] for p in sorted(passes, key=lambda x: x[1])]
        pipe["fps_lockstep_passes"] = [pipeline_summary(recs, [])["fps"] for recs, _ in vpasses[main_v]]
        worst = sum(v["p50_ms"] or 0.0 for k, v in stage_table(records, decode_ms).items() if k not in ("decode", "publish"))
        # every stage on every frame (no tracking, always classifying): the bound a worst-case scene approaches
        pipe["worst_case_fps_from_p50"] = _r(1e3 / worst, 1) if worst > 0 else None
        _progress(f"pipeline: {pipe['fps']} fps, p50 {pipe['frame']['p50_ms']} ms per frame, "
                  f"detector on {pipe['detector_runs']}/{len(frames)} frames, classify on {pipe['classify_runs']}")
        stages = stage_table(records, decode_ms)
        att = attempt_frames.compare({v: attempt_frames.summarize_variant(ps) for v, ps in vpasses.items()}, main_v, settings.schedule)
        att["overlap_worker_shares"] = attempt_frames.worker_shares(models.liveness.views)
        pi4 = attempt_frames.pi4_projection(att, *attempt_frames.projection_ratio(ref, args.pi_ratio))
        hd = att["headline"]
        _progress(f"attempt frames: {hd['fps_during_attempts_scheduled']} fps scheduled vs {hd['fps_during_attempts_every_frame']} fps "
                  f"every model on every frame ({hd['speedup_during_attempts']}x); same decisions: {att['same_decisions']}")
        body = _decision_body(outputs)
        _progress(f"publish: {args.publish_runs} decision payloads")
        publish = publish_bench(settings, baddr, body, args.publish_runs)
        publish["in_loop"] = stages["publish"]
        publish["ran_with"] = pub_how

    sample = find_sample(models, frames)
    threads_res: dict[str, Any] = {"models": {}, "pipeline": {}, "default": base.models.num_threads}
    if sweep and sample is not None:
        _progress(f"per-model sweep over threads {sweep}")
        threads_res["models"] = sweep_models(settings, models, float_path, sample, sweep, args.sweep_runs)
        for t in sweep:
            if t == threads:
                threads_res["pipeline"][str(t)] = {"fps": pipe["fps"], "cpu_ms_per_frame": pipe["cpu_ms_per_frame"]}
                continue
            st = bench_settings(args, t, args.model)
            recs, _ = run_pipeline(st, load_models(st), frames)
            ps = pipeline_summary(recs, [])
            threads_res["pipeline"][str(t)] = {"fps": ps["fps"], "cpu_ms_per_frame": ps["cpu_ms_per_frame"]}
            _progress(f"pipeline with {t} threads: {ps['fps']} fps")
        threads_res["why"] = _threads_why(threads_res, base.models.num_threads, machine_info()["usable_cores"])
    elif sample is None:
        notes.append("no face found in the source: per-model sweep skipped")

    face_models = {"detector": dict(stages["detect"]), "landmarks": dict(stages["landmarks"])}
    wrappers = {"detector": models.detector, "landmarks": models.landmarker}
    if getattr(models, "eyes", None) is not None:
        # the eyes stage = the eye model on both eyes (two invokes) + EAR/blink logic
        face_models["eyes_both"] = dict(stages["eyes"])
        wrappers["eyes_both"] = models.eyes
    for k, wrapper in wrappers.items():
        inv = threads_res["models"].get(k, {}).get("1", {}).get("invoke", {})
        face_models[k]["invoke_p50_ms"] = inv.get("p50_ms")
        face_models[k]["model"] = str(wrapper.model.path)

    cmp_: dict[str, Any]
    if float_path is None:
        cmp_ = {"skipped": f"no float32 model beside {Path(lv.path).name} (give --float-model PATH)"}
    else:
        _progress(f"int8 vs float32 on the same crops ({float_path.name})")
        rec = CropRecorder(lv)
        rp = Pipeline(settings, dataclasses.replace(models, liveness=rec))
        for f in frames:
            rp.process(f)
        flt = load_float(float_path, lv, threads)
        cmp_ = compare_int8_float(lv, flt, rec.crops)
        cmp_["float_model"] = str(float_path)
        if isinstance(flt, RawFloatLiveness):
            cmp_["note"] = "the float model has no manifest: fed like the int8 one, judged at the int8 threshold"
        else:
            frecs, fouts = run_pipeline(settings, dataclasses.replace(models, liveness=flt), frames)
            d_i = [(o.get("result"), o.get("reason")) for o in outputs if o["kind"] == "decision"]
            d_f = [(o.get("result"), o.get("reason")) for o in fouts if o["kind"] == "decision"]
            cmp_["pipeline_float32"] = {"fps": pipeline_summary(frecs, fouts)["fps"], "same_decisions": d_i == d_f,
                                        "decisions_int8": len(d_i), "decisions_float32": len(d_f)}
        rec.crops.clear()

    _progress(f"start-up probes ({args.startup_runs} subprocesses)")
    probes = [run_probe(source, len(frames) if i == 0 else 1, threads, args.config, args.model, args.no_eye_model) for i in range(args.startup_runs)]
    startup = dict(probes[0])
    ss = [p["startup_s"] for p in probes]
    startup.update(runs=len(probes), startup_s_all=ss, startup_s_median=_r(float(np.median(ss))), startup_s_max=_r(max(ss)),
                   peak_rss_mb=probes[0]["peak_rss_mb"])
    startup.pop("startup_s", None)
    if startup.get("tensorflow_loaded"):
        notes.append("TensorFlow was imported by the device process: the RSS number is not the device's")

    baseline: dict[str, Any]
    speedup: dict[str, Any] = {}
    if args.no_baseline:
        baseline = {"skipped": "--no-baseline"}
    else:
        nb = min(args.baseline_frames, len(frames))
        _progress(f"seed-style baseline on the first {nb} frames (TensorFlow, subprocess; slow)")
        # the seed classifier gets the device model's input size: same architecture, same pixels
        # as many passes as the pipeline's, median pass each side: one busy minute does not decide the ratio
        baseline = seed_baseline.run_in_subprocess(source, nb, Path(models.detector.model.path), lv.input_size, args.repeat)
        if "skipped" in baseline:
            _progress(f"baseline skipped: {baseline['skipped']}")
        else:
            best = max(v["fps"] for v in baseline["variants"].values() if v["fps"])
            pf = fps_of(records, nb)
            speedup = {"frames": nb, "pipeline_fps_same_frames": pf, "baseline_fps": best,
                       "ratio": _r(pf / best, 1) if pf and best else None,
                       "note": "against the faster seed variant; the seed classifies every frame with a face, the pipeline "
                               "only while an attempt collects, as the daemon does"}
            _progress(f"speed-up {speedup['ratio']}x")

    info = machine_info()
    res: dict[str, Any] = {
        "schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "edge-liveness bench " + " ".join(sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] == "bench" else sys.argv[1:]),
        "machine": info, "load_average": {"start": load_start, "end": _loadavg()},
        "source": {"path": str(source), "frames": len(frames), "width": w, "height": h},
        "settings": {"threads": threads, "liveness_model": str(lv.path), "liveness_sha256": lv.sha256, "standin": standin,
                     "runtime": lv.runtime, "active_mode": settings.active.mode, "track": settings.detection.track,
                     "redetect_frames": settings.detection.redetect_frames, "warmup_frames": WARMUP_FRAMES,
                     "eye_model": str(models.eyes.model.path) if getattr(models, "eyes", None) is not None else None},
        "stages": stages, "pipeline": pipe, "face_models": face_models, "publish": publish, "threads": threads_res,
        "int8_vs_float32": cmp_, "startup": startup,
        "memory": {"bench_process_peak_rss_mb": peak_rss_mb(),
                   "decoded_frames_mb": _r(sum(f.image.nbytes for f in frames) / 2**20, 1),
                   "device_process_peak_rss_mb": startup.get("peak_rss_mb")},
        "baseline": baseline, "speedup": speedup, "notes": notes, "attempts": att, "pi4_projection": pi4,
    }
    res["targets"] = [] if args.no_targets else report.targets(res)
    tag = _slug_text(" ".join(x for x in (args.tag, "mesh-ear" if args.no_eye_model else "") if x))
    stem = "_".join(x for x in ("bench", machine_slug(info), _slug(source), f"{w}x{h}", f"t{threads}", tag) if x)
    jpath, mpath, ppath = out_dir / f"{stem}.json", out_dir / f"{stem}.md", out_dir / f"{stem}.png"
    jpath.write_text(json.dumps(res, indent=1, default=_json_default) + "\n")
    why = report.draw_png(res, ppath)
    if why:
        res["notes"].append(why)
        jpath.write_text(json.dumps(res, indent=1, default=_json_default) + "\n")
    md = report.markdown(res)
    cut = md.find("## Targets")  # the attempt-frame headline goes first, above the targets
    head = attempt_frames.markdown(att, pi4)
    mpath.write_text(md[:cut] + head + "\n" + md[cut:] if cut >= 0 else md + "\n" + head)
    _progress(f"wrote {jpath}, {mpath.name}" + ("" if why else f", {ppath.name}"))
    if args.no_targets:
        _progress("targets not checked (--no-targets)")
    for t in res["targets"]:
        _progress(f"  {t['name']}: {report.fmt(t['measured'])} (target {t['target']}) {'' if t['pass'] is None else ('met' if t['pass'] else 'MISSED')}")
    print(json.dumps({"json": str(jpath), "markdown": str(mpath), "fps_during_attempts": hd["fps_during_attempts"], "fps": pipe["fps"],
                      "targets": {t["name"]: t["pass"] for t in res["targets"]}}))
    return 0


def _decision_body(outputs: list[dict]) -> dict[str, Any]:
    """A decision body shaped like the engine's (``Decision.body()``); the pipeline's own when it made one."""
    o = next((x for x in outputs if x["kind"] == "decision"), {})
    return {"result": o.get("result", "live"), "reason": o.get("reason", "passed"), "attempt_id": "bench-attempt",
            "started_at": round(time.time(), 3), "duration_s": 1.234,
            "evidence": {"frames": 24, "p_live_median": 0.91, "p_live_min": 0.72, "blinks": 1, "ear_min": 0.18,
                         "yaw_max": 6.2, "model": "liveness_mnv2_int8", "threshold": 0.5}}


def _threads_why(t: dict[str, Any], default: int, cores: int) -> str:
    pl = t.get("pipeline", {})
    if "1" not in pl or "2" not in pl or not pl["1"]["fps"] or not pl["2"]["fps"]:
        return f"models.num_threads default is {default}."
    f1, f2 = pl["1"]["fps"], pl["2"]["fps"]
    c1, c2 = pl["1"]["cpu_ms_per_frame"], pl["2"]["cpu_ms_per_frame"]
    head = (f"Default models.num_threads = {default}. Measured here: 1 thread {f1} fps at {c1} ms CPU per frame, 2 threads "
            f"{f2} fps at {c2} ms CPU per frame ({f2 / f1:.2f}x the frames for {c2 / c1:.2f}x the CPU).")
    if f1 < 30:
        return head + " One thread does not keep up with a 30 fps camera here: set models.num_threads = 2 on this machine."
    return (head + f" One thread already runs the loop at {f1 / 30:.1f}x a 30 fps camera's rate, and on a {cores}-core device "
            "the other core runs the capture thread, MQTT and the OS; a second inference thread spends more CPU per frame "
            "(heat and throttling on a Pi) for latency that a 30 fps camera does not need, and on a shared or busy machine "
            "it can even lose (threads wait for each other). So the default stays 1; raise it only where one thread cannot "
            "keep up with the camera, measured on the device with `edge-liveness bench --sweep-threads 1,2,4`.")


def _slug(p: Path) -> str:
    # a folder's own name is often just a subject number: keep two parents for context
    return _slug_text(p.stem if p.is_file() else "-".join(p.resolve().parts[-3:]))


def _slug_text(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-")[:40]


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m edge_liveness.bench.command")
    add_arguments(ap)
    sys.exit(main(ap.parse_args()))
