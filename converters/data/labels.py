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

from converters.data.dataset import LIVE_NAMES, SPOOF_NAMES, attack_type_from_path


@dataclass(frozen=True)
class FileLabel:
    label: str  # "live" | "spoof"
    attack_type: str  # "" for live
    person: str  # "" when unknown


def _word(part: str) -> str | None:
    p = part.lower()
    if p in LIVE_NAMES:
        return "live"
    if p in SPOOF_NAMES:
        return "spoof"
    return None


def _attack_from_path(path: Path) -> str:
    return attack_type_from_path(path) or ""


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
    word = next((w for w in map(_word, reversed(rel.parts[:-1])) if w is not None), None)
    if word is None and row is not None:
        word = _word((row.get("label") or "").strip())
    if word is None:
        return None
    attack = "" if word == "live" else (_index_attack(row) or _attack_from_path(rel) or "unknown")
    return FileLabel(word, attack, (row or {}).get("person", "") or "")


def _index_attack(row: dict[str, str] | None) -> str:
    t = ((row or {}).get("attack_type") or "").strip()
    return "" if not t or t.startswith("none") else t
