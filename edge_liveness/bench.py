"""`edge-liveness bench`: the whole frame loop on real frames, timed per stage.

What it measures, in one run on one source (a video, an image or a folder of images):

- decode: frames are decoded ONCE up front and timed on their own; every other number excludes it.
- the real pipeline (``pipeline.Pipeline.process``) on every frame, after a short warm-up on a
  throwaway pipeline: per-stage p50/p95 and how often each stage ran (the detector is skipped while
  landmark tracking holds; crop/classify run only while an attempt can use them), frames per
  second, CPU time per frame; each decision goes through ``Publisher.submit`` into a real SQLite
  outbox in a temp dir (and a real mosquitto on 127.0.0.1 when one is given or installed).
- publish: ``Publisher.submit`` of a decision payload, repeated to get percentiles.
- num_threads: every model timed with 1 and 2 threads, and the whole pipeline with each.
- int8 vs float32 liveness models on the same crops (latency, agreement of their live/spoof calls)
  and, when the float model has a manifest, the decisions of the whole pipeline with each.
- start-up to the first processed frame and peak RSS of the device process, in a SUBPROCESS timed
  from outside (imports + models + source + one frame), never polluted by this process's frames.
- the seed-style baseline (Keras + OpenCV, ``converters.seed_baseline``) in another subprocess on
  the same frames, and the speed-up over it; skipped, with the reason, when TensorFlow is absent.

Writes ``bench_<machine>_<source>_<WxH>_t<threads>.json``/``.md``/``.png`` under ``--out``.
No TensorFlow or matplotlib at import time (matplotlib is imported only to draw the PNG).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE_PARTS = ("video", "tranvanluyt_real.mp4")
DEFAULT_OUT = REPO / "benchmarks" / "results"
STAGES = ("decode", "detect", "landmarks", "eyes", "pose", "crop", "classify", "decide", "publish")
WARMUP_FRAMES = 10
# Acceptance targets (GitHub issue 8). The fps target is defined on 640x480 frames.
TARGET_FPS = 150.0
TARGET_SPEEDUP = 20.0
TARGET_RSS_MB = 250.0
TARGET_STARTUP_S = 2.0
SCHEMA = 1


class BenchError(ValueError):
    """The bench cannot run as asked (message is one line naming the fix)."""


def _progress(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- statistics


def summarize(values: list[float], frames: int | None = None) -> dict[str, Any]:
    """p50/p95/mean/max in ms over the runs; ``per_frame_ms``: the total spread over all frames."""
    out: dict[str, Any] = {"runs": len(values)}
    if values:
        a = np.asarray(values, np.float64)
        out.update(p50_ms=_r(np.percentile(a, 50)), p95_ms=_r(np.percentile(a, 95)), mean_ms=_r(a.mean()),
                   max_ms=_r(a.max()))
    else:
        out.update(p50_ms=None, p95_ms=None, mean_ms=None, max_ms=None)
    if frames:
        out["runs_pct"] = round(100.0 * len(values) / frames, 1)
        out["per_frame_ms"] = _r(sum(values) / frames)
    return out


def _r(x: float | None, n: int = 3) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), n)


# ---------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (platform.node() says nothing here: a container name)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "arch": platform.machine(),
                            "kernel": platform.release(), "python": platform.python_version(),
                            "numpy": np.__version__}
    try:
        import cv2

        info["opencv"] = cv2.__version__
    except ImportError:
        pass
    for dist in ("ai-edge-litert", "tflite-runtime"):
        try:
            from importlib.metadata import version

            info[dist] = version(dist)
        except Exception:  # noqa: BLE001 - absent distribution
            pass
    try:
        info["mem_total_mb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20)
    except (ValueError, OSError):
        pass
    return info


def machine_slug(info: dict[str, Any]) -> str:
    cpu = re.sub(r"\(r\)|\(tm\)|cpu|processor|@.*", "", str(info["cpu"]).lower())
    cpu = re.sub(r"[^a-z0-9]+", "-", cpu).strip("-")[:32] or "cpu"
    return f"{cpu}-{info['usable_cores']}c"


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (VmRSS, VmHWM, ...) in MB; None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _rss_mb() -> float | None:
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak RSS of THIS process image. VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec,
    so a child started by a big parent would report the parent's size as its own peak."""
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(v / (2**20 if sys.platform == "darwin" else 1024), 1)


# ---------------------------------------------------------------- source and frames


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


def decode_frames(path: Path, limit: int, fps: float = 30.0) -> tuple[list, list[float]]:
    """All frames (up to ``limit``; 0 = all) decoded once, and the decode time of each in ms."""
    from edge_liveness.camera import CameraError, Frame, ReplaySource, check_frame

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


# ---------------------------------------------------------------- settings and models


def _settings(args, threads: int | None = None, liveness: str | None = None):
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
    return load_settings(getattr(args, "config", None), **overrides)


def _float_sibling(int8_path: Path) -> Path | None:
    stem = int8_path.stem
    names = [stem.replace("int8", k) for k in ("float32", "float", "fp32", "f32")] if "int8" in stem else []
    names += [stem + "_float32", stem + "_float"]
    for n in names:
        p = int8_path.with_name(n + ".tflite")
        if p.is_file() and p != int8_path:
            return p
    return None


class _RawFloatLiveness:
    """A float32 .tflite without a manifest, fed like the int8 one (its colour order and threshold)."""

    def __init__(self, path: Path, like, num_threads: int):
        from edge_liveness.runtime import TFLiteModel

        self.model = TFLiteModel(path, num_threads=num_threads, name=path.stem)
        self.path, self.name, self.threshold = path, path.stem, like.threshold
        self.crop_size, self.crop_margin, self.sha256 = like.crop_size, like.crop_margin, ""
        self._swap = getattr(like, "_swap", True)

    def predict(self, crop_bgr: np.ndarray) -> float:
        x = crop_bgr[:, :, ::-1] if self._swap else crop_bgr
        return float(self.model.run(x.astype(np.float32))[0].reshape(-1)[0])


class _CropRecorder:
    """Wraps the liveness model in an UNTIMED pass to keep the crops it is given (memory only)."""

    def __init__(self, inner):
        self.inner = inner
        self.crops: list[np.ndarray] = []
        self.scores: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def predict(self, crop: np.ndarray) -> float:
        p = self.inner.predict(crop)
        self.crops.append(crop.copy())
        self.scores.append(p)
        return p


# ---------------------------------------------------------------- publishing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None)


@contextmanager
def broker(spec: str | None, allow_start: bool) -> Iterator[tuple[str, int, str] | None]:
    """(host, port, how) of a broker for the run: the given one, or a mosquitto started on a free port."""
    if spec:
        host, _, port = spec.rpartition(":")
        if not host or not port.isdigit():
            raise BenchError(f"--broker {spec}: use HOST:PORT, e.g. 127.0.0.1:1883")
        yield host, int(port), "given"
        return
    exe = _mosquitto_binary() if allow_start else None
    if exe is None:
        yield None
        return
    port = _free_port()
    proc = subprocess.Popen([exe, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 5.0
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise BenchError(f"mosquitto exited at start (code {proc.returncode}): give --broker HOST:PORT or --no-broker")
                time.sleep(0.02)
        else:
            raise BenchError("mosquitto did not accept connections within 5 s: give --broker HOST:PORT or --no-broker")
        yield "127.0.0.1", port, f"mosquitto started by the bench ({exe})"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def publisher_for(settings, broker_addr: tuple[str, int, str] | None) -> Iterator[tuple[Any, Any, str]]:
    """A real Publisher over a real outbox in a temp dir (and an MQTT link when a broker is given)."""
    from edge_liveness.outbox import Outbox
    from edge_liveness.publisher import Publisher

    with tempfile.TemporaryDirectory(prefix="edge-liveness-bench-") as d:
        outbox = Outbox.open(Path(d) / "outbox.db", settings.storage)
        link, how = None, "SQLite outbox only (no broker)"
        if broker_addr is not None:
            from edge_liveness.mqtt import MqttLink

            host, port, origin = broker_addr
            s = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"host": host, "port": port, "enabled": True})})
            link = MqttLink(s, client_id=f"edge-liveness-bench-{os.getpid()}")
            link.start()
            end = time.monotonic() + 5.0
            while not link.connected and time.monotonic() < end:
                time.sleep(0.01)
            if not link.connected:
                link.stop()
                raise BenchError(f"cannot connect to the MQTT broker at {host}:{port}: check --broker or give --no-broker")
            how = f"SQLite outbox + MQTT QoS 1 to {host}:{port} ({origin})"
        pub = Publisher(outbox, link, settings.device.id, b"bench-signing-key")
        try:
            yield pub, link, how
        finally:
            if link is not None:
                pub.flush(timeout=5.0)
            pub.close()
            if link is not None:
                link.stop()
            outbox.close()


def publish_bench(settings, broker_addr, body: dict[str, Any], n: int) -> dict[str, Any]:
    """``n`` submits of one decision body: journal (fsync'd) + hand to MQTT; then wait for the acks."""
    with publisher_for(settings, broker_addr) as (pub, link, how):
        ms = []
        for _ in range(n):
            t = time.perf_counter()
            pub.submit("decision", body)
            ms.append((time.perf_counter() - t) * 1e3)
        out = {"how": how, "submit": summarize(ms)}
        if link is not None:
            t = time.perf_counter()
            drained = pub.flush(timeout=10.0)
            out["all_acked"] = drained
            out["ack_wait_after_last_submit_ms"] = _r((time.perf_counter() - t) * 1e3)
        return out


# ---------------------------------------------------------------- the timed pipeline run


@dataclass
class FrameRecord:
    ms: dict[str, float]
    tracked: bool
    face: bool
    total_ms: float  # pipeline.process + publish of its outputs
    cpu_ms: float
    publish_ms: list[float] = field(default_factory=list)


def run_pipeline(settings, models, frames: list, publisher=None) -> tuple[list[FrameRecord], list[dict]]:
    """Warm up on a throwaway pipeline, then time every frame through a fresh one."""
    from edge_liveness.pipeline import Pipeline

    warm = Pipeline(settings, models)
    for f in frames[:WARMUP_FRAMES]:
        warm.process(f)
    lv = models.liveness
    zero = np.zeros((lv.crop_size, lv.crop_size, 3), np.uint8)
    for _ in range(3):
        lv.predict(zero)
    pipe = Pipeline(settings, models)
    records: list[FrameRecord] = []
    outputs: list[dict] = []
    pc, cpu = time.perf_counter, time.process_time
    for f in frames:
        c0, t0 = cpu(), pc()
        r = pipe.process(f)
        pub = []
        for out in r.outputs:
            t = pc()
            if publisher is not None:
                publisher.submit(out.kind, out.body())
            pub.append((pc() - t) * 1e3)
            outputs.append({"frame": f.index, "t": round(f.ts, 3), "kind": out.kind, **_brief(out)})
        records.append(FrameRecord(dict(r.ms), bool(r.tracked), r.obs.n_faces > 0, (pc() - t0) * 1e3, (cpu() - c0) * 1e3, pub))
    return records, outputs


def _brief(out: Any) -> dict[str, Any]:
    b = out.body()
    return {k: b[k] for k in ("result", "reason", "actions") if k in b}


def _ran(stage: str, r: FrameRecord) -> bool:
    if stage in ("detect", "landmarks"):
        return r.ms.get(stage, 0.0) > 0.0  # the finder reports 0.0 for a model it skipped
    return stage in r.ms


def stage_table(records: list[FrameRecord], decode_ms: list[float]) -> dict[str, dict]:
    n = len(records)
    out = {"decode": summarize(decode_ms, len(decode_ms))}
    for s in STAGES[1:]:
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
    staged = [sum(v for k, v in r.ms.items()) for r in records]
    return {"frames": n, "fps": _r(n / (sum(tot) / 1e3), 1) if sum(tot) > 0 else None,
            "frame": summarize(tot), "cpu_ms_per_frame": _r(float(np.mean([r.cpu_ms for r in records]))),
            # CPU-time fps: what one uncontended core would give; cpu_share < 1 means waiting (others' jobs, I/O)
            "fps_from_cpu_time": _r(1e3 / float(np.mean([r.cpu_ms for r in records])), 1) if any(r.cpu_ms for r in records) else None,
            "cpu_share": _r(sum(r.cpu_ms for r in records) / sum(tot), 3) if sum(tot) > 0 else None,
            "fps_while_classifying": _r(len(coll) / (sum(coll) / 1e3), 1) if coll else None,
            "fps_without_classify": _r(len(idle) / (sum(idle) / 1e3), 1) if idle else None,
            "glue_ms_per_frame": _r(float(np.mean([t - s for t, s in zip(tot, staged)]))),
            "face_frames": sum(r.face for r in records), "tracked_frames": sum(r.tracked for r in records),
            "detector_runs": sum(_ran("detect", r) for r in records),
            "classify_runs": sum("classify" in r.ms for r in records), "outputs": outputs}


def fps_of(records: list[FrameRecord], first: int) -> float | None:
    tot = sum(r.total_ms for r in records[:first])
    return _r(min(first, len(records)) / (tot / 1e3), 1) if tot > 0 else None


# ---------------------------------------------------------------- per-model costs and threads


def _time(fn, n: int, warm: int = 5) -> list[float]:
    for _ in range(warm):
        fn()
    ms = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t) * 1e3)
    return ms


@dataclass
class Sample:
    """One frame with a face, its detector anchors and its liveness crop: inputs for per-model timing."""

    image: np.ndarray
    anchors: Any  # the detector's, for the face mesh
    points: np.ndarray  # the face mesh's frame-pixel points (for the eye model)
    mesh_anchors: Any  # the mesh's, for liveness crops

    def crop_for(self, model) -> np.ndarray:
        """The aligned crop cut for this liveness model's own size and margin."""
        from edge_liveness.align import align_crop

        return np.ascontiguousarray(align_crop(self.image, self.mesh_anchors, model.crop_size, model.crop_margin).image)


def find_sample(models, frames: list) -> Sample | None:
    for f in frames[:: max(1, len(frames) // 50)] + frames[:5]:
        faces = models.detector.detect(f.image)
        if faces:
            a = max(faces, key=lambda x: x.area).anchors()
            lm = models.landmarker.run(f.image, a)
            return Sample(f.image, a, lm.points, lm.anchors())
    return None


def sweep_models(settings, models, float_path: Path | None, sample: Sample, threads: list[int], n: int) -> dict[str, Any]:
    """Each model through its own wrapper (pre- and post-processing included) and invoke() alone."""
    from edge_liveness.face import FaceDetector
    from edge_liveness.landmarks import Landmarker
    from edge_liveness.liveness import LivenessModel

    d = settings.detection
    det_path, lm_path, lv_path = models.detector.model.path, models.landmarker.model.path, models.liveness.path
    out: dict[str, dict] = {"detector": {}, "landmarks": {}, "liveness_int8": {}}
    eyes_path = models.eyes.model.path if getattr(models, "eyes", None) is not None else None
    if eyes_path is not None:
        out["eyes_both"] = {}
    if float_path is not None:
        out["liveness_float32"] = {}
    for t in threads:
        det = FaceDetector(det_path, d.min_score, d.nms_iou, num_threads=t)
        lm = Landmarker(lm_path, num_threads=t)
        lv = LivenessModel(lv_path, num_threads=t)
        crop = sample.crop_for(lv)
        todo = [("detector", lambda: det.detect(sample.image), det.model),
                ("landmarks", lambda: lm.run(sample.image, sample.anchors), lm.model),
                ("liveness_int8", lambda: lv.predict(crop), lv.model)]
        if eyes_path is not None:
            from edge_liveness.eyes import EyeRefiner

            ey = EyeRefiner(eyes_path, num_threads=t)
            todo.append(("eyes_both", lambda: ey.run(sample.image, sample.points), ey.model))
        if float_path is not None:
            fl = _load_float(float_path, lv, t)
            fcrop = sample.crop_for(fl)
            todo.append(("liveness_float32", lambda: fl.predict(fcrop), fl.model))
        for name, call, tfl in todo:
            out[name][str(t)] = {"call": summarize(_time(call, n)), "invoke": summarize(_time(tfl.invoke, n))}
    return out


def _load_float(path: Path, like, threads: int):
    from edge_liveness.liveness import LivenessModel, manifest_path

    if manifest_path(path).is_file():
        return LivenessModel(path, num_threads=threads)
    return _RawFloatLiveness(path, like, threads)


def compare_int8_float(int8, flt, crops: list[np.ndarray]) -> dict[str, Any]:
    """Both models on the same crops: latency each, and how often their live/spoof calls agree."""
    if not crops:
        return {"crops": 0, "note": "no crop was classified in this run (no attempt collected)"}
    for c in crops[:3]:
        int8.predict(c), flt.predict(c)
    pi, pf, ti, tf_ = [], [], [], []
    for c in crops:
        t = time.perf_counter()
        pi.append(int8.predict(c))
        t1 = time.perf_counter()
        pf.append(flt.predict(c))
        ti.append((t1 - t) * 1e3)
        tf_.append((time.perf_counter() - t1) * 1e3)
    a, b = np.asarray(pi), np.asarray(pf)
    di, df = a >= int8.threshold, b >= flt.threshold
    return {"crops": len(crops), "int8_classify": summarize(ti), "float32_classify": summarize(tf_),
            "threshold_int8": int8.threshold, "threshold_float32": flt.threshold,
            "call_agreement": _r(float(np.mean(di == df)), 4), "live_calls_int8": int(di.sum()),
            "live_calls_float32": int(df.sum()), "mean_abs_p_diff": _r(float(np.mean(np.abs(a - b))), 4),
            "max_abs_p_diff": _r(float(np.max(np.abs(a - b))), 4)}


# ---------------------------------------------------------------- start-up probe (subprocess)


def _probe_main(argv: list[str]) -> int:
    """The device process as the daemon starts it: imports, models, source, frames. JSON lines out."""
    t_start = time.perf_counter()
    ap = argparse.ArgumentParser(prog="edge_liveness.bench --probe")
    ap.add_argument("--probe", action="store_true")
    ap.add_argument("--source", required=True)
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--config")
    ap.add_argument("--model")
    ap.add_argument("--no-eye-model", action="store_true")
    a = ap.parse_args(argv)
    from edge_liveness.camera import Frame, ReplaySource, check_frame
    from edge_liveness.pipeline import Pipeline, load_models

    t_import = time.perf_counter()
    rss_import = _rss_mb()
    settings = _settings(a, a.threads, a.model)
    models = load_models(settings)
    pipe = Pipeline(settings, models)
    t_models = time.perf_counter()
    rss_models = _rss_mb()
    src = ReplaySource(a.source, fps=settings.camera.fps, realtime=False)
    src.open()
    n = 0
    first = None
    with tempfile.TemporaryDirectory(prefix="edge-liveness-probe-") as d:
        from edge_liveness.outbox import Outbox
        from edge_liveness.publisher import Publisher

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
    cmd = [sys.executable, "-m", "edge_liveness.bench", "--probe", "--source", str(source), "--frames", str(frames),
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


# ---------------------------------------------------------------- seed-style baseline (subprocess)


def run_baseline(source: Path, frames: int, detector_path: Path, size: int = 128) -> dict[str, Any]:
    if importlib.util.find_spec("tensorflow") is None:
        return {"skipped": "TensorFlow is not installed here (pip install 'edge-liveness[workstation]' to compare)"}
    cmd = [sys.executable, "-m", "converters.seed_baseline", "run", "--source", str(source), "--frames", str(frames),
           "--detector", str(detector_path), "--size", str(size)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO))
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return {"skipped": f"baseline subprocess failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}"}
    for line in reversed(proc.stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return {"skipped": "baseline subprocess printed no result"}


# ---------------------------------------------------------------- report


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


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if isinstance(x, float):
        return f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"
    return str(x)


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
        L.append(f"| {t['name']} | {t['target']} | {_fmt(t['measured'])} | {_fmt(t['pass'])} | {t['note']} |")
    L += ["", f"## Per stage ({p['frames']} frames; decode excluded from everything else)", "",
          "| stage | ran on | p50 ms | p95 ms | mean ms | per frame ms |", "|---|---|---|---|---|---|"]
    for name, st in res["stages"].items():
        L.append(f"| {name} | {st['runs']} ({_fmt(st.get('runs_pct'))}%) | {_fmt(st['p50_ms'])} | {_fmt(st['p95_ms'])} | "
                 f"{_fmt(st['mean_ms'])} | {_fmt(st.get('per_frame_ms'))} |")
    L += ["", "detect runs only when tracking does not hold (a new face, tracking lost, or every "
          "`detection.redetect_frames`); crop/classify run only while an attempt can use the score; publish runs per decision.", "",
          f"Whole frame (process + publish): p50 {_fmt(p['frame']['p50_ms'])} ms, p95 {_fmt(p['frame']['p95_ms'])} ms, "
          f"**{_fmt(p['fps'])} fps** (median of passes {p.get('fps_all_passes')}; from CPU time {_fmt(p['fps_from_cpu_time'])} fps, "
          f"CPU share {_fmt(p['cpu_share'])}); while classifying {_fmt(p['fps_while_classifying'])} fps, every stage on every frame (sum of p50s) {_fmt(p.get('worst_case_fps_from_p50'))} fps, without classify "
          f"{_fmt(p['fps_without_classify'])} fps; CPU {_fmt(p['cpu_ms_per_frame'])} ms per frame; glue outside the timed stages "
          f"{_fmt(p['glue_ms_per_frame'])} ms per frame. Face on {p['face_frames']} frames, tracked {p['tracked_frames']}, "
          f"detector ran {p['detector_runs']}, classify ran {p['classify_runs']}; outputs: "
          + (", ".join(f"{o['kind']} {o.get('result', '')} {o.get('reason', '')}".strip() for o in p["outputs"]) or "none") + ".", ""]
    fm = res["face_models"]
    L += ["## Face models per frame (in the pipeline)", "", "| model | ran on | p50 ms | p95 ms | invoke only p50 ms (1 thread) |",
          "|---|---|---|---|---|"]
    for k in fm:
        L.append(f"| {k} | {fm[k]['runs']} | {_fmt(fm[k]['p50_ms'])} | {_fmt(fm[k]['p95_ms'])} | {_fmt(fm[k].get('invoke_p50_ms'))} |")
    pub = res["publish"]
    L += ["", "## Publish", "", f"{pub.get('how', '-')}: `Publisher.submit` p50 {_fmt(pub['submit']['p50_ms'])} ms, "
          f"p95 {_fmt(pub['submit']['p95_ms'])} ms over {pub['submit']['runs']} decision payloads"
          + (f"; all acknowledged: {_fmt(pub.get('all_acked'))}" if "all_acked" in pub else "") + ".", ""]
    sw = res["threads"]
    L += ["## num_threads (1 vs 2)", "", "| model | 1 thread call p50 ms | 2 threads call p50 ms | 1 thread invoke p50 | 2 threads invoke p50 |",
          "|---|---|---|---|---|"]
    for name, byt in sw["models"].items():
        c1, c2 = byt.get("1", {}), byt.get("2", {})
        L.append(f"| {name} | {_fmt(c1.get('call', {}).get('p50_ms'))} | {_fmt(c2.get('call', {}).get('p50_ms'))} | "
                 f"{_fmt(c1.get('invoke', {}).get('p50_ms'))} | {_fmt(c2.get('invoke', {}).get('p50_ms'))} |")
    if sw.get("pipeline"):
        L += ["", "| whole pipeline | fps | CPU ms per frame |", "|---|---|---|"]
        for t, v in sw["pipeline"].items():
            L.append(f"| {t} thread(s) | {_fmt(v['fps'])} | {_fmt(v['cpu_ms_per_frame'])} |")
    L += ["", sw.get("why", ""), ""]
    cmp_ = res["int8_vs_float32"]
    L += ["## int8 vs float32 liveness model (same crops)", ""]
    if "skipped" in cmp_:
        L.append(f"Skipped: {cmp_['skipped']}")
    elif cmp_.get("crops"):
        L += [f"Float model: `{cmp_['float_model']}`. {cmp_['crops']} crops: int8 classify p50 {_fmt(cmp_['int8_classify']['p50_ms'])} ms "
              f"(p95 {_fmt(cmp_['int8_classify']['p95_ms'])}), float32 p50 {_fmt(cmp_['float32_classify']['p50_ms'])} ms "
              f"(p95 {_fmt(cmp_['float32_classify']['p95_ms'])}); live/spoof calls agree on {_fmt(cmp_['call_agreement'])} of crops "
              f"(mean |P int8 - P float| {_fmt(cmp_['mean_abs_p_diff'])})."]
        if cmp_.get("pipeline_float32"):
            pf = cmp_["pipeline_float32"]
            L.append(f"Whole pipeline with the float32 model: {_fmt(pf['fps'])} fps; decisions identical to int8's: "
                     f"{_fmt(pf['same_decisions'])} ({pf['decisions_float32']} vs {pf['decisions_int8']}).")
        L.append("On this x86 CPU int8 is not expected to beat float32; on ARM (Pi 4/5) it usually does: confirm there.")
    else:
        L.append(cmp_.get("note", ""))
    st = res["startup"]
    L += ["", "## Start-up and memory (device process in a subprocess, timed from outside)", "",
          f"Start-up to the first processed frame: median {_fmt(st.get('startup_s_median'))} s, max {_fmt(st.get('startup_s_max'))} s "
          f"over {st.get('runs')} runs (imports {_fmt(st.get('import_s'))} s, models {_fmt(st.get('models_s'))} s, first frame "
          f"{_fmt(st.get('first_frame_s'))} s, inside the child). Peak RSS {_fmt(st.get('peak_rss_mb'))} MB over "
          f"{st.get('frames')} frames (after imports {_fmt(st.get('rss_after_import_mb'))} MB, after models "
          f"{_fmt(st.get('rss_after_models_mb'))} MB); TensorFlow loaded in it: {_fmt(st.get('tensorflow_loaded'))}. "
          f"This bench process itself peaked at {_fmt(res['memory']['bench_process_peak_rss_mb'])} MB because it holds all "
          f"{p['frames']} decoded frames ({_fmt(res['memory']['decoded_frames_mb'])} MB).", ""]
    b = res["baseline"]
    L += ["## Seed-style baseline (same frames, subprocess)", ""]
    if "skipped" in b:
        L.append(f"Skipped: {b['skipped']}")
    else:
        L += [f"{b['detector']}; {b['classifier']}; TensorFlow {b['tensorflow']}, Keras {b['keras']} "
              f"(TF intra-op threads {b['tf_intra_op_threads']} = default, OpenCV threads {b['opencv_threads']}); peak RSS "
              f"{_fmt(b.get('peak_rss_mb'))} MB.", "", "| seed variant | frames | fps | frame p50 ms | detect p50 ms | classify p50 ms | CPU ms/frame |",
              "|---|---|---|---|---|---|---|"]
        for name, v in b["variants"].items():
            label = "model.predict(x)" if name == "predict" else "model(x)"
            L.append(f"| {label} | {v['frames']} | {_fmt(v['fps'])} | {_fmt(v['frame_ms']['p50'])} | {_fmt(v['detect_ms']['p50'])} | "
                     f"{_fmt(v['classify_ms']['p50'])} | {_fmt(v['cpu_ms_per_frame'])} |")
        sp = res["speedup"]
        L += ["", f"Speed-up: pipeline {_fmt(sp.get('pipeline_fps_same_frames'))} fps on the same {sp.get('frames')} frames vs "
              f"the faster seed variant {_fmt(sp.get('baseline_fps'))} fps: **{_fmt(sp.get('ratio'))}x** ({sp.get('note', '')})."]
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


# ---------------------------------------------------------------- command


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
    p.add_argument("--repeat", type=int, default=3, help="timed passes over the frames; the median pass is reported (default 3)")
    p.add_argument("--sweep-threads", default="1,2", help="thread counts for the per-model and pipeline sweep ('' to skip)")
    p.add_argument("--sweep-runs", type=int, default=100, help="calls per model per thread count (default 100)")
    p.add_argument("--publish-runs", type=int, default=200, help="decision payloads for the publish timing (default 200)")
    p.add_argument("--startup-runs", type=int, default=3, help="start-up probes (default 3; the first also measures peak RSS)")
    p.add_argument("--broker", help="HOST:PORT of an MQTT broker for the publish stage (default: start mosquitto if installed)")
    p.add_argument("--no-broker", action="store_true", help="publish into the SQLite outbox only")
    p.add_argument("--active", choices=["off", "blink", "turn", "blink_and_turn", "challenge"], help="override active.mode")
    p.add_argument("--no-eye-model", action="store_true", help="blink.eye_model off: blinks from the face mesh only (to see what the eye model costs)")
    p.add_argument("--tag", default="", help="extra word in the result file names")


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
    from edge_liveness.logs import setup_logging
    from edge_liveness.runtime import ModelError

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
    from edge_liveness.pipeline import Pipeline, load_models

    if args.frames < 0 or min(args.baseline_frames, args.sweep_runs, args.publish_runs, args.startup_runs, args.repeat) < 1:
        raise BenchError("--frames must be >= 0 and --baseline-frames/--sweep-runs/--publish-runs/--startup-runs/--repeat >= 1")
    sweep = _parse_threads(args.sweep_threads)
    load_start = _loadavg()
    base = _settings(args, None, args.model)
    threads = args.threads or base.models.num_threads
    settings = _settings(args, threads, args.model)
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

    float_path = Path(args.float_model) if args.float_model else _float_sibling(Path(lv.path))
    if float_path is not None:
        if not float_path.is_file():
            raise BenchError(f"--float-model {float_path} does not exist")
        flt = _load_float(float_path, lv, threads)
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
        _progress("timing the pipeline on every frame")
        with publisher_for(settings, baddr) as (pub, _link, pub_how):
            passes = []
            for i in range(args.repeat):
                recs, outs = run_pipeline(settings, models, frames, pub)
                passes.append((pipeline_summary(recs, outs)["fps"] or 0.0, i, recs, outs))
                _progress(f"  pass {i + 1}/{args.repeat}: {passes[-1][0]} fps")
        # the median pass by fps: one noisy pass (others' jobs on a shared machine) does not decide
        passes.sort(key=lambda x: x[:2])
        _, _, records, outputs = passes[len(passes) // 2]
        pipe = pipeline_summary(records, outputs)
        pipe["fps_all_passes"] = [p[0] for p in sorted(passes, key=lambda x: x[1])]
        worst = sum(v["p50_ms"] or 0.0 for k, v in stage_table(records, decode_ms).items() if k not in ("decode", "publish"))
        # every stage on every frame (no tracking, always classifying): the bound a worst-case scene approaches
        pipe["worst_case_fps_from_p50"] = _r(1e3 / worst, 1) if worst > 0 else None
        _progress(f"pipeline: {pipe['fps']} fps, p50 {pipe['frame']['p50_ms']} ms per frame, "
                  f"detector on {pipe['detector_runs']}/{len(frames)} frames, classify on {pipe['classify_runs']}")
        stages = stage_table(records, decode_ms)
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
            st = _settings(args, t, args.model)
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
        rec = _CropRecorder(lv)
        rp = Pipeline(settings, dataclasses.replace(models, liveness=rec))
        for f in frames:
            rp.process(f)
        flt = _load_float(float_path, lv, threads)
        cmp_ = compare_int8_float(lv, flt, rec.crops)
        cmp_["float_model"] = str(float_path)
        if isinstance(flt, _RawFloatLiveness):
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
        baseline = run_baseline(source, nb, Path(models.detector.model.path), lv.input_size)
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
        "baseline": baseline, "speedup": speedup, "notes": notes,
    }
    res["targets"] = targets(res)
    tag = _slug_text(" ".join(x for x in (args.tag, "mesh-ear" if args.no_eye_model else "") if x))
    stem = "_".join(x for x in ("bench", machine_slug(info), _slug(source), f"{w}x{h}", f"t{threads}", tag) if x)
    jpath, mpath, ppath = out_dir / f"{stem}.json", out_dir / f"{stem}.md", out_dir / f"{stem}.png"
    jpath.write_text(json.dumps(res, indent=1, default=_json_default) + "\n")
    why = draw_png(res, ppath)
    if why:
        res["notes"].append(why)
        jpath.write_text(json.dumps(res, indent=1, default=_json_default) + "\n")
    mpath.write_text(markdown(res))
    _progress(f"wrote {jpath}, {mpath.name}" + ("" if why else f", {ppath.name}"))
    for t in res["targets"]:
        _progress(f"  {t['name']}: {_fmt(t['measured'])} (target {t['target']}) {'' if t['pass'] is None else ('met' if t['pass'] else 'MISSED')}")
    print(json.dumps({"json": str(jpath), "markdown": str(mpath), "fps": pipe["fps"],
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
    if "--probe" in sys.argv[1:]:
        sys.exit(_probe_main(sys.argv[1:]))
    ap = argparse.ArgumentParser(prog="python -m edge_liveness.bench")
    add_arguments(ap)
    sys.exit(main(ap.parse_args()))
