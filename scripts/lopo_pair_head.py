#!/usr/bin/env python3
"""Does the texture pair adapt to our people? A head on the MiniFASNet pair's own features, by LOPO
(issue 26, items 1 and 4: "fine-tuning beyond frozen features where these 2 cores allow").

    python scripts/lopo_pair_head.py [--root /tmp/edge-liveness-lopo/crops128_ctx2.7]
                                     [--out benchmarks/results/liveness_lopo_pair_head_128px.json]

The frozen ImageNet backbone did not carry the pair's knowledge of screens (distillation, docs/training.md
section 7). Here the pair's own penultimate features are the frozen features: each MiniFASNet's 128
numbers before its last layer (``/bn/BatchNormalization_output_0`` of the shared ONNX, float, the crop
the daemon cuts on each row's own frame), both models side by side, and a person-balanced logistic head
learns live-vs-attack on the fold's training people: the peer's last layer re-fitted to our data, the
cheapest fine-tuning there is. Recipes, on the same folds and threshold rule as ``converters.lopo``:

- ``pair-head``: the adapted head alone, on every kind of row (tight repository crops too);
- ``tight+pair-head-veto`` / ``two-view-mirror+pair-head-veto``: the recipe's score vetoed by the adapted
  head in place of the frozen pair: ``min(primary, head - t_head + t)``, ``t_head`` at 1 % BPCER on the
  fold's threshold people;
- ``tight+texture`` / ``two-view-mirror+texture`` (``--recipes``): the frozen pair's veto at T = 0.2, for comparison
  (the same as ``liveness_lopo_veto_t0.2_*``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from converters.lopo import run as lopo  # noqa: E402
from converters.lopo.data import threshold_for_bpcer  # noqa: E402
from converters.lopo.recipes import Recipe, balanced_weights  # noqa: E402

EMBEDDING = "/bn/BatchNormalization_output_0"
HEAD_BPCER = 0.01
VETO_T = 0.2  # decision.texture_threshold (the veto mode's default)
ONNX = (("2.7_80x80_MiniFASNetV2.onnx", 2.7), ("4_0_0_80x80_MiniFASNetV1SE.onnx", 4.0))


def pair_embeddings(root: Path, onnx_dir: Path, cache: Path) -> dict[str, np.ndarray]:
    """Per row, in data.load's row order (cached): ``emb`` (N, 256) both float models' embeddings, ``ok`` (N,)
    face found, ``p_bilinear`` / ``p_area`` (N, 2) each int8 model's P(real) on its crop resized as upstream
    does (bilinear) and with area averaging (``cv2.INTER_AREA``)."""
    import cv2
    import onnx
    import onnxruntime as ort

    from converters.data.crop_folders import rows_of
    from converters.lopo.texture import _folders, row_faces
    from edge_liveness.liveness import minifasnet as mf

    rows = [(d.name, r["source"] or str(r["path"]), r["frame"]) for d in _folders(root) for r in rows_of(d)]
    key = hashlib.sha256(repr((rows, ONNX, "v2")).encode()).hexdigest()[:16]
    f = cache / f"pair_embeddings_{key}.npz"
    if f.is_file():
        return dict(np.load(f))
    pair = mf.MiniFASNetPair(num_threads=1)
    sessions = []
    for name, scale in ONNX:
        m = onnx.load(str(onnx_dir / name))
        m.graph.output.append(onnx.helper.make_tensor_value_info(EMBEDDING, onnx.TensorProto.FLOAT, None))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sessions.append((ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"]), scale))
    emb, ok = np.zeros((len(rows), 128 * len(ONNX)), np.float32), np.zeros(len(rows), bool)
    p_bilinear, p_area = np.full((len(rows), 2), np.nan), np.full((len(rows), 2), np.nan)
    for n, img, box in row_faces(rows, every=50):
        h, w = img.shape[:2]
        for j, (sess, scale) in enumerate(sessions):
            x = mf.crop_for(img, box, scale).astype(np.float32).transpose(2, 0, 1)[None]
            emb[n, 128 * j:128 * (j + 1)] = sess.run([EMBEDDING], {sess.get_inputs()[0].name: x})[0][0]
        for j, m in enumerate(pair.models):
            p_bilinear[n, j] = m.softmax(mf.crop_for(img, box, m.scale))[mf.REAL_CLASS]
            l, t, r, b = mf.crop_window(w, h, box, m.scale)
            area = cv2.resize(img[t:b + 1, l:r + 1], (mf.INPUT_SIZE, mf.INPUT_SIZE), interpolation=cv2.INTER_AREA)
            p_area[n, j] = m.softmax(area)[mf.REAL_CLASS]
        ok[n] = True
    out = {"emb": emb, "ok": ok, "p_bilinear": p_bilinear, "p_area": p_area}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(f, **out)
    return out


def per_recording(data, scan: dict[str, np.ndarray]) -> list[dict]:
    """The int8 pair's median P(real) per full-frame recording (data.recording) and label: each model and their mean, bilinear
    crops (upstream's, the daemon's) and area-averaged ones; sorted live first, lowest mean first."""
    out = []
    frames = np.isin(data.kind, ("frames", "watermarked")) & scan["ok"]
    for rec, lab in sorted(set(zip(data.recording[frames].tolist(), data.labels[frames].tolist()))):
        m = frames & (data.recording == rec) & (data.labels == lab)
        pb, pa = scan["p_bilinear"][m], scan["p_area"][m]
        out.append({"recording": rec, "person": str(data.person[m][0]),
                    "label": "live" if lab == 1 else "spoof", "frames": int(m.sum()),
                    "median_v2": round(float(np.median(pb[:, 0])), 3), "median_v1se": round(float(np.median(pb[:, 1])), 3),
                    "median_pair": round(float(np.median(pb.mean(1))), 3),
                    "median_pair_area": round(float(np.median(pa.mean(1))), 3),
                    "share_under_0.2": round(float(np.mean(pb.mean(1) < 0.2)), 3),
                    "share_under_0.2_area": round(float(np.mean(pa.mean(1) < 0.2)), 3)})
    return sorted(out, key=lambda r: (r["label"] != "live", r["median_pair"]))


class PairHeadRecipe:
    """The recipe interface run_recipe uses (eval_ok, notes, fit(mask) -> scorer) for the three variants."""

    def __init__(self, name: str, data, emb: np.ndarray, found: np.ndarray, texture: np.ndarray, l2: float):
        self.name, self.d, self.emb, self.found, self.l2, self.notes = name, data, emb, found, l2, []
        base = name.split("+", 1)[0]
        self.primary = None if base == "pair-head" else Recipe(base + ("+texture" if name.endswith("+texture") else ""),
                                                               data, 1e-2, texture, VETO_T)
        synthetic = np.isin(data.kind, ("synth", "synthcrops"))
        self.eval_ok = ~synthetic if self.primary is None else self.primary.eval_ok
        self.train_ok = (data.kind != "watermarked") & found & ~synthetic

    def head(self, mask: np.ndarray):
        from converters.passive.features import fit_logistic

        d, m = self.d, mask & self.train_ok
        w = balanced_weights(d.labels[m], d.person[m], np.zeros(int(m.sum()), bool))
        h = fit_logistic(self.emb[m], d.labels[m].astype(np.float32), self.l2, sample_weight=w, classes=d.labels[m])
        # a row whose face the mesh lost gets no vote (as the daemon would not score it)
        return lambda idx: np.where(self.found[idx], h.logit(self.emb[idx]), 30.0)

    def fit(self, mask: np.ndarray):
        if self.primary is None:
            return self.head(mask)
        primary = self.primary.fit(mask)
        if not self.name.endswith("pair-head-veto"):
            return primary
        head = self.head(mask)

        class Veto:
            def align(self, live_idx: np.ndarray, target: float) -> float:
                self.t = float(threshold_for_bpcer(primary(live_idx), target))
                self.t_head = float(threshold_for_bpcer(head(live_idx), HEAD_BPCER))
                return self.t

            def __call__(self, idx: np.ndarray) -> np.ndarray:
                return np.minimum(primary(idx), head(idx) - self.t_head + self.t)

        return Veto()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/tmp/edge-liveness-lopo/crops128_ctx2.7")
    ap.add_argument("--weights", default=str(REPO.parent / "shared/data/models/imagenet_mobilenet_v2_int8_tflite_coral/"
                                             "tf2_mobilenet_v2_1.0_224_ptq.tflite"))
    ap.add_argument("--onnx-dir", default=str(REPO.parent / "shared/data/models/antispoof_silentface_minifasnet"))
    ap.add_argument("--l2", type=float, default=1e-2)
    ap.add_argument("--recipes", default="pair-head,tight+pair-head-veto,two-view-mirror+pair-head-veto")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/liveness_lopo_pair_head_128px.json"))
    args = ap.parse_args()
    root = Path(args.root)
    from converters.lopo.texture import texture_scores

    data = lopo.load(root, args.weights, None, root / ".features", mirror=True)
    scan = pair_embeddings(root, Path(args.onnx_dir), root / ".features")
    emb, found = scan["emb"], scan["ok"]
    texture = texture_scores(root, data, root / ".features")
    out = {"what": __doc__.split("\n\n")[1].replace("\n", " "), "command": "python scripts/lopo_pair_head.py",
           "head_bpcer": HEAD_BPCER, "l2": args.l2, "pair_per_recording": per_recording(data, scan), "recipes": {}}
    orig = lopo.Recipe
    try:
        for name in args.recipes.split(","):
            lopo.Recipe = lambda *a, _n=name, **k: PairHeadRecipe(_n, data, emb, found, texture, args.l2)
            with contextlib.redirect_stderr(io.StringIO()):
                res = lopo.run_recipe(data, name, 0.02)
            out["recipes"][name] = res
            rp, pr = res["replay"], res["print"]
            print(f"{name}: replays mean {rp['mean_acer']:.1%} worst {rp['worst_acer']:.1%} ({rp['worst_person']}), "
                  f"prints {pr['mean_acer']:.1%}, unseen real rejected per frame {res['bpcer_unseen_real_people']:.1%} / "
                  f"attempt {res['bpcer_unseen_real_attempts']:.1%} / photo {res['bpcer_unseen_real_photos']:.1%}", flush=True)
    finally:
        lopo.Recipe = orig
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
