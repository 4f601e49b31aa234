#!/usr/bin/env bash
# Installs the system packages the comparative benchmark needs to build and draw:
# libclang and clang (the rocksdb crate generates its bindings with bindgen) and a
# font for the charts. Debian/Ubuntu with apt; as root, or with sudo.
# With --fonts-only (the quick benchmark, which builds no RocksDB): the font alone.
set -euo pipefail
missing=()
if [ "${1:-}" != "--fonts-only" ]; then
    command -v clang >/dev/null 2>&1 || missing+=(clang)
    ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || missing+=(libclang-dev)
fi
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "installing ${missing[*]}"
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
