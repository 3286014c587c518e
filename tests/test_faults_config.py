"""Config faults: every field's bad values (wrong type, out of range, not a choice, not matching its
pattern), unknown keys and sections, bad TOML, unreadable files, bad environment values.

Every field of ``Settings`` is enumerated from the model itself, so a field added later is tested
too. Each bad value must give exactly one problem line naming that field; the real daemon started
with such a config exits 2 with those lines and nothing else (no traceback, no READY).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import annotated_types as at
import pytest
from pydantic import BaseModel

from edge_liveness.config import ConfigError, Settings, load_settings
from fault_helpers import REPO, DaemonProc, clean_env


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for k in list(os.environ):
        if k.startswith("EDGE_LIVENESS_") and k != "EDGE_LIVENESS_SHARED_DATA":
            monkeypatch.delenv(k)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    raise TypeError(v)


def _bad_values(field) -> list[tuple[str, object]]:
    """(kind, value) pairs that this field must refuse."""
    ann = field.annotation
    args = typing.get_args(ann)
    out: list[tuple[str, object]] = [("type", [1, 2])]  # a list fits no scalar field
    if typing.get_origin(ann) is typing.Literal:
        out.append(("choice", "no-such-choice"))
    if ann is bool:
        out.append(("type", "maybe"))
    if ann is int:
        out.append(("type", 1.5))
    if ann in (int, float) or float in args:
        out.append(("type", "fast"))
    for m in field.metadata:
        if isinstance(m, at.Gt):
            out.append(("range", m.gt))
        elif isinstance(m, at.Ge):
            out.append(("range", m.ge - 1))
        elif isinstance(m, at.Lt):
            out.append(("range", m.lt))
        elif isinstance(m, at.Le):
            out.append(("range", m.le + 1))
        elif getattr(m, "pattern", None):
            out.append(("pattern", "bad value #+ !"))
    return out


def _all_cases() -> list[tuple[str, str, str, object]]:
    cases = []
    for section, sfield in Settings.model_fields.items():
        cls = sfield.annotation
        assert isinstance(cls, type) and issubclass(cls, BaseModel), section
        for name, field in cls.model_fields.items():
            for kind, value in _bad_values(field):
                cases.append((section, name, kind, value))
    return cases


CASES = _all_cases()


def test_every_field_is_covered():
    fields = {(s, n) for s, n, _, _ in CASES}
    total = sum(len(f.annotation.model_fields) for f in Settings.model_fields.values())
    assert len(fields) == total and total > 80
    assert {k for _, _, k, _ in CASES} == {"type", "choice", "range", "pattern"}


@pytest.mark.parametrize("section,name,kind,value", CASES, ids=[f"{s}.{n}-{k}-{v!r}" for s, n, k, v in CASES])
def test_bad_value_is_one_line_naming_the_field(tmp_path, section, name, kind, value):
    f = tmp_path / "c.toml"
    f.write_text(f"[{section}]\n{name} = {_toml(value)}\n")
    with pytest.raises(ConfigError) as e:
        load_settings(f)
    problems = e.value.problems
    assert problems, (section, name, value)
    for p in problems:
        assert p.startswith(f"{section}.{name}"), p
        assert "\n" not in p
        if name in ("password", "signing_key"):
            continue
        assert "got" in p or "unknown" in p, p  # says what it got, so the fix is obvious


@pytest.mark.parametrize("text,needle", [
    ("[camera]\nfsp = 30\n", "camera.fsp: unknown key"),
    ("[cameras]\nfps = 30\n", "cameras: unknown key"),
    ("fps = 30\n", "fps: unknown key"),
])
def test_unknown_keys_and_sections(tmp_path, text, needle):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_settings(f)
    assert [p for p in e.value.problems if p.startswith(needle)], e.value.problems


def test_bad_environment_value_names_the_field(monkeypatch):
    monkeypatch.setenv("EDGE_LIVENESS_CAMERA__FPS", "fast")
    monkeypatch.setenv("EDGE_LIVENESS_MQTT__PORT", "70000")
    with pytest.raises(ConfigError) as e:
        load_settings()
    assert sorted(p.split(":")[0] for p in e.value.problems) == ["camera.fps", "mqtt.port"]


# ---------------------------------------------------------------- the real daemon

def _run_daemon_with(tmp_path: Path, config: Path, env: dict[str, str] | None = None,
                     prefix: list[str] | None = None) -> tuple[int, str]:
    """Start `edge-liveness run --config` and return (exit code, stderr); it must exit on its own."""
    full = clean_env()
    full["EDGE_LIVENESS_STORAGE__STATE_DIR"] = str(tmp_path / "state")
    full.update(env or {})
    r = subprocess.run([*(prefix or []), sys.executable, "-m", "edge_liveness", "run", "--config", str(config)],
                       cwd=REPO, env=full, capture_output=True, text=True, timeout=120)
    return r.returncode, r.stderr


def _assert_config_errors(code: int, err: str, fields: list[str]) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [s for s in err.splitlines() if s.strip()]
    assert all(s.startswith("config error: ") for s in lines), lines
    named = [s.removeprefix("config error: ").split(":")[0] for s in lines]
    assert named == fields, lines


@pytest.mark.slow
def test_daemon_with_many_bad_fields_lists_each_once_and_exits_2(tmp_path):
    # One out-of-range value per section, in file order.
    chosen: dict[str, tuple[str, object]] = {}
    for section, name, kind, value in CASES:
        if kind == "range" and section not in chosen:
            chosen[section] = (name, value)
    text = "".join(f"[{s}]\n{n} = {_toml(v)}\n" for s, (n, v) in chosen.items())
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    code, err = _run_daemon_with(tmp_path, cfg)
    expected = [f"{s}.{n}" for s, (n, _) in chosen.items()]
    assert len(expected) >= 8
    _assert_config_errors(code, err, expected)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["bad_toml", "directory", "not_utf8", "missing", "bad_env"])
def test_daemon_with_an_unusable_config_file_exits_2_with_one_line(tmp_path, case):
    cfg = tmp_path / "c.toml"
    env = None
    needle = {"bad_toml": "bad TOML", "directory": "is a directory", "not_utf8": "must be UTF-8",
              "missing": "config file not found", "bad_env": "camera.fps: must be > 0"}[case]
    if case == "bad_toml":
        cfg.write_text("[camera\nfps = 30\n")
    elif case == "directory":
        cfg.mkdir()
    elif case == "not_utf8":
        cfg.write_bytes(b"[device]\nid = \"\xff\xfe\"\n")
    elif case == "bad_env":
        cfg.write_text("")
        env = {"EDGE_LIVENESS_CAMERA__FPS": "-1"}
    code, err = _run_daemon_with(tmp_path, cfg, env)
    lines = [s for s in err.splitlines() if s.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("config error: "), err
    assert needle in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.slow
def test_daemon_cannot_read_its_config_file(tmp_path):
    """Permission denied. Root reads everything, so the daemon runs as nobody for this one."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run the daemon as another user")
    # Import what the daemon imports: with a --system-site-packages venv numpy/OpenCV may live in a
    # directory that only root can read, and then this test cannot run as nobody at all.
    probe = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                            "import edge_liveness.service.daemon, edge_liveness.pipeline"], cwd=REPO, capture_output=True,
                           text=True, env={**os.environ, "HOME": "/nonexistent"})
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot run this checkout's Python ({probe.stderr.strip().splitlines()[-1:]})")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[camera]\nfps = 30\n")
    cfg.chmod(0o600)
    tmp_path.chmod(0o755)
    code, err = _run_daemon_with(tmp_path, cfg, {"HOME": "/nonexistent"},
                                 prefix=[setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"])
    lines = [s for s in err.splitlines() if s.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "config file not readable (permission denied)" in lines[0], lines[0]


@pytest.mark.slow
def test_bad_config_never_reaches_ready(tmp_path):
    """Under systemd (NOTIFY_SOCKET set) a bad config is one line and no READY=1."""
    d = DaemonProc(tmp_path, {"EDGE_LIVENESS_STORAGE__STATE_DIR": str(tmp_path / "state")},
                   config_text="[decision]\nmin_frames = 0\n", model_env=False)
    try:
        code = d.wait_exit(60)
        assert code == 2 and d.log().strip() == "config error: decision.min_frames: must be >= 1 (got 0)", d.log()
        assert not d.notify.times("READY")
    finally:
        d.close()
