"""The report of `edge-liveness bench`: targets, Markdown and the PNG chart (never run in the daemon).

Written from the bench's result dictionary only, so a report can be redrawn from a saved JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_liveness.bench.stats import cell as fmt

# Acceptance targets (GitHub issue 8). The fps target is defined on 640x480 frames.
TARGET_FPS = 150.0
TARGET_SPEEDUP = 20.0
TARGET_RSS_MB = 250.0
TARGET_STARTUP_S = 2.0


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    w, h = res["source"]["width"], res["source"]["height"]
    is_vga = (w, h) in ((640, 480), (480, 640))
    rows = [{"name": "pipeline fps (decode excluded)", "target": f">= {TARGET_FPS:g}", "measured": res["pipeline"]["fps"],
             "pass": _ge(res["pipeline"]["fps"], TARGET_FPS),
             "note": (f"from CPU time {res['pipeline'].get('fps_from_cpu_time')} fps (CPU share {res['pipeline'].get('cpu_share')})"
                      + ("" if is_vga else f"; the target is defined on 640x480, this source is {w}x{h}"))}]
    sp = res.get("speedup", {}).get("ratio")
    rows.append({"name": "speed-up over the seed-style baseline", "target": f">= {TARGET_SPEEDUP:g}x", "measured": sp,
                 "pass": _ge(sp, TARGET_SPEEDUP), "note": res.get("speedup", {}).get("note", "")})
    rss = res["startup"].get("peak_rss_mb")
    rows.append({"name": "peak RSS of the device process (MB)", "target": f"<= {TARGET_RSS_MB:g}", "measured": rss,
                 "pass": None if rss is None else rss <= TARGET_RSS_MB, "note": "subprocess, no TensorFlow loaded"})
    st = res["startup"].get("startup_s_median")
    rows.append({"name": "start-up to the first processed frame (s)", "target": f"<= {TARGET_STARTUP_S:g}", "measured": st,
                 "pass": None if st is None else st <= TARGET_STARTUP_S,
                 "note": f"median of {res['startup'].get('runs', 0)} runs, max {res['startup'].get('startup_s_max')}"})
    return rows


def _ge(x: float | None, t: float) -> bool | None:
    return None if x is None else x >= t


def markdown(res: dict[str, Any]) -> str:
    m, s, p = res["machine"], res["source"], res["pipeline"]
    L = [f"# edge-liveness bench: {Path(s['path']).name} ({s['width']}x{s['height']}), {res['settings']['threads']} thread(s)", "",
         f"Machine: {m['cpu']}, {m['usable_cores']} usable cores ({m['arch']}), Python {m['python']}, numpy {m['numpy']}, "
         f"OpenCV {m.get('opencv', '-')}, ai-edge-litert {m.get('ai-edge-litert', '-')}; TFLite runtime `{res['settings']['runtime']}`. "
         f"Load average at start {res['load_average']['start']}, end {res['load_average']['end']} (a shared machine: "
         f"others' jobs inflate the numbers).", "",
         f"Command: `{res['command']}`  ", f"Created: {res['created']}", "",
         f"Eye model: `{res['settings'].get('eye_model') or 'off (mesh EAR)'}`. Liveness model: `{res['settings']['liveness_model']}`" + (" (STAND-IN: untrained, for speed only)" if res['settings'].get('standin') else ""), "",
         "## Targets", "", "| target | wanted | measured | met | note |", "|---|---|---|---|---|"]
    for t in res["targets"]:
        L.append(f"| {t['name']} | {t['target']} | {fmt(t['measured'])} | {fmt(t['pass'])} | {t['note']} |")
    L += ["", f"## Per stage ({p['frames']} frames; decode excluded from everything else)", "",
          "| stage | ran on | p50 ms | p95 ms | mean ms | per frame ms |", "|---|---|---|---|---|---|"]
    for name, st in res["stages"].items():
        L.append(f"| {name} | {st['runs']} ({fmt(st.get('runs_pct'))}%) | {fmt(st['p50_ms'])} | {fmt(st['p95_ms'])} | "
                 f"{fmt(st['mean_ms'])} | {fmt(st.get('per_frame_ms'))} |")
    L += ["", "detect runs only when tracking does not hold (a new face, tracking lost, or every "
          "`detection.redetect_frames`); crop/classify run only while an attempt can use the score; publish runs per decision.", "",
          f"Whole frame (process + publish): p50 {fmt(p['frame']['p50_ms'])} ms, p95 {fmt(p['frame']['p95_ms'])} ms, "
          f"**{fmt(p['fps'])} fps** (median of passes {p.get('fps_all_passes')}, the configured loop alone; in lockstep with the "
          f"other variants {p.get('fps_lockstep_passes')}; from CPU time {fmt(p['fps_from_cpu_time'])} fps, "
          f"CPU share {fmt(p['cpu_share'])}); while classifying {fmt(p['fps_while_classifying'])} fps, every stage on every frame (sum of p50s) {fmt(p.get('worst_case_fps_from_p50'))} fps, without classify "
          f"{fmt(p['fps_without_classify'])} fps; CPU {fmt(p['cpu_ms_per_frame'])} ms per frame; glue outside the timed stages "
          f"{fmt(p['glue_ms_per_frame'])} ms per frame. Face on {p['face_frames']} frames, tracked {p['tracked_frames']}, "
          f"detector ran {p['detector_runs']}, classify ran {p['classify_runs']}; outputs: "
          + (", ".join(f"{o['kind']} {o.get('result', '')} {o.get('reason', '')}".strip() for o in p["outputs"]) or "none") + ".", ""]
    fm = res["face_models"]
    L += ["## Face models per frame (in the pipeline)", "", "| model | ran on | p50 ms | p95 ms | invoke only p50 ms (1 thread) |",
          "|---|---|---|---|---|"]
    for k in fm:
        L.append(f"| {k} | {fm[k]['runs']} | {fmt(fm[k]['p50_ms'])} | {fmt(fm[k]['p95_ms'])} | {fmt(fm[k].get('invoke_p50_ms'))} |")
    pub = res["publish"]
    L += ["", "## Publish", "", f"{pub.get('how', '-')}: `Publisher.submit` p50 {fmt(pub['submit']['p50_ms'])} ms, "
          f"p95 {fmt(pub['submit']['p95_ms'])} ms over {pub['submit']['runs']} decision payloads"
          + (f"; all acknowledged: {fmt(pub.get('all_acked'))}" if "all_acked" in pub else "") + ".", ""]
    sw = res["threads"]
    L += ["## num_threads (1 vs 2)", "", "| model | 1 thread call p50 ms | 2 threads call p50 ms | 1 thread invoke p50 | 2 threads invoke p50 |",
          "|---|---|---|---|---|"]
    for name, byt in sw["models"].items():
        c1, c2 = byt.get("1", {}), byt.get("2", {})
        L.append(f"| {name} | {fmt(c1.get('call', {}).get('p50_ms'))} | {fmt(c2.get('call', {}).get('p50_ms'))} | "
                 f"{fmt(c1.get('invoke', {}).get('p50_ms'))} | {fmt(c2.get('invoke', {}).get('p50_ms'))} |")
    if sw.get("pipeline"):
        L += ["", "| whole pipeline | fps | CPU ms per frame |", "|---|---|---|"]
        for t, v in sw["pipeline"].items():
            L.append(f"| {t} thread(s) | {fmt(v['fps'])} | {fmt(v['cpu_ms_per_frame'])} |")
    L += ["", sw.get("why", ""), ""]
    cmp_ = res["int8_vs_float32"]
    L += ["## int8 vs float32 liveness model (same crops)", ""]
    if "skipped" in cmp_:
        L.append(f"Skipped: {cmp_['skipped']}")
    elif cmp_.get("crops"):
        L += [f"Float model: `{cmp_['float_model']}`. {cmp_['crops']} crops: int8 classify p50 {fmt(cmp_['int8_classify']['p50_ms'])} ms "
              f"(p95 {fmt(cmp_['int8_classify']['p95_ms'])}), float32 p50 {fmt(cmp_['float32_classify']['p50_ms'])} ms "
              f"(p95 {fmt(cmp_['float32_classify']['p95_ms'])}); live/spoof calls agree on {fmt(cmp_['call_agreement'])} of crops "
              f"(mean |P int8 - P float| {fmt(cmp_['mean_abs_p_diff'])})."]
        if cmp_.get("pipeline_float32"):
            pf = cmp_["pipeline_float32"]
            L.append(f"Whole pipeline with the float32 model: {fmt(pf['fps'])} fps; decisions identical to int8's: "
                     f"{fmt(pf['same_decisions'])} ({pf['decisions_float32']} vs {pf['decisions_int8']}).")
        L.append("On this x86 CPU int8 is not expected to beat float32; on ARM (Pi 4/5) it usually does: confirm there.")
    else:
        L.append(cmp_.get("note", ""))
    st = res["startup"]
    L += ["", "## Start-up and memory (device process in a subprocess, timed from outside)", "",
          f"Start-up to the first processed frame: median {fmt(st.get('startup_s_median'))} s, max {fmt(st.get('startup_s_max'))} s "
          f"over {st.get('runs')} runs (imports {fmt(st.get('import_s'))} s, models {fmt(st.get('models_s'))} s, first frame "
          f"{fmt(st.get('first_frame_s'))} s, inside the child). Peak RSS {fmt(st.get('peak_rss_mb'))} MB over "
          f"{st.get('frames')} frames (after imports {fmt(st.get('rss_after_import_mb'))} MB, after models "
          f"{fmt(st.get('rss_after_models_mb'))} MB); TensorFlow loaded in it: {fmt(st.get('tensorflow_loaded'))}. "
          f"This bench process itself peaked at {fmt(res['memory']['bench_process_peak_rss_mb'])} MB because it holds all "
          f"{p['frames']} decoded frames ({fmt(res['memory']['decoded_frames_mb'])} MB).", ""]
    b = res["baseline"]
    L += ["## Seed-style baseline (same frames, subprocess)", ""]
    if "skipped" in b:
        L.append(f"Skipped: {b['skipped']}")
    else:
        L += [f"{b['detector']}; {b['classifier']}; TensorFlow {b['tensorflow']}, Keras {b['keras']} "
              f"(TF intra-op threads {b['tf_intra_op_threads']} = default, OpenCV threads {b['opencv_threads']}); peak RSS "
              f"{fmt(b.get('peak_rss_mb'))} MB.", "", "| seed variant | frames | fps (median pass) | each pass | frame p50 ms | detect p50 ms | classify p50 ms | CPU ms/frame |",
              "|---|---|---|---|---|---|---|---|"]
        for name, v in b["variants"].items():
            label = "model.predict(x)" if name == "predict" else "model(x)"
            each = ", ".join(fmt(x) for x in v.get("fps_each_pass", [v["fps"]]))
            L.append(f"| {label} | {v['frames']} | {fmt(v['fps'])} | {each} | {fmt(v['frame_ms']['p50'])} | {fmt(v['detect_ms']['p50'])} | "
                     f"{fmt(v['classify_ms']['p50'])} | {fmt(v['cpu_ms_per_frame'])} |")
        sp = res["speedup"]
        L += ["", f"Speed-up: pipeline {fmt(sp.get('pipeline_fps_same_frames'))} fps on the same {sp.get('frames')} frames vs "
              f"the faster seed variant {fmt(sp.get('baseline_fps'))} fps: **{fmt(sp.get('ratio'))}x** ({sp.get('note', '')})."]
    if res.get("notes"):
        L += ["", "## Notes", ""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(L) + "\n"


def draw_png(res: dict[str, Any], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no PNG (pip install matplotlib)"
    names = [k for k, v in res["stages"].items() if v["runs"]]
    p50 = [res["stages"][k]["p50_ms"] for k in names]
    p95 = [res["stages"][k]["p95_ms"] for k in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.bar(x - 0.2, p50, 0.4, label="p50")
    ax.bar(x + 0.2, p95, 0.4, label="p95")
    for i, k in enumerate(names):
        ax.text(i, max(p95[i], p50[i]) * 1.02, f"{res['stages'][k]['runs_pct']:g}%", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, names)
    ax.set_ylabel("ms per run")
    s, p = res["source"], res["pipeline"]
    ax.set_title(f"{Path(s['path']).name} {s['width']}x{s['height']}, {res['settings']['threads']} thread(s): {p['fps']} fps "
                 f"(decode excluded); % = frames the stage ran on", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
