"""Two passive opinions, one verdict: the face passes only where both models call it live.

The shipped MobileNetV2 reads the face and its surroundings (bezel, hand, paper edge); the texture
pair (MiniFASNet, ``minifasnet.py``) reads what a screen does to the face itself. Averaging them
would let the context view outvote a confident "screen" when the screen fills the view, which is
exactly the replay that got through. So the fused score is the *smaller* of the two margins, each
measured in logit units from its own model's threshold, and mapped back onto the primary model's
scale: ``fused >= primary threshold`` exactly when both models are on the live side, and the
decision engine, its threshold and ``decision.pass_margin`` keep their meaning.
"""

from __future__ import annotations

import math

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
