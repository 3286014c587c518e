"""A third LOPO view: a patch of the camera frame at its own resolution, never resized (issue 26, item 4).

The tight and context crops are downscaled to 128 px; a 300 px face shrunk that far loses what a
screen adds to it (pixel grid, moire, recapture blur). This view cuts ``size`` x ``size`` frame pixels
centred on the face's central skin (half way between the mesh's nose tip and the eyes' midpoint: nose
bridge and inner cheeks) and gives them to the same frozen MobileNetV2 (converters/passive/features.py).

Each row's source frame is read again and the face mesh run on it, as texture.py does for the
MiniFASNet pair. A patch that would leave the frame is shifted inside; a frame smaller than the patch
is first padded by edge replication. A row whose face the mesh does not find (the repositories' tight
crops, ``crops_*``, are whole face images) is cut at the image centre. Patch centres and features are
cached beside the LOPO features (``native_centres_<key>.npy``, ``native<size>[_mirror]_<key>.npy``),
keyed by the rows, the size and the backbone weights.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from converters.data.crop_folders import rows_of
from converters.data.dataset import DatasetError
from converters.lopo.data import Data
from converters.lopo.texture import _folders, _frames

NATIVE_PX = 96  # LOPO (native base alone): 96 beat 128 on prints and unseen real people, replay alike
_VERSION = "native-centre-v1"  # bump when the centre rule changes: cached centres are keyed by it
# how a row's centre was found (third column of the cached centres)
MESH, IMAGE_CENTRE, UNREADABLE = 1.0, 0.0, -1.0


def _rows(root: Path, data: Data) -> list[tuple[str, str, int]]:
    """(kind, source, frame) per LOPO row, in data.load's order."""
    rows: list[tuple[str, str, int]] = []
    paths: list[str] = []
    for d in _folders(root):
        kind = d.name.split("_", 1)[0]
        for r in rows_of(d):
            rows.append((kind, r.get("source") or str(r["path"]), int(r.get("frame") or 0)))
            paths.append(str(r["path"]))
    if paths != list(data.files):
        raise DatasetError(f"{root}: its index rows are not the LOPO rows ({len(paths)} vs {len(data.files)}): cut the data again")
    return rows


def face_centre(points: np.ndarray) -> tuple[float, float]:
    """Half way between the nose tip and the eyes' midpoint: skin on every face pose the mesh accepts."""
    from edge_liveness.vision.landmarks import LEFT_EYE_RING, NOSE_TIP, RIGHT_EYE_RING

    eyes = (points[list(LEFT_EYE_RING), :2].mean(0) + points[list(RIGHT_EYE_RING), :2].mean(0)) / 2
    c = (eyes + points[NOSE_TIP, :2]) / 2
    return float(c[0]), float(c[1])


def cut_patch(img: np.ndarray, cx: float, cy: float, size: int) -> tuple[np.ndarray, bool]:
    """(size x size pixels of ``img`` centred near (cx, cy), shifted inside the image; whether it was padded).
    No resampling: the patch holds the camera's own pixels."""
    import cv2

    h, w = img.shape[:2]
    padded = h < size or w < size
    if padded:  # a frame smaller than the patch: replicate its edges rather than invent a border colour
        py, px = max(0, size - h), max(0, size - w)
        img = cv2.copyMakeBorder(img, py // 2, py - py // 2, px // 2, px - px // 2, cv2.BORDER_REPLICATE)
        cx, cy = cx + px // 2, cy + py // 2
        h, w = img.shape[:2]
    x0 = int(np.clip(round(cx - size / 2), 0, w - size))
    y0 = int(np.clip(round(cy - size / 2), 0, h - size))
    return np.ascontiguousarray(img[y0:y0 + size, x0:x0 + size]), padded


def _by_source(rows: list[tuple[str, str, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for n, (_, src, _) in enumerate(rows):
        out.setdefault(src, []).append(n)
    return out


def _centre(finder, img: np.ndarray) -> tuple[float, float, float]:
    finder.reset()  # every row on its own, as the daemon's first frame: no tracking across rows
    view = finder.process(img)
    if view.landmarks is not None:
        return (*face_centre(view.landmarks.points), MESH)
    h, w = img.shape[:2]
    return (w - 1) / 2, (h - 1) / 2, IMAGE_CENTRE


def native_patches(root: Path, data: Data, size: int, cache: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, size, size, 3) RGB uint8 patches, one per LOPO row, and (N, 3) centres (x, y, how found:
    MESH / IMAGE_CENTRE / UNREADABLE). The mesh runs once; its centres are cached for other sizes."""
    rows = _rows(root, data)
    key = hashlib.sha256(repr((rows, _VERSION)).encode()).hexdigest()[:16]
    cached = (Path(cache) / f"native_centres_{key}.npy") if cache else None
    centres = np.load(cached) if cached is not None and cached.is_file() else None
    finder = None
    if centres is None:
        from converters.passive.minifasnet import face_finder

        finder = face_finder()
    found = np.zeros((len(rows), 3)) if centres is None else centres
    patches = np.zeros((len(rows), size, size, 3), np.uint8)
    n_padded, t0 = 0, time.monotonic()
    groups = _by_source(rows)
    for k, (src, idxs) in enumerate(groups.items()):
        frames = dict(_frames(src, [rows[n][2] for n in idxs]))
        for n in idxs:
            img = frames.get(rows[n][2])
            if img is None:
                found[n] = (0.0, 0.0, UNREADABLE)
                continue
            if finder is not None:
                found[n] = _centre(finder, img)
            patch, padded = cut_patch(img, found[n, 0], found[n, 1], size)
            patches[n] = patch[:, :, ::-1]  # BGR -> RGB, the features' input
            n_padded += padded
        if k % 50 == 0 or k == len(groups) - 1:
            print(f"native patches {size}px: {k + 1}/{len(groups)} sources ({time.monotonic() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
    _report(data, found, n_padded, size)
    if cached is not None and centres is None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(cached, found)
    return patches, found


def _report(data: Data, centres: np.ndarray, n_padded: int, size: int) -> None:
    how = centres[:, 2]
    parts = []
    for kind in sorted(set(data.kind.tolist())):
        m = data.kind == kind
        parts.append(f"{kind} {int((how[m] == IMAGE_CENTRE).sum())}/{int(m.sum())}")
    print(f"native patches {size}px: image-centre fallback (no face found) per kind: {', '.join(parts)}; "
          f"unreadable {int((how == UNREADABLE).sum())}; padded (frame smaller than the patch) {n_padded}",
          file=sys.stderr, flush=True)


def native_features(root: Path, data: Data, weights: str, cache: Path | None, size: int = NATIVE_PX,
                    mirror: bool = False) -> np.ndarray:
    """Frozen MobileNetV2 features of every row's native patch: (N, D), or with ``mirror`` (2, N, D)
    where [1] holds the features of the mirrored patches (same row order as data.load)."""
    from converters.passive.features import compute_features

    rows = _rows(root, data)
    wsha = hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:8]
    key = hashlib.sha256(repr((rows, _VERSION, size, wsha)).encode()).hexdigest()[:16]
    files = [Path(cache) / f"native{size}{tag}_{key}.npy" for tag in (("", "_mirror") if mirror else ("",))] if cache else []
    if files and all(f.is_file() for f in files):
        feats = [np.load(f) for f in files]
    else:
        patches, _ = native_patches(root, data, size, cache)
        # cache=None: the keyed files below replace compute_features' per-pixel cache (no second copy)
        feats = [compute_features(patches, size, weights, None, label=f"native{size}")]
        if mirror:
            feats.append(compute_features(np.ascontiguousarray(patches[:, :, ::-1]), size, weights, None,
                                          label=f"native{size}_mirror"))
        for f, x in zip(files, feats):
            f.parent.mkdir(parents=True, exist_ok=True)
            np.save(f, x)
    return np.stack(feats) if mirror else feats[0]


def write_examples(root: Path, data: Data, out: Path, size: int = NATIVE_PX, per_kind: int = 3,
                   cache: Path | None = None, seed: int = 0) -> list[Path]:
    """A few patches per folder kind and label as PNGs in ``out``, to look at what the view sees."""
    import cv2

    patches, centres = native_patches(root, data, size, cache)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in sorted(set(data.kind.tolist())):
        for lab in (0, 1):
            idx = np.flatnonzero((data.kind == kind) & (data.labels == lab))
            for n in rng.choice(idx, min(per_kind, len(idx)), replace=False) if len(idx) else []:
                how = {MESH: "mesh", IMAGE_CENTRE: "centre", UNREADABLE: "unreadable"}[float(centres[n, 2])]
                p = out / f"{size}_{kind}_{'live' if lab else 'spoof'}_{data.person[n]}_{n}_{how}.png"
                cv2.imwrite(str(p), patches[n][:, :, ::-1])
                written.append(p)
    return written
