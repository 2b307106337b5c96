#!/usr/bin/env bash
# Installs what dpool needs from Debian's packages (when missing) and builds it.
#   scripts/setup.sh [BUILD_DIR] [extra cmake flags...]
# Default BUILD_DIR: build (a RelWithDebInfo build).
set -euo pipefail
cd "$(dirname "$0")/.."

# clang and its runtime libraries (libFuzzer, sanitizers) build the fuzz targets of fuzz/.
packages="build-essential cmake pkg-config libzmq3-dev libczmq-dev libmsgpack-dev \
libcriterion-dev libjansson-dev iproute2 clang libclang-rt-14-dev"
# docker-compose (v1, small, Python): tests/test_multihost.c validates docker-compose.yml
packages="$packages docker-compose"
missing=""
for p in $packages; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing$missing" >&2
    sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install:$missing" >&2; exit 1; }
        sudo=sudo
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    $sudo apt-get install -y -q --no-install-recommends $missing >/dev/null
fi

build=${1:-build}
shift || true
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$build" -j "$(nproc)"
