"""The two-view liveness model: one int8 MobileNetV2 run on the tight crop and on the context crop.

    python -m converters.lopo.two_view DATA_ROOT -o models/liveness_two_view_int8.tflite [--target-bpcer 0.02]

The recipe measured best by leave-one-person-out (``converters/lopo/run.py``, recipe ``two-view-mirror``):
frozen ImageNet MobileNetV2 features (converters/passive/features.py) and two logistic heads, one trained on
tight crops of every person, one on the context crops of full frames, each crop also as its mirror
image, every person weighing the same in each, fused 0.3 tight + 0.7 context (``recipes.VIEW_WEIGHTS``, folded into the two logits so the
device's mean of the two is that weighted sum). The device model is ONE
single-input int8 network, backbone -> pooled features -> Dense(2) = [tight-head logit,
context-head logit]; the device runs it on the tight crop and reads logit 0, on the context crop and
reads logit 1, and fuses: ``P(live) = sigmoid((l_tight + l_context) / 2)``. One file holds the
backbone once (a two-input graph would store the weights twice), and the output stays a logit,
which int8 keeps in order (a sigmoid near 0/1 loses its ranking in 256 levels).

Threshold: the same rule as the validation. One group of bona-fide-only people is kept out of
training and the threshold is set on the int8 model's own fused scores so that this group loses
``--target-bpcer`` of its frames. td_selfies (watermarked) is never trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from converters.measure import pad_metrics
from converters.data.crop_folders import CropSet
from converters.data.dataset import CONTEXT_DIR, DatasetError
from converters.lopo.recipes import VIEW_WEIGHTS
from converters.lopo.data import Data, load, real_only_groups, threshold_for_bpcer
from converters.lopo.data import sigmoid as _sigmoid

# the device fuses (logit0 + logit1) / 2: each head is scaled so that this mean is the weighted sum
HEAD_SCALES = (2 * VIEW_WEIGHTS[0], 2 * VIEW_WEIGHTS[1])
# written to the manifest's training.recipe: a model made by another recipe is not this one
RECIPE = "two-view-mirror (converters/lopo/run.py): person-balanced heads, every crop and its mirror image"


def _context_path(tight_file: str) -> Path:
    p = Path(tight_file)  # <folder>/<label>/<name>.png -> <folder>/context/<label>/<name>.png
    return p.parent.parent / CONTEXT_DIR / p.parent.name / p.name


def _read_rgb(paths: list[Path]) -> np.ndarray:
    import cv2

    return np.stack([cv2.imread(str(p), cv2.IMREAD_COLOR)[:, :, ::-1] for p in paths])


def build(size: int, weights: str, head_t, head_c):
    import keras

    from converters.passive.features import feature_model

    fm = feature_model(size, weights)
    wt, bt = head_t.dense_weights()
    wc, bc = head_c.dense_weights()
    kt, kc = HEAD_SCALES
    wt, bt, wc, bc = wt * kt, bt * kt, wc * kc, bc * kc
    dense = keras.layers.Dense(2, name="logits")
    out = dense(fm.output)
    model = keras.Model(fm.input, out, name=f"liveness_two_view_{size}")
    dense.set_weights([np.stack([wt, wc], 1).astype(np.float32), np.array([bt, bc], np.float32)])
    return model


def int8_logits(model_bytes: bytes, tight: np.ndarray, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import tempfile

    from edge_liveness.vision.runtime import TFLiteModel

    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(model_bytes)
        f.flush()
        m = TFLiteModel(f.name, num_threads=2)
    lt = np.array([float(m.run(x[None].astype(np.float32))[0].reshape(-1)[0]) for x in tight])
    lc = np.array([float(m.run(x[None].astype(np.float32))[0].reshape(-1)[1]) for x in context])
    return lt, lc


def make(root: Path, out: Path, weights: str, target_bpcer: float, l2: float, seed: int = 0, n_calib: int = 300,
         hold_out: set[str] | None = None, recipe: str = "two-view-mirror") -> dict:
    from converters.passive.convert import inspect_int8, to_tflite, write_manifest
    from converters.lopo.recipes import Recipe

    data: Data = load(root, weights, None, root / ".features", mirror=True)
    meta = json.loads(next(root.glob("frames_*/dataset.json")).read_text())
    size, scale, margin = int(meta["context"]["size"]), float(meta["context"]["scale"]), float(meta["crop"]["margin"])
    groups = real_only_groups(data, seed)
    held = set(groups[0])
    hold_out = set(hold_out or ())
    unknown = hold_out - set(data.person.tolist())
    if unknown:
        raise DatasetError(f"--hold-out {', '.join(sorted(unknown))}: no such person in {root}")
    rec = Recipe(recipe, data, l2)  # its masks keep synthetic recaptures out unless the recipe is +synth
    if rec.base != "two-view-mirror" or rec.mods - {"+synth"}:
        raise DatasetError(f"--recipe {recipe}: the device model is two-view-mirror, with or without +synth")
    ok = rec.train_tight & ~np.isin(data.person, list(held | hold_out))
    frames = data.kind == "frames"
    ht, hc = rec.two_view_heads(ok)
    model = build(size, weights, ht, hc)
    kt, kc = HEAD_SCALES

    # int8: calibrated on both views of full frames, both classes, training people only
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(ok & frames)
    pick = rng.choice(pool, min(n_calib // 2, len(pool)), replace=False)
    calib_imgs = np.concatenate([_read_rgb([Path(data.files[i]) for i in pick]),
                                 _read_rgb([_context_path(data.files[i]) for i in pick])])
    calib = CropSet(calib_imgs, np.concatenate([data.labels[pick]] * 2), [""] * len(calib_imgs), [""] * len(calib_imgs),
                    [""] * len(calib_imgs))
    print(f"converting to int8 ({len(calib_imgs)} calibration crops) ...", file=sys.stderr, flush=True)
    model_bytes = to_tflite(Path("two_view"), "int8", calib, keras_model=model, n_calib=len(calib_imgs), seed=seed)
    report, problems = inspect_int8(model_bytes)
    if problems:
        raise DatasetError(f"the int8 model is not fully integer: {problems[0]}")

    # float vs int8 on every full-frame crop (both views) and the threshold on the held-out real people
    idx = np.flatnonzero(frames | (data.kind == "watermarked"))
    tight_imgs = _read_rgb([Path(data.files[i]) for i in idx])
    ctx_imgs = _read_rgb([_context_path(data.files[i]) for i in idx])
    print(f"scoring {len(idx)} frames with the int8 model ...", file=sys.stderr, flush=True)
    lt, lc = int8_logits(model_bytes, tight_imgs, ctx_imgs)
    q = _sigmoid((lt + lc) / 2)
    f = _sigmoid((kt * ht.logit(data.tight[idx]) + kc * hc.logit(data.context[idx])) / 2)
    y, person, kind = data.labels[idx], data.person[idx], data.kind[idx]
    held_m = np.isin(person, list(held))
    thr_q = threshold_for_bpcer(q[held_m], target_bpcer)
    thr_f = threshold_for_bpcer(f[held_m], target_bpcer)
    train_m = ~held_m & (kind == "frames")
    cmp = {"frames_of_training_people": {"float": pad_metrics.rates(y[train_m], f[train_m], thr_f).to_dict(),
                                         "int8": pad_metrics.rates(y[train_m], q[train_m], thr_q).to_dict(),
                                         "agreement": float(((f[train_m] >= thr_f) == (q[train_m] >= thr_q)).mean())},
           "logit_abs_diff_median": float(np.median(np.abs(np.concatenate([lt - kt * ht.logit(data.tight[idx]),
                                                                             lc - kc * hc.logit(data.context[idx])]))))}
    cmp["acer_drop"] = cmp["frames_of_training_people"]["int8"]["acer"] - cmp["frames_of_training_people"]["float"]["acer"]
    if hold_out:  # the int8 cost where it matters: people the model never saw
        ho = np.isin(person, list(hold_out)) & (kind == "frames")
        fr, qr = pad_metrics.rates(y[ho], f[ho], thr_f), pad_metrics.rates(y[ho], q[ho], thr_q)
        cmp["held_out_people"] = {"people": sorted(hold_out), "float": fr.to_dict(), "int8": qr.to_dict(),
                                  "agreement": float(((f[ho] >= thr_f) == (q[ho] >= thr_q)).mean()),
                                  "acer_drop": qr.acer - fr.acer if qr.acer is not None and fr.acer is not None else None,
                                  "per_person": {p: {"float": pad_metrics.rates(y[ho & (person == p)], f[ho & (person == p)], thr_f).to_dict(),
                                                     "int8": pad_metrics.rates(y[ho & (person == p)], q[ho & (person == p)], thr_q).to_dict()}
                                                 for p in sorted(hold_out)}}
    wm = kind == "watermarked"
    extra = {
        "context": {"size": size, "scale": scale, "border": "black beyond the frame", "function": "align.context_crop"},
        "output": "logits [tight head, context head]",
        "output_meaning": "run on the tight crop and read logit 0, on the context crop and read logit 1; "
                          "P(live) = sigmoid((logit0 + logit1) / 2); accept as live when P(live) >= threshold",
        "fusion": "mean_logit",
        "view_weights": {"tight": VIEW_WEIGHTS[0], "context": VIEW_WEIGHTS[1],
                         "note": "folded into the two logits: their mean is 0.3 x tight head + 0.7 x context head"},
        "views": ["tight", "context"],
        "threshold_rule": f"int8 fused scores: {target_bpcer:.0%} per-frame BPCER on bona-fide people never trained on",
        "threshold_people": sorted(held),
        "threshold_float": thr_f,
        "bpcer_watermarked_td_selfies": float((q[wm] < thr_q).mean()) if wm.any() else None,
        "int8_vs_float": cmp,
        "training": {"recipe": RECIPE + (" + synthetic screen recaptures (+synth)" if "+synth" in rec.mods else ""), "held_out": sorted(hold_out), "features": "frozen ImageNet MobileNetV2 (Coral tflite), "
                     "GAP of block_6_expand_relu, block_13_expand_relu, out_relu", "l2": l2,
                     "people": sorted(set(data.person[ok].tolist())), "n_tight": int(ok.sum()),
                     "n_context": int((ok & rec.train_ok).sum()), "n_synthetic": int((ok & (data.kind == "synth")).sum())},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model_bytes)
    mp = write_manifest(out, model_bytes, input_size=size, crop={"size": size, "margin": margin}, threshold=thr_q,
                        source=Path(f"converters.lopo.two_view {root.name}"), quantize="int8", extra=extra)
    print(f"wrote {out} ({len(model_bytes) / 1e6:.2f} MB) and {mp.name}; threshold {thr_q:.4f}; int8-float ACER "
          f"{cmp['acer_drop']:+.4f} on training people's frames", file=sys.stderr)
    return json.loads(mp.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.lopo.two_view", description=__doc__.split("\n\n")[0])
    ap.add_argument("root", metavar="DATA_ROOT", help="folder made by scripts/lopo_data.sh")
    ap.add_argument("-o", "--out", required=True, help="output .tflite (manifest beside it)")
    ap.add_argument("--weights", default="../shared/data/models/imagenet_mobilenet_v2_int8_tflite_coral/tf2_mobilenet_v2_1.0_224_ptq.tflite")
    ap.add_argument("--target-bpcer", type=float, default=0.02)
    ap.add_argument("--l2", type=float, default=1e-2)
    ap.add_argument("--recipe", default="two-view-mirror", help="two-view-mirror or two-view-mirror+synth (the LOPO recipe it is)")
    ap.add_argument("--hold-out", default="", help="comma-separated people left out of training (to measure int8 vs float on them)")
    args = ap.parse_args(argv)
    try:
        make(Path(args.root), Path(args.out), args.weights, args.target_bpcer, args.l2,
             hold_out={x.strip() for x in args.hold_out.split(",") if x.strip()}, recipe=args.recipe)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
