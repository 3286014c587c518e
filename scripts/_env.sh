# shellcheck shell=bash
# Shared by scripts/run.sh and scripts/test.sh: system packages, the venv, the package, face models.
# Safe to run again: each step is skipped when already done. Progress (`==>` lines) goes to stderr:
# run.sh's stdout carries the daemon's decisions and nothing else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${EDGE_LIVENESS_VENV:-.venv}
PY=${PYTHON:-python3}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else echo "need root for: $*" >&2; return 1; fi; }

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> apt-get install ${missing[*]}" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

make_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> python venv in $VENV" >&2
    # --system-site-packages lets a Pi's apt python3-picamera2 (and Jetson's GStreamer OpenCV) in.
    "$PY" -m venv --system-site-packages "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
  fi
}

# The package is installed editable, so code changes need no re-install: only a changed
# pyproject.toml (dependencies, entry points) or extras not installed yet do. The stamp in the venv
# holds the installed extras and pyproject.toml's hash.
install_stamp() { echo "$1 $(sha256sum pyproject.toml | cut -d' ' -f1)"; }

pip_install() {
  local stamp="$VENV/.edge-liveness-installed" want="$1" have="" hash="" extras
  if [ -x "$VENV/bin/edge-liveness" ] && [ -f "$stamp" ]; then read -r have hash < "$stamp" || true; fi
  if [ "$hash" = "$(install_stamp "" | cut -d' ' -f2)" ]; then
    local lacking=0 e
    for e in ${want//,/ }; do [[ ",$have," == *",$e,"* ]] || lacking=1; done
    if [ "$lacking" = 0 ]; then
      echo "==> edge-liveness already installed in $VENV (pyproject.toml unchanged)" >&2
      return 0
    fi
  fi
  # keep what is installed: run.sh after test.sh must not drop the test extras, nor the reverse
  extras=$(printf '%s\n' "$have" "$want" | tr , '\n' | grep -v '^$' | sort -u | paste -sd, -)
  [ -n "$hash" ] && [ "$hash" != "$(install_stamp "" | cut -d' ' -f2)" ] && extras=$want
  echo "==> pip install -e .[$extras]" >&2
  "$VENV/bin/pip" install -q -e ".[$extras]"
  install_stamp "$extras" > "$stamp"
}

fetch_models() {
  # quiet when all is in place: a start prints what matters, not a model inventory
  "$VENV/bin/edge-liveness" models verify >/dev/null 2>&1 || "$VENV/bin/edge-liveness" models fetch
}

# The pinned mediapipe wheel the face models come from, kept in a cache (downloaded once): the
# tests of `models fetch` install from it, and the fetch itself then needs no second download.
fetch_model_wheel() {
  local dir=${EDGE_LIVENESS_WHEEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-liveness/wheels} name pip_args
  name=$("$VENV/bin/python" -c 'from edge_liveness.vision.modelstore import WHEEL_NAME; print(WHEEL_NAME)')
  if [ ! -f "$dir/$name" ]; then
    echo "==> download $name into $dir" >&2
    pip_args=$("$VENV/bin/python" -c 'from edge_liveness.vision.modelstore import PIP_ARGS; print(" ".join(PIP_ARGS))')
    # shellcheck disable=SC2086  # PIP_ARGS is a list of plain words
    "$VENV/bin/python" -m pip $pip_args -q -d "$dir"
  fi
  export EDGE_LIVENESS_MODEL_WHEEL="$dir/$name"
  "$VENV/bin/edge-liveness" models fetch --from "$EDGE_LIVENESS_MODEL_WHEEL"
}
