#!/usr/bin/env python3
"""Does a frequency / colour cue help the tight view on unseen replay people? (issue 16: "only if it
measurably helps").

    python scripts/lopo_frequency_cue.py [--root /tmp/edge-liveness-lopo/crops128_ctx2.7]
                                         [--out benchmarks/results/liveness_lopo_128px_frequency_cue.json]

16 numbers per tight crop: the share of the spectrum's magnitude in 8 radial frequency bands (a
screen's pixel grid and moire put energy where a face has little), sharpness (log Laplacian
variance), saturation and brightness mean/spread, red-green and blue-green casts, and the share of
blown highlights (glare). The ``tight`` recipe of ``converters.lopo`` is run on the deep features
alone, on deep + these (repeated 20x so the L2 head does not drown 16 columns among 2,048), and on
these alone: same folds, same threshold rule. Needs the crops of scripts/lopo_data.sh and TensorFlow
for the (cached) deep features.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from converters.lopo import run as lopo  # noqa: E402


def cue(img_bgr: np.ndarray) -> list[float]:
    g = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255
    mag = np.abs(np.fft.fftshift(np.fft.fft2(g - g.mean())))
    h, w = g.shape
    yy, xx = np.mgrid[:h, :w]
    radius = np.hypot(yy - h / 2, xx - w / 2) / (h / 2)
    edges = np.linspace(0, 1, 9)
    total = mag.sum() + 1e-6
    bands = [float(np.log(mag[(radius >= a) & (radius < b)].sum() / total + 1e-6)) for a, b in zip(edges[:-1], edges[1:])]
    hsv = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2HSV).astype(np.float32) / 255
    b, gr, r = (img_bgr[:, :, i].astype(np.float32) / 255 for i in range(3))
    return bands + [float(np.log(cv2.Laplacian(g, cv2.CV_32F).var() + 1e-6)), float(hsv[..., 1].mean()),
                    float(hsv[..., 1].std()), float(hsv[..., 2].mean()), float(hsv[..., 2].std()),
                    float((r - gr).mean()), float((b - gr).mean()), float((hsv[..., 2] > 0.95).mean())]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/tmp/edge-liveness-lopo/crops128_ctx2.7")
    ap.add_argument("--weights", default=str(REPO.parent / "shared/data/models/imagenet_mobilenet_v2_int8_tflite_coral/"
                                             "tf2_mobilenet_v2_1.0_224_ptq.tflite"))
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/liveness_lopo_128px_frequency_cue.json"))
    args = ap.parse_args()
    root = Path(args.root)
    data = lopo.load(root, args.weights, None, root / ".features")
    print(f"computing the cue on {len(data.files)} tight crops ...", file=sys.stderr, flush=True)
    hand = np.array([cue(cv2.imread(f, cv2.IMREAD_COLOR)) for f in data.files], np.float32)
    deep = data.tight
    out: dict = {"note": __doc__.split("\n\n")[0].replace("\n", " "), "variants": {}}
    for name, feats in (("deep", deep), ("deep+cue", np.concatenate([deep, np.repeat(hand, 20, 1)], 1)), ("cue", hand)):
        data.tight = feats
        print(f"tight recipe, {name} features ...", file=sys.stderr, flush=True)
        with contextlib.redirect_stderr(io.StringIO()):
            r = lopo.run_recipe(data, "tight", 0.02)
        out["variants"][name] = {"replay": r["replay"], "print": r["print"],
                                 "bpcer_unseen_real_attempts": r["bpcer_unseen_real_attempts"],
                                 "per_person_acer_auc": {p: [v["acer"], v["auc"]] for p, v in r["per_person"].items()}}
        rp = r["replay"]
        print(f"  replay mean ACER {rp['mean_acer']:.3f} worst {rp['worst_acer']:.3f}; prints {r['print']['mean_acer']:.3f}; "
              f"BPCER per attempt {r['bpcer_unseen_real_attempts']:.3f}", file=sys.stderr, flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
