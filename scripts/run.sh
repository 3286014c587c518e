#!/usr/bin/env bash
# Install and run the daemon on its defaults: first camera, events printed to stdout and kept in
# the local journal (outbox) while no MQTT broker answers. Extra arguments go to `edge-liveness run`;
# relative paths in them (--source, --config, --secrets-dir) count from where you typed the command.
# For a door device as a systemd service use scripts/install.sh instead.

# _env.sh moves to the repository: make the user's relative paths absolute first.
args=()
abs() { case "$1" in /*|*://*|*'!'*|picamera2|'') printf '%s' "$1" ;; *) [[ "$1" =~ ^[0-9]+$ ]] && printf '%s' "$1" || printf '%s/%s' "$PWD" "$1" ;; esac; }
while [ $# -gt 0 ]; do
  case "$1" in
    --source|--config|-c|--secrets-dir) args+=("$1"); [ $# -gt 1 ] && { args+=("$(abs "$2")"); shift; } ;;
    --source=*|--config=*|--secrets-dir=*) args+=("${1%%=*}=$(abs "${1#*=}")") ;;
    *) args+=("$1") ;;
  esac
  shift
done
if [ -n "${EDGE_LIVENESS_RUN_DRY:-}" ]; then  # tests: show the command instead of installing and running it
  (IFS=$'\t'; echo "run${args[*]+$'\t'}${args[*]-}")
  exit 0
fi

# stdout carries the decisions, one JSON line each (README): whatever the install steps print goes
# to stderr, and the daemon gets the original stdout back (fd 3) at exec.
exec 3>&1 1>&2
source "$(dirname "$0")/_env.sh"
apt_install python3-venv
make_venv
pip_install metrics
fetch_models
venv_abs=$(cd "$VENV" && pwd)
echo "==> for the other edge-liveness commands, in your shell: source $venv_abs/bin/activate"
exec "$VENV/bin/edge-liveness" run ${args[@]+"${args[@]}"} 1>&3 3>&-
