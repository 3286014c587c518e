"""The learned passive fusion the device ships (issue 26, "fuse"): ``models/liveness_fusion.json``.

    python -m converters.lopo.fusion_export /tmp/edge-liveness-lopo/crops128_ctx2.7
        [--model models/liveness_two_view_int8.tflite] [--out models/liveness_fusion.json]

One logistic over four logits: the two-view model's tight and context heads (raw, before the manifest's
view weights) and each MiniFASNet's P(real) as a logit. Learned exactly as the LOPO's ``+fusion`` recipe
learns it in a fold (``converters/lopo/fusion.py``: cross-fitted over 4 person groups, every person the same
weight), on the people the shipped two-view model trained on: everyone but its threshold people (its
manifest's ``threshold_people``) and td_selfies. The threshold is then set as the two-view model's was: on
the int8 model's and the int8 pair's own scores of those threshold people (never trained on), at
``--target-bpcer`` of their frames. The daemon reads the file beside the liveness model
(``edge_liveness/liveness/fusion.py``) and refuses it (one line) when either model's sha256 differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from converters.data.dataset import DatasetError

INPUTS = ("tight_logit", "context_logit", "minifasnet_v2_logit", "minifasnet_v1se_logit")
WEIGHTS = "../shared/data/models/imagenet_mobilenet_v2_int8_tflite_coral/tf2_mobilenet_v2_1.0_224_ptq.tflite"


def make(root: Path, model: Path, out: Path, weights: str, target_bpcer: float = 0.02, hold_out: set[str] | None = None) -> dict:
    from converters.lopo.data import load, sigmoid, threshold_for_bpcer
    from converters.lopo.fusion import fit_recipe
    from converters.lopo.recipes import Recipe
    from converters.lopo.texture import logit, texture_model_scores, texture_scores
    from converters.lopo.two_view import _context_path, _read_rgb, int8_logits
    from edge_liveness.liveness import minifasnet as mf
    from edge_liveness.liveness.model import read_manifest
    from edge_liveness.vision.runtime import bundled_model_path

    manifest = read_manifest(model)
    held = set(manifest.get("threshold_people") or ())
    if not held:
        raise DatasetError(f"{model}: its manifest names no threshold_people: make it with `python -m converters.lopo.two_view`")
    vw = manifest["view_weights"]
    kt, kc = 2 * float(vw["tight"]), 2 * float(vw["context"])  # the model's outputs are the heads times these
    data = load(root, weights, None, root / ".features", mirror=True)
    cache = root / ".features"
    rec = Recipe("two-view-mirror+fusion", data, 1e-2, texture_scores(root, data, cache), 0.5,
                 texture_models=texture_model_scores(root, data, cache))
    hold_out = set(hold_out or ())
    unknown = hold_out - set(data.person.tolist())
    if unknown:
        raise DatasetError(f"--hold-out {', '.join(sorted(unknown))}: no such person in {root}")
    # the people the model trained on: not its threshold people, not td_selfies, not those held out of it
    train = ~np.isin(data.person, list(held | hold_out)) & (data.kind != "watermarked")
    print(f"fitting the fusion on {len(set(data.person[train].tolist()))} people (cross-fitted) ...", file=sys.stderr, flush=True)
    fused = fit_recipe(rec, train)
    w = fused.weights()  # per raw logit, then the bias

    idx = np.flatnonzero(np.isin(data.person, list(held)) & (data.kind == "frames"))
    print(f"scoring the {len(idx)} frames of the threshold people with the int8 models ...", file=sys.stderr, flush=True)
    l0, l1 = int8_logits(Path(model).read_bytes(), _read_rgb([Path(data.files[i]) for i in idx]),
                         _read_rgb([_context_path(data.files[i]) for i in idx]))
    x = np.stack([l0 / kt, l1 / kc, *logit(rec.texture_models[idx]).T], 1)
    z = x @ np.array(w[:4]) + w[4]
    thr = float(threshold_for_bpcer(sigmoid(z), target_bpcer))
    pair = [hashlib.sha256(bundled_model_path(n).read_bytes()).hexdigest() for n in mf.MODEL_NAMES]
    doc = {
        "name": "liveness_fusion",
        "what": "P(live) = sigmoid(weights . inputs + bias); live when P(live) >= threshold",
        "inputs": list(INPUTS),
        "inputs_meaning": "tight/context: the two-view model's outputs divided by 2 x its view weight (the raw heads); "
                          "minifasnet_*: logit of each model's softmax P(real) (clipped to 1e-6)",
        "weights": [float(v) for v in w[:4]],
        "bias": float(w[4]),
        "threshold": thr,
        "threshold_rule": f"int8 two-view model and int8 pair: {target_bpcer:.0%} per-frame BPCER on its threshold people (never trained on)",
        "threshold_people": sorted(held),
        "held_out": sorted(hold_out),
        "fitted_on": "cross-fitted over 4 person groups of the people the two-view model trained on (converters/lopo/fusion.py)",
        "liveness_model_sha256": manifest["sha256"],
        "texture_models_sha256": dict(zip(mf.MODEL_NAMES, pair)),
        "command": "python -m converters.lopo.fusion_export /tmp/edge-liveness-lopo/crops128_ctx2.7",
        "lopo": "benchmarks/results/liveness_lopo_fusion_fixed_128px_two-view-mirror+fusion*.json",
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}: weights {[round(v, 3) for v in w[:4]]}, bias {w[4]:.3f}, threshold {thr:.4f}", file=sys.stderr)
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", metavar="DATA_ROOT", help="folder made by scripts/lopo_data.sh")
    ap.add_argument("--model", type=Path, default=Path("models/liveness_two_view_int8.tflite"))
    ap.add_argument("--out", type=Path, default=Path("models/liveness_fusion.json"))
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--target-bpcer", type=float, default=0.02)
    ap.add_argument("--hold-out", default="", help="people the model was trained without (comma-separated): kept out of the fit too")
    args = ap.parse_args(argv)
    try:
        make(Path(args.root), args.model, args.out, args.weights, args.target_bpcer,
             {p for p in args.hold_out.split(",") if p})
    except DatasetError as e:
        print(f"fusion_export: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
