#!/usr/bin/env bash
# The README's runnable blocks (each marked `<!-- runnable: NAME -->`, tests/readme_blocks.py),
# run as a user pastes them, at a reduced size, so the README cannot go stale:
#   check_readme.sh SRC BUILD local      lm-one-device, all-devices, resume (ctest readme_recipes)
#   check_readme.sh SRC BUILD cluster    across-nodes, on stand-in nodes with Slurm that
#                                        tests/check_cluster.sh's case readme has made
#                                        (ctest cluster_readme; CT_NETNS, CT_SLURM_DIR set)
# Each block runs in a scratch folder where build/ and tools/ are this build and source tree,
# under bash -e (a command that fails fails the block). A reduction replaces a piece of the
# block's text (fewer samples, an evaluation of a few windows; on stand-in nodes their names);
# a piece that is no longer in the block fails the test, so the README and this test change
# together. A README block this test has no case for fails it too.
set -u
S=$1 B=$2 mode=$3
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
S=$(cd "$S" && pwd) B=$(cd "$B" && pwd)
names=$(python3 "$S/tests/readme_blocks.py" "$S/README.md" names) || fail "README.md's markers: $names"
known="lm-one-device all-devices across-nodes resume"
for n in $names; do
  case " $known " in *" $n "*) ;; *) fail "README.md's runnable block '$n' has no case in tests/check_readme.sh" ;; esac
done
for n in $known; do
  echo "$names" | grep -qx "$n" || fail "README.md has no runnable block '$n' (tests/check_readme.sh runs one)"
done

work=$(mktemp -d /tmp/cltrain-readme-XXXXXX)
trap 'rm -rf "$work"' EXIT
ln -s "$B" "$work/build"
ln -s "$S/tools" "$work/tools"
export POCL_MAX_PTHREAD_COUNT=${POCL_MAX_PTHREAD_COUNT:-1} CL_CONFIG_CPU_TBB_NUM_WORKERS=${CL_CONFIG_CPU_TBB_NUM_WORKERS:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

# block NAME OLD NEW [OLD NEW ...]: writes the reduced block to $work/NAME.sh
block() {
  local name=$1; shift
  python3 "$S/tests/readme_blocks.py" "$S/README.md" get "$name" >"$work/$name.orig" || fail "$name"
  python3 - "$work/$name.orig" "$work/$name.sh" "$@" <<'PY' || fail "README block '$2'"
import sys
src, dst, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
t = open(src).read()
for old, new in zip(pairs[::2], pairs[1::2]):
    if old not in t:
        sys.exit(f"the reduction of '{old}' finds nothing in the README's block: change tests/check_readme.sh with it")
    t = t.replace(old, new)
open(dst, "w").write(t)
PY
}
# run NAME: runs $work/NAME.sh in $work (bash -e), output in $work/NAME.out; fails on non-zero
run() {
  local t0 rc
  t0=$(date +%s.%N)
  echo "---- $1 (reduced):"; cat "$work/$1.sh"
  (cd "$work" && timeout -k 5 400 bash -e "$work/$1.sh") >"$work/$1.out" 2>&1; rc=$?
  echo "---- $1: exit $rc, $(python3 -c "print(round($(date +%s.%N)-$t0,1))") s"
  [ $rc -eq 0 ] || { tail -30 "$work/$1.out"; fail "README block '$1' exited $rc"; }
}
has() { grep -q -- "$2" "$work/$1.out" || { tail -30 "$work/$1.out"; fail "$1: no '$2' in its output"; }; }
have_dev() { "$B/cltrain-devices" --device "$1" >/dev/null 2>&1; }
[ -e /usr/local/share/cltrain/shakespeare.txt ] || skip "no corpus (tools/install-deps.sh installs it)"
have_dev pocl || skip "no PoCL device"

if [ "$mode" = local ]; then
  block lm-one-device "--epochs 4 --limit 6000 --test-limit 1000" "--epochs 1 --limit 320 --test-limit 64" \
                      "--tokens 300" "--tokens 40"
  run lm-one-device
  has lm-one-device "validation loss [0-9.]* (perplexity"
  [ -s "$work/gpt.safetensors" ] || fail "lm-one-device: no gpt.safetensors"
  python3 - "$work/lm-one-device.out" <<'PY' || fail "lm-one-device: no passage after ROMEO:"
import sys
t = open(sys.argv[1], encoding="utf-8", errors="replace").read()
i = t.rfind("ROMEO:")
assert i >= 0 and len(t[i + 6:].rstrip("\n")) >= 40, t[-300:]
print("passage:", repr(t[i:i + 46]))
PY

  if have_dev intel; then
    block all-devices "--epochs 4 --limit 6000" "--epochs 1 --limit 320" "--test-limit 1000" "--test-limit 64"
    run all-devices
    has all-devices "validation loss [0-9.]* (perplexity"
    has all-devices "rank 0 on .*\[Portable Computing Language\]"
    has all-devices "rank 1 on .*\[Intel(R) OpenCL\]"
    [ -s "$work/run.png" ] || fail "all-devices: no run.png"
  else
    echo "(no Intel CPU runtime: the all-devices block, PoCL beside Intel's runtime, is left out)"
  fi

  # the first run is killed (SIGKILL) as soon as its first checkpoint is there, not after a
  # minute: the same crash, at a point that does not depend on this machine's speed
  cat >"$work/kill-at-checkpoint" <<'KS'
#!/usr/bin/env bash
# kill-at-checkpoint CKPT CMD...: runs CMD, SIGKILLs it once CKPT exists (exit 137)
ck=$1; shift
"$@" & pid=$!
while kill -0 $pid 2>/dev/null; do
  if [ -e "$ck" ]; then kill -9 $pid; wait $pid; exit 137; fi
  sleep 0.05
done
wait $pid
KS
  chmod +x "$work/kill-at-checkpoint"
  block resume "--epochs 2 --limit 6000" "--epochs 1 --limit 1600 --test-limit 64" \
               "--checkpoint-every 50" "--checkpoint-every 10" \
               "timeout -s KILL 60 build/cltrain" "./kill-at-checkpoint gpt.ckpt build/cltrain"
  run resume
  has resume "^killed"
  has resume "resumed from gpt.ckpt at step [1-9]"
  has resume "validation loss [0-9.]* (perplexity"
  grep "resumed from" "$work/resume.out"
  echo "README blocks run: lm-one-device all-devices resume"
elif [ "$mode" = cluster ]; then
  nc=$S/tools/netns-cluster
  [ -n "${CT_NETNS:-}" ] && [ -n "${CT_SLURM_DIR:-}" ] || fail "cluster mode runs inside tests/check_cluster.sh readme"
  block across-nodes "printf 'node1 slots=1\nnode2 slots=1\n'" "printf '10.231.0.1 slots=1\n10.231.0.2 slots=1\n'" \
    "mpirun -np 2 --hostfile hosts --bind-to none" "HOSTFILE=hosts $nc/mpirun.sh -np 2 -x POCL_MAX_PTHREAD_COUNT -x CL_CONFIG_CPU_TBB_NUM_WORKERS" \
    "--device gpu" "--device pocl" \
    "--epochs 1 --limit 6000" "--epochs 1 --limit 320 --test-limit 64 --log-every 10" \
    "sbatch -N 2" "$nc/slurm.sh sbatch --wait -o $work/slurm.out -N 2"
  export CLTRAIN=$work/build/cltrain
  run across-nodes
  has across-nodes "validation loss [0-9.]* (perplexity"
  grep -q "node 0 of 2" "$work/across-nodes.out" && grep -q "node 1 of 2" "$work/across-nodes.out" \
    || fail "across-nodes (mpirun): the ranks are not on 2 nodes"
  grep -q "validation loss [0-9.]* (perplexity" "$work/slurm.out" || { cat "$work/slurm.out"; fail "across-nodes (Slurm): no validation loss"; }
  grep -q "node 1 of 2" "$work/slurm.out" || fail "across-nodes (Slurm): the ranks are not on 2 nodes"
  grep -h "validation loss" "$work/across-nodes.out" "$work/slurm.out"
  echo "README blocks run: across-nodes"
else
  fail "mode: local or cluster, got '$mode'"
fi
