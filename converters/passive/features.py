"""Frozen ImageNet MobileNetV2 features of face crops, and a small logistic head trained on them.

Leave-one-person-out validation retrains a model once per held-out person; fine-tuning a network
per fold is hours on a 2-core workstation. A frozen backbone computed once per crop and a head
trained in a second per fold measures the same question (does this recipe generalise to people it
never saw?) at a cost that lets every person be held out, and the head converts to the same int8
TFLite as the shipped model (backbone -> global average pool -> one dense unit).

Features: global average pools of three depths of the backbone, because print and screen cues
are fine texture (moire, pixel grid, halftone) that the deepest, most semantic layer averages away:
``block_6_expand_relu`` (1/8 of the input, 192 channels), ``block_13_expand_relu`` (1/16, 576) and
``out_relu`` (1/32, 1280).

TensorFlow is imported inside functions only.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TAPS = ("block_6_expand_relu", "block_13_expand_relu", "out_relu")
TAP_WIDTHS = {"block_6_expand_relu": 192, "block_13_expand_relu": 576, "out_relu": 1280}


def feature_model(size: int, weights: str, taps: tuple[str, ...] = TAPS):
    """Keras model: raw RGB 0..255 (S,S,3) -> concatenated GAPs of ``taps`` (frozen, inference only)."""
    import keras

    from converters.passive.model import load_backbone_weights

    bb = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=1.0, include_top=False, weights=None)
    load_backbone_weights(bb, weights, 1.0)
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    tapped = keras.Model(bb.input, [bb.get_layer(t).output for t in taps])
    outs = [keras.layers.GlobalAveragePooling2D()(o) for o in tapped(x)]
    return keras.Model(inputs, keras.layers.Concatenate()(outs) if len(outs) > 1 else outs[0])


def compute_features(images_rgb: np.ndarray, size: int, weights: str, cache: Path | None = None, batch: int = 64,
                     label: str = "") -> np.ndarray:
    """(N, sum of tap widths) float32 features; cached on disk by a hash of the pixels and the weights file."""
    key = hashlib.sha256(images_rgb.tobytes()).hexdigest()[:16] + "_" + hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:8]
    if cache is not None:
        f = Path(cache) / f"features_{label}_{key}.npy"
        if f.is_file():
            return np.load(f)
    model = feature_model(size, weights)
    out, t0 = [], time.monotonic()
    for i in range(0, len(images_rgb), batch):
        out.append(np.asarray(model(images_rgb[i:i + batch].astype(np.float32), training=False), np.float32))
        print(f"\rfeatures {label}: {min(i + batch, len(images_rgb))}/{len(images_rgb)} ({time.monotonic() - t0:.0f} s)",
              end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    feats = np.concatenate(out) if out else np.zeros((0, sum(TAP_WIDTHS.values())), np.float32)
    if cache is not None:
        Path(cache).mkdir(parents=True, exist_ok=True)
        np.save(Path(cache) / f"features_{label}_{key}.npy", feats)
    return feats


@dataclass
class LogisticHead:
    """P(live) = sigmoid(((x - mean) / std) @ w + b); balanced classes, L2 penalty."""

    mean: np.ndarray
    std: np.ndarray
    w: np.ndarray
    b: float

    def logit(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std) @ self.w + self.b

    def predict(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.clip(self.logit(x), -30, 30)))

    def dense_weights(self) -> tuple[np.ndarray, float]:
        """The standardisation folded in: logit = x @ W + B (for a Keras Dense layer)."""
        w = self.w / self.std
        return w.astype(np.float32), float(self.b - (self.mean / self.std) @ self.w)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 250, lr: float = 0.05, seed: int = 0,
                 sample_weight: np.ndarray | None = None, classes: np.ndarray | None = None) -> LogisticHead:
    """Full-batch Adam on the class-balanced logistic loss (numpy; a second for a few thousand crops).

    ``y`` may be soft targets in [0, 1] (distillation); the classes that are balanced are then ``classes``
    (the hard labels), since a soft target has no class of its own."""
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32)
    c = y if classes is None else np.asarray(classes, np.float32)
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std  # float32: the two matrix products per step are the whole cost
    n_pos, n_neg = max(1.0, float((c == 1).sum())), max(1.0, float((c == 0).sum()))
    sw = np.where(c == 1, 0.5 / n_pos, 0.5 / n_neg).astype(np.float32)
    if sample_weight is not None:
        sw = sw * sample_weight / np.average(sample_weight)
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1e-3, z.shape[1]).astype(np.float32)
    b = 0.0
    m = np.zeros(z.shape[1] + 1)
    v = np.zeros_like(m)
    for t in range(1, steps + 1):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w + b, -30, 30)))
        g = (sw * (p - y)).astype(np.float32)  # a float64 here would cast all of z every step
        grad = np.concatenate([z.T @ g + l2 * w, [g.sum()]]).astype(np.float64)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        step = lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        w -= step[:-1].astype(np.float32)
        b -= float(step[-1])
    return LogisticHead(mean.astype(np.float32), std.astype(np.float32), w.astype(np.float32), float(b))


def person_balanced_weights(labels: np.ndarray, person: np.ndarray) -> np.ndarray:
    """Sample weights giving every person the same total weight within each class, so that the people
    with thousands of frames (ZJU clips, long videos) do not outvote those with forty (a NUAA subject):
    the head should learn what generalises across people, not the biggest source."""
    w = np.zeros(len(labels), np.float32)
    for lab in np.unique(labels):
        m = labels == lab
        names, counts = np.unique(person[m], return_counts=True)
        per = dict(zip(names.tolist(), counts.tolist()))
        w[m] = [1.0 / per[p] for p in person[m].tolist()]
    return w
