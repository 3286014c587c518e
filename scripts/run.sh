#!/usr/bin/env bash
# Install and run the daemon on its defaults: first camera, events printed to stdout and kept in
# the local journal (outbox) while no MQTT broker answers. Extra arguments go to `edge-liveness run`.
# For a door device as a systemd service use scripts/install.sh instead.
source "$(dirname "$0")/_env.sh"
apt_install python3-venv
make_venv
pip_install metrics
fetch_models
exec "$VENV/bin/edge-liveness" run "$@"
