"""Frame-loop cost of the commissioning page: web off, page on with nobody watching, one preview
viewer, one viewer plus the event stream (what the browser page opens).

The daemon's loop (``Pipeline.process`` + ``WebHub.publish``) runs unpaced on frames decoded up front
from a real recording, so every millisecond the page adds shows as lost frames per second; the real
HTTP server serves a real client reading ``/preview.mjpg`` (and ``/api/events``) over loopback.
Conditions alternate and repeat; the median pass of each is reported, with the process's CPU time
per frame (all threads: the preview encoder and the HTTP threads included).

    python benchmarks/web_fps.py [--source VIDEO] [--frames 300] [--repeat 3]

Writes benchmarks/results/web_fps.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "video" / "apfol_real2.webm"
CONDITIONS = ("web_off", "no_viewer", "one_viewer", "viewer_and_events")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(port: int, path: str, stop: threading.Event, counter: list[int]) -> None:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        while not stop.is_set():
            line = r.fp.readline()
            if not line:
                break
            if line.lower().startswith(b"content-length:"):
                n = int(line.split(b":")[1])
                r.fp.readline()
                r.fp.read(n)
                counter[0] += 1
            elif line.startswith(b"event:"):
                counter[0] += 1
        r.close()
    except OSError:
        pass  # the run ended while this client waited
    finally:
        c.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=str(DEFAULT_SOURCE))
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "web_fps.json"))
    args = ap.parse_args()

    from edge_liveness.camera.supervisor import Frame, ReplaySource, check_frame
    from edge_liveness.config import load_settings
    from edge_liveness.pipeline import build_pipeline
    from edge_liveness.web.hub import WebHub
    from edge_liveness.web.server import WebServer

    src = ReplaySource(args.source)
    src.open()
    images = []
    while len(images) < args.frames:
        img, _ = src.read()
        if img is None:
            break
        img, _ = check_frame(img)
        if img is not None:
            images.append(img)
    src.close()
    if not images:
        print(f"no frames from {args.source}", file=sys.stderr)
        return 2
    fps_src = 30.0
    settings = load_settings(None, decision={"rearm": "cooldown", "cooldown_s": 0.5},
                             web={"enabled": True, "port": _free_port()}, mqtt={"enabled": False})
    pipeline = build_pipeline(settings)
    hub = WebHub(settings.web.preview_fps)
    server = WebServer(settings.web, hub, Path("/nonexistent/outbox.db"), lambda n, a: {"ok": False},
                       lambda: {}, "bench")
    port = server.start()

    ts = [0.0]
    publish_s = [0.0]  # time inside WebHub.publish on the loop thread, this pass

    def one_pass(publish: bool) -> tuple[float, float, float]:
        n0 = 0
        publish_s[0] = 0.0
        cpu0, t0, th0 = time.process_time(), time.perf_counter(), time.thread_time()
        for img in images:
            ts[0] += 1.0 / fps_src
            result = pipeline.process(Frame(img, ts[0], n0))
            if publish:
                tp = time.perf_counter()
                hub.publish(result, pipeline)
                publish_s[0] += time.perf_counter() - tp
            n0 += 1
        wall, cpu, loop = time.perf_counter() - t0, time.process_time() - cpu0, time.thread_time() - th0
        return n0 / wall, cpu / n0 * 1e3, loop / n0 * 1e3

    one_pass(True)  # warm-up: model caches, tracker lock, first attempt
    passes: dict[str, list[tuple[float, float, float, float]]] = {c: [] for c in CONDITIONS}
    encoded: dict[str, list[int]] = {c: [] for c in CONDITIONS}
    for _ in range(args.repeat):
        for cond in CONDITIONS:
            stop = threading.Event()
            threads, counts = [], []
            if cond in ("one_viewer", "viewer_and_events"):
                paths = ["/preview.mjpg"] + (["/api/events"] if cond == "viewer_and_events" else [])
                for p in paths:
                    cnt = [0]
                    counts.append(cnt)
                    t = threading.Thread(target=_client, args=(port, p, stop, cnt), daemon=True)
                    t.start()
                    threads.append(t)
                deadline = time.monotonic() + 5
                while hub.viewers < 1 and time.monotonic() < deadline:
                    time.sleep(0.01)
            e0 = hub.frames_encoded
            fps, cpu_ms, loop_ms = one_pass(cond != "web_off")
            encoded[cond].append(hub.frames_encoded - e0)
            passes[cond].append((loop_ms, fps, cpu_ms, publish_s[0] / len(images) * 1e6))
            stop.set()
            for t in threads:
                t.join(timeout=15)
            # a closed client is noticed on the next write to it: keep frames flowing (untimed) until then
            deadline = time.monotonic() + 15
            while (hub.viewers or hub.subscribers) and time.monotonic() < deadline:
                ts[0] += 1.0 / fps_src
                hub.publish(pipeline.process(Frame(images[0], ts[0], 0)), pipeline)
                time.sleep(0.05)
    server.close()

    def med(cond: str) -> dict:
        runs = passes[cond]
        loop_ms = statistics.median(r[0] for r in runs)
        return {"loop_thread_cpu_ms_per_frame": round(loop_ms, 3), "loop_fps_from_cpu": round(1000 / loop_ms, 1),
                "wall_fps": round(statistics.median(r[1] for r in runs), 1),
                "process_cpu_ms_per_frame": round(statistics.median(r[2] for r in runs), 3),
                "publish_us_per_frame": round(statistics.median(r[3] for r in runs), 1),
                "wall_fps_runs": [round(r[1], 1) for r in runs], "preview_frames_encoded": encoded[cond]}

    res = {c: med(c) for c in CONDITIONS}
    base = res["no_viewer"]["loop_fps_from_cpu"]
    out = {
        "what": "frame loop (Pipeline.process + WebHub.publish), unpaced, on frames decoded up front",
        "source": os.path.relpath(args.source, REPO), "frames_per_pass": len(images),
        "frame_size": list(images[0].shape[1::-1]), "repeat": args.repeat, "preview_fps": settings.web.preview_fps,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "results": res,
        # The loop thread's own CPU time per frame is the comparison: on a shared 2-core machine the
        # wall-clock fps of one pass swings by +-40 % with the neighbours' load; the loop's CPU does not.
        "no_viewer_vs_web_off_fps_drop_pct": round(100 * (1 - base / res["web_off"]["loop_fps_from_cpu"]), 1),
        "one_viewer_fps_drop_pct": round(100 * (1 - res["one_viewer"]["loop_fps_from_cpu"] / base), 1),
        "viewer_and_events_fps_drop_pct": round(100 * (1 - res["viewer_and_events"]["loop_fps_from_cpu"] / base), 1),
        "encoder_and_http_cpu_ms_per_frame_one_viewer": round(res["one_viewer"]["process_cpu_ms_per_frame"]
                                                              - res["one_viewer"]["loop_thread_cpu_ms_per_frame"], 3),
        "target_drop_pct": 10.0,
        "command": "python benchmarks/web_fps.py " + " ".join(sys.argv[1:]),
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k.endswith("_pct")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
