"""The recipes a leave-one-person-out run compares (converters/lopo/run.py): what each trains on and how
it scores a row.

A recipe is a base and optional modifiers, written ``base[+synth][+distil][+fusion][+ctxcap|+ctxsplit][+texture][+tuneT]``:
- bases (frozen ImageNet MobileNetV2 features + logistic heads, converters/passive/features.py):
  ``tight`` (the daemon's aligned crop, every kind of data), ``tight-frames`` (the same, frames_* only),
  ``context`` (the context crop alone), ``two-view-concat`` (one head on both views), ``two-view-fusion``
  (mean logit of a tight head and a context head), ``two-view-weighted`` (the same, every person weighing
  the same, fused 0.3 tight + 0.7 context: ``VIEW_WEIGHTS``), ``two-view-mirror`` (two-view-weighted on
  every crop and its mirror image: the shipped recipe), ``native`` (one head on a patch of the frame at the
  camera's own resolution, never resized: converters/lopo/native.py; every kind of data, like ``tight``),
  ``three-view`` (two-view-mirror's two heads + a native-patch head on the patch and its mirror image,
  every person weighing the same, fused 0.2 tight + 0.5 context + 0.3 native: ``THREE_VIEW_WEIGHTS``);
- ``+synth``: also trains on the synthetic screen recaptures of the training people (``synth_*`` folders of
  recaptured frames, ``synthcrops_*`` of recaptured tight crops, tight view only; scripts/recapture_synth.py)
  as replay attacks. Synthetic rows are never judged and never set a
  threshold: every number stays on real attacks and real people. Each synthetic person weighs like a real
  person, and the synthetic rows together hold ``SYNTH_SHARE`` of the attack class's weight, so the many
  synthesised people cannot drown the few real replays;
- ``+distil``: the heads learn a blend of the label and the MiniFASNet pair's P(real) on the same row
  (``DISTIL_ALPHA`` x label + the rest x the pair): the peer's knowledge of screens in the one MobileNetV2
  the device runs, with no second model at run time;
- ``+fusion``: one logistic over the view heads' and each MiniFASNet's logits, learned per fold on its training
  people by cross-fitting (converters/lopo/fusion.py);
- ``+ctxcap`` (after ``+fusion``): the context head's logit enters the fusion as min(logit, 0): the view may
  accuse (a bezel, a hand, a paper edge) but not vouch, since no bezel in view is no evidence of life;
  ``+ctxsplit``: its two halves, min(logit, 0) and max(logit, 0), enter as two inputs with weights of their own;
- ``+texture``: the MiniFASNet pair vetoes at run time (converters/lopo/texture.py);
- ``+tuneT``: the veto's T chosen per fold on its training people, not fixed (converters/lopo/fusion.py).
"""

from __future__ import annotations

import numpy as np

from converters.data.dataset import DatasetError

BASE_RECIPES = ("tight", "tight-frames", "context", "two-view-concat", "two-view-fusion", "two-view-weighted", "two-view-mirror",
                "native", "three-view")
SYNTH, DISTIL, FUSION, TEXTURE, TUNED = "+synth", "+distil", "+fusion", "+texture", "+tuneT"
CTX_CAP, CTX_SPLIT = "+ctxcap", "+ctxsplit"  # how the context head enters a +fusion (converters/lopo/fusion.py)
MODIFIERS = (SYNTH, DISTIL, FUSION, CTX_CAP, CTX_SPLIT, TEXTURE, TUNED)  # in this order after the base
# the recipes a plain run compares (any base+modifiers combination is accepted by name)
RECIPES = BASE_RECIPES + ("tight" + TEXTURE, "two-view-mirror" + TEXTURE)
CONTEXT_BASES = ("two-view-weighted", "two-view-mirror", "three-view")  # a weighted context head: two_view_heads()
FUSED_BASES = ("tight", "tight-frames") + CONTEXT_BASES  # +fusion: view_names()
MIRRORED_BASES = {"two-view-mirror", "three-view"}  # bases that also train on every crop's mirror image (data.load(mirror=True))
NATIVE_BASES = {"native", "three-view"}  # bases that need Data.native (converters/lopo/native.py)
ALL_KINDS_BASES = ("tight", "native")  # trained and judged on every kind of crop; the others on full frames only
# two-view-weighted: the fused logit leans on the context view, which generalises to new people and
# prints (NUAA 0006's prints fool the tight view), and keeps the tight view for faces seen up close
VIEW_WEIGHTS = (0.3, 0.7)
# three-view: the native patch (the screen's pixel grid and moire, which downscaling averages away) takes
# a share of both, the context view keeps the largest
THREE_VIEW_WEIGHTS = (0.2, 0.5, 0.3)
SYNTH_KINDS = ("synth", "synthcrops")  # folders synth_* (recaptured frames) and synthcrops_* (recaptured tight crops: tight view only)
SYNTH_SHARE = 0.5  # the synthetic replays' share of the attack class's training weight (+synth)
DISTIL_ALPHA = 0.5  # the label's share of a +distil target; the pair's P(real) has the rest


def parse(name: str) -> tuple[str, set[str]]:
    """(base, modifiers) of a recipe name; one line naming the choices when it is not one."""
    base, mods, rest = name, set(), name
    for m in reversed(MODIFIERS):
        if rest.endswith(m):
            mods.add(m)
            rest = rest[: -len(m)]
    base = rest
    if base not in BASE_RECIPES or name != base + "".join(m for m in MODIFIERS if m in mods):
        raise DatasetError(f"unknown recipe {name!r} (a base: {', '.join(BASE_RECIPES)}; then any of "
                           f"{' '.join(MODIFIERS)} in that order)")
    return base, mods


def mirrored(names: list[str]) -> bool:
    return any(parse(n)[0] in MIRRORED_BASES for n in names)


def needs_texture(names: list[str]) -> bool:
    return any(parse(n)[1] & {DISTIL, FUSION, TEXTURE} for n in names)


def needs_texture_models(names: list[str]) -> bool:
    """Whether a recipe fuses each MiniFASNet's own score (texture.texture_model_scores)."""
    return any(FUSION in parse(n)[1] for n in names)


def needs_native(names: list[str]) -> bool:
    return any(parse(n)[0] in NATIVE_BASES for n in names)


def needs_synth(names: list[str]) -> bool:
    return any(SYNTH in parse(n)[1] for n in names)


def balanced_weights(labels: np.ndarray, person: np.ndarray, synth: np.ndarray, share: float = SYNTH_SHARE) -> np.ndarray:
    """Every person the same total weight within each class (a synthetic person counts apart from the
    same real person), then the synthetic rows rescaled to ``share`` of their class's weight."""
    from converters.passive.features import person_balanced_weights

    key = np.where(synth, np.char.add("synth/", person.astype(str)), person.astype(str))
    w = person_balanced_weights(labels, key)
    for lab in np.unique(labels[synth]):
        s, r = synth & (labels == lab), ~synth & (labels == lab)
        if r.any() and s.any():
            total = w[s].sum() + w[r].sum()
            w[s] *= share * total / w[s].sum()
            w[r] *= (1 - share) * total / w[r].sum()
    return w


class Recipe:
    """fit(mask) -> scorer(idx) -> logits, for one recipe over ``data``."""

    def __init__(self, name: str, data, l2: float, texture: np.ndarray | None = None, texture_threshold: float = 0.5,
                 synth_share: float = SYNTH_SHARE, texture_models: np.ndarray | None = None, judge_crops: bool = False):
        base, mods = parse(name)
        if mods & {DISTIL, TEXTURE, FUSION} and texture is None:
            raise DatasetError(f"recipe {name} needs the texture pair's scores (texture.texture_scores)")
        if FUSION in mods and texture_models is None:
            raise DatasetError(f"recipe {name} needs each MiniFASNet's scores (texture.texture_model_scores)")
        if TUNED in mods and TEXTURE not in mods:
            raise DatasetError(f"recipe {name}: {TUNED} tunes the veto of {TEXTURE}: write {base}...{TEXTURE}{TUNED}")
        if FUSION in mods and base not in FUSED_BASES:
            raise DatasetError(f"recipe {name}: {FUSION} fuses the view heads of {', '.join(FUSED_BASES)}")
        ctx = mods & {CTX_CAP, CTX_SPLIT}
        if ctx and (FUSION not in mods or base not in CONTEXT_BASES or len(ctx) > 1):
            raise DatasetError(f"recipe {name}: {CTX_CAP} or {CTX_SPLIT} (one of them) shapes the context head's input "
                               f"to {FUSION} of a base with a context view")
        synth = np.isin(data.kind, SYNTH_KINDS)
        if SYNTH in mods and not synth.any():
            raise DatasetError(f"recipe {name} needs synth_* folders: cut them with scripts/lopo_data.sh --synth")
        if base in NATIVE_BASES and data.native is None:
            raise DatasetError(f"recipe {name} needs the native patches' features (converters/lopo/native.py native_features)")
        self.name, self.base, self.mods, self.d, self.l2 = name, base, mods, data, l2
        self.texture, self.texture_threshold = texture, texture_threshold
        self.synth, self.synth_share = synth, synth_share
        self.texture_models, self.notes = texture_models, []  # notes: what each fold's fusion learned (fusion.summary)
        frames = np.isin(data.kind, ("frames", "synth"))  # a synthetic recapture of a frame is a whole camera frame
        use = (data.kind != "watermarked") & (~synth | (SYNTH in mods))
        self.train_ok = use & (frames if base not in ALL_KINDS_BASES else True)
        self.train_tight = use  # the two-view recipes' tight head learns from every kind of crop
        judged = ~synth
        self.eval_ok = judged & ((frames | (data.kind == "watermarked")) if base not in ALL_KINDS_BASES else True)
        if judge_crops:  # also judge the tight repository crops as the daemon would (context: their black border)
            self.eval_ok = self.eval_ok | (judged & (data.kind == "crops"))

    def targets(self) -> np.ndarray:
        y = self.d.labels.astype(np.float32)
        if DISTIL in self.mods:
            y = DISTIL_ALPHA * y + (1 - DISTIL_ALPHA) * self.texture.astype(np.float32)
        return y

    def fit(self, mask: np.ndarray):
        if self.mods & {FUSION, TUNED}:
            from converters.lopo.fusion import fit_recipe

            return fit_recipe(self, mask)
        score = self._fit_base(mask)
        if TEXTURE not in self.mods:
            return score
        from converters.lopo.texture import TextureVeto

        return TextureVeto(score, self.texture, self.texture_threshold)

    def _head(self, x: np.ndarray, m: np.ndarray, balanced: bool, mirror: np.ndarray | None = None):
        from converters.passive.features import fit_logistic

        d, y = self.d, self.targets()
        labels, person, synth = d.labels[m], d.person[m], self.synth[m]
        xs, ys = x[m], y[m]
        if mirror is not None:
            xs, ys = np.concatenate([xs, mirror[m]]), np.concatenate([ys, ys])
            labels, person, synth = (np.concatenate([a, a]) for a in (labels, person, synth))
        share = self.synth_share
        w = balanced_weights(labels, person, synth, share) if balanced else (
            balanced_weights(labels, np.full(len(labels), "all"), synth, share) if synth.any() else None)
        return fit_logistic(xs, ys, self.l2, sample_weight=w, classes=labels)

    def _fit_base(self, mask: np.ndarray):
        d, m, b = self.d, mask & self.train_ok, self.base
        if b in ("tight", "tight-frames"):
            h = self._head(d.tight, m, balanced=False)
            return lambda idx: h.logit(d.tight[idx])
        if b == "native":
            x = self.native()[0]
            h = self._head(x, m, balanced=False)
            return lambda idx: h.logit(x[idx])
        if b == "context":
            h = self._head(d.context, m, balanced=False)
            return lambda idx: h.logit(d.context[idx])
        if b == "two-view-concat":
            x = np.concatenate([d.tight, d.context], 1)
            h = self._head(x, m, balanced=False)
            return lambda idx: h.logit(x[idx])
        if b in ("two-view-weighted", "two-view-mirror"):
            ht, hc = self.two_view_heads(mask)
            return lambda idx: VIEW_WEIGHTS[0] * ht.logit(d.tight[idx]) + VIEW_WEIGHTS[1] * hc.logit(d.context[idx])
        if b == "three-view":
            x, x_mirror = self.native()
            if x_mirror is None:
                raise DatasetError(f"recipe {self.name} needs the mirrored patches' features: native_features(..., mirror=True)")
            ht, hc = self.two_view_heads(mask)
            # like the tight head, the patch head learns from every kind of crop (a tight crop's centre is skin too)
            hn = self._head(x, mask & self.train_tight, True, x_mirror)
            wt, wc, wn = THREE_VIEW_WEIGHTS
            return lambda idx: wt * ht.logit(d.tight[idx]) + wc * hc.logit(d.context[idx]) + wn * hn.logit(x[idx])
        mt = mask & self.train_tight  # the tight head learns from every person, the context head from full frames
        ht = self._head(d.tight, mt, balanced=False)
        hc = self._head(d.context, m, balanced=False)
        return lambda idx: 0.5 * (ht.logit(d.tight[idx]) + hc.logit(d.context[idx]))

    def native(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(native patch features, their mirrored patches' features or None) of Data.native: (N, D) or (2, N, D)."""
        x = self.d.native
        return (x[0], x[1]) if x.ndim == 3 else (x, None)

    def two_view_heads(self, mask: np.ndarray):
        """(tight head, context head) of a two-view-weighted/-mirror or three-view base on the rows in ``mask``: the
        tight head learns from every kind of crop, the context head from full frames (and synthetic recaptures)."""
        d = self.d
        if self.base not in CONTEXT_BASES:
            raise DatasetError(f"recipe {self.name} has no weighted two-view heads")
        mirror_t = mirror_c = None
        if self.base in MIRRORED_BASES:
            if d.tight_mirror is None or d.context_mirror is None:
                raise DatasetError(f"recipe {self.name} needs the mirrored crops' features: load(..., mirror=True)")
            mirror_t, mirror_c = d.tight_mirror, d.context_mirror
        ht = self._head(d.tight, mask & self.train_tight, True, mirror_t)
        hc = self._head(d.context, mask & self.train_ok, True, mirror_c)
        return ht, hc

    def view_names(self) -> list[str]:
        """The view heads a +fusion recipe fuses (converters/lopo/fusion.py), in views() order."""
        if self.base in ("tight", "tight-frames"):
            return ["tight"]
        ctx = ["context_accuse", "context_vouch"] if CTX_SPLIT in self.mods else ["context"]
        return ["tight"] + ctx + (["native"] if self.base == "three-view" else [])

    def views(self, mask: np.ndarray):
        """idx -> (n, k) logits of each view head trained on the rows in ``mask`` (view_names order)."""
        d = self.d
        if self.base in ("tight", "tight-frames"):
            h = self._head(d.tight, mask & self.train_ok, balanced=False)
            return lambda idx: h.logit(d.tight[idx])[:, None]
        ht, hc = self.two_view_heads(mask)
        ctx = self._context_inputs
        if self.base != "three-view":
            return lambda idx: np.stack([ht.logit(d.tight[idx]), *ctx(hc.logit(d.context[idx]))], 1)
        x, x_mirror = self.native()
        hn = self._head(x, mask & self.train_tight, True, x_mirror)
        return lambda idx: np.stack([ht.logit(d.tight[idx]), *ctx(hc.logit(d.context[idx])), hn.logit(x[idx])], 1)

    def _context_inputs(self, z: np.ndarray) -> list[np.ndarray]:
        """The context head's logit as the fusion takes it (+ctxcap, +ctxsplit; as it is otherwise)."""
        if CTX_CAP in self.mods:
            return [np.minimum(z, 0.0)]
        if CTX_SPLIT in self.mods:
            return [np.minimum(z, 0.0), np.maximum(z, 0.0)]
        return [z]
