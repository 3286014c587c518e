"""Start-up and memory of the device process, measured in a subprocess timed from outside.

``python -m edge_liveness.bench.probe --source FILE`` is the daemon's start as it happens on a door:
imports, models, source, frames; it prints JSON lines. ``run_probe`` starts it and reads them, so the
numbers never include the bench process's own decoded frames.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_liveness.bench.stages import bench_settings
from edge_liveness.bench.stats import BenchError, _r, _rss_mb, peak_rss_mb

REPO = Path(__file__).resolve().parents[2]


def _probe_main(argv: list[str]) -> int:
    """The device process as the daemon starts it: imports, models, source, frames. JSON lines out."""
    t_start = time.perf_counter()
    ap = argparse.ArgumentParser(prog="python -m edge_liveness.bench.probe")
    ap.add_argument("--probe", action="store_true")
    ap.add_argument("--source", required=True)
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--config")
    ap.add_argument("--model")
    ap.add_argument("--no-eye-model", action="store_true")
    a = ap.parse_args(argv)
    from edge_liveness.camera.supervisor import Frame, ReplaySource, check_frame
    from edge_liveness.pipeline import Pipeline, load_models

    t_import = time.perf_counter()
    rss_import = _rss_mb()
    settings = bench_settings(a, a.threads, a.model)
    models = load_models(settings)
    pipe = Pipeline(settings, models)
    t_models = time.perf_counter()
    rss_models = _rss_mb()
    src = ReplaySource(a.source, fps=settings.camera.fps, realtime=False)
    src.open()
    n = 0
    first = None
    with tempfile.TemporaryDirectory(prefix="edge-liveness-probe-") as d:
        from edge_liveness.events.outbox import Outbox
        from edge_liveness.events.publisher import Publisher

        outbox = Outbox.open(Path(d) / "outbox.db", settings.storage)
        pub = Publisher(outbox, None, settings.device.id, b"bench")
        while n < a.frames:
            img, ts = src.read()
            if img is None:
                break
            img, _ = check_frame(img)
            if img is None:
                continue
            r = pipe.process(Frame(img, float(ts), n))
            for out in r.outputs:
                pub.submit(out.kind, out.body())
            n += 1
            if first is None:
                first = time.perf_counter()
                print(json.dumps({"event": "first_frame", "import_s": _r(t_import - t_start), "models_s": _r(t_models - t_import),
                                  "first_frame_s": _r(first - t_models), "rss_after_import_mb": rss_import,
                                  "rss_after_models_mb": rss_models, "rss_after_first_frame_mb": _rss_mb()}), flush=True)
        outbox.close()
    src.close()
    print(json.dumps({"event": "done", "frames": n, "peak_rss_mb": peak_rss_mb(), "rss_end_mb": _rss_mb(),
                      "tensorflow_loaded": "tensorflow" in sys.modules, "matplotlib_loaded": "matplotlib" in sys.modules,
                      "runtime": models.liveness.runtime}), flush=True)
    return 0


def run_probe(source: Path, frames: int, threads: int, config: str | None, model: str | None,
              no_eye_model: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "edge_liveness.bench.probe", "--source", str(source), "--frames", str(frames),
           "--threads", str(threads)]
    if config:
        cmd += ["--config", config]
    if model:
        cmd += ["--model", model]
    if no_eye_model:
        cmd.append("--no-eye-model")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="0")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO))
    out: dict[str, Any] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("event") == "first_frame":
            out["startup_s"] = _r(time.perf_counter() - t0)
        out.update({k: v for k, v in msg.items() if k != "event"})
    err = proc.stderr.read() if proc.stderr else ""
    rc = proc.wait()
    if rc != 0 or "startup_s" not in out:
        last = [ln for ln in err.strip().splitlines() if ln.strip()]
        raise BenchError(f"start-up probe failed (exit {rc}): {last[-1] if last else 'no output'}")
    return out


if __name__ == "__main__":
    sys.exit(_probe_main(sys.argv[1:]))
