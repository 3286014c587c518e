"""Model faults thrown at the real daemon. At start: one clear error line and exit code 2 (systemd's
RestartPreventExitStatus=2 then stops the restart loop). At reload (SIGHUP or the MQTT ``reload``
command): the running model stays, the rejection is logged, answered and shown in STATUS=.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import time
from pathlib import Path

import pytest

from conftest import shared_file
from fault_helpers import (DEVICE_ID, SIGNING_KEY, DaemonProc, EventSink, assert_one_clear_error, base_env, liveness_model_path,
                           publish, topic_base, wait_until)

pytestmark = pytest.mark.slow


def _copy_model(src: Path, dst: Path, data: bytes | None = None, manifest: dict | None = None,
                rehash: bool = True) -> Path:
    """A liveness model at ``dst`` (.tflite + .json) from ``src``'s manifest, with other bytes if given."""
    data = src.read_bytes() if data is None else data
    dst.write_bytes(data)
    m = json.loads(src.with_suffix(".json").read_text()) if manifest is None else manifest
    if rehash:
        m["sha256"] = hashlib.sha256(data).hexdigest()
    dst.with_suffix(".json").write_text(json.dumps(m))
    return dst


def _bad_models(tmp: Path, face_models: Path) -> dict[str, tuple[Path, str]]:
    """case -> (model path, text the one error line must hold)."""
    good = liveness_model_path()
    data = good.read_bytes()
    cases: dict[str, tuple[Path, str]] = {}
    cases["missing"] = (tmp / "nowhere" / "liveness.tflite", "is missing: set models.liveness")
    # A half-written update: the manifest is for the whole file, the model stops half-way.
    p = _copy_model(good, tmp / "half_written.tflite", data[: len(data) // 2], rehash=False)
    cases["half_written"] = (p, "do not belong together")
    # Truncated, and a manifest made for the truncated bytes: the runtime itself must refuse it.
    p = _copy_model(good, tmp / "truncated.tflite", data[: len(data) // 3])
    cases["truncated"] = (p, f"model file {p} could not be loaded")
    p = _copy_model(good, tmp / "not_tflite.tflite", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64)
    # `models fetch` fetches only the face models: the fix for a garbage liveness model is another.
    cases["not_tflite"] = (p, "is not a TFLite model (bad header): restore it or re-create it with "
                              "`edge-liveness convert`")
    d = tmp / "a_directory.tflite"
    d.mkdir(exist_ok=True)
    cases["directory"] = (d, f"liveness model {d} is a directory, not a .tflite file")
    # A real TFLite file of another model (the face mesh takes 192x192).
    p = _copy_model(good, tmp / "other_model.tflite", (face_models / "face_landmark.tflite").read_bytes())
    cases["wrong_input_shape"] = (p, "takes input [1, 192, 192, 3] but its manifest says [1, 128, 128, 3]")
    m = json.loads(good.with_suffix(".json").read_text())
    m["sha256"] = "0" * 64
    p = _copy_model(good, tmp / "hash_mismatch.tflite", manifest=m, rehash=False)
    cases["hash_mismatch"] = (p, "do not belong together")
    p = tmp / "no_manifest.tflite"
    shutil.copy(good, p)
    cases["no_manifest"] = (p, "manifest")
    return cases


CASES = ["missing", "half_written", "truncated", "not_tflite", "wrong_input_shape", "hash_mismatch", "no_manifest",
         "directory"]


@pytest.mark.parametrize("case", CASES)
def test_bad_liveness_model_at_start_is_one_line_and_exit_2(case, tmp_path, face_models):
    path, needle = _bad_models(tmp_path, face_models)[case]
    if case == "wrong_input_shape":
        size = json.loads(liveness_model_path().with_suffix(".json").read_text())["input_size"]
        size = size[0] if isinstance(size, list) else size
        needle = f"takes input [1, 192, 192, 3] but its manifest says [1, {size}, {size}, 3]"
    env = base_env(tmp_path / "state", shared_file("video", "tranvanluyt_real.mp4"), None,
                   models__liveness=str(path))
    d = DaemonProc(tmp_path, env, model_env=False)
    try:
        code = d.wait_exit(120)
        line = assert_one_clear_error(d, code, needle)
        assert not d.notify.times("READY"), "a daemon with a bad model must never say READY"
        if case in ("not_tflite", "directory"):
            assert "run `edge-liveness models fetch`" not in line and "re-fetch" not in line, line
        if case not in ("no_manifest", "truncated"):
            assert path.name in line
    finally:
        d.close()


def test_face_models_missing_at_start_names_models_fetch(tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    env = base_env(tmp_path / "state", shared_file("video", "tranvanluyt_real.mp4"), None, models__dir=str(empty))
    d = DaemonProc(tmp_path, env)
    try:
        code = d.wait_exit(120)
        assert_one_clear_error(d, code, "edge-liveness models fetch")
    finally:
        d.close()


def _signed(seq: int, **body) -> str:
    from edge_liveness.events import signing

    return json.dumps(signing.command("reload", DEVICE_ID, SIGNING_KEY.encode(), seq=seq, **body))


def test_reload_with_bad_models_keeps_the_running_one(mosquitto_broker, tmp_path, face_models):
    b = mosquitto_broker
    good = _copy_model(liveness_model_path(), tmp_path / "good.tflite")
    good_sha = hashlib.sha256(good.read_bytes()).hexdigest()
    bad = _bad_models(tmp_path, face_models)
    sink = EventSink(b.host, b.port, topic_base())
    cfg = '[models]\nliveness = "{}"\n'
    # models.liveness comes from the TOML file (what a reload re-reads), not from the environment.
    d = DaemonProc(tmp_path, base_env(tmp_path / "state", shared_file("video", "tranvanluyt_real.mp4"), b.port),
                   config_text=cfg.format(good), model_env=False)
    try:
        d.wait_ready()
        d.wait_decisions(1)

        # SIGHUP with a truncated model in the config: rejected, the old model keeps deciding.
        d.config.write_text(cfg.format(bad["truncated"][0]))
        t = time.monotonic()
        d.signal(signal.SIGHUP)
        d.wait_notify("RELOADING", timeout=20, since=t)
        line = d.wait_log(r"ERROR .*reload rejected, keeping the running models: model file .* could not be loaded",
                          timeout=60, since=t)
        d.wait_notify("STATUS", "reload rejected", timeout=10, since=t)
        d.wait_notify("READY", timeout=10, since=t)
        n = len(d.decisions())
        d.wait_decisions(n + 2)
        assert all(e["evidence"]["model"]["sha256"] == good_sha for e in d.decisions()[n:]), line
        status = tmp_path / "state" / "status.json"  # rewritten at most once a second
        wait_until(lambda: json.loads(status.read_text())["message"].startswith("reload rejected"), 10,
                   "the rejection in status.json")

        # The MQTT reload command with a model of the wrong shape: answered, logged, still the old model.
        for seq, case in ((1, "wrong_input_shape"), (2, "hash_mismatch"), (3, "not_tflite")):
            d.config.write_text(cfg.format(bad[case][0]))
            t = time.monotonic()
            publish(b.host, b.port, [(f"{topic_base()}/set/reload", _signed(seq))])
            assert sink.wait_for(lambda s: len(s.results("reload")) >= seq, 60), f"no answer to reload ({case})"
            answer = sink.results("reload")[-1]
            # docs/mqtt.md: a rejection is {"ok": false, "error": ...} for every command, reload too.
            assert answer["ok"] is False and "keeping the running models" in answer["error"], answer
            assert "message" not in answer
            d.wait_log(r"reload rejected, keeping the running models", timeout=10, since=t)
        n = len(d.decisions())
        d.wait_decisions(n + 1)
        assert d.decisions()[-1]["evidence"]["model"]["sha256"] == good_sha

        # The fix: a good model reloads over MQTT, and says which one.
        d.config.write_text(cfg.format(good))
        publish(b.host, b.port, [(f"{topic_base()}/set/reload", _signed(4))])
        assert sink.wait_for(lambda s: len(s.results("reload")) >= 4, 60)
        answer = sink.results("reload")[-1]
        assert answer["ok"] is True and good_sha[:12] in answer["message"], answer
        assert d.alive() and d.stop() == 0
        assert "Traceback" not in d.log()
    finally:
        d.close()
        sink.close()
