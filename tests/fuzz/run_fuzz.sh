#!/bin/sh
# Runs one libFuzzer harness for a bounded number of inputs, starting from its seed corpus,
# without writing into the repository: new inputs go to a temporary folder that is removed at
# the end; a crash, leak or timeout leaves its reproducer under ARTIFACT_PREFIX.
#   run_fuzz.sh HARNESS SEED_DIR ARTIFACT_PREFIX RUNS [libFuzzer flags...]
# (registered in ctest by tests/fuzz/CMakeLists.txt; exit status is the harness's)
set -eu
harness=$1 seeds=$2 artifacts=$3 runs=$4
shift 4
work=$(mktemp -d "${TMPDIR:-/tmp}/cltrain-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$(dirname "$artifacts")"
# The first folder receives new inputs; the seed folder after it is only read.
"$harness" -runs="$runs" -seed=1 -print_final_stats=1 -artifact_prefix="$artifacts" "$@" \
  "$work" "$seeds"
