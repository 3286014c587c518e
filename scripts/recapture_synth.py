#!/usr/bin/env python3
"""Synthetic screen replays of real people: a folder tree mirrored through converters/data/recapture.py.

    python scripts/recapture_synth.py SRC --out OUT [--every 3] [--framing fill|bezel|both] [--seed 0]
                                      [--max-side 640] [--limit N] [--subject ID]

Every image under SRC becomes a JPEG (the simulated camera's own file) at the same relative path with
suffix .jpg; every video (.mp4 .avi .mov .webm ...) a Motion-JPEG (quality 95) video with suffix .avi holding every
--every-th frame (at the source's fps / --every). Each file is one attack session: one RecaptureParams
drawn from --seed and the file's relative path (so a file's replay does not depend on --limit or on the
other files), the same screen and camera for all frames of a video. ``--framing both`` picks fill or bezel
per file by a seeded coin (one output per source, same path). Sources whose names differ only in the
suffix (a.png, a.jpg) keep it in the name (a_png.jpg). Frames larger than --max-side are downscaled first.

OUT/index.csv (file, label=fake, person, attack_type=replay) carries each file's person from the nearest
index.csv at or above it (columns file + person or subject, as in shared/data); --subject overrides it, so
``edge-liveness dataset extract OUT`` assigns the crops to the same persons. Rows of earlier runs are
kept. Idempotent: outputs already written are skipped (files are written under a temporary name first).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from converters.data.dataset import IMAGE_EXT, VIDEO_EXT, ExtractStats, read_frames  # noqa: E402
from converters.data.recapture import RecaptureParams, recapture, recapture_jpeg  # noqa: E402

INDEX_FIELDS = ("file", "label", "person", "attack_type")
INDEX_LEVELS_ABOVE = 3  # index.csv above SRC, as `dataset extract` looks for one


class UsageError(ValueError):
    """Bad input: one line naming the fix (exit 2)."""


def media_files(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXT | VIDEO_EXT)


def spread(files: list[Path], limit: int | None) -> list[Path]:
    """At most ``limit`` files, evenly spaced over the sorted tree (deterministic)."""
    if not limit or limit >= len(files):
        return files
    return [files[i] for i in sorted({round(x) for x in np.linspace(0, len(files) - 1, limit)})]


def output_names(files: list[Path], root: Path) -> dict[Path, Path]:
    """Source -> output path relative to OUT; names that would collide keep their source suffix."""
    def plain(p: Path) -> Path:
        return p.relative_to(root).with_suffix(".avi" if p.suffix.lower() in VIDEO_EXT else ".jpg")

    seen: dict[Path, int] = {}
    for p in files:
        seen[plain(p)] = seen.get(plain(p), 0) + 1
    out = {}
    for p in files:
        rel = plain(p)
        out[p] = rel if seen[rel] == 1 else rel.with_name(f"{p.stem}_{p.suffix.lower().lstrip('.')}{rel.suffix}")
    return out


class Persons:
    """Person of a source file: ``--subject`` when given (as `dataset extract` does: the LOPO holds a person
    out by that name, so a synthetic replay must carry the same one), else the nearest index.csv at or
    above it that lists the file."""

    def __init__(self, root: Path, fallback: str, override: bool = False):
        self.top = list(root.resolve().parents)[:INDEX_LEVELS_ABOVE][-1] if root.resolve().parents else root
        self.fallback, self.override, self._cache = fallback, override, {}

    def _rows(self, d: Path) -> dict[str, str]:
        if d not in self._cache:
            rows = {}
            if (d / "index.csv").is_file():
                with open(d / "index.csv", newline="", encoding="utf-8") as f:
                    for r in csv.DictReader(f):
                        person = r.get("person") or r.get("subject")
                        if r.get("file") and person:
                            rows[str((d / r["file"]).resolve())] = person
            self._cache[d] = rows
        return self._cache[d]

    def __call__(self, path: Path) -> str:
        if self.override and self.fallback:
            return self.fallback
        key = str(path.resolve())
        for d in path.resolve().parents:
            if key in self._rows(d):
                return self._rows(d)[key]
            if d == self.top:
                break
        return self.fallback


def _fit(frame: np.ndarray, max_side: int, even: bool) -> np.ndarray:
    h, w = frame.shape[:2]
    if max(h, w) > max_side:
        s = max_side / max(h, w)
        frame = cv2.resize(frame, (max(2, round(w * s)), max(2, round(h * s))), interpolation=cv2.INTER_AREA)
    if even:  # MPEG-4 wants even sizes
        frame = frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]
    return np.ascontiguousarray(frame)


def session(seed: int, rel: Path, framing: str) -> tuple[RecaptureParams, str]:
    """One file's attack session: drawn from the seed and its relative path only."""
    rng = np.random.default_rng([seed, zlib.crc32(rel.as_posix().encode())])
    coin = rng.uniform()  # drawn for every framing, so a file's params do not depend on --framing
    chosen = framing if framing != "both" else ("fill" if coin < 0.5 else "bezel")
    return RecaptureParams.draw(rng), chosen


def synth_image(src: Path, dest: Path, params: RecaptureParams, framing: str, max_side: int, stats: ExtractStats) -> int:
    for _, frame in read_frames(src, 1, stats):
        tmp = dest.with_name(dest.stem + ".part" + dest.suffix)
        tmp.write_bytes(recapture_jpeg(_fit(frame, max_side, False), params, framing))
        tmp.replace(dest)
        return 1
    return 0


def synth_video(src: Path, dest: Path, params: RecaptureParams, framing: str, max_side: int, every: int,
                stats: ExtractStats) -> int:
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0
    cap.release()
    fps = fps if 1 <= fps <= 240 else 30.0
    tmp, writer, n = dest.with_name(dest.stem + ".part.avi"), None, 0
    try:
        for i, frame in read_frames(src, every, stats):
            out = recapture(_fit(frame, max_side, True), params, framing, frame_index=i)
            if writer is None:
                # Motion-JPEG at quality 95: mp4v's inter-frame coding smeared the moire the camera model made
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), fps / every, (out.shape[1], out.shape[0]))
                writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
                if not writer.isOpened():
                    raise OSError(f"cannot open a video writer for {tmp}")
            writer.write(out)
            n += 1
    finally:
        if writer is not None:
            writer.release()
    if n:
        tmp.replace(dest)
    else:
        tmp.unlink(missing_ok=True)
    return n


def write_index(out: Path, rows: dict[str, dict]) -> None:
    index = out / "index.csv"
    if index.is_file():  # keep rows of earlier runs (another --limit), replace those written again
        with open(index, newline="", encoding="utf-8") as f:
            rows = {**{r["file"]: r for r in csv.DictReader(f) if r.get("file")}, **rows}
    tmp = index.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=INDEX_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows[k] for k in sorted(rows))
    tmp.replace(index)


def check_args(args) -> tuple[Path, Path]:
    src, out = Path(args.src), Path(args.out)
    if not src.exists():
        raise UsageError(f"{src}: no such file or folder: give a folder of images/videos (e.g. ../shared/data/blink/zju)")
    if args.every < 1 or (args.limit is not None and args.limit < 1) or args.max_side < 32:
        raise UsageError("--every and --limit must be >= 1 and --max-side >= 32")
    root = src if src.is_dir() else src.parent
    if out.resolve() == root.resolve() or root.resolve() in out.resolve().parents:
        raise UsageError(f"--out {out} lies inside SRC {src}: a second run would read its own outputs; choose a folder outside")
    return src, out


def run(args) -> int:
    src, out = check_args(args)
    root = src if src.is_dir() else src.parent
    everything = media_files(src)
    if not everything:
        raise UsageError(f"{src}: no images or videos ({', '.join(sorted(IMAGE_EXT | VIDEO_EXT))}) found")
    names = output_names(everything, root)
    files = spread(everything, args.limit)
    persons, stats = Persons(root, args.subject or "", override=bool(args.subject)), ExtractStats()
    cv2.setNumThreads(1)  # the machine is shared; one file at a time is fast enough
    rows, written, skipped, frames, t0 = {}, 0, 0, 0, time.monotonic()
    step = max(1, len(files) // 10) if len(files) > 30 else 1
    for k, path in enumerate(files, 1):
        rel = names[path]
        dest = out / rel
        params, framing = session(args.seed, path.relative_to(root), args.framing)
        if dest.is_file() and dest.stat().st_size > 0:
            skipped += 1
            what = "already there"
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            t = time.monotonic()
            is_video = path.suffix.lower() in VIDEO_EXT
            n = (synth_video(path, dest, params, framing, args.max_side, args.every, stats) if is_video
                 else synth_image(path, dest, params, framing, args.max_side, stats))
            frames += n
            written += n > 0
            what = f"{framing}, {n} frames, {1000 * (time.monotonic() - t) / max(n, 1):.0f} ms/frame" if n else "unreadable"
        if dest.is_file():
            rows[rel.as_posix()] = {"file": rel.as_posix(), "label": "fake", "person": persons(path), "attack_type": "replay"}
        if k % step == 0 or k == len(files):
            print(f"[{k}/{len(files)}] {rel.as_posix()}: {what}", file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    write_index(out, rows)
    dt = time.monotonic() - t0
    no_person = sum(not r["person"] for r in rows.values())
    print(f"recapture_synth: {len(files)} media files -> {out}: {written} written, {skipped} already there, "
          f"{len(stats.unreadable)} unreadable; {frames} frames in {dt:.0f} s ({1000 * dt / max(frames, 1):.0f} ms/frame); "
          f"index.csv: {len(rows)} rows this run, {len({r['person'] for r in rows.values()} - {''})} persons, "
          f"{no_person} without a person{' (name one with --subject)' if no_person else ''}",
          file=sys.stderr)
    return 1 if stats.unreadable else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", metavar="SRC", help="folder of images/videos (searched recursively) or one file")
    ap.add_argument("--out", required=True, help="output folder (mirrors SRC; not inside it)")
    ap.add_argument("--every", type=int, default=3, help="videos: keep every Nth frame (default 3)")
    ap.add_argument("--framing", choices=("fill", "bezel", "both"), default="fill",
                    help="fill: the screen fills the view (default); bezel: screen, bezel, background, fingers; "
                         "both: a seeded coin per file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-side", type=int, default=640, help="downscale larger frames to this longest side first")
    ap.add_argument("--limit", type=int, default=None, help="at most N media files, evenly spread over the tree")
    ap.add_argument("--subject", default=None, help="person id of every file (overrides the sources' index.csv, as `dataset extract --subject` does)")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
