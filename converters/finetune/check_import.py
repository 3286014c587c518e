"""Check that the PyTorch MobileNetV2 starts where the frozen recipes stand: its three pooled taps against the
Keras features the LOPO recipes cached for the same crops (converters/passive/features.py).

    python -m converters.finetune.check_import /tmp/edge-liveness-lopo/crops128_ctx2.7 \\
        --weights-npz .gpu/finetune/mobilenet_v2_imagenet.npz --out benchmarks/results/finetune_import_check.json

Needs torch (the fine-tuning machine's); prints and writes the correlation and mean relative error per tap.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from converters.lopo.fusion_export import WEIGHTS

TAPS = (("block_6_expand_relu", 0, 192), ("block_13_expand_relu", 192, 768), ("out_relu", 768, 2048))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.finetune.check_import", description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--weights-npz", type=Path, required=True)
    ap.add_argument("--every", type=int, default=100, help="check every Nth crop")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    import cv2
    import torch

    from converters.finetune.mobilenet_torch import build
    from converters.lopo.data import load

    data = load(args.root, WEIGHTS, 128, args.root / ".features")
    idx = np.arange(0, len(data.files), args.every)
    rgb = np.stack([cv2.imread(data.files[i], cv2.IMREAD_COLOR)[:, :, ::-1] for i in idx])
    net = build(args.weights_npz).eval()
    with torch.no_grad():
        ours = net.features(torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))).float()).numpy()
    keras = data.tight[idx]
    res = {"crops": int(len(idx)), "taps": {}}
    for name, a, b in TAPS:
        o, k = ours[:, a:b], keras[:, a:b]
        res["taps"][name] = {"correlation": round(float(np.corrcoef(o.ravel(), k.ravel())[0, 1]), 6),
                             "mean_relative_error": round(float(np.abs(o - k).mean() / np.abs(k).mean()), 5)}
    print(json.dumps(res))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
