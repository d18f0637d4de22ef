#!/usr/bin/env bash
# The README's two commands. Each installs what is missing (tools/install-deps.sh), builds into
# build/ (and, for `test`, the sanitizer build into build-asan/), then:
#   tools/quickstart.sh run [cltrain flags]   lists the devices, then trains one model
#                                             data-parallel over every OpenCL device of the
#                                             machine (simulators left out), balanced by
#                                             their measured speed: by default the
#                                             character-level language model on Shakespeare,
#                                             then a loss plot and a passage it writes; with
#                                             flags, whatever they say (--model cnn ...)
#   tools/quickstart.sh test                  runs the whole test suite through ctest
# The run's files go to build/quickstart/ (metrics, plot, weights).
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
  tools/install-deps.sh --intel   # Intel's CPU OpenCL runtime: a second vendor on any x86 CPU
fi
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
if [ "$what" = run ]; then
  build/cltrain-devices
  echo
  out=build/quickstart
  mkdir -p "$out"
  # every device but simulators, one rank each: "0=P:D,1=P:D,..."
  spec=$(build/cltrain-devices --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
devs = [x["index"] for p in d["platforms"] for x in p["devices"] if not x["simulator"]]
print(",".join(f"{r}={i}" for r, i in enumerate(devs)))')
  n=$(echo "$spec" | awk -F, '{print NF}')
  [ -n "$spec" ] && [ "$n" -ge 1 ] || { echo "quickstart: no OpenCL device but simulators (see cltrain-devices)" >&2; exit 1; }
  # CPU runtimes share the cores: each rank its part of them (GPUs ignore these)
  threads=$(( jobs / n )); [ "$threads" -ge 1 ] || threads=1
  mpi=(mpirun --oversubscribe --bind-to none -np "$n" -x "POCL_MAX_PTHREAD_COUNT=$threads"
       -x "CL_CONFIG_CPU_TBB_NUM_WORKERS=$threads")
  [ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)
  echo "quickstart: $n device(s), one rank each ($spec), $threads thread(s) a rank"
  if [ $# -gt 0 ]; then   # your own flags, on the same devices
    exec "${mpi[@]}" build/cltrain --device "$spec" --balance throughput "$@"
  fi
  # The language model (GPT-2's block, 4 layers of 128 channels) on the Shakespeare corpus:
  # 4 epochs of 6,000 windows of 64 bytes, AdamW with nanoGPT's small recipe, then a passage.
  "${mpi[@]}" build/cltrain --device "$spec" --balance throughput --model gpt \
    --optimizer adamw --lr 2e-3 --beta2 0.99 --weight-decay 0.1 --clip-norm 1 \
    --schedule cosine --warmup 100 --min-lr 1e-4 --batch 16 --epochs 4 --limit 6000 \
    --test-limit 1000 --log-every 100 --metrics "$out/metrics.jsonl" \
    --save-safetensors "$out/gpt.safetensors"
  echo
  build/cltrain-plot "$out/metrics.jsonl" -o "$out/loss.png" --title "cltrain: the language model on $n device(s)"
  first=$(echo "$spec" | sed 's/^0=\([0-9]*:[0-9]*\).*/\1/')
  echo
  echo "A passage it writes (build/cltrain-generate, temperature 0.8, top-k 40):"
  echo "----"
  build/cltrain-generate --weights "$out/gpt.safetensors" --device "$first" \
    --prompt "ROMEO:" --tokens 400 --temperature 0.8 --top-k 40 --seed 7
  echo
  echo "----"
  echo "quickstart: metrics $out/metrics.jsonl (docs/metrics.md), loss plot $out/loss.png,"
  echo "            weights $out/gpt.safetensors (nanoGPT's names: build/cltrain-generate --weights ...)"
  exit 0
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
