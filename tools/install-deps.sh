#!/usr/bin/env bash
# Installs what cltrain needs to build, run and test, from Debian 12's packages. Idempotent: a
# package already present is not touched, and apt is not called at all when nothing is missing.
#   tools/install-deps.sh            # as root (or through sudo)
#   tools/install-deps.sh --bench    # also PyTorch and OpenBLAS, the peer of tools/bench-peer.sh
set -eu
pkgs="cmake make gcc pkg-config ocl-icd-opencl-dev ocl-icd-libopencl1 opencl-headers clinfo
      pocl-opencl-icd oclgrind libclblast-dev libopenmpi-dev openmpi-bin check zlib1g-dev
      dataset-fashion-mnist python3"
[ "${CLTRAIN_FUZZ_DEPS:-1}" = 1 ] && pkgs="$pkgs clang libclang-rt-14-dev"
[ "${1:-}" = --bench ] && pkgs="$pkgs python3-torch libopenblas0-pthread"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "install-deps: installing:$missing"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# Oclgrind ships its ICD file outside the loader's folder: register it as a second platform.
if [ ! -e /etc/OpenCL/vendors/oclgrind.icd ]; then
  lib=$(dpkg -L oclgrind 2>/dev/null | grep -m1 'liboclgrind-rt-icd\.so$' || true)
  if [ -n "$lib" ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo mkdir -p /etc/OpenCL/vendors
    echo "$lib" | $sudo tee /etc/OpenCL/vendors/oclgrind.icd >/dev/null
  fi
fi
