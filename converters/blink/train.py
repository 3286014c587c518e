"""`edge-liveness blinks train DATA --out DIR`: the learned blink model, trained and judged by person.

1. Every annotated clip under DATA is replayed once through the daemon's pipeline (eyes read on every
   frame); its per-frame eye signals are cached in ``DIR/cache`` (keyed by the file's size and mtime).
2. The window the daemon builds (``blink_window.BlinkWindow``) is rebuilt on every frame; its label is
   whether the judged moment lies inside an annotated blink.
3. Hard negatives the annotated clips lack, made from their own open-eye stretches: a wink (one eye's
   signals from a blink, the other eye's from open frames), a slow droop that does not come back
   within the window (looking down), a droop with the head pitching down.
4. Leave-people-out cross-validation over the training people (``--folds`` groups): per fold, blinks
   are counted with the daemon's own event rules (``blink.BlinkRuns``) and matched to the annotation
   (``blink_score.match``), for each candidate threshold; the threshold with the best pooled F1 goes
   into the manifest.
5. The final model on all training people -> float32 TFLite ``DIR/blink_mlp.tflite`` + manifest.
People named with ``--holdout`` are never seen by 2-5; score them afterwards with ``blinks score``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def person_of(video: Path) -> str:
    """ZJU names its clips <person>_<condition>.avi; otherwise the folder is the person."""
    m = re.match(r"^([^_]+)_", video.stem)
    return m.group(1) if m else video.parent.name


def condition_of(video: Path) -> str:
    m = re.match(r"^[^_]+_(\w+)$", video.stem)
    return m.group(1) if m else ""


@dataclass
class Clip:
    video: Path
    person: str
    condition: str
    blinks: list  # list[Blink]
    index: np.ndarray
    ts: np.ndarray
    signals: list  # list[EyeSignals]


def _cache_key(video: Path) -> str:
    st = video.stat()
    return hashlib.sha256(f"{video.resolve()}|{st.st_size}|{st.st_mtime_ns}|v3".encode()).hexdigest()[:20]


def extract(annotations, pipeline, cache: Path, log) -> list[Clip]:
    from edge_liveness.recordings.blink_score import run_clip
    from edge_liveness.vision.eye_signals import EyeSignals

    cache.mkdir(parents=True, exist_ok=True)
    clips = []
    fields = list(EyeSignals.__dataclass_fields__)
    for i, a in enumerate(annotations, 1):
        f = cache / f"{_cache_key(a.video)}.json"
        if f.is_file():
            d = json.loads(f.read_text())
        else:
            log(f"[{i}/{len(annotations)}] extracting {a.video.name}")
            run = run_clip(pipeline, a.video)
            d = {"index": run.index, "ts": run.ts, "signals": [[getattr(s, k) for k in fields] for s in run.signals]}
            f.write_text(json.dumps(d))
        sig = [EyeSignals(**dict(zip(fields, row))) for row in d["signals"]]
        clips.append(Clip(a.video, person_of(a.video), condition_of(a.video), a.blinks,
                          np.array(d["index"]), np.array(d["ts"]), sig))
    return clips


def sequence(clip: Clip) -> list:
    """The clip's signals plus the end-of-recording padding ``BlinkDetector.flush`` judges."""
    from dataclasses import replace

    from edge_liveness.blink.detector import FLUSH_SAMPLES
    from edge_liveness.blink.window import DT

    last = clip.signals[-1] if clip.signals else None
    if last is None or not last.visible:
        return list(clip.signals)
    return list(clip.signals) + [replace(last, ts=last.ts + k * DT, speed=0.0) for k in range(1, FLUSH_SAMPLES + 1)]


def windows(clip: Clip, baseline_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: features (n, N_SAMPLES*N_FEATURES; NaN rows before a baseline), label, judged ts, open level."""
    from edge_liveness.blink.window import N_FEATURES, N_SAMPLES, BlinkWindow

    w = BlinkWindow(baseline_s)
    seq = sequence(clip)
    n = len(seq)
    x = np.full((n, N_SAMPLES * N_FEATURES), np.nan, np.float32)
    judged = np.zeros(n)
    inside = np.zeros(clip.index.max() + 2 if n else 1, bool)
    for b in clip.blinks:
        inside[max(b.start, 0):b.end + 1] = True
    y = np.zeros(n, np.float32)
    levels: list = []
    for k, s in enumerate(seq):
        w.add(s)
        levels.append(w.open_level())
        judged[k] = w.judged_ts
        f = w.features()
        if f is not None and s.visible:
            x[k] = f.reshape(-1)
        j = int(np.argmin(np.abs(clip.ts - judged[k])))
        y[k] = inside[clip.index[j]] if clip.index[j] < len(inside) else 0
    return x, y, judged, levels


def hard_negatives(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """What the annotated clips lack, made from their own frames: winks (one eye from a blink, the
    other from open frames), shallow dips (both lids 5-25 % down for 2-5 samples: a squint, a
    landmark wobble), slow half-closures that come back (25-50 % down over 0.25-0.5 s: the lids
    follow the gaze down and up again, td_real videos), and slow droops that stay down (looking down)."""
    from edge_liveness.blink.window import N_FEATURES, N_SAMPLES

    ok = ~np.isnan(x).any(axis=1)
    pos = np.where(ok & (y > 0))[0]
    neg = np.where(ok & (y == 0))[0]
    if len(pos) == 0 or len(neg) == 0:
        return np.zeros((0, x.shape[1]), np.float32)
    out = []
    t = np.arange(N_SAMPLES)
    for _ in range(n):
        kind = rng.integers(4)
        if kind == 0:
            a = x[rng.choice(pos)].reshape(N_SAMPLES, N_FEATURES).copy()
            b = x[rng.choice(neg)].reshape(N_SAMPLES, N_FEATURES)
            cols = [0, 2] if rng.random() < 0.5 else [1, 3]
            a[:, cols] = b[:, cols]
        elif kind == 1:
            a = x[rng.choice(neg)].reshape(N_SAMPLES, N_FEATURES).copy()
            centre, width = rng.uniform(2, N_SAMPLES - 2), rng.uniform(1.0, 2.5)
            dip = rng.uniform(0.05, 0.25) * np.exp(-0.5 * ((t - centre) / width) ** 2)
            a[:, :4] *= (1 - dip)[:, None]
        elif kind == 2:
            a = x[rng.choice(neg)].reshape(N_SAMPLES, N_FEATURES).copy()
            centre, width = rng.uniform(4, N_SAMPLES - 4), rng.uniform(3.0, 6.0)
            dip = rng.uniform(0.25, 0.5) * np.exp(-0.5 * ((t - centre) / width) ** 2)
            a[:, :4] *= (1 - dip)[:, None]
        else:
            a = x[rng.choice(neg)].reshape(N_SAMPLES, N_FEATURES).copy()
            start, span = rng.uniform(0, N_SAMPLES * 0.6), rng.uniform(3, 10)
            r = np.clip((t - start) / span, 0, 1)
            a[:, :4] *= (1 - rng.uniform(0.3, 0.7) * r)[:, None]
        out.append(a.reshape(-1))
    return np.array(out, np.float32)


def jitter(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera noise and slow head-turn drift on the openness features (labels unchanged)."""
    from edge_liveness.blink.window import N_FEATURES, N_SAMPLES

    a = x.reshape(len(x), N_SAMPLES, N_FEATURES).copy()
    noise = rng.normal(0, 0.03, size=(len(x), N_SAMPLES, 4))
    drift = rng.uniform(-0.12, 0.12, size=(len(x), 1, 4)) * np.linspace(-1, 1, N_SAMPLES)[None, :, None]
    a[:, :, :4] *= 1 + noise + drift
    return a.reshape(len(x), -1).astype(np.float32)


def build_model(n_in: int, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])


def fit(xs, ys, epochs: int, seed: int):
    import keras

    m = build_model(xs.shape[1], seed)
    m.compile(optimizer=keras.optimizers.Adam(2e-3), loss="binary_crossentropy")
    w_pos = max(1.0, float((ys == 0).sum()) / max(1.0, float((ys > 0).sum())) / 3.0)
    m.fit(xs, ys, epochs=epochs, batch_size=256, verbose=0, class_weight={0: 1.0, 1: w_pos})
    return m


def training_set(clips, baseline_s, rng, with_negatives=True):
    xs, ys = [], []
    for c in clips:
        x, y, _, _ = windows(c, baseline_s)
        ok = ~np.isnan(x).any(axis=1)
        xs.append(x[ok])
        ys.append(y[ok])
        if with_negatives:
            xs.append(jitter(x[ok], rng))
            ys.append(y[ok])
            hn = hard_negatives(x, y, rng, n=max(20, int(ok.sum() // 4)))
            xs.append(hn)
            ys.append(np.zeros(len(hn), np.float32))
    return np.concatenate(xs), np.concatenate(ys)


def count_blinks(clip, probs, judged, levels, threshold, cfg):
    from edge_liveness.blink.detector import BlinkRuns
    from edge_liveness.recordings.blink_annotations import Blink

    runs = BlinkRuns(threshold, cfg.min_closed_s, cfg.max_closed_s)
    found = []
    for k, s in enumerate(sequence(clip)):
        blink, _, a, b = runs.step(judged[k], probs[k], s, levels[k])
        if blink:
            fa = clip.index[int(np.argmin(np.abs(clip.ts - a)))]
            fb = clip.index[int(np.argmin(np.abs(clip.ts - b)))]
            found.append(Blink(int(fa), int(fb)))
    return found


def evaluate_clips(model_predict, clips, cfg, thresholds=THRESHOLDS):
    from edge_liveness.recordings.blink_score import match

    per_thr = {t: [0, 0, 0] for t in thresholds}
    per_clip = {t: [] for t in thresholds}
    for c in clips:
        x, _, judged, levels = windows(c, cfg.baseline_s)
        ok = ~np.isnan(x).any(axis=1)
        p = np.full(len(x), np.nan)
        if ok.any():
            p[ok] = model_predict(x[ok])
        for t in thresholds:
            found = count_blinks(c, p, judged, levels, t, cfg)
            hits, missed, false = match(c.blinks, found)
            per_thr[t][0] += hits
            per_thr[t][1] += len(missed)
            per_thr[t][2] += len(false)
            per_clip[t].append({"clip": c.video.name, "person": c.person, "condition": c.condition,
                                "annotated": len(c.blinks), "found": hits, "missed": len(missed), "false": len(false)})
    return per_thr, per_clip


def _f1(h, m, f):
    return 2 * h / (2 * h + m + f) if h + m + f else 0.0


def convert(model, out: Path) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    data = conv.convert()
    out.write_bytes(data)
    return data


def main(args: argparse.Namespace) -> int:
    from edge_liveness.recordings.blink_annotations import find_annotated
    from edge_liveness.blink.model import window_layout
    from edge_liveness.recordings.blink_score import prf
    from edge_liveness.config import load_settings
    from edge_liveness.pipeline import build_pipeline, load_models

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    data, out = Path(args.data), Path(args.out)
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        # checked before minutes of signal extraction, not when the first model is fitted
        print("error: blinks train needs TensorFlow: install the workstation extra, "
              "pip install 'edge-liveness[workstation]'", file=sys.stderr)
        return 2
    if not data.exists():
        print(f"error: {data} does not exist: give a folder of annotated clips", file=sys.stderr)
        return 2
    annotations = find_annotated(data)
    if not annotations:
        print(f"error: no annotated clip under {data} (<clip>.tag or <video>.blinks.csv)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    settings = load_settings(args.config)
    cfg = settings.blink
    pipeline = build_pipeline(settings, load_models(settings, blink=False))
    t0 = time.time()
    clips = extract(annotations, pipeline, out / "cache", log)
    hold = set(args.holdout)
    unknown = hold - {c.person for c in clips}
    if unknown:
        print(f"error: --holdout names people not in {data}: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    train = [c for c in clips if c.person not in hold]
    people = sorted({c.person for c in train})
    rng = np.random.default_rng(args.seed)
    folds = [people[i::args.folds] for i in range(min(args.folds, len(people)))]
    log(f"{len(train)} training clips of {len(people)} people, {len(folds)} leave-people-out folds; held out: "
        f"{', '.join(sorted(hold)) or 'none'}")
    cv_totals = {t: [0, 0, 0] for t in THRESHOLDS}
    cv_clips: dict[float, list] = {t: [] for t in THRESHOLDS}
    for k, fold in enumerate(folds, 1):
        tr = [c for c in train if c.person not in fold]
        te = [c for c in train if c.person in fold]
        xs, ys = training_set(tr, cfg.baseline_s, rng)
        m = fit(xs, ys, args.epochs, args.seed)
        per_thr, per_clip = evaluate_clips(lambda x: m.predict(x, verbose=0, batch_size=1024)[:, 0], te, cfg)
        for t in THRESHOLDS:
            cv_totals[t] = [a + b for a, b in zip(cv_totals[t], per_thr[t])]
            cv_clips[t].extend(per_clip[t])
        log(f"fold {k}/{len(folds)} (test {', '.join(fold)}): F1 at 0.5 = {_f1(*per_thr[0.5]):.3f}")
    best = max(THRESHOLDS, key=lambda t: (_f1(*cv_totals[t]), -abs(t - 0.5)))
    log("cross-validated F1 by threshold: " + ", ".join(f"{t}: {_f1(*cv_totals[t]):.3f}" for t in THRESHOLDS)
        + f"; chosen {best}")
    xs, ys = training_set(train, cfg.baseline_s, rng)
    model = fit(xs, ys, args.epochs, args.seed)
    tfl = out / "blink_mlp.tflite"
    blob = convert(model, tfl)
    manifest = {"name": "blink_mlp", "sha256": hashlib.sha256(blob).hexdigest(), "size_bytes": len(blob),
                "threshold": best, "window": window_layout(), "output": "P(the judged moment is inside a blink)",
                "trained_on": {"data": str(data), "people": people, "clips": len(train), "windows": int(len(xs)),
                               "positives": int((ys > 0).sum())},
                "held_out_people": sorted(hold),
                "cv": {"folds": folds, "by_threshold": {str(t): dict(zip(("found", "missed", "false"), cv_totals[t]),
                                                                       **prf(*cv_totals[t])) for t in THRESHOLDS},
                       "per_clip": cv_clips[best]},
                "command": "edge-liveness blinks train " + " ".join(sys.argv[3:]) if len(sys.argv) > 3 else "",
                "epochs": args.epochs, "seed": args.seed, "seconds": round(time.time() - t0, 1)}
    (out / "blink_mlp.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log(f"wrote {tfl} ({len(blob)} bytes) and its manifest in {time.time() - t0:.0f} s")
    return 0
