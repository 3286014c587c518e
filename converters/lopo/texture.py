"""The texture pair's opinion on every LOPO crop, and the fusion that lets it veto (issue 26).

The MiniFASNet pair (``edge_liveness.liveness.minifasnet``) is a frozen peer model: nothing of it is
trained here, so scoring every person with it is already "leave everyone out". What LOPO has to
settle is the fusion: ``fused = min(l_primary, l_texture + c)`` in logit units, with the offset ``c``
set, in each fold, on the same unseen real people the fold's threshold comes from (so both models
lose about the same share of them), never on an attack.

Each row is scored the way the daemon would score it: the row's source frame is read again (its
``frame`` in the folder's index.csv), the face mesh finds the face, ``minifasnet.face_box`` frames it,
and the pair scores the shift-inside crops. Tight repository crops (``crops_*``) have no frame
around the face: the whole image is the box when no face is found. Scores are cached beside the
LOPO features (``texture_<hash>.npy``), keyed by the rows and the models' sha256.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from converters.data.crop_folders import rows_of
from converters.data.dataset import DatasetError
from converters.lopo.data import Data, threshold_for_bpcer

_EPS = 1e-6


def _frames(source: str, indices: list[int]):
    """(index, BGR frame) for the wanted frame indices of a video, or the image itself."""
    import cv2

    path = Path(source)
    if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".pgm"):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        for i in indices:
            yield i, img
        return
    want = sorted(set(indices))
    cap = cv2.VideoCapture(str(path))
    try:
        pos = 0
        for i in want:
            while pos < i and cap.grab():
                pos += 1
            ok, img = cap.read()
            pos += 1
            yield i, (img if ok else None)
    finally:
        cap.release()


def _folders(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).iterdir() if p.is_dir() and (p / "index.csv").is_file())


def row_faces(rows: list[tuple[str, str, int]], every: int = 20):
    """(row number, BGR frame, the pair's face box) for each (kind, source, frame) row whose face is found (kind: the
    folder's kind or its whole name, ``crops`` / ``crops_vishal``), the way
    the daemon would frame it: the face mesh finds the face on the row's own frame and ``minifasnet.face_box``
    frames it; a tight repository crop (kind ``crops``, no frame around the face) is its own box when no face is
    found. Reads each source once; progress every ``every`` sources on stderr."""
    from converters.passive.minifasnet import face_finder
    from edge_liveness.liveness import minifasnet as mf

    finder = face_finder()
    by_source: dict[str, list[int]] = {}
    for n, (_, src, _) in enumerate(rows):
        by_source.setdefault(src, []).append(n)
    t0 = time.monotonic()
    for k, (src, idxs) in enumerate(by_source.items()):
        frames = dict(_frames(src, [rows[n][2] for n in idxs]))
        for n in idxs:
            img = frames.get(rows[n][2])
            if img is None:
                continue
            finder.reset()
            view = finder.process(img)
            if view.landmarks is not None:
                yield n, img, mf.face_box(view.landmarks)
            elif rows[n][0].split("_", 1)[0] == "crops":
                h, w = img.shape[:2]
                yield n, img, (0.0, 0.0, float(w - 1), float(h - 1))
        if k % every == 0:
            print(f"row faces: {k + 1}/{len(by_source)} sources ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)


def texture_scores(root: Path, data: Data, cache: Path | None = None) -> np.ndarray:
    """P(real) of the int8 MiniFASNet pair for every row of ``data`` (same order as data.load)."""
    return _pair_scores(root, data, cache, per_model=False)


def texture_model_scores(root: Path, data: Data, cache: Path | None = None) -> np.ndarray:
    """(N, 2): each model's P(real) (MiniFASNet V2, V1SE: ``MODEL_NAMES`` order) for every row of ``data``,
    cached as ``texture_models_<hash>.npy`` (same key as the pair's mean; one scoring pass fills both)."""
    return _pair_scores(root, data, cache, per_model=True)


def _pair_scores(root: Path, data: Data, cache: Path | None, per_model: bool) -> np.ndarray:
    from edge_liveness.liveness import minifasnet as mf

    pair = mf.MiniFASNetPair(num_threads=1)
    rows: list[tuple[str, str, int]] = []  # (kind, source, frame)
    for d in _folders(root):
        kind = d.name.split("_", 1)[0]
        rows += [(kind, r.get("source") or str(r["path"]), int(r.get("frame") or 0)) for r in rows_of(d)]
    if len(rows) != len(data.labels):
        raise DatasetError(f"{root}: {len(rows)} index rows but {len(data.labels)} LOPO rows: cut the data again")
    key = hashlib.sha256(repr((rows, [m.sha256 for m in pair.models])).encode()).hexdigest()[:16]
    cached = (cache / f"texture_{key}.npy") if cache else None
    cached_models = (cache / f"texture_models_{key}.npy") if cache else None
    want = cached_models if per_model else cached
    if want is not None and want.is_file():
        return np.load(want)
    out = np.full(len(rows), np.nan)
    each = np.full((len(rows), len(pair.models)), np.nan)
    for n, img, box in row_faces(rows):
        ps = pair.score(img, box)
        out[n], each[n] = ps.p_real, ps.per_model
    # a frame whose face the mesh no longer finds gets no vote from the pair (the daemon would not score it)
    out = np.where(np.isnan(out), 1.0 - _EPS, out)
    each = np.where(np.isnan(each), 1.0 - _EPS, each)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        if not cached.is_file():  # an existing mean cache stays as it was
            np.save(cached, out)
        np.save(cached_models, each)
    return each if per_model else out


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


class TextureVeto:
    """``score(idx) = min(primary(idx), logit(p_texture[idx]) - logit(T) + t)``: the texture pair vetoes a
    frame it scores under ``T`` (its own P(real) scale), and otherwise the primary decides at its own
    threshold ``t``. ``align`` sets ``t`` on a group of unseen real people (the primary's target BPCER)
    and returns it, so the veto never lowers the primary's bar; ``T`` is fixed beforehand, not tuned
    on any fold's attacks."""

    def __init__(self, primary, p_texture: np.ndarray, texture_threshold: float = 0.5):
        self.primary, self.l_tex = primary, logit(p_texture)
        self.l_T = float(logit(np.array([texture_threshold]))[0])
        self.t = 0.0

    def align(self, live_idx: np.ndarray, target_bpcer: float, attempts: np.ndarray | None = None) -> float:
        """The primary's threshold (logit) for ``target_bpcer`` on these live rows (of their attempts, when
        ``attempts`` names each row's); the fused score uses it."""
        self.t = float(threshold_for_bpcer(self.primary(live_idx), target_bpcer, attempts))
        return self.t

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        return np.minimum(self.primary(idx), self.l_tex[idx] - self.l_T + self.t)
