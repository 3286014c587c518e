#!/usr/bin/env python3
"""The Pi 4 projection of attempt frames: this machine's per-stage costs times a Pi/x86 ratio.

    .venv/bin/python benchmarks/pi4_projection.py [BENCH_JSON ...] [--out benchmarks/results/bench_pi4_projection.json]

The ratio: XNNPACK's published FP32 MobileNet v2 1.0X time on a Raspberry Pi 4 (BCM2711, all 4 cores,
github.com/google/XNNPACK README, "Raspberry Pi" table: 44 ms) over the same network timed here (Keras
MobileNetV2 1.0, 224 px, float32, converted to TFLite, run through the daemon's runtime wrapper on ONE
thread: converters/reports/pi_reference.py). Each bench file made since 2026-12-04 carries that ratio
measured in its own run, between its passes (``pi4_projection.ratio_measured_in_run``): the stage
costs and the ratio then come from the same minutes, and this script uses it. For an older file the
script times the network now (needs TensorFlow; ``--reference-ms`` gives a time instead), which mixes
two hours' speeds: that file's entry says so. The per-stage costs are the bench's own (``attempts``:
ms per attempt frame, best of the passes, every model on every frame vs scheduled). A projection, not
a measurement: `edge-liveness bench` on the Pi is the measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from edge_liveness.bench.attempt_frames import PI4_MS  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SOURCES = ("bench_*_tranvanluyt-real_368x656_t1.json", "bench_*_apfol-real2_640x480_t1.json")
CAMERA_FPS = 30.0
# XNNPACK issue 814: 1 -> 4 threads on a Pi 4 ran ~2.2x faster; a half of the overlapped loop left one core
# runs that much slower than the ratio (which is for 4 cores): the overlapped path's lower bound.
ONE_CORE_SLOWDOWN = 2.2


def reference_ms(blocks: int = 5, invokes: int = 50) -> float:
    """MobileNetV2 1.0 224 float32 through the daemon's runtime on one thread, now: the lowest block median."""
    from converters.reports.pi_reference import write_reference
    from edge_liveness.bench.attempt_frames import ReferenceTimer

    with tempfile.TemporaryDirectory() as tmp:
        timer = ReferenceTimer(str(write_reference(Path(tmp) / "mobilenet_v2_1.0_224_float32.tflite")), invokes)
    for _ in range(blocks):
        timer.block()
    return min(timer.blocks_ms)


def _newest_with_attempts(paths) -> list[Path]:
    """The newest bench result (by its ``created``) that has the attempt-frame comparison, as a list of 0 or 1."""
    found = [(json.loads(p.read_text()), p) for p in paths]
    found = [(d["created"], p) for d, p in found if "attempts" in d]
    return [max(found)[1]] if found else []


def ratio_of(bench: dict, fallback) -> tuple[float, dict]:
    """The bench run's own measured ratio, or ``fallback()``'s (x86 ms now) with a note that it mixes hours."""
    pi = bench.get("pi4_projection") or {}
    if pi.get("ratio_measured_in_run"):
        return pi["ratio"], {**pi["ratio_measured_in_run"], "when": "in the bench run itself, between its passes"}
    x86 = fallback()
    return round(PI4_MS / x86, 2), {"pi4_ms": PI4_MS, "x86_ms": x86, "when": "timed by this script, not in the bench run: "
                                    "the stage costs and the ratio come from different hours"}


def project(bench: dict, fallback) -> dict:
    att = bench["attempts"]
    ratio, how = ratio_of(bench, fallback)
    out = {"source": Path(bench["source"]["path"]).name, "size": f"{bench['source']['width']}x{bench['source']['height']}",
           "bench_created": bench["created"], "attempt_frames": att["variants"]["scheduled"]["attempt_frames"],
           "ratio": ratio, "ratio_measured": how, "variants": {}}
    for v in ("every_frame", "scheduled"):
        stages = {k: x["ms_per_attempt_frame"] for k, x in att["variants"][v]["stages"].items()}
        frame = stages.pop("frame")
        out["variants"][v] = {
            "x86_ms": {**stages, "frame": frame}, "pi4_ms": {**{k: round(x * ratio, 1) for k, x in stages.items()},
                                                              "frame": round(frame * ratio, 1)},
            "pi4_fps_during_attempts": round(1e3 / (frame * ratio), 1),
            "break_even_ratio_for_30_fps": round(1e3 / CAMERA_FPS / frame, 1)}
    if "scheduled_overlap" in att["variants"]:
        # schedule.overlap: the face half of the next frame beside the rest of this one, from the one-thread
        # scheduled path's halves; bounded by how a Pi 4's cores split between the halves
        from edge_liveness.bench.attempt_frames import PAIR_FIRST_SHARE, overlap_halves

        sc = out["variants"]["scheduled"]["x86_ms"]
        # a bench run from before the worker took the tight view: the worker took the pair's first model
        find, judge = overlap_halves(sc, sc["frame"], att.get("overlap_worker_shares", PAIR_FIRST_SHARE))
        frame = max(find, judge)
        out["variants"]["scheduled_overlap"] = {
            "x86_ms": {"find": round(find, 3), "judge": round(judge, 3), "frame": round(frame, 3),
                       "measured_wall_here": att["variants"]["scheduled_overlap"]["stages"]["frame"]["ms_per_attempt_frame"]},
            "pi4_ms": {"find": round(find * ratio, 1), "judge": round(judge * ratio, 1), "frame": round(frame * ratio, 1)},
            "pi4_fps_during_attempts": round(1e3 / (frame * ratio), 1),
            "pi4_fps_one_core_per_half": round(1e3 / (frame * ratio * ONE_CORE_SLOWDOWN), 1),
            "break_even_ratio_for_30_fps": round(1e3 / CAMERA_FPS / frame, 1)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", nargs="*", help="bench_*.json files (default: the 640x480 and the portrait video's)")
    ap.add_argument("--reference-ms", type=float, help="MobileNetV2 224 float32 on one thread here, ms (default: measure it; needs TensorFlow)")
    ap.add_argument("--out", default=str(RESULTS / "bench_pi4_projection.json"))
    args = ap.parse_args()
    files = [Path(f) for f in args.bench] or [p for pat in SOURCES for p in _newest_with_attempts(RESULTS.glob(pat))]
    if not files:
        print(f"error: no bench results under {RESULTS}: run `edge-liveness bench` first or name the JSON files", file=sys.stderr)
        return 2
    cache: list[float] = []

    def fallback() -> float:  # timed at most once, only for a bench file without its own ratio
        if not cache:
            cache.append(args.reference_ms or reference_ms())
        return cache[0]

    res = {"what": "attempt frames on a Raspberry Pi 4, projected: this machine's per-stage ms per attempt frame x the ratio",
           "ratio_source": {"pi4_ms": PI4_MS, "pi4": "XNNPACK README (github.com/google/XNNPACK), 'Raspberry Pi' table: FP32 "
                            "MobileNet v2 1.0X on RPi 4 (BCM2711), multi-threaded (4 cores), end2end-bench, 2020-02-12",
                            "x86": "the same network (Keras MobileNetV2 1.0 224 float32 -> TFLite) here through "
                            "edge_liveness.vision.runtime.TFLiteModel, 1 thread, the lowest block median: each source's "
                            "`ratio_measured` says when",
                            "measured_with": "python benchmarks/pi4_projection.py" + (f" --reference-ms {args.reference_ms:g}" if args.reference_ms else "")},
           "assumes": "every stage scales by the one ratio (Python glue and OpenCV warps included); the Pi runs each model on "
                      "its 4 cores (the published figure's setting); the camera path is not counted (frames are pre-decoded)",
           "camera_fps": CAMERA_FPS, "sources": [project(json.loads(f.read_text()), fallback) for f in files]}
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    for s in res["sources"]:
        e, sc = s["variants"]["every_frame"], s["variants"]["scheduled"]
        print(f"{s['source']}: Pi 4 attempt frames {e['pi4_fps_during_attempts']} fps every frame -> {sc['pi4_fps_during_attempts']} fps "
              f"scheduled (30 fps needs a ratio <= {sc['break_even_ratio_for_30_fps']}; measured {s['ratio']}, {s['ratio_measured']['when']})")
        ov = s["variants"].get("scheduled_overlap")
        if ov:
            print(f"  overlapped: {ov['pi4_fps_during_attempts']} fps if each half keeps the ratio's speed, "
                  f"{ov['pi4_fps_one_core_per_half']} fps with one core per half (30 fps needs a ratio <= {ov['break_even_ratio_for_30_fps']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
