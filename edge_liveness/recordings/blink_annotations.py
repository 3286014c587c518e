"""Blink annotations beside a video, as intervals of the frames OpenCV decodes.

Two formats:
- ZJU / eyeblink8 ``<clip>.tag``: between ``#start`` and ``#end`` one line per frame,
  ``frame:blink_id:non_frontal:left_closed:left_not_visible:right_closed:right_not_visible:...``;
  ``blink_id`` -1 outside a blink, the blink's number on each of its frames (closing, closed,
  opening). The tag's frame numbers count every non-empty AVI chunk, including "repeat the previous
  frame" chunks that FFmpeg skips, so an optional ``<clip>.framemap.csv``
  (``nonempty_index,chunk_bytes,cv2_frame``) maps them to decoded frames. Without it the numbers are
  taken as decoded frame indices.
- ``<video>.blinks.csv``: ``start_frame,end_frame`` (0-based decoded frames, inclusive), one blink
  per row, an optional header; ``#`` lines are comments (say there how the count was made).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

VIDEO_EXTS = {".avi", ".mp4", ".mov", ".webm", ".mkv", ".m4v"}


class AnnotationError(ValueError):
    """An annotation file that cannot be read (message is one line naming the file)."""


@dataclass(frozen=True, order=True)
class Blink:
    start: int  # first decoded frame of the blink (closing starts)
    end: int  # last decoded frame (reopened), inclusive

    def overlaps(self, start: int, end: int, tolerance: int = 0) -> bool:
        return start <= self.end + tolerance and end >= self.start - tolerance


@dataclass
class Annotation:
    video: Path
    source: Path  # the annotation file
    blinks: list[Blink]
    # decoded frames where the annotator marked the face non-frontal or an eye not visible
    unusable: set[int] = field(default_factory=set)


def _framemap(path: Path) -> dict[int, int]:
    out: dict[int, int] = {}
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                out[int(row["nonempty_index"])] = int(row["cv2_frame"])
    except (OSError, KeyError, ValueError) as e:
        raise AnnotationError(f"{path}: not a frame map (nonempty_index,chunk_bytes,cv2_frame): {e}") from None
    return out


def read_tag(tag: Path, framemap: Path | None = None) -> tuple[list[Blink], set[int]]:
    fmap = _framemap(framemap) if framemap is not None and framemap.is_file() else None
    spans: dict[int, list[int]] = {}
    unusable: set[int] = set()
    inside = False
    try:
        lines = tag.read_text(errors="replace").splitlines()
    except OSError as e:
        raise AnnotationError(f"{tag}: cannot read ({e.strerror or e})") from None
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if s == "#start":
            inside = True
            continue
        if s == "#end":
            break
        if not inside or not s or s.startswith("#"):
            continue
        parts = s.split(":")
        try:
            frame, blink_id = int(parts[0]), int(parts[1])
        except (IndexError, ValueError):
            raise AnnotationError(f"{tag}:{n}: expected 'frame:blink_id:...' (eyeblink8 .tag format)") from None
        decoded = fmap.get(frame, frame) if fmap is not None else frame
        if len(parts) > 6 and ("N" in parts[2] or parts[4] == "N" or parts[6] == "N"):
            unusable.add(decoded)
        if blink_id >= 0:
            spans.setdefault(blink_id, []).append(decoded)
    blinks = sorted(Blink(min(v), max(v)) for v in spans.values())
    return blinks, unusable


def read_blinks_csv(path: Path) -> list[Blink]:
    out: list[Blink] = []
    try:
        rows = path.read_text().splitlines()
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read ({e.strerror or e})") from None
    for n, line in enumerate(rows, 1):
        s = line.strip()
        if not s or s.startswith("#") or s.lower().startswith("start"):
            continue
        try:
            a, b = (int(x) for x in s.split(",")[:2])
        except ValueError:
            raise AnnotationError(f"{path}:{n}: expected 'start_frame,end_frame' (integers), got {s!r}") from None
        if b < a:
            raise AnnotationError(f"{path}:{n}: end_frame {b} is before start_frame {a}")
        out.append(Blink(a, b))
    return sorted(out)


def annotation_for(video: Path) -> Annotation | None:
    """The annotation beside ``video``, or None when it has none."""
    csv_path = video.with_name(video.name + ".blinks.csv")
    if csv_path.is_file():
        return Annotation(video, csv_path, read_blinks_csv(csv_path))
    tag = video.with_suffix(".tag")
    if tag.is_file():
        blinks, unusable = read_tag(tag, video.with_suffix(".framemap.csv"))
        return Annotation(video, tag, blinks, unusable)
    return None


def find_annotated(root: Path, videos: Path | None = None) -> list[Annotation]:
    """Every video under ``root`` (or ``root`` itself) with an annotation beside it, sorted by path.

    With ``videos``, a ``<relpath>.blinks.csv`` under ``root`` whose video is not beside it names the
    video ``videos/<relpath>`` (annotations kept apart from recordings one may not copy)."""
    if root.is_file():
        a = annotation_for(root)
        return [a] if a is not None else []
    found = {v: annotation_for(v) for v in sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTS)}
    out = [a for a in found.values() if a is not None]
    if videos is not None:
        for ann in sorted(root.rglob("*.blinks.csv")):
            rel = ann.relative_to(root)
            video = videos / rel.parent / ann.name[: -len(".blinks.csv")]
            beside = ann.with_name(ann.name[: -len(".blinks.csv")])
            if beside in found:
                continue
            if not video.is_file():
                raise AnnotationError(f"{ann}: its video {video} does not exist (check --videos)")
            out.append(Annotation(video, ann, read_blinks_csv(ann)))
    return sorted(out, key=lambda a: str(a.source))
