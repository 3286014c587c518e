"""A file's label, attack type and person, for `evaluate` on images and videos.

The label is the nearest folder named live/real/living/genuine (bona fide) or
spoof/fake/attack/replay/print; failing that, the ``label`` column of an ``index.csv`` in a parent
folder (``file,label[,attack_type][,person]``, ``file`` relative to that index's folder). The attack
type comes from the index when it names one, else from a path part naming print/replay/screen.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

LIVE_WORDS = {"live", "real", "living", "genuine", "bonafide", "bona_fide"}
SPOOF_WORDS = {"spoof", "fake", "attack", "replay", "print"}


@dataclass(frozen=True)
class FileLabel:
    label: str  # "live" | "spoof"
    attack_type: str  # "" for live
    person: str  # "" when unknown


def _word(part: str) -> str | None:
    p = part.lower()
    if p in LIVE_WORDS:
        return "live"
    if p in SPOOF_WORDS:
        return "spoof"
    return None


def _attack_from_path(path: Path) -> str:
    for part in reversed(path.parts):
        p = part.lower()
        for t in ("print", "replay", "screen", "mask", "photo"):
            if t in p:
                return {"photo": "print", "screen": "replay"}.get(t, t)
    return ""


@lru_cache(maxsize=256)
def _index(folder: Path) -> dict[Path, dict[str, str]]:
    idx = folder / "index.csv"
    if not idx.is_file():
        return {}
    try:
        with open(idx, newline="", encoding="utf-8") as f:
            return {(folder / r["file"]).resolve(): r for r in csv.DictReader(f) if r.get("file")}
    except (OSError, KeyError, UnicodeDecodeError, csv.Error):
        return {}


def _index_row(path: Path, root: Path) -> dict[str, str] | None:
    p = path.resolve()
    for d in path.parents:
        row = _index(d.resolve()).get(p)
        if row is not None:
            return row
        if d == root or d == d.parent:
            break
    return None


def label_for(path: Path, root: Path) -> FileLabel | None:
    """The label of ``path`` (under ``root``), or None when neither folder names nor an index say."""
    # the folder given may itself be named real/fake (its parent's index.csv may list it too)
    top = root.parent
    row = _index_row(path, top)
    rel = path.relative_to(top) if path.is_relative_to(top) else path
    person = (row or {}).get("person", "") or ""
    for part in reversed(rel.parts[:-1]):
        w = _word(part)
        if w is not None:
            return FileLabel(w, "" if w == "live" else (_index_attack(row) or _attack_from_path(rel) or "unknown"), person)
    if row is None:
        return None
    w = _word((row.get("label") or "").strip())
    if w is None:
        return None
    return FileLabel(w, "" if w == "live" else (_index_attack(row) or _attack_from_path(rel) or "unknown"), person)


def _index_attack(row: dict[str, str] | None) -> str:
    t = ((row or {}).get("attack_type") or "").strip()
    return "" if not t or t.startswith("none") else t
