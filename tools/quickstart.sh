#!/usr/bin/env bash
# The README's two commands. Each installs what is missing (tools/install-deps.sh), builds into
# build/ (and, for `test`, the sanitizer build into build-asan/), then:
#   tools/quickstart.sh run [cltrain flags]   runs the main job
#   tools/quickstart.sh test                  runs the whole test suite through ctest
set -eu
cd "$(dirname "$0")/.."
what=${1:-}
[ $# -gt 0 ] && shift
case "$what" in
  run|test) ;;
  *) echo "usage: tools/quickstart.sh run [cltrain flags] | test" >&2; exit 2 ;;
esac
tools/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
if [ "$what" = run ]; then
  exec build/cltrain-devices "$@"
fi
ctest --test-dir build --output-on-failure
