"""Two passive opinions, one verdict: the learned fusion (``LearnedFusion``, the default) or the veto (``fuse``).

The shipped MobileNetV2 reads the face and its surroundings (bezel, hand, paper edge); the texture
pair (MiniFASNet, ``minifasnet.py``) reads what a screen does to the face itself. ``decision.fusion``:
- ``learned``: one logistic over the four logits (tight head, context head, V2, V1SE), learned by
  leave-one-person-out (``converters/lopo/fusion_export.py``, ``models/liveness_fusion.json``); the
  pair still vetoes a frame it calls a screen with P(real) under ``decision.learned_veto_threshold``;
- ``veto``: the liveness model decides and the pair can only veto, under ``decision.texture_threshold``.
Either way the verdict is a margin in logit units from its own threshold, mapped back onto the liveness
model's scale: ``fused >= primary threshold`` exactly when the fused score is on the live side, and the
decision engine, its threshold and ``decision.pass_margin`` keep their meaning.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from edge_liveness.vision.runtime import ModelError

_EPS = 1e-6


def logit(p: float) -> float:
    p = min(max(float(p), _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def fuse(p_primary: float, primary_threshold: float, p_texture: float | None, texture_threshold: float) -> float:
    """P(live) on the primary model's scale; ``p_texture`` None (not scored this frame) leaves it as is."""
    if p_texture is None:
        return float(p_primary)
    margin = min(logit(p_primary) - logit(primary_threshold), logit(p_texture) - logit(texture_threshold))
    return sigmoid(logit(primary_threshold) + margin)


FUSION_FILE = "liveness_fusion.json"  # beside the liveness model (models/README.md)
_FIX = "re-create it with `python -m converters.lopo.fusion_export` or set decision.fusion = \"veto\""


@dataclass(frozen=True)
class LearnedFusion:
    """One logistic over the passive models' logits, learned by leave-one-person-out (``fusion_export``).

    Inputs: the two-view model's raw tight and context heads and each MiniFASNet's P(real) as a logit. The
    pair is a third and fourth vote, not only a veto: on the shared replays and real people it beat the veto
    on every figure measured (docs/training.md section 8). ``margin`` is in logit units from its own
    threshold, so the caller can put it on the liveness model's scale as ``fuse`` does."""

    weights: tuple[float, float, float, float]
    bias: float
    threshold: float
    view_scales: tuple[float, float]  # the model's outputs are the raw heads times these (2 x view weight)

    @classmethod
    def load(cls, path: str | Path, liveness_sha256: str, texture_sha256: dict[str, str], view_weights: dict) -> "LearnedFusion":
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"passive fusion {path} is missing: {_FIX}")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            w = tuple(float(v) for v in d["weights"])
            bias, thr = float(d["bias"]), float(d["threshold"])
            want_l, want_t = str(d["liveness_model_sha256"]).lower(), {k: str(v).lower() for k, v in d["texture_models_sha256"].items()}
            scales = (2 * float(view_weights["tight"]), 2 * float(view_weights["context"]))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError) as e:
            raise ModelError(f"passive fusion {path} is unreadable or lacks a field ({type(e).__name__}: {e}): {_FIX}") from None
        if len(w) != 4 or not 0.0 < thr < 1.0 or min(scales) <= 0:
            raise ModelError(f"passive fusion {path} has {len(w)} weights, threshold {thr}: expected 4 and (0, 1); {_FIX}")
        if want_l != liveness_sha256.lower() or want_t != {k: v.lower() for k, v in texture_sha256.items()}:
            raise ModelError(f"passive fusion {path.name} was fitted to other models than the ones loaded (sha256 differs): {_FIX}")
        return cls(w, bias, thr, scales)  # type: ignore[arg-type]

    def margin(self, view_logits: tuple[float, float], pair_p_real: tuple[float, ...]) -> float:
        """The fused logit minus its threshold's logit: >= 0 on the live side."""
        x = (view_logits[0] / self.view_scales[0], view_logits[1] / self.view_scales[1], logit(pair_p_real[0]), logit(pair_p_real[1]))
        z = sum(w * v for w, v in zip(self.weights, x)) + self.bias
        return z - logit(self.threshold)


def load_for(model_path: str | Path, liveness_sha256: str, texture_sha256: dict[str, str], view_weights: dict) -> LearnedFusion:
    """The fusion fitted to this liveness model: ``liveness_fusion.json`` beside it, else the bundled one when
    the model is the bundled model (a copy of it elsewhere needs nothing more); otherwise a ModelError."""
    from edge_liveness.vision.runtime import bundled_model_path

    beside = Path(model_path).parent / FUSION_FILE
    if beside.is_file():
        return LearnedFusion.load(beside, liveness_sha256, texture_sha256, view_weights)
    bundled = bundled_model_path(FUSION_FILE)
    try:
        fits = json.loads(bundled.read_text(encoding="utf-8")).get("liveness_model_sha256", "").lower() == liveness_sha256.lower()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        fits = False
    if not fits:
        raise ModelError(f"passive fusion {beside} is missing (the learned fusion is fitted to one liveness model): {_FIX}")
    return LearnedFusion.load(bundled, liveness_sha256, texture_sha256, view_weights)


def fuse_learned(fusion: LearnedFusion, view_logits: tuple[float, float], pair_p_real: tuple[float, ...],
                 primary_threshold: float, texture_threshold: float | None) -> float:
    """P(live) on the liveness model's scale from the learned fusion's margin; with ``texture_threshold`` the
    pair still vetoes on top (the smaller margin wins), so a confident "screen" is never outvoted."""
    margin = fusion.margin(view_logits, pair_p_real)
    if texture_threshold is not None:
        margin = min(margin, logit(sum(pair_p_real) / len(pair_p_real)) - logit(texture_threshold))
    return sigmoid(logit(primary_threshold) + margin)
