"""Opt-in capture of each attempt's aligned face crops, filed by the attempt's decision (storage.save_images).

For the ML engineer who retrains on the site's own camera: the crops are the classifier's own input
(``align.align_crop`` at the liveness model's size and margin), so a folder of them is a dataset
``edge-liveness train`` and ``evaluate`` read as they are. Nothing here is ever sent anywhere; with
``save_images = false`` (the default) this module is not even constructed.

Layout, one dataset folder per crop geometry (a new model may cut other crops)::

    <state_dir>/attempt_images/crop<size>_m<margin>/
        dataset.json                                  {"crop": {"size", "margin"}} as `dataset extract` writes
        live/<YYYYmmddTHHMMSS>_<attempt>/000.png ...   decision pass
        spoof/<reason>/<time>_<attempt>/...           fail by a liveness check (spoof_suspected, no_blink, ...)
        unsure/<reason>/<time>_<attempt>/...          fail for another reason (face_lost, timeout, ...): not
                                                      a label, so training skips it until a person files it
        <each attempt folder>/attempt.json            result, reason, time, frames seen

Labels are the device's decisions, not ground truth: review them before training. Each attempt
folder is one "subject" to the training split, so an attempt never lands on both sides. Retention:
at most ``storage.images_keep_attempts`` attempts, none older than ``storage.images_keep_days``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from edge_liveness.vision.align import FaceAnchors, align_crop

log = logging.getLogger("edge_liveness.attempt_images")

DIRNAME = "attempt_images"
# Fails that the liveness checks decided: the attempt looked like an attack to the device.
SPOOF_REASONS = frozenset({"spoof_suspected", "no_blink", "no_turn", "challenge_failed"})


@dataclass
class _Buffer:
    attempt_id: str
    crops: list[np.ndarray] = field(default_factory=list)
    stride: int = 1  # keep every stride-th frame; doubles when the buffer fills (bounded memory)
    seen: int = 0


class AttemptImages:
    """Buffers crops while an attempt collects; writes them when its decision is known."""

    def __init__(self, state_dir: str | Path, per_attempt: int = 8, keep_attempts: int = 500, keep_days: float = 30.0):
        self.root = Path(state_dir) / DIRNAME
        self.per_attempt = per_attempt
        self.keep_attempts = keep_attempts
        self.keep_days = keep_days
        self._buf: _Buffer | None = None
        self._warned = False

    @classmethod
    def from_settings(cls, settings: Any) -> "AttemptImages | None":
        st = settings.storage
        if not st.save_images:
            return None
        return cls(settings.state_path, st.images_per_attempt, st.images_keep_attempts, st.images_keep_days)

    # -- the daemon's hook: one call per processed frame
    def observe(self, frame_bgr: np.ndarray, anchors: FaceAnchors | None, attempt_id: str | None,
                outputs: Iterable[Any], crop_size: int, crop_margin: float) -> None:
        if attempt_id is not None and anchors is not None:
            self.add(frame_bgr, anchors, attempt_id, crop_size, crop_margin)
        for out in outputs:
            if getattr(out, "kind", None) == "decision":
                self.finish(out.attempt_id, out.result, out.reason, crop_size, crop_margin)

    def add(self, frame_bgr: np.ndarray, anchors: FaceAnchors, attempt_id: str, crop_size: int, crop_margin: float) -> None:
        b = self._buf
        if b is None or b.attempt_id != attempt_id:
            b = self._buf = _Buffer(attempt_id)
        b.seen += 1
        if (b.seen - 1) % b.stride:
            return
        b.crops.append(np.ascontiguousarray(align_crop(frame_bgr, anchors, crop_size, crop_margin).image))
        if len(b.crops) >= 2 * self.per_attempt:
            b.crops = b.crops[::2]
            b.stride *= 2

    def finish(self, attempt_id: str, result: str, reason: str | None, crop_size: int, crop_margin: float) -> Path | None:
        """Write the attempt's crops under its decision's folder; returns that folder (None: nothing kept)."""
        b, self._buf = self._buf, None
        if b is None or b.attempt_id != attempt_id or not b.crops:
            return None
        picks = np.linspace(0, len(b.crops) - 1, min(self.per_attempt, len(b.crops))).round().astype(int)
        base = self.dataset_dir(crop_size, crop_margin)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        folder = base / label_folder(result, reason) / f"{stamp}_{_safe(attempt_id)}"
        try:
            import cv2

            self._ensure_dataset(base, crop_size, crop_margin)
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            for n, i in enumerate(dict.fromkeys(picks.tolist())):
                path = folder / f"{n:03d}.png"
                if not cv2.imwrite(str(path), b.crops[i]):
                    raise OSError(f"cannot write {path}")
                os.chmod(path, 0o600)
            (folder / "attempt.json").write_text(json.dumps({"attempt_id": attempt_id, "result": result, "reason": reason,
                                                             "ts": round(time.time(), 3), "frames_seen": b.seen}) + "\n")
        except OSError as e:
            if not self._warned:  # a full card must not fill the log either
                self._warned = True
                log.warning("storage.save_images: cannot keep the crops of attempt %s (%s); decisions are not affected",
                            attempt_id, e)
            shutil.rmtree(folder, ignore_errors=True)
            return None
        self.prune()
        return folder

    # -- layout and retention
    def dataset_dir(self, crop_size: int, crop_margin: float) -> Path:
        return self.root / f"crop{int(crop_size)}_m{float(crop_margin):g}"

    def _ensure_dataset(self, base: Path, size: int, margin: float) -> None:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        meta = base / "dataset.json"
        if not meta.is_file():
            meta.write_text(json.dumps({"crop": {"size": int(size), "margin": float(margin)},
                                        "note": "edge-liveness attempt crops; labels are the device's decisions"}, indent=2) + "\n")

    def attempts(self) -> list[Path]:
        """Every kept attempt folder, oldest first."""
        if not self.root.is_dir():
            return []
        found = [m.parent for m in self.root.rglob("attempt.json")]
        return sorted(found, key=lambda p: (p.name.split("_", 1)[0], p.stat().st_mtime))

    def prune(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        found = self.attempts()
        too_old = [p for p in found if now - p.stat().st_mtime > self.keep_days * 86400]
        rest = [p for p in found if p not in too_old]
        doomed = too_old + rest[: max(0, len(rest) - self.keep_attempts)]
        for p in doomed:
            shutil.rmtree(p, ignore_errors=True)
        return len(doomed)


def label_folder(result: str, reason: str | None) -> Path:
    if result == "pass":
        return Path("live")
    reason = _safe(reason or "unknown")
    return Path("spoof" if reason in SPOOF_REASONS else "unsure") / reason


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in s)[:64]
