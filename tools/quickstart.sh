#!/usr/bin/env bash
# The README's two commands. Each installs what is missing (tools/install-deps.sh), builds into
# build/ (and, for `test`, the sanitizer build into build-asan/), then:
#   tools/quickstart.sh run [cltrain flags]   lists the devices, then trains (default: the cnn
#                                             preset on Fashion-MNIST, README settings)
#   tools/quickstart.sh test                  runs the whole test suite through ctest
set -eu
cd "$(dirname "$0")/.."
what=${1:-}
[ $# -gt 0 ] && shift
case "$what" in
  run|test) ;;
  *) echo "usage: tools/quickstart.sh run [cltrain flags] | test" >&2; exit 2 ;;
esac
if [ "$what" = test ]; then
  # the tests cover Intel's CPU OpenCL runtime too, and Slurm on stand-in nodes (cluster label)
  tools/install-deps.sh --intel --cluster
else
  tools/install-deps.sh
fi
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
if [ "$what" = run ]; then
  build/cltrain-devices
  echo
  # the main job: the cnn preset on Fashion-MNIST with the README's settings (or your flags)
  [ $# -gt 0 ] || set -- --model cnn --epochs 10 --batch 128 --lr 0.05 --momentum 0.9 \
    --weight-decay 5e-4 --schedule cosine --warmup 100
  exec build/cltrain "$@"
fi
status=0
# every label, the cluster cases included (label cluster: jobs across stand-in nodes, network
# namespaces made by tools/netns-cluster; as root they run, elsewhere they are skipped)
ctest --test-dir build --output-on-failure || status=$?
# The sanitizer build (clang): AddressSanitizer + UndefinedBehaviorSanitizer on everything, plus
# the libFuzzer harnesses of tests/fuzz, each run for a bounded number of inputs (label fuzz).
# Tests labelled slow (the end-to-end runs under mpiexec) run in build/ only.
if [ "${CLTRAIN_FUZZ_DEPS:-1}" = 1 ]; then
  CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLTRAIN_SANITIZE=ON \
    -DCLTRAIN_FUZZ=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  ctest --test-dir build-asan --output-on-failure -LE slow || status=$?
else
  echo "quickstart: CLTRAIN_FUZZ_DEPS=0: no clang, skipping the sanitizer build (build-asan/)"
fi
exit "$status"
