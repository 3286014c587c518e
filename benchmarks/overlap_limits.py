#!/usr/bin/env python3
"""What bounds the overlapped loop on a source whose every frame is an attempt frame (issue 28).

    python benchmarks/overlap_limits.py [--source DIR_OR_VIDEO] [--frames N] [--passes N] [--out FILE.json]

Default source: NUAA live 0001 (40 photos, every frame an attempt frame: the source where the seed ratio
sits on its 20x line). Frames are decoded once; every figure is the median of whole passes of one
pipeline over the consecutive frames, as the daemon runs it. Measured:

- ``one_thread``: the loop with ``schedule.overlap`` off;
- ``two_processes``: two one-thread loops in two processes at the same time, each alone on the frames:
  what two cores give when nothing at all is shared between the halves (the ceiling for two threads);
- ``overlap``: the default loop (a thread finds faces ahead, ``overlap.py``), with per pass the wait for
  the first frame's face (fill) and the time after the last face is found (drain);
- ``which_half_bounds``: the same loop with ``--burn-ms`` of CPU added to every frame's find, or to every
  frame's judge, passes alternated: the half whose extra CPU costs the loop more is the one it waits on;
- ``passive_rates``: the loop with ``schedule.passive_scores_per_s`` at each of ``--rates`` (passes
  alternated), and how many frames each scored: what fewer passive scores a second would buy;
- ``find_in_process``: the find half in a forked process instead of a thread (frames through a shared
  ring, faces and lent models through a pipe; no interpreter lock shared), alternated with the thread
  runner, and whether every score is the same bits. A measurement of that design, not a runner the
  daemon uses.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import mmap
import multiprocessing as mp
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from edge_liveness.bench.stages import bench_settings, decode_frames  # noqa: E402
from edge_liveness.bench.stats import _loadavg, _progress, _r, machine_info  # noqa: E402

DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "liveness" / "nuaa" / "live" / "0001"
RING = 8  # frame slots shared with the find process: more than find_ahead + 1 frames in flight


def load(source: Path, limit: int, overlap: bool = True):
    from edge_liveness.pipeline import load_models

    st = bench_settings(SimpleNamespace(config=None), 1, schedule={"overlap": overlap})
    frames, _ = decode_frames(source, limit)
    return st, load_models(st), frames


def run_threads(st, models, frames, marks: dict | None = None) -> tuple[float, list]:
    """One pass of the configured runner: (fps, every frame's scores)."""
    from edge_liveness.overlap import FrameRunner
    from edge_liveness.pipeline import Pipeline

    runner, out = FrameRunner(Pipeline(st, models)), []
    t = time.perf_counter()
    for f in frames:
        out += runner.push(f)
    out += runner.flush()
    end = time.perf_counter()
    runner.close()
    if marks is not None:
        marks.update(start=t, end=end)
    return len(frames) / (end - t), [r.scores for r in out]


def solo(source: Path, limit: int, seconds: float) -> float:
    """The one-thread loop, passes for ``seconds`` once stdin says go (after "ready" on stdout): fps."""
    from edge_liveness.pipeline import Pipeline

    st, models, frames = load(source, limit, overlap=False)
    warm = Pipeline(st, models)
    for f in frames:
        warm.process(f)
    print("ready", flush=True)
    sys.stdin.readline()
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        p = Pipeline(st, models)
        for f in frames:
            p.process(f)
        n += len(frames)
    return n / (time.perf_counter() - t)


def together(source: Path, limit: int, k: int, seconds: float) -> list[float]:
    """``k`` one-thread loops in ``k`` processes at once (started together once every one has loaded and warmed up)."""
    cmd = [sys.executable, __file__, "--solo", "--source", str(source), "--frames", str(limit), "--seconds", str(seconds)]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(k)]
    for p in procs:
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError(f"a one-thread loop did not start (exit {p.wait()})")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    return [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def fill_drain(st, models, frames, passes: int) -> dict:
    """Per pass of the overlapped loop: ms until the first frame's face is found, ms after the last one."""
    from edge_liveness.pipeline import Pipeline

    found: list[float] = []
    find = Pipeline.find

    def timed_find(self, frame):
        s = find(self, frame)
        found.append(time.perf_counter())
        return s

    Pipeline.find = timed_find
    try:
        rows = []
        for _ in range(passes):
            found.clear()
            marks: dict = {}
            fps = run_threads(st, models, frames, marks)[0]
            rows.append((fps, (found[0] - marks["start"]) * 1e3, (marks["end"] - found[-1]) * 1e3))
    finally:
        Pipeline.find = find
    a = np.median(np.array(rows), 0)
    return {"fps": _r(a[0], 1), "fill_ms": _r(a[1], 2), "drain_ms": _r(a[2], 2),
            "pass_ms": _r(len(frames) / a[0] * 1e3, 1), "fps_passes": [_r(r[0], 1) for r in rows]}


def which_half(st, models, frames, passes: int, burn_ms: float) -> dict:
    """fps with ``burn_ms`` of CPU added to each frame's find, or its judge (passes alternated)."""
    from edge_liveness.pipeline import Pipeline

    block = np.random.default_rng(0).random(60_000)
    where = [None]
    find, judge = Pipeline.find, Pipeline.judge

    def burn(half: str) -> None:
        # numpy work on a block outside the caches, like the halves' own crops and model calls
        if where[0] == half:
            t = time.thread_time()
            while time.thread_time() - t < burn_ms / 1e3:
                block.sum()

    def burning_find(self, frame):
        burn("find")
        return find(self, frame)

    def burning_judge(self, seen):
        burn("judge")
        return judge(self, seen)

    def variant(half: str | None):
        def run():
            where[0] = half
            return run_threads(st, models, frames)
        return run

    Pipeline.find, Pipeline.judge = burning_find, burning_judge
    try:
        return alternate({h or "none": variant(h) for h in (None, "find", "judge")}, passes)
    finally:
        Pipeline.find, Pipeline.judge = find, judge


def alternate(variants: dict, passes: int) -> dict:
    """Passes of each variant in alternating order: median fps each, and whether all scores are the same bits."""
    for run in variants.values():
        run()
    fps: dict[str, list[float]] = {k: [] for k in variants}
    ref, same = None, True
    for p in range(passes):
        for k in (list(variants) if p % 2 == 0 else list(variants)[::-1]):
            f, scores = variants[k]()
            fps[k].append(f)
            ref = scores if ref is None else ref
            same = same and scores == ref
    return {"fps": {k: _r(float(np.median(v)), 1) for k, v in fps.items()}, "same_scores": same}


def passive_rates(models, frames, rates: list[float], passes: int) -> dict:
    """fps of the overlapped loop at each passive rate (the same models: the rate is the schedule's), and
    the frames each scored."""
    sts = {r: bench_settings(SimpleNamespace(config=None), 1, schedule={"passive_scores_per_s": r}) for r in rates}
    scored: dict[str, int] = {}

    def variant(rate: float):
        def run():
            fps, scores = run_threads(sts[rate], models, frames)
            scored[f"{rate:g}"] = sum(1 for s in scores if s)
            return fps, []  # the scores differ by design: only the speed is compared
        return run

    res = alternate({f"{r:g}": variant(r) for r in rates}, passes)
    return {"fps": res["fps"], "scored_frames": scored}


class ProcessFinder:
    """The find half in a forked process: ``push``/``flush`` as ``overlap.FrameRunner``."""

    def __init__(self, st, models, shape: tuple[int, int, int], ahead: int):
        models.liveness.add_twin()  # the lent tight view runs on the child's copy of the twin
        self.st, self.models, self.ahead = st, models, ahead
        self._buf = mmap.mmap(-1, RING * int(np.prod(shape)))  # anonymous: shared with the forked child
        self.ring = np.frombuffer(self._buf, np.uint8).reshape((RING,) + shape)
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context("fork").Process(target=self._serve, args=(child,), daemon=True)
        self.proc.start()
        self._jid, self._done, self._held, self.current = 0, {}, collections.deque(), None

    def _serve(self, conn) -> None:
        from edge_liveness.camera.sources import Frame
        from edge_liveness.pipeline import Pipeline

        pipeline, lent, finds = Pipeline(self.st, self.models), collections.deque(), collections.deque()
        while True:
            while conn.poll(0) or not (lent or finds):
                m = conn.recv()
                if m is None:
                    return
                if m[0] == "reset":
                    pipeline = Pipeline(self.st, self.models)
                else:
                    (finds if m[0] == "find" else lent).append(m)  # a lent model goes before queued finds
            kind, jid, slot, ts, index, extra = (lent or finds).popleft()
            frame = Frame(self.ring[slot], ts, index)
            if kind == "find":
                r = dataclasses.replace(pipeline.find(frame), frame=None)  # the image stays in the ring
            elif kind == "tight":
                r = pipeline._tight_logit(frame, extra)
            else:
                r = self.models.texture.models[0].p_real(frame.image, extra)
            conn.send((jid, r))

    def start(self) -> None:
        from edge_liveness.pipeline import Pipeline

        self.pipeline = Pipeline(self.st, self.models)
        self.pipeline.lend_worker(_Lender(self))
        self.conn.send(("reset",))

    def send(self, kind: str, frame, extra=None) -> int:
        self._jid += 1
        self.conn.send((kind, self._jid, frame.index % RING, frame.ts, frame.index, extra))
        return self._jid

    def wait(self, jid: int):
        while jid not in self._done:
            j, r = self.conn.recv()
            self._done[j] = r
        return self._done.pop(jid)

    def push(self, frame) -> list:
        self.ring[frame.index % RING] = frame.image
        self._held.append((self.send("find", frame), frame))
        return [self._judge() for _ in range(len(self._held) - self.ahead)]

    def flush(self) -> list:
        return [self._judge() for _ in range(len(self._held))]

    def _judge(self):
        jid, frame = self._held.popleft()
        self.current = frame
        return self.pipeline.judge(dataclasses.replace(self.wait(jid), frame=frame))

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(5)


class _Future:
    def __init__(self, finder: ProcessFinder, jid: int):
        self.finder, self.jid = finder, jid

    def result(self, timeout=None):
        return self.finder.wait(self.jid)

    def exception(self, timeout=None):
        self.finder.wait(self.jid)

    def cancel(self) -> bool:
        return False  # no take-back across processes: the judging thread waits for the child's result


class _Lender:
    """What ``Pipeline.lend_worker`` gets: the tight view and the pair's first model go to the child."""

    def __init__(self, finder: ProcessFinder):
        self.finder = finder

    def submit(self, fn, *args):
        from edge_liveness.pipeline import Pipeline

        f = self.finder
        if getattr(fn, "__func__", None) is Pipeline._tight_logit:
            return _Future(f, f.send("tight", args[0], args[1]))
        return _Future(f, f.send("pair0", f.current, args[1]))


def in_process(st, models, frames, passes: int) -> dict:
    finder = ProcessFinder(st, models, frames[0].image.shape, st.schedule.find_ahead)

    def run_process():
        finder.start()
        out, t = [], time.perf_counter()
        for f in frames:
            out += finder.push(f)
        out += finder.flush()
        return len(frames) / (time.perf_counter() - t), [r.scores for r in out]

    try:
        return alternate({"thread": lambda: run_threads(st, models, frames), "process": run_process}, passes)
    finally:
        finder.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default=str(DEFAULT_SOURCE))
    p.add_argument("--frames", type=int, default=0, help="first N frames (0: all)")
    p.add_argument("--passes", type=int, default=30, help="whole passes per variant (default 30)")
    p.add_argument("--seconds", type=float, default=20.0, help="how long the one-thread loops run (default 20)")
    p.add_argument("--rates", default="12,10,8", help="passive scores a second to compare (default 12,10,8)")
    p.add_argument("--burn-ms", type=float, default=0.3, help="CPU added to one half a frame (default 0.3)")
    p.add_argument("--out", default=None, help="write the JSON here (default: stdout only)")
    p.add_argument("--solo", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    source = Path(a.source)
    if not source.exists():
        print(f"overlap_limits: {source} does not exist: give --source a face video or a folder of images",
              file=sys.stderr)
        return 2
    if a.passes < 1 or a.frames < 0 or a.seconds <= 0 or a.burn_ms <= 0:
        print("overlap_limits: --passes must be >= 1, --frames >= 0, --seconds and --burn-ms > 0", file=sys.stderr)
        return 2
    try:
        rates = [float(r) for r in a.rates.split(",")]
    except ValueError:
        rates = []
    if not rates or min(rates) <= 0:
        print(f"overlap_limits: --rates {a.rates!r}: give passive scores a second as numbers > 0, e.g. 12,10,8",
              file=sys.stderr)
        return 2
    if a.solo:
        print(_r(solo(source, a.frames, a.seconds), 1))
        return 0
    load_start = _loadavg()
    st, models, frames = load(source, a.frames)
    res: dict = {"source": str(source), "frames": len(frames), "passes": a.passes}
    _progress(f"one thread alone, then two one-thread processes at once ({a.seconds:g} s each)")
    res["one_thread_fps"] = together(source, a.frames, 1, a.seconds)[0]
    res["two_processes_fps"] = together(source, a.frames, 2, a.seconds)
    _progress(f"the overlapped loop: {a.passes} passes, fill and drain")
    res["overlap"] = fill_drain(st, models, frames, a.passes)
    _progress(f"+{a.burn_ms:g} ms CPU on the find half or the judge half, alternated")
    res["which_half_bounds"] = {"burn_ms": a.burn_ms, **which_half(st, models, frames, a.passes, a.burn_ms)}
    _progress(f"passive scores a second {rates}, alternated")
    res["passive_rates"] = passive_rates(models, frames, rates, a.passes)
    _progress("the find half in a forked process vs a thread, alternated")
    res["find_in_process"] = in_process(st, models, frames, a.passes)
    two = sum(res["two_processes_fps"])
    res["overlap_share_of_two_processes"] = _r(res["overlap"]["fps"] / two, 3)
    res["machine"] = machine_info()
    res["load_avg_1m"] = {"start": load_start, "end": _loadavg()}
    res["command"] = "python benchmarks/overlap_limits.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = json.dumps(res, indent=1)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
