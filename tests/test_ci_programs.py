"""Every program outside Python that the test suite runs is installed by scripts/test.sh before pytest,
or the test that runs it skips with a reason naming it (issue 27: on a new machine CI failed because
scripts/pi/compare.py ran `qemu-aarch64-static`, which only check_pi.sh, after pytest, installs).

The programs are found in the sources, not listed by hand (tests/program_scan.py): in Python (tests/,
the package, and the scripts the tests name) and in the shell scripts the tests name (and those they
source or run). A program
counts as provided when it belongs to a Debian package that is Essential or of Priority `required`
(on every Debian system), to a package test.sh's `apt_install` line installs, or to one the calling
script installs itself; or when a `pytest.skip`/`skipif` reason in tests/ names it.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

from program_scan import PROGRAM, REPO, python_programs, shell_programs

TEST_SH = REPO / "scripts" / "test.sh"
# Where no dpkg knows the file (the program is not installed on this machine), the Debian package.
PACKAGE_OF = {"mosquitto": "mosquitto", "mosquitto_passwd": "mosquitto", "mosquitto_sub": "mosquitto-clients",
              "mosquitto_pub": "mosquitto-clients", "chromium": "chromium", "shellcheck": "shellcheck",
              "systemd-analyze": "systemd", "systemctl": "systemd", "openssl": "openssl", "git": "git",
              "qemu-aarch64-static": "qemu-user-static", "mmdebstrap": "mmdebstrap", "arch-test": "arch-test"}
# Looked up with shutil.which and left out when absent, with the test that runs the code without it.
OPTIONAL = {"qemu-aarch64-static": ("scripts/pi/compare.py", "test_compare_runs_without_qemu_on_path")}


# ---------------------------------------------------------------- what the suite runs, and what provides it

def _test_sources() -> list[Path]:
    return sorted((REPO / "tests").glob("*.py"))


def _named_scripts() -> list[Path]:
    """Scripts under scripts/ whose file name a test names, and the shell scripts those source or run."""
    names = set(re.findall(r"[\w.-]+\.(?:sh|py)\b", "\n".join(p.read_text() for p in _test_sources())))
    scripts = [p for p in sorted((REPO / "scripts").rglob("*")) if p.suffix in (".sh", ".py") and p.name in names]
    for sh in [p for p in scripts if p.suffix == ".sh"]:
        for name in re.findall(r"[\w.-]+\.sh\b", sh.read_text()):
            extra = REPO / "scripts" / name
            if extra.is_file() and extra not in scripts:
                scripts.append(extra)
    return scripts


def _apt_packages(script: Path) -> set[str]:
    """The packages a script's `apt_install` / `apt-get install` lines name."""
    pkgs: set[str] = set()
    for line in script.read_text().splitlines():
        m = re.match(r"\s*(?:as_root\s+)?(?:apt_install|apt-get\s+install)\s+(.*)", line)
        if m:
            pkgs |= {w for w in m.group(1).split() if PROGRAM.match(w) and not w.startswith("-")}
    return pkgs


@lru_cache(maxsize=None)
def _dpkg_package(program: str) -> str | None:
    where = shutil.which(program, path=os.pathsep.join((os.environ.get("PATH", ""), "/usr/sbin", "/sbin")))
    for query in (f"bin/{program}", os.path.realpath(where) if where else None):
        if query is None:
            continue
        r = subprocess.run(["dpkg", "-S", query], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            pkg, _, path = line.partition(": ")
            if not pkg.startswith("diversion ") and Path(path.strip()).name == Path(query).name \
                    and "bin/" in path:
                return pkg.split(":")[0].split(",")[0].strip()
    return PACKAGE_OF.get(program)


@lru_cache(maxsize=None)
def _installed() -> dict[str, tuple[str, str]]:
    """{package: (its Pre-Depends and Depends, "essential" or its Priority)} of this machine, in one dpkg-query."""
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Pre-Depends}, ${Depends}\t${Essential}\t${Priority}\n"],
                       capture_output=True, text=True)
    rows = (line.split("\t") for line in r.stdout.splitlines() if line.count("\t") == 3)
    return {pkg: (deps, "essential" if essential == "yes" else priority) for pkg, deps, essential, priority in rows}


def _with_dependencies(packages: set[str]) -> set[str]:
    """The packages and, as far as they are installed here, what they depend on (python3-venv brings python3)."""
    installed = _installed()
    seen, todo = set(packages), list(packages)
    while todo:
        deps = installed.get(todo.pop(), ("", ""))[0]
        for dep in re.findall(r"(?:^|[,|])\s*([a-z0-9][a-z0-9+.-]+)", deps):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def _base_packages() -> set[str]:
    """What every Debian system has: Essential packages and those of Priority required."""
    return {pkg for pkg, (_, kind) in _installed().items() if kind in ("essential", "required")}


def _skip_reasons() -> str:
    """Every literal in a pytest.skip(...) or skipif(..., reason=...) of the tests, lower case."""
    texts = []
    for path in _test_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in ("skip", "skipif"):
                texts += [c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
    return "\n".join(texts).lower()


@lru_cache(maxsize=None)
def suite_programs() -> tuple[dict[str, set[str]], list[str]]:
    """{program: {where}} for everything the suite can run, and the Python calls not followed back."""
    found: dict[str, set[str]] = {}
    unresolved: list[str] = []
    # this file reads dpkg's database to judge the others; it is not part of what the suite needs
    python = [*(p for p in _test_sources() if p.name != Path(__file__).name), *sorted((REPO / "edge_liveness").rglob("*.py")),
              *sorted((REPO / "converters").rglob("*.py")), *(p for p in _named_scripts() if p.suffix == ".py")]
    for path in python:
        progs, unknown = python_programs(path)
        unresolved += unknown
        for prog, where in progs.items():
            found.setdefault(prog, set()).update(where)
    for prog, where in shell_programs([p for p in _named_scripts() if p.suffix == ".sh"]).items():
        found.setdefault(prog, set()).update(where)
    return found, unresolved


# ---------------------------------------------------------------- the tests

def test_every_program_the_suite_runs_is_installed_by_test_sh_or_skipped_with_a_reason():
    if subprocess.run(["dpkg-query", "-W", "dpkg"], capture_output=True).returncode != 0:
        pytest.skip("no dpkg here: the packages of programs cannot be looked up (CI runs Debian)")
    found, _ = suite_programs()
    installed = _with_dependencies(_apt_packages(TEST_SH))
    base, reasons = _base_packages(), _skip_reasons()
    missing = []
    for prog, where in sorted(found.items()):
        pkg = _dpkg_package(prog)
        own = set().union(*(_apt_packages(REPO / w) for w in where if w.endswith(".sh")))
        if pkg is not None and (pkg in base or pkg in installed or pkg in own):
            continue
        if prog in OPTIONAL or re.search(rf"(?<![\w-]){re.escape(prog.lower())}(?![\w-])", reasons):
            continue
        missing.append(f"{prog} (package {pkg or 'unknown'}), run by {', '.join(sorted(where))}: add its package "
                       "to scripts/test.sh's apt_install line, or skip the test with a reason naming it")
    assert not missing, "\n".join(missing)


def test_every_subprocess_call_is_followed_back_to_its_program():
    _, unresolved = suite_programs()
    assert not unresolved, "name the program as a literal (or a variable set from one):\n" + "\n".join(unresolved)


def test_the_scan_finds_the_programs_the_suite_is_known_to_run():
    """The scanner itself: these calls exist today, each written differently (a constant from the
    environment, a loop over names, which(), a bash -c body, an array wrapper)."""
    found, _ = suite_programs()
    for prog in ("mosquitto", "mosquitto_passwd", "openssl", "chromium", "systemd-analyze", "shellcheck",
                 "setpriv", "mount", "qemu-aarch64-static", "mmdebstrap", "chroot", "nice", "apt-get", "git"):
        assert prog in found, (prog, sorted(found))
    assert not {"picamera2", "replay", "private", "python3-venv", "cortex-a72", "e"} & set(found), sorted(found)


def test_a_new_program_in_a_test_is_caught(tmp_path):
    src = tmp_path / "t.py"
    src.write_text("import subprocess\nTOOL = 'ffprobe'\n\ndef test_x():\n"
                   "    cmd = [TOOL, '-v']\n    subprocess.run(cmd + ['x'], check=True)\n"
                   "    subprocess.Popen(['/usr/bin/socat', 'a'])\n")
    found, unresolved = python_programs(src)
    assert set(found) == {"ffprobe", "socat"} and unresolved == []
    src.write_text("import subprocess, sys\n\ndef f(tool):\n    subprocess.run([tool])\n"
                   "    subprocess.run([sys.executable, '-c', 'pass'])\n")
    found, unresolved = python_programs(src)
    assert found == {} and len(unresolved) == 1 and "subprocess.run([tool])" in unresolved[0]
    sh = tmp_path / "s.sh"
    sh.write_text("#!/bin/bash\nf() { jq . x; }\nX=1 timeout --kill-after=3 60 rsync -a a b # curl\n"
                  "case \"$1\" in curl|wget) echo ;; esac\nbash -c 'mount -t tmpfs t /x && tar -cf - .'\n"
                  "echo \"$(date +%s) (not a command)\" >&2\ncommand -v sudo >/dev/null && sudo ls\n")
    assert set(shell_programs([sh])) == {"jq", "timeout", "rsync", "bash", "mount", "tar", "date", "ls"}


@pytest.mark.parametrize("prog", sorted(OPTIONAL))
def test_optional_programs_are_looked_up_before_they_run(prog):
    where, test_name = OPTIONAL[prog]
    assert f'shutil.which("{prog}")' in (REPO / where).read_text()
    assert any(f"def {test_name}(" in p.read_text() for p in _test_sources()), test_name
