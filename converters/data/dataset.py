"""`edge-liveness dataset extract`: aligned face crops from videos and image folders (workstation).

Faces are found and cut with the daemon's own functions (BlazeFace detector -> face mesh ->
``align.align_crop`` with the mesh's anchors), so training crops match what the device classifies.
One PNG per face (lossless: JPEG would blur the moire and print texture the model learns from) and
an ``index.csv`` with file, label, source, frame, subject, recording and attack type. Writes only under
``--out``; several extracts may go into one folder (rows are appended, a crop cut again replaces its
row; crop size and margin must match, recorded in ``dataset.json``). Reading the folders back is
converters/data/crop_folders.py.

Subjects: a source folder's own ``index.csv`` (NUAA: ``subject``; selfie_replay_more: ``person`` and
``attack_type``) is read when present so the training split can keep each person on one side;
``--subject`` overrides it. Videos are one recording each.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from edge_liveness.cli.progress import progress_line

log = logging.getLogger("converters.dataset")

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
VIDEO_EXT = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".3gp"}
INDEX_FIELDS = ("file", "label", "source", "frame", "subject", "recording", "attack_type")
LIVE_NAMES = {"live", "real", "living", "bonafide", "bona_fide", "genuine"}
SPOOF_NAMES = {"spoof", "fake", "attack", "attacks", "print", "replay", "screen"}
DEFAULT_SIZE = 128
DEFAULT_MARGIN = 0.25
CONTEXT_DIR = "context"  # context crops of a dataset folder: <out>/context/<label>/<same name>.png


class DatasetError(ValueError):
    """Bad extraction input (message is one line naming the fix)."""


@dataclass
class ExtractStats:
    frames: int = 0
    faces: int = 0
    no_face: int = 0
    multiple_faces: int = 0
    unreadable: list[str] = field(default_factory=list)
    skipped_non_media: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"frames": self.frames, "faces": self.faces, "no_face": self.no_face, "multiple_faces": self.multiple_faces,
                "unreadable": len(self.unreadable), "non_media": len(self.skipped_non_media)}


class FaceCropper:
    """Detector + face mesh + aligned crop, as the daemon does it for one frame (no tracking).

    ``crop(frame_bgr)`` returns (crop or None, number of faces found). With several faces the largest
    is used (NUAA frames often show a bystander behind the subject).
    """

    def __init__(self, size: int, margin: float, settings=None, context_scale: float | None = None):
        from edge_liveness.config import load_settings
        from edge_liveness.vision.face import FaceDetector
        from edge_liveness.vision.landmarks import Landmarker

        settings = settings or load_settings(None)
        self.detector = FaceDetector.from_settings(settings)
        self.landmarker = Landmarker.from_settings(settings)
        self.size, self.margin = int(size), float(margin)
        self.context_scale = None if context_scale is None else float(context_scale)

    def crop(self, frame_bgr: np.ndarray) -> tuple[np.ndarray | None, int]:
        tight, _, n = self.crop_views(frame_bgr)
        return tight, n

    def crop_views(self, frame_bgr: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None, int]:
        """(tight crop, context crop or None when no ``context_scale``, number of faces); both from the same anchors."""
        v = self.views(frame_bgr)
        return v.tight, v.context, v.n_faces

    def views(self, frame_bgr: np.ndarray) -> "CropViews":
        """The largest face's crops and its mesh (None when the mesh did not take: the detector's anchors cut the crops)."""
        from edge_liveness.vision.align import align_crop, context_crop

        faces = self.detector.detect(frame_bgr)
        if not faces:
            return CropViews(None, None, 0, None)
        face = max(faces, key=lambda f: f.area)
        lm = self.landmarker.run(frame_bgr, face.anchors())
        if lm is not None and lm.presence < 0.5:
            lm = None
        anchors = lm.anchors() if lm is not None else face.anchors()
        tight = align_crop(frame_bgr, anchors, self.size, self.margin).image
        ctx = context_crop(frame_bgr, anchors, self.size, self.context_scale) if self.context_scale else None
        return CropViews(tight, None if ctx is None else ctx.image, len(faces), lm,
                         None if ctx is None else ctx.inside_share(frame_bgr.shape))


@dataclass
class CropViews:
    tight: np.ndarray | None
    context: np.ndarray | None
    n_faces: int
    landmarks: object | None  # edge_liveness.vision.landmarks.FaceLandmarks of the largest face, when the mesh took
    context_inside: float | None = None  # share of the context view inside the image (AlignedCrop.inside_share)


def label_from_path(path: Path) -> str | None:
    """'live' / 'spoof' from the nearest folder named like a label, else None."""
    for part in reversed(path.parts[:-1]):
        p = part.lower()
        if p in LIVE_NAMES:
            return "live"
        if p in SPOOF_NAMES:
            return "spoof"
    return None


def attack_type_from_path(path: Path) -> str | None:
    for part in reversed(path.parts):
        p = part.lower()
        for t in ("print", "replay", "screen", "mask", "photo"):
            if t in p:
                return {"photo": "print", "screen": "replay"}.get(t, t)
    return None


def _source_index(src: Path) -> dict[str, dict[str, str]]:
    """Rows of the nearest index.csv at or above ``src`` (up to 3 levels), keyed by resolved file path."""
    start = src if src.is_dir() else src.parent
    for d in [start, *list(start.parents)[:3]]:
        idx = d / "index.csv"
        if idx.is_file():
            out = {}
            with open(idx, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    if row.get("file"):
                        out[str((d / row["file"]).resolve())] = row
            return out
    return {}


def iter_media(src: Path, stats: ExtractStats) -> Iterator[Path]:
    if src.is_file():
        yield src
        return
    for p in sorted(src.rglob("*")):
        if not p.is_file():
            continue
        ext = p.suffix.lower()
        if ext in IMAGE_EXT or ext in VIDEO_EXT:
            yield p
        elif p.name != "index.csv":
            stats.skipped_non_media.append(str(p))


def read_frames(path: Path, every: int, stats: ExtractStats) -> Iterator[tuple[int, np.ndarray]]:
    import cv2

    if path.suffix.lower() in VIDEO_EXT:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            stats.unreadable.append(str(path))
            return
        i = 0
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if i % every == 0:
                    yield i, frame
                i += 1
        finally:
            cap.release()
        if i == 0:
            stats.unreadable.append(str(path))
        return
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:  # GIF and friends: OpenCV's image reader may refuse them; the video reader may not
        cap = cv2.VideoCapture(str(path))
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        cap.release()
        img = frame if ok else None
    if img is None:
        stats.unreadable.append(str(path))
        return
    yield 0, img


class DatasetWriter:
    """Crops under ``out/<label>/`` and rows appended to ``out/index.csv``.

    With ``context_scale`` each face's context crop goes to ``out/context/<label>/`` under the same
    name (the index stays one row per face, so both views of a face share its subject and split).
    """

    def __init__(self, out: Path, size: int, margin: float, context_scale: float | None = None):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        meta = self.out / "dataset.json"
        want = {"crop": {"size": int(size), "margin": float(margin)}}
        if context_scale is not None:
            want["context"] = {"size": int(size), "scale": float(context_scale)}
        if meta.is_file():
            have = json.loads(meta.read_text())
            if have.get("crop") != want["crop"]:
                raise DatasetError(f"{self.out} holds crops made with {have.get('crop')}, not {want['crop']}: use another --out or the same --size/--margin")
            if have.get("context") != want.get("context"):
                raise DatasetError(f"{self.out} holds context crops {have.get('context')}, not {want.get('context')}: "
                                   f"use another --out or the same --context-scale")
        else:
            meta.write_text(json.dumps(want, indent=2) + "\n")
        self.index = self.out / "index.csv"
        new = not self.index.is_file()
        # a crop cut again (the same source into the same folder) replaces its row on close: appending
        # first keeps every row safe if the extract dies, and no face is counted twice afterwards
        self._had = set() if new else {r.get("file") for r in csv.DictReader(open(self.index, newline="", encoding="utf-8"))}
        self._rewritten = False
        self._f = open(self.index, "a", newline="", encoding="utf-8")
        self._w = csv.DictWriter(self._f, fieldnames=INDEX_FIELDS)
        if new:
            self._w.writeheader()

    def write(self, crop: np.ndarray, label: str, name: str, row: dict, context: np.ndarray | None = None) -> str:
        import cv2

        rel = Path(label) / f"{name}.png"
        for dest, img in ((self.out / rel, crop), (self.out / CONTEXT_DIR / rel, context)):
            if img is None:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(dest), img):
                raise DatasetError(f"cannot write {dest}: check free space and permissions of --out")
        self.add_row({**row, "file": rel.as_posix(), "label": label})
        return rel.as_posix()

    def add_row(self, row: dict) -> None:
        """One index row for a crop already under ``out`` (``file`` relative to it)."""
        self._w.writerow(row)
        self._rewritten |= row["file"] in self._had

    def close(self) -> None:
        self._f.close()
        if self._rewritten:
            dedupe_index(self.index)


def dedupe_index(index: Path) -> int:
    """Keep the last row of every crop file in ``index`` (in first-seen order); returns rows dropped."""
    with open(index, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames or INDEX_FIELDS, list(reader)
    last = {r["file"]: r for r in rows}
    if len(last) == len(rows):
        return 0
    tmp = index.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(last.values())
    tmp.replace(index)
    return len(rows) - len(last)


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)[:80]


def extract(src: Path, label: str, out: Path, every: int = 1, margin: float = DEFAULT_MARGIN, size: int = DEFAULT_SIZE,
            subject: str | None = None, attack_type: str | None = None, cropper: FaceCropper | None = None,
            progress: bool = True, context_scale: float | None = None) -> ExtractStats:
    src = Path(src)
    if not src.exists():
        raise DatasetError(f"{src}: no such file or folder")
    if label not in ("live", "spoof"):
        raise DatasetError(f"--label must be live or spoof, got {label!r}")
    if every < 1:
        raise DatasetError(f"--every must be >= 1, got {every}")
    if context_scale is not None and not context_scale >= 1.0:
        raise DatasetError(f"--context-scale must be >= 1 (crop side over face box side, e.g. 2.7), got {context_scale}")
    stats = ExtractStats()
    cropper = cropper or FaceCropper(size, margin, context_scale=context_scale)
    writer = DatasetWriter(out, size, margin, context_scale)
    src_rows = _source_index(src)
    root = src if src.is_dir() else src.parent
    t0 = time.monotonic()
    try:
        for media in iter_media(src, stats):
            meta = src_rows.get(str(media.resolve()), {})
            subj = subject or meta.get("subject") or meta.get("person") or meta.get("source_short") or ""
            is_video = media.suffix.lower() in VIDEO_EXT
            recording = media.stem if is_video else (meta.get("session") and f"{subj}_s{meta['session']}") or subj
            atype = attack_type or (meta.get("attack_type") if meta.get("attack_type") not in (None, "", "none") else None)
            if label == "spoof" and not atype:
                atype = attack_type_from_path(media) or ""
            rel = media.relative_to(root) if media != root else Path(media.name)
            base = _safe(str(rel.with_suffix("")).replace("/", "__"))
            for frame_no, frame in read_frames(media, every, stats):
                stats.frames += 1
                try:
                    crop, ctx, n = cropper.crop_views(frame)
                except ValueError as e:  # degenerate anchors, odd frame formats
                    log.debug("%s frame %d: %s", media, frame_no, e)
                    crop, ctx, n = None, None, 0
                if crop is None:
                    stats.no_face += 1
                    continue
                stats.multiple_faces += n > 1
                name = f"{base}_f{frame_no:05d}" if is_video else base
                writer.write(crop, label, name, {"source": str(media), "frame": frame_no, "subject": subj,
                                                 "recording": recording, "attack_type": atype if label == "spoof" else ""},
                             context=ctx)
                stats.faces += 1
                if progress and stats.frames % 50 == 0:
                    progress_line(f"{stats.frames} frames, {stats.faces} faces, {stats.no_face} without a face "
                                  f"({time.monotonic() - t0:.0f} s)")
    finally:
        writer.close()
    if progress:
        print(f"{chr(13) if sys.stderr.isatty() else ''}{stats.frames} frames, {stats.faces} faces, {stats.no_face} without a face, "
              f"{len(stats.unreadable)} unreadable, {len(stats.skipped_non_media)} non-media files skipped "
              f"({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    return stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND")
    p = sub.add_parser("extract", help="cut aligned face crops (PNG) + index.csv from videos or image folders")
    p.add_argument("src", metavar="SRC", help="a video, an image, or a folder of them (searched recursively)")
    p.add_argument("--label", required=True, choices=("live", "spoof"))
    p.add_argument("--out", required=True, help="dataset folder (created; rows are appended to its index.csv)")
    p.add_argument("--every", type=int, default=1, help="videos: keep every Nth frame (default 1)")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="crop margin, share of the face size per side (default 0.25)")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help="crop side in pixels = the model's input size (default 128)")
    p.add_argument("--subject", default=None, help="subject/person id for every crop (default: from SRC's index.csv)")
    p.add_argument("--attack-type", default=None, help="spoof only: print, replay, ... (default: from index.csv or the path)")
    p.add_argument("--context-scale", type=float, default=None,
                   help="also write the wider context crop (side = this x the face box, e.g. 2.7) under OUT/context/")


def main(args) -> int:
    from edge_liveness.vision.runtime import ModelError

    if getattr(args, "dataset_command", None) != "extract":
        print("usage: edge-liveness dataset extract SRC --label live|spoof --out DIR [--every N] [--margin M] [--size S]", file=sys.stderr)
        return 2
    try:
        stats = extract(Path(args.src), args.label, Path(args.out), args.every, args.margin, args.size, args.subject,
                        args.attack_type, context_scale=getattr(args, "context_scale", None))
    except (DatasetError, ModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(stats.to_dict()))
    return 0 if stats.faces else 1
