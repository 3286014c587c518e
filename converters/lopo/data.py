"""The leave-one-person-out data set: every crop of a ``scripts/lopo_data.sh`` folder as frozen
MobileNetV2 features of both views, with who, what and which recording it is.

Folder names say what the context view is worth: ``frames_*`` were cut from full frames (real
context), ``crops_*`` from the repositories' tight face crops (tight view only), ``watermarked_*``
(td_selfies: a "Training Data" overlay across the frame) is never trained on and reported on its own.
With ``mirror`` the features of every crop's mirror image are computed too (same row order): a face
seen from the left side is as live as from the right, and the heads learn that from twice the views.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.data.crop_folders import rows_of
from converters.data.dataset import CONTEXT_DIR, IMAGE_EXT, DatasetError

FLAGGED = {"apfol": "its fake folder shows a second person: identity leaks into the label; left out of the means"}
N_GROUPS = 4


@dataclass
class Data:
    files: list[str]
    labels: np.ndarray  # 1 live, 0 spoof
    person: np.ndarray  # identity (crops_x and frames of x are one person)
    kind: np.ndarray  # frames | crops | watermarked | synth | synthcrops (synthetic recaptures: trained on by +synth recipes, never judged)
    attack: np.ndarray  # print | replay | ""
    photo: np.ndarray  # True: the crop comes from a still photo, not a video frame
    source: np.ndarray  # the video or photo the crop was cut from (one attempt)
    recording: np.ndarray  # the capture session (NUAA: subject_session): its frames of one label are one attempt
    tight: np.ndarray  # features
    context: np.ndarray  # features (rows of crops_* see a black border: judged only with --judge-crops)
    tight_mirror: np.ndarray | None = None  # features of the mirrored crops (load(mirror=True))
    context_mirror: np.ndarray | None = None
    native: np.ndarray | None = None  # native-resolution patch features (lopo/native.py): (N, D) or, mirrored too, (2, N, D)


def _identity(subject: str) -> str:
    return subject[len("crops_"):] if subject.startswith("crops_") else subject


def load(root: Path, weights: str, size: int | None, cache: Path | None, mirror: bool = False) -> Data:
    import cv2

    from converters.passive.features import compute_features

    folders = sorted(p for p in Path(root).iterdir() if p.is_dir() and (p / "index.csv").is_file())
    if not folders:
        raise DatasetError(f"{root}: no dataset folders (make them with scripts/lopo_data.sh)")
    parts: dict[str, list] = {k: [] for k in ("files", "labels", "person", "kind", "attack", "photo", "source", "recording",
                                               "tight", "context", "tight_mirror", "context_mirror")}
    for d in folders:
        meta = json.loads((d / "dataset.json").read_text())
        if "context" not in meta:
            raise DatasetError(f"{d} has no context crops: re-extract with `dataset extract --context-scale 2.7`")
        rows = rows_of(d)
        kind = d.name.split("_", 1)[0]
        s = int(meta["crop"]["size"])
        if size and s != size:
            raise DatasetError(f"{d} holds {s} px crops, not {size}: re-extract with --size {size}")
        for view, base in (("tight", d), ("context", d / CONTEXT_DIR)):
            imgs = []
            for r in rows:
                p = base / Path(r["path"]).relative_to(d.resolve())
                img = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if img is None:
                    raise DatasetError(f"{p}: missing or unreadable crop: re-extract {d.name}")
                imgs.append(img[:, :, ::-1])
            stack = np.ascontiguousarray(np.stack(imgs))
            parts[view].append(compute_features(stack, s, weights, cache, label=f"{d.name}_{view}"))
            if mirror:
                flipped = np.ascontiguousarray(stack[:, :, ::-1])
                parts[f"{view}_mirror"].append(compute_features(flipped, s, weights, cache, label=f"{d.name}_{view}_mirror"))
        parts["files"] += [str(r["path"]) for r in rows]
        parts["labels"] += [1 if r["label"] == "live" else 0 for r in rows]
        parts["person"] += [_identity(str(r["subject"])) for r in rows]
        parts["kind"] += [kind] * len(rows)
        parts["photo"] += [Path(r.get("source", "")).suffix.lower() in IMAGE_EXT for r in rows]
        parts["source"] += [r.get("source") or str(r["path"]) for r in rows]
        parts["recording"] += [f"{d.name}/{r.get('recording') or r.get('source') or r['path']}" for r in rows]
        parts["attack"] += [(r["attack_type"] or "replay") if r["label"] == "spoof" else "" for r in rows]
    return Data(parts["files"], np.array(parts["labels"]), np.array(parts["person"]), np.array(parts["kind"]),
                np.array(parts["attack"]), np.array(parts["photo"], bool), np.array(parts["source"]), np.array(parts["recording"]),
                np.concatenate(parts["tight"]), np.concatenate(parts["context"]),
                np.concatenate(parts["tight_mirror"]) if mirror else None,
                np.concatenate(parts["context_mirror"]) if mirror else None)


def real_only_groups(data: Data, seed: int = 0) -> list[list[str]]:
    """Bona-fide-only people (no real attack samples, not watermarked) in N_GROUPS seeded groups. A person
    whose only attacks are synthetic recaptures of them (synth_* folders) is still a real-only person."""
    attackers = set(data.person[(data.labels == 0) & ~np.isin(data.kind, ("synth", "synthcrops"))].tolist())
    people = sorted(set(data.person[(data.kind != "watermarked")].tolist()) - attackers)
    rng = np.random.default_rng(seed)
    rng.shuffle(people)
    return [sorted(people[i::N_GROUPS]) for i in range(N_GROUPS)]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def threshold_for_bpcer(live_scores: np.ndarray, target: float, attempts: np.ndarray | None = None) -> float:
    """Lowest threshold at which at most ``target`` of these live scores fall below it; with ``attempts`` (an
    attempt id per score: the recording or photo it came from) at most ``target`` of the attempts, each judged
    on the median of its scores, as the daemon decides one."""
    s = np.asarray(live_scores, np.float64)
    if attempts is not None:
        attempts = np.asarray(attempts)
        s = np.array([np.median(s[attempts == a]) for a in np.unique(attempts)])
    s = np.sort(s)
    k = int(np.floor(target * len(s)))  # this many may be rejected
    return float(s[k]) if len(s) else 0.5
