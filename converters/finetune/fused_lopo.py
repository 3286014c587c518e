"""The default decision (two-view-mirror+fusion+texture, the learned fusion with the pair's veto) with the
fine-tuned tight view in place of the frozen tight head, judged by converters/lopo/run.py's own protocol.

    python -m converters.finetune.fused_lopo /tmp/edge-liveness-lopo/crops128_ctx2.7 --scores /tmp/ft_cpu/scores_ft_synth.npy \\
        --jobs .gpu/finetune/jobs_k4.json --name liveness_lopo_finetuned_tight_t0.05_128px [--judge-crops --people ...]

The tight input of every row is its out-of-fold score from the person-disjoint folds the scores were made on
(gpu_lopo.py with jobs_k4.json: the model that never saw that row's person); the context head, the pair, the
cross-fitted fusion, the veto at ``--texture-threshold`` and the thresholds are run.py's, fold by fold. One
leak is left, and said in the results (``LEAK``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from converters.finetune.judge import out_of_fold
from converters.lopo.fusion_export import WEIGHTS
from converters.lopo.recipes import Recipe

RECIPE = "two-view-mirror+fusion+texture"
LEAK = ("the fusion of a fold learns its weights from other people's out-of-fold tight scores, made by models that may "
        "have trained on the judged person (the judged person's own scores never are)")


class FineTunedTight(Recipe):
    """The recipe with its tight view head replaced by precomputed out-of-fold logits."""

    def __init__(self, *args, tight_logits: np.ndarray, **kwargs):
        super().__init__(*args, **kwargs)
        self.tight_logits = tight_logits

    def views(self, mask: np.ndarray):
        d = self.d
        if self.base in ("tight", "tight-frames"):  # the crop regime: tight view and the pair only
            return lambda idx: self.tight_logits[idx][:, None]
        hc = self._head(d.context, mask & self.train_ok, True, d.context_mirror)
        return lambda idx: np.stack([self.tight_logits[idx], *self._context_inputs(hc.logit(d.context[idx]))], 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.finetune.fused_lopo", description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--scores", type=Path, required=True, help="scores_<variant>.npy from gpu_lopo.py")
    ap.add_argument("--jobs", type=Path, required=True)
    ap.add_argument("--texture-threshold", type=float, default=0.05)
    ap.add_argument("--judge-crops", action="store_true")
    ap.add_argument("--people", default="")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--name", required=True)
    args = ap.parse_args(argv)
    from converters.lopo.data import load
    from converters.lopo.run import run_recipe
    from converters.lopo.texture import texture_model_scores, texture_scores

    cache = args.root / ".features"
    data = load(args.root, WEIGHTS, None, cache, mirror=True)
    jobs = json.loads(args.jobs.read_text())["jobs"]
    scores = np.load(args.scores)
    if scores.shape != (len(jobs), len(data.labels)):
        print(f"fused_lopo: {args.scores}: shape {scores.shape}, want {(len(jobs), len(data.labels))}", file=sys.stderr)
        return 2
    tight = out_of_fold(scores, jobs, data.person, data.kind == "watermarked")
    models = texture_model_scores(args.root, data, cache)
    texture = texture_scores(args.root, data, cache)
    rec = FineTunedTight(RECIPE, data, 1e-2, texture, args.texture_threshold, texture_models=models,
                         judge_crops=args.judge_crops, tight_logits=np.nan_to_num(tight))
    people = [p for p in args.people.split(",") if p] or None
    res = run_recipe(data, RECIPE, 0.02, texture=texture, texture_threshold=args.texture_threshold, texture_models=models,
                     people=people, judge_crops=args.judge_crops, recipe=rec)
    res["tight_view"] = f"fine-tuned, out-of-fold scores from {args.scores.name} on {args.jobs.name}"
    res["leak"] = LEAK
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}_{RECIPE}.json").write_text(json.dumps(res, indent=2) + "\n")
    rp, pr = res["replay"] or {}, res["print"] or {}
    print(f"replay mean ACER {rp.get('mean_acer')} worst {rp.get('worst_acer')} ({rp.get('worst_person')}); print "
          f"{pr.get('mean_acer')}; BPCER unseen real {res['bpcer_unseen_real_people']} attempts {res['bpcer_unseen_real_attempts']} "
          f"photos {res['bpcer_unseen_real_photos']}; watermarked {res['bpcer_watermarked_td_selfies']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
