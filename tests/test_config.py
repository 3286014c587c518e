"""The config loader: file, environment, secrets directory, one line per problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_liveness.config import ConfigError, load_settings, masked_dict

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_liveness", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=REPO, timeout=60)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for k in list(os.environ):
        if k.startswith("EDGE_LIVENESS_") and k != "EDGE_LIVENESS_SHARED_DATA":
            monkeypatch.delenv(k)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def test_defaults_are_valid():
    s = load_settings()
    assert s.camera.fps == 30.0
    assert s.active.mode == "blink"
    assert s.mqtt.password.get_secret_value() == ""
    assert s.topic_base == f"edge-liveness/{s.device.id}"


def test_example_config_is_valid_and_matches_defaults():
    example = load_settings(REPO / "config" / "edge-liveness.toml")
    defaults = load_settings()
    # The commented example documents the defaults: loading it must change nothing.
    assert masked_dict(example) == masked_dict(defaults)


def test_toml_then_env_then_overrides(tmp_path, monkeypatch):
    f = tmp_path / "c.toml"
    f.write_text('[camera]\nfps = 15\nsource = "/dev/video2"\n[device]\nid = "front-door"\n')
    s = load_settings(f)
    assert (s.camera.fps, s.camera.source, s.device.id) == (15, "/dev/video2", "front-door")
    monkeypatch.setenv("EDGE_LIVENESS_CAMERA__FPS", "25")
    s = load_settings(f)
    assert s.camera.fps == 25 and s.camera.source == "/dev/video2"  # env wins, file keeps the rest
    s = load_settings(f, camera={"source": "clip.mp4"})
    assert s.camera.source == "clip.mp4" and s.camera.fps == 25


def test_secrets_dir_aliases_and_section_keys(tmp_path, monkeypatch):
    d = tmp_path / "creds"
    d.mkdir()
    (d / "mqtt_password").write_text("hunter2\n")
    (d / "signing_key").write_text("k" * 32)
    (d / "mqtt__username").write_text("door1")
    s = load_settings(secrets_dir=d)
    assert s.mqtt.password.get_secret_value() == "hunter2"
    assert s.security.signing_key.get_secret_value() == "k" * 32
    assert s.mqtt.username == "door1"
    shown = masked_dict(s)
    assert shown["mqtt"]["password"] == "********" and "hunter2" not in repr(shown)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(d))  # as systemd's LoadCredential= sets it
    assert load_settings().mqtt.password.get_secret_value() == "hunter2"


def test_every_problem_one_line(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[camera]\nwidth = "wide"\nfps = -3\ncolour = "red"\n')
    with pytest.raises(ConfigError) as e:
        load_settings(f)
    lines = e.value.problems
    assert len(lines) == 3
    assert "camera.fps: must be > 0 (got -3)" in lines
    assert any(l.startswith("camera.width: ") and "integer" in l for l in lines)
    assert any(l.startswith("camera.colour: unknown key") for l in lines)


@pytest.mark.parametrize("text,needle", [
    ("[camera\nfps = 1", "bad TOML"),
    ('[active]\nmode = "wink"', "active.mode: must be one of"),
    ('[mqtt]\nport = 70000', "mqtt.port: must be < 65536"),
    ('[device]\nid = "a/b"', "device.id: must match"),
    ('[nosuch]\nx = 1', "nosuch: unknown key"),
    ('[models]\nnum_threads = 0', "models.num_threads: must be >= 1"),
    ('[logging]\nlevel = "LOUD"', "logging.level: must be one of"),
])
def test_bad_values(tmp_path, text, needle):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_settings(f)
    assert any(needle in p for p in e.value.problems), e.value.problems


def test_unreadable_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="directory"):
        load_settings(tmp_path)
    f = tmp_path / "bin.toml"
    f.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError):
        load_settings(f)


def test_config_check_cli(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[camera]\nwidth = "wide"\nfps = -3\ncolour = "red"\n')
    r = run_cli("config", "check", "--config", str(f))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3 and "camera.fps: must be > 0 (got -3)" in lines
    assert "Traceback" not in r.stderr
    ok = run_cli("config", "check", "--config", str(REPO / "config" / "edge-liveness.toml"))
    assert ok.returncode == 0 and "OK" in ok.stdout


def test_config_show_masks_secrets(tmp_path):
    d = tmp_path / "creds"
    d.mkdir()
    (d / "mqtt_password").write_text("s3cret-pw")
    r = run_cli("config", "show", "--secrets-dir", str(d))
    assert r.returncode == 0
    assert "s3cret-pw" not in r.stdout and "# password: set, not shown" in r.stdout
    assert "[camera]" in r.stdout


# ---------------------------------------------------------------- issue 27, finding 7

def cli(*argv: str) -> tuple[int, str, str]:
    """``edge-liveness ARGV`` in this process (the environment is the test's): (exit code, stdout, stderr)."""
    import contextlib
    import io

    from edge_liveness.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_config_show_output_passes_config_check_and_means_the_same(tmp_path, monkeypatch):
    """Unset thresholds (TOML has no null), a list, secrets (redacted), awkward strings and a value from
    the environment: what `config show` prints is a config `config check` accepts, with the same values."""
    creds = tmp_path / "creds"
    creds.mkdir()
    for name in ("mqtt_password", "signing_key", "web_token"):
        (creds / name).write_text(f"{name}-value\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text('[camera]\nsource = "clip \\"one\\"\\t\\u007f\u00e9.mp4"\n[active]\nblink_alternatives = ["nod"]\n'
                   '[decision]\nthreshold = 0.4\n[storage]\nstate_dir = "/tmp/x y"\n')
    monkeypatch.setenv("EDGE_LIVENESS_DEVICE__ID", "front-door")
    code, shown, err = cli("config", "show", "--config", str(cfg), "--secrets-dir", str(creds))
    assert code == 0, err
    assert "-value" not in shown, "a secret must never be printed"
    again = tmp_path / "shown.toml"
    again.write_text(shown)
    monkeypatch.delenv("EDGE_LIVENESS_DEVICE__ID")
    code, out, err = cli("config", "check", "--config", str(again))
    assert (code, err) == (0, ""), err
    original = masked_dict(load_settings(cfg, secrets_dir=creds, device={"id": "front-door"}))
    reread = masked_dict(load_settings(again, secrets_dir=creds))
    assert reread == original
    assert reread["blink"]["threshold"] is None and reread["decision"]["threshold"] == 0.4


WEB_OPEN = '[web]\nenabled = true\nhost = "::"\n'


def test_config_check_applies_the_web_rules_run_applies(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(WEB_OPEN)
    code, out, err = cli("config", "check", "--config", str(cfg))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "web_token" in err, (code, out, err)
    # The real daemon with the same file refuses with the same line.
    r = run_cli("run", "--config", str(cfg), env={"EDGE_LIVENESS_STORAGE__STATE_DIR": str(tmp_path / "state"),
                                                   "EDGE_LIVENESS_MQTT__ENABLED": "false"})
    assert r.returncode == 2 and err.strip() in r.stderr, r.stderr
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "web_token").write_text("t0ken")
    assert cli("config", "check", "--config", str(cfg), "--secrets-dir", str(creds))[0] == 0


@pytest.mark.parametrize("var, value, needles", [
    ("EDGE_LIVENESS_CAMRA__FPS", "15", ("EDGE_LIVENESS_CAMRA__FPS", "did you mean EDGE_LIVENESS_CAMERA__FPS?")),
    ("EDGE_LIVENESS_CAMERA__FSP", "15", ("EDGE_LIVENESS_CAMERA__FSP", "did you mean EDGE_LIVENESS_CAMERA__FPS?")),
    ("EDGE_LIVENESS_DECISON", '{"cooldown_s": 1}', ("EDGE_LIVENESS_DECISON", "did you mean EDGE_LIVENESS_DECISION?")),
    ("EDGE_LIVENESS_STORAGE__STATE_DIR", "", ("storage.state_dir: is empty", "EDGE_LIVENESS_STORAGE__STATE_DIR")),
])
def test_a_misspelt_or_empty_environment_setting_is_one_line(monkeypatch, var, value, needles):
    monkeypatch.setenv(var, value)
    monkeypatch.setenv("EDGE_LIVENESS_SOME_TOOL", "not config")  # tooling shares the prefix: never an error
    code, out, err = cli("config", "check")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert all(n in lines[0] for n in needles), lines[0]


def test_an_empty_state_dir_is_refused(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[storage]\nstate_dir = ""\n')
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert e.value.problems == ["storage.state_dir: is empty: give the directory for the journal and status file, "
                                "e.g. /var/lib/edge-liveness (got '')"]
