# Shared by scripts/run.sh and scripts/test.sh: system packages, the venv, the package, face models.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${EDGE_LIVENESS_VENV:-.venv}
PY=${PYTHON:-python3}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else echo "need root for: $*" >&2; return 1; fi; }

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> apt-get install ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

make_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> python venv in $VENV"
    # --system-site-packages lets a Pi's apt python3-picamera2 (and Jetson's GStreamer OpenCV) in.
    "$PY" -m venv --system-site-packages "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
  fi
}

pip_install() {
  echo "==> pip install -e .[$1]"
  "$VENV/bin/pip" install -q -e ".[$1]"
}

fetch_models() {
  "$VENV/bin/edge-liveness" models fetch
}
