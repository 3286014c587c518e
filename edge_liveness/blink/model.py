"""The learned blink model: a small float TFLite MLP over a ``BlinkWindow`` and its manifest.

``predict(window) -> P(the judged moment is inside a blink)``. The manifest (``<stem>.json`` beside
the ``.tflite``, written by ``edge-liveness blinks train``) records the window layout the model was
trained on; a model whose layout differs from this code's ``blink_window`` constants, or whose bytes
differ from the manifest's sha256, is refused with one line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from edge_liveness.blink import window as bw
from edge_liveness.vision.runtime import ModelError, TFLiteModel, bundled_model_path

DEFAULT_MODEL_NAME = "blink_mlp.tflite"


def default_blink_model_path() -> Path:
    return bundled_model_path(DEFAULT_MODEL_NAME)


def window_layout() -> dict[str, Any]:
    """What a model's input means; stored in the manifest and checked at load."""
    return {"n_samples": bw.N_SAMPLES, "dt_s": round(bw.DT, 6), "lag_samples": bw.LAG_SAMPLES,
            "features": list(bw.FEATURES), "baseline_percentile": bw.BASELINE_PERCENTILE}


class BlinkModel:
    def __init__(self, path: str | Path, num_threads: int = 1):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"blink model {self.path} is missing: set blink.model to a .tflite made by "
                             f"`edge-liveness blinks train`, or leave it empty for the shipped one")
        mp = self.path.with_suffix(".json")
        try:
            self.manifest = json.loads(mp.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelError(f"blink model manifest {mp} is missing or not JSON ({e}): keep the .json written by "
                             f"`edge-liveness blinks train` beside the .tflite") from None
        m = self.manifest
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        if not isinstance(m, dict) or digest != str(m.get("sha256", "")).lower():
            raise ModelError(f"blink model {self.path.name} does not match its manifest's sha256: retrain or restore both files")
        if m.get("window") != window_layout():
            raise ModelError(f"blink model {self.path.name} was trained on another window layout "
                             f"({m.get('window')}): retrain it with `edge-liveness blinks train`")
        try:
            self.threshold = float(m["threshold"])
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"blink model manifest {mp} has no numeric threshold: retrain it") from None
        self.sha256 = digest
        self.name = str(m.get("name", self.path.stem))
        self.model = TFLiteModel(self.path, num_threads=num_threads, name="blink")
        n = bw.N_SAMPLES * bw.N_FEATURES
        if int(np.prod(self.model.input.shape)) != n:
            raise ModelError(f"blink model {self.path.name}: input {self.model.input.shape}, expected {n} values")
        self._x = np.zeros(self.model.input.shape, np.float32)

    def predict(self, window: np.ndarray) -> float:
        self._x.reshape(-1)[:] = window.reshape(-1)
        self.model.set_input_raw(self._x)
        self.model.invoke()
        return float(self.model.output_raw(0).reshape(-1)[0])
