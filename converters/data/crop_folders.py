"""Dataset folders read back (train, convert, LOPO): labelled crops from ``index.csv`` or live/spoof
folder names, and a subset of subjects copied into a new folder."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.data.dataset import (IMAGE_EXT, LIVE_NAMES, SPOOF_NAMES, DatasetError, DatasetWriter, attack_type_from_path,
                      label_from_path)

log = logging.getLogger("converters.crop_folders")


@dataclass
class CropSet:
    """Labelled face crops in memory: RGB uint8 (N,S,S,3), labels 1 = live / 0 = spoof."""

    images: np.ndarray
    labels: np.ndarray
    subjects: list[str]
    attack_types: list[str]
    files: list[str]
    crop: dict | None = None  # {"size", "margin"} from dataset.json when known

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> "CropSet":
        idx = np.flatnonzero(mask)
        return CropSet(self.images[idx], self.labels[idx], [self.subjects[i] for i in idx],
                       [self.attack_types[i] for i in idx], [self.files[i] for i in idx], self.crop)


def rows_of(d: Path) -> list[dict]:
    """index.csv rows of every dataset under ``d``; folders without one: files labelled by path."""
    rows = []
    indexes = sorted(d.rglob("index.csv")) if d.is_dir() else []
    covered = set()
    for idx in indexes:
        with open(idx, newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                if not r.get("file"):
                    continue
                p = (idx.parent / r["file"]).resolve()
                label = (r.get("label") or "").lower()
                label = "live" if label in LIVE_NAMES else "spoof" if label in SPOOF_NAMES else label_from_path(p)
                if label is None:
                    continue
                rows.append({"path": p, "label": label, "subject": r.get("subject") or r.get("person") or idx.parent.name,
                             "attack_type": r.get("attack_type") or "", "source": r.get("source") or "",
                             "frame": int(r.get("frame") or 0), "recording": r.get("recording") or ""})
                covered.add(p)
    if not indexes:
        for p in sorted(d.rglob("*")) if d.is_dir() else [d]:
            if p.is_file() and p.suffix.lower() in IMAGE_EXT and p.resolve() not in covered:
                label = label_from_path(p)
                if label:
                    rows.append({"path": p.resolve(), "label": label, "subject": p.parent.name,
                                 "attack_type": attack_type_from_path(p) or "" if label == "spoof" else ""})
    return rows


def load_crops(dirs: list[Path] | Path, size: int | None = None, exclude_subjects: set[str] | None = None,
               only_subjects: set[str] | None = None, limit: int | None = None, seed: int = 0) -> CropSet:
    """Read the crops of one or more dataset folders (``index.csv`` or live/spoof folder names).

    ``size``: crops of another size are resized (INTER_AREA) with a warning; crops should be cut at
    the model's input size, since resampling changes exactly the texture the model looks at.
    """
    import cv2

    dirs = [Path(dirs)] if isinstance(dirs, (str, Path)) else [Path(d) for d in dirs]
    rows: list[dict] = []
    crop_meta = None
    for d in dirs:
        if not d.exists():
            raise DatasetError(f"{d}: no such dataset folder (make one with `edge-liveness dataset extract`)")
        rows += rows_of(d)
        for meta in (sorted(d.rglob("dataset.json")) if d.is_dir() else []):
            c = json.loads(meta.read_text()).get("crop")
            if crop_meta is not None and c != crop_meta:
                raise DatasetError(f"{meta.parent} has crops {c}, others have {crop_meta}: train on crops of one size and margin")
            crop_meta = c
    if exclude_subjects:
        rows = [r for r in rows if r["subject"] not in exclude_subjects]
    if only_subjects is not None:
        rows = [r for r in rows if r["subject"] in only_subjects]
    if limit and len(rows) > limit:
        rng = np.random.default_rng(seed)
        rows = [rows[i] for i in sorted(rng.choice(len(rows), limit, replace=False))]
    if not rows:
        raise DatasetError(f"no labelled face crops under {', '.join(map(str, dirs))} (need index.csv or live/spoof folders)")
    size = size or (crop_meta or {}).get("size")
    images, keep = [], []
    resized = 0
    for r in rows:
        img = cv2.imread(str(r["path"]), cv2.IMREAD_COLOR)
        if img is None:
            log.warning("unreadable crop %s skipped", r["path"])
            continue
        if size is None:
            size = img.shape[0]
        if img.shape[:2] != (size, size):
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            resized += 1
        images.append(img[:, :, ::-1])
        keep.append(r)
    if resized:
        log.warning("%d crops were not %dx%d and were resized: cut crops at the model's input size instead", resized, size, size)
    return CropSet(np.ascontiguousarray(np.stack(images)), np.array([1 if r["label"] == "live" else 0 for r in keep], np.int64),
                   [str(r["subject"]) for r in keep], [str(r["attack_type"]) for r in keep], [str(r["path"]) for r in keep], crop_meta)


def copy_subset(dirs: list[Path], out: Path, only_subjects: set[str] | None = None,
                exclude_subjects: set[str] | None = None) -> int:
    """Copy the crops of some subjects from dataset folders into one new dataset folder.

    Used to make the calibration / validation / test folders of scripts/train_default_model.sh, so
    that `convert --calibration` and `--threshold-data` never see a held-out person.
    """
    import shutil

    out = Path(out)
    n = 0
    metas = {json.dumps(json.loads(m.read_text()).get("crop"), sort_keys=True) for d in dirs for m in Path(d).rglob("dataset.json")}
    if len(metas) > 1:
        raise DatasetError(f"source folders mix crop settings {sorted(metas)}")
    crop = json.loads(metas.pop()) if metas else None
    writer = DatasetWriter(out, crop["size"], crop["margin"]) if crop else None
    if writer is None:
        raise DatasetError("copy_subset needs folders made by `dataset extract` (dataset.json)")
    try:
        for d in dirs:
            for r in rows_of(Path(d)):
                if only_subjects is not None and r["subject"] not in only_subjects:
                    continue
                if exclude_subjects and r["subject"] in exclude_subjects:
                    continue
                name = f"{Path(d).name}__{r['path'].stem}"
                rel = Path(r["label"]) / f"{name}.png"
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(r["path"], out / rel)
                writer.add_row({"file": rel.as_posix(), "label": r["label"], "source": str(r["path"]), "frame": "",
                                "subject": r["subject"], "recording": "", "attack_type": r["attack_type"]})
                n += 1
    finally:
        writer.close()
    return n
