#!/usr/bin/env bash
# Does the light (torch-free) runtime install and fuse correctly on ARM64 Linux?
#
# An arm64 Debian 12 root file system (debootstrap, first stage + its Python packages
# unpacked), the runtime's dependencies from their aarch64 wheels, and lutfuse_ros itself
# installed with pip into a target folder; then scripts/arm64_fuse.py runs under
# qemu-aarch64-static and natively, and the outputs are compared (tolerance 1 grey level).
# Emulated timings are a sanity check, not performance.
#
#   bash scripts/arm64_check.sh            short form (CI): 3 synthetic + 2 real pairs
#   bash scripts/arm64_check.sh --full     every MSRS/RoadScene test pair (about 15 min)
#
# Needs root (debootstrap; apt installs it and qemu-user-static when missing), network
# access to deb.debian.org and PyPI the first time; everything is cached in build/arm64/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
MODE=short; [ "${1:-}" = "--full" ] && MODE=full
CACHE="${ARM64_CACHE:-$ROOT/build/arm64}"
ROOTFS="$CACHE/rootfs"
SITE="$CACHE/site"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || bash scripts/setup.sh
SHARED="$ROOT/../shared"

[ "$(id -u)" = 0 ] || { echo "arm64_check: run as root (debootstrap needs it)" >&2; exit 2; }
if ! command -v debootstrap >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap qemu-user-static >/dev/null
fi

mkdir -p "$CACHE"
start=$(date +%s)
if [ ! -x "$ROOTFS/usr/bin/python3.11" ]; then
  echo "arm64_check: debootstrap arm64 bookworm into $ROOTFS"
  rm -rf "$ROOTFS"
  # --foreign: unpack only (the second stage would run arm64 code under binfmt, which a
  # container may not offer); the Python packages it downloaded are unpacked by hand.
  debootstrap --arch=arm64 --variant=minbase --foreign --include=python3 bookworm \
    "$ROOTFS" http://deb.debian.org/debian > "$CACHE.debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE.debootstrap.log" >&2; exit 1; }
  for deb in "$ROOTFS"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$ROOTFS"; done
fi

# pip's "dependency resolver ... launch-ros requires ament_index_python" line (.venv holds the
# ROS 2 tools, whose PyPI names differ) says nothing about the target folder: filtered.
QUIET='^WARNING: Location|dependency resolver does not currently|launch-ros .* requires ament_index_python'
# The runtime's dependencies as aarch64 wheels (install_requires minus what only the
# recorder/eval use), and the package itself, as `pip install` puts them on a robot.
# onnxruntime 1.27.0: 1.28 and later die at import under qemu-user 7.2 (SIGSEGV in CPU
# feature detection; seen with 1.28, 1.30, 1.32); on real ARM64 hardware use the newest.
if [ ! -f "$SITE/.complete" ]; then
  echo "arm64_check: aarch64 wheels into $SITE"
  rm -rf "$SITE"
  "$PY" -m pip install -q --target "$SITE" --only-binary=:all: --python-version 3.11 \
    --implementation cp --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 \
    --platform manylinux2014_aarch64 \
    numpy opencv-python-headless numba onnxruntime==1.27.0 pyyaml 2>&1 | grep -Ev "$QUIET" || true
  touch "$SITE/.complete"
fi
rm -rf "$CACHE/pkg"
"$PY" -m pip install -q --no-deps --target "$CACHE/pkg" . 2>&1 | grep -Ev "$QUIET" || true
[ -d "$CACHE/pkg/lutfuse_ros" ] || { echo "arm64_check: pip did not install lutfuse_ros" >&2; exit 1; }
echo "arm64_check: rootfs + wheels ready in $(( $(date +%s) - start )) s"

args=(); [ "$MODE" = full ] && args+=(--full)
[ -d "$SHARED/data/ivif" ] && args+=(--shared "$SHARED")
OUT="$CACHE/out"; rm -rf "$OUT"
# Native run of the same script with the dev venv (x86-64 wheels, same code).
"$PY" scripts/arm64_fuse.py fuse --out "$OUT/x86_64" "${args[@]}" > "$OUT.x86_64.log"
t0=$(date +%s)
# -L: the arm64 rootfs as the ELF interpreter prefix; no chroot, no binfmt needed.
(cd "$CACHE" && env -i PATH=/usr/bin:/bin HOME="$CACHE" PYTHONNOUSERSITE=1 \
  PYTHONPATH="$CACHE/pkg:$SITE" NUMBA_CACHE_DIR="$CACHE/numba_cache" \
  qemu-aarch64-static -L "$ROOTFS" "$ROOTFS/usr/bin/python3.11" "$ROOT/scripts/arm64_fuse.py" \
  fuse --out "$OUT/aarch64" "${args[@]}")
echo "arm64_check: emulated run $(( $(date +%s) - t0 )) s (sanity check only, not performance)"
"$PY" scripts/arm64_fuse.py compare "$OUT/x86_64" "$OUT/aarch64"
