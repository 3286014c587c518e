#!/usr/bin/env python3
"""Full-view replays: the replay videos of ../shared/data/video cropped to the screen's picture only.

    python scripts/fullview_replays.py [--out DIR] [--only NAME ...] [--max-frames N]
                                       [--sheet docs/fullview_replays.png] [--overlay DIR]

A replay filmed with its bezel, the hand and the room in view is not the attack that fills the
camera's view. Each video listed in scripts/fullview_screens.json is cut to the area of the screen
that shows the replayed picture (no bezel, no hand, no player chrome, no surroundings), shrunk inward
by a safety margin, and rescaled to a camera size with one scale for both axes (the crop takes the
output's aspect ratio: never stretched). The screen is tracked (scripts/fullview_track.py):
hand-placed keyframe quadrilaterals (found by looking at the frames) are interpolated, and each side
is snapped to the picture's edge nearest to it in every frame (`search` px), so a phone that moves
keeps its bezel out of the crop. ``--overlay DIR`` draws the tracked screen and the crop on the
source frames, to check the table by eye.

Writes DIR/<source stem>_fullview.mp4 and DIR/<source stem>_fullview.json (source sha256, the table
entry, the crop rectangle of every frame, output size, frame count), and DIR/manifest.json listing
every video there. DIR defaults to ~/.cache/edge-liveness/fullview. The videos hold faces: they go
to a cache, never into the repository. Deterministic: the same source gives the same crops and frames.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fullview_track import TABLE, Screen, crop_rect, load_table, prior_quad, screen_quads  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
DEFAULT_OUT = Path.home() / ".cache" / "edge-liveness" / "fullview"
VERSION = 1  # bump when the tracking or the crop rule changes: the manifests say which made a video


# --- output ----------------------------------------------------------------------------------------

def iter_frames(path: Path, start: int, stop: int) -> Iterator[np.ndarray]:
    """Frames ``start`` .. ``stop - 1`` of a video, decoded one at a time."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise ValueError(f"cannot read video {path}")
    try:
        i = 0
        while i < stop:
            ok, img = cap.read()
            if not ok:
                break
            if i >= start:
                yield img
            i += 1
    finally:
        cap.release()


def video_fps(path: Path) -> float:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return round(float(fps), 3)


def cut(img: np.ndarray, rect: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """The output frame: the source's pixels inside ``rect`` only, rescaled to ``size``."""
    x, y, w, h = rect
    crop = img[y:y + h, x:x + w]
    interp = cv2.INTER_AREA if w > size[0] else cv2.INTER_CUBIC
    return cv2.resize(crop, size, interpolation=interp)


@dataclass
class FullView:
    """One output's manifest: what was cut from where."""

    source: str
    source_sha256: str
    person: str
    frames: int
    first_frame: int
    fps: float
    size: tuple[int, int]
    margin: tuple[float, float, float, float]
    rects: list[list[int]]  # per output frame: [source frame, x, y, w, h]
    quads: list[list[list[float]]]  # per output frame: tracked screen corners TL, TR, BR, BL
    keyframes: dict[str, list[list[float]]]
    note: str
    version: int = VERSION

    def as_dict(self) -> dict:
        return asdict(self)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def plan(path: Path, screen: Screen, max_frames: int | None = None) -> FullView:
    """Track the screen through the kept frames and choose every frame's crop (nothing written)."""
    start, stop = screen.frames
    if max_frames is not None:
        stop = min(stop, start + max_frames)
    size: list[tuple[int, int]] = []

    def frames() -> Iterator[np.ndarray]:
        for img in iter_frames(path, start, stop):
            size[:] = [(img.shape[1], img.shape[0])]
            yield img

    quads = screen_quads(frames(), screen, start)
    if not quads:
        raise ValueError(f"{path}: no frames in [{start}, {stop})")
    rects = [[start + j, *crop_rect(q, screen.margin, screen.size, size[0])] for j, q in enumerate(quads)]
    return FullView(screen.file, sha256(path), screen.person, len(rects), start, video_fps(path), screen.size,
                    screen.margin, rects, [np.round(q, 2).tolist() for q in quads],
                    {str(k): v.tolist() for k, v in screen.keyframes.items()}, screen.note)


def cut_frames(path: Path, fv: FullView) -> Iterator[np.ndarray]:
    """The output frames of a planned full view, one at a time."""
    for img, (_, x, y, w, h) in zip(iter_frames(path, fv.first_frame, fv.first_frame + fv.frames), fv.rects):
        yield cut(img, (x, y, w, h), tuple(fv.size))


def fullview_frames(path: Path, screen: Screen, max_frames: int | None = None) -> tuple[FullView, list[np.ndarray]]:
    """The manifest and every output frame in memory (for a few frames: tests, a look)."""
    fv = plan(path, screen, max_frames)
    return fv, list(cut_frames(path, fv))


def make_fullview(path: Path, screen: Screen, out_dir: Path, max_frames: int | None = None,
                  keep: int = 6) -> tuple[Path, FullView, list[np.ndarray]]:
    """Write ``out_dir/<stem>_fullview.mp4`` and its ``.json``; return the video's path, its
    manifest and, for the contact sheet, the first source frame with the tracked screen (green) and
    the crop (red) drawn, then ``keep`` output frames evenly spaced."""
    fv = plan(path, screen, max_frames)
    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / f"{screen.stem}_fullview.mp4"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), fv.fps, tuple(fv.size))
    if not vw.isOpened():
        raise ValueError(f"cannot write {video} (OpenCV has no mp4v encoder here)")
    wanted = set(np.linspace(0, fv.frames - 1, keep).round().astype(int).tolist())
    kept = []
    try:
        for j, (img, (_, x, y, w, h)) in enumerate(zip(iter_frames(path, fv.first_frame, fv.first_frame + fv.frames), fv.rects)):
            frame = cut(img, (x, y, w, h), tuple(fv.size))
            vw.write(frame)
            if j == 0:
                cv2.polylines(img, [np.round(np.array(fv.quads[0])).astype(np.int32)], True, (0, 255, 0), 2)
                cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), (0, 0, 255), 2)
                kept.append(img)
            if j in wanted:
                kept.append(frame)
    finally:
        vw.release()
    (out_dir / f"{screen.stem}_fullview.json").write_text(json.dumps(fv.as_dict()) + "\n")
    return video, fv, kept


def write_manifest(out_dir: Path) -> Path:
    """DIR/manifest.json: every full-view video in DIR with its source, size, frames and crop range."""
    entries = {}
    for j in sorted(out_dir.glob("*_fullview.json")):
        m = json.loads(j.read_text())
        video = j.with_suffix(".mp4")
        xs = np.array([r[1:] for r in m["rects"]])
        entries[video.name] = {"source": m["source"], "source_sha256": m["source_sha256"], "person": m["person"],
                               "size": m["size"], "frames": m["frames"], "first_frame": m["first_frame"],
                               "fps": m["fps"], "margin": m["margin"], "version": m["version"],
                               "crop_w_range": [int(xs[:, 2].min()), int(xs[:, 2].max())],
                               "rects_in": j.name, "video_sha256": sha256(video) if video.exists() else None}
    p = out_dir / "manifest.json"
    p.write_text(json.dumps({"generator": "scripts/fullview_replays.py", "table": "scripts/fullview_screens.json",
                             "videos": entries}, indent=1) + "\n")
    # labels for `edge-liveness evaluate` and the attempt gate (converters/data/labels.py's index.csv)
    lines = ["file,label,attack_type,person"] + [f"{name},spoof,replay,{e['person']}" for name, e in entries.items()]
    (out_dir / "index.csv").write_text("\n".join(lines) + "\n")
    return p


# --- looking at it ---------------------------------------------------------------------------------

def contact_sheet(results: list[tuple[Screen, FullView, list[np.ndarray]]], path: Path, thumb_h: int = 150) -> None:
    """Per video, one labelled row: a source frame with the screen and the crop drawn, then output frames."""
    rows = []
    for _, _, frames in results:
        tiles = [cv2.resize(f, (round(f.shape[1] * thumb_h / f.shape[0]), thumb_h), interpolation=cv2.INTER_AREA)
                 for f in frames]
        rows.append(np.hstack([np.pad(t, ((0, 0), (0, 4), (0, 0)), constant_values=255) for t in tiles]))
    width = max(r.shape[1] for r in rows)
    out = []
    for (screen, fv, _), row in zip(results, rows):
        label = np.full((22, width, 3), 255, np.uint8)
        cv2.putText(label, f"{screen.file} (green: tracked screen, red: crop) -> {screen.stem}_fullview.mp4 "
                           f"({fv.frames} frames, {screen.size[0]}x{screen.size[1]})",
                    (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        out += [label, np.pad(row, ((0, 4), (0, width - row.shape[1]), (0, 0)), constant_values=255)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack(out), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def overlay(path: Path, screen: Screen, fv: FullView, folder: Path, every: int) -> None:
    """Debug sheets: every ``every``-th source frame around the screen, with the keyframe prior
    (blue), the tracked quad (green) and the crop (red)."""
    folder.mkdir(parents=True, exist_ok=True)
    tiles = []
    for j, img in enumerate(iter_frames(path, fv.first_frame, fv.first_frame + fv.frames)):
        if j % every:
            continue
        i = fv.first_frame + j
        q = np.array(fv.quads[j])
        cv2.polylines(img, [prior_quad(screen, i).round().astype(np.int32)], True, (255, 0, 0), 1)
        cv2.polylines(img, [np.round(q).astype(np.int32)], True, (0, 255, 0), 1)
        _, x, y, w, h = fv.rects[j]
        cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), (0, 0, 255), 1)
        (x0, y0), (x1, y1) = np.maximum(q.min(0).astype(int) - 30, 0), q.max(0).astype(int) + 30
        t = img[y0:y1, x0:x1]
        t = cv2.resize(t, (round(t.shape[1] * 300 / t.shape[0]), 300))
        cv2.putText(t, str(i), (4, 292), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 255), 2)
        tiles.append(t)
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 3), (0, width + 3 - t.shape[1]), (0, 0))) for t in tiles]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 6)
    for s in range(0, len(tiles), 24):
        chunk = tiles[s:s + 24]
        sheet = np.vstack([np.hstack(chunk[k:k + 6]) for k in range(0, len(chunk), 6)])
        cv2.imwrite(str(folder / f"{screen.stem}_{s // 24:02d}.png"), sheet)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(SHARED), help="the shared data folder (default ../shared/data)")
    ap.add_argument("--table", default=str(TABLE))
    ap.add_argument("--out", default=str(DEFAULT_OUT), help=f"where the videos go (default {DEFAULT_OUT})")
    ap.add_argument("--only", nargs="*", help="source file names (default: every video in the table)")
    ap.add_argument("--max-frames", type=int, help="at most this many frames per video (tests)")
    ap.add_argument("--sheet", help="also write a contact sheet PNG of the outputs here")
    ap.add_argument("--overlay", help="debug: write the tracked quads drawn on the source frames to this folder")
    ap.add_argument("--overlay-every", type=int, default=5)
    args = ap.parse_args(argv)
    table = load_table(Path(args.table))
    names = args.only or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        print(f"error: {', '.join(unknown)} not in {args.table} (known: {', '.join(table)})", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    results = []
    for name in names:
        src = Path(args.shared) / "video" / name
        if not src.is_file():
            print(f"error: {src} is absent (pass --shared DIR: the folder holding video/{name})", file=sys.stderr)
            return 2
        if table[name].sha256 and sha256(src) != table[name].sha256:
            print(f"error: {src} is not the recording the table's keyframes were placed on (sha256 differs): "
                  f"place them again with --overlay, then update {args.table}", file=sys.stderr)
            return 2
        t = time.perf_counter()
        print(f"{name}: tracking the screen ...", file=sys.stderr, flush=True)
        try:
            video, fv, frames = make_fullview(src, table[name], out_dir, args.max_frames)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        ws = [r[3] for r in fv.rects]
        print(f"{name}: {fv.frames} frames -> {video} ({fv.size[0]}x{fv.size[1]}, crop width {min(ws)}-{max(ws)} px, "
              f"{time.perf_counter() - t:.1f} s)", file=sys.stderr, flush=True)
        if args.overlay:
            overlay(src, table[name], fv, Path(args.overlay), args.overlay_every)
        results.append((table[name], fv, frames))
    print(f"manifest: {write_manifest(out_dir)}", file=sys.stderr)
    if args.sheet:
        contact_sheet(results, Path(args.sheet))
        print(f"contact sheet: {args.sheet}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
