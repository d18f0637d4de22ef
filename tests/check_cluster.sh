#!/usr/bin/env bash
# cltrain across stand-in nodes (tools/netns-cluster: network namespaces joined by a bridge,
# real TCP between them, Open MPI starting one daemon per node), one case per ctest entry
# (tests/cluster.cmake, label cluster):
#   check_cluster.sh CASE path/to/cltrain path/to/test_mpi_allreduce path/to/cltrain-bench-allreduce
# Cases:
#   allreduce  test_mpi_allreduce (exact, identical bits, windows) over 2 nodes x 1 rank and
#              3 nodes x 2 ranks; the benchmark's #wrong over 2 nodes x 2 ranks, fp32 and fp16
#   train      2 nodes x 1 rank and 3 nodes x 2 ranks train as one rank does (the tolerance of
#              cli_mpi_equivalence), replicas identical
#   devices    2 nodes x 2 ranks, --device cpu, ranks placed round-robin over the nodes: on
#              every node local rank 0 takes the first CPU device and local rank 1 the second
#              (PoCL, Intel), whatever the global rank; then a spec per node (CLTRAIN_DEVICE in
#              an MPMD launch): PoCL on node 1, Intel on node 2
#   kill       a rank on node 2 killed with SIGKILL: the job started on node 1 ends, non-zero,
#              within 30 s
#   slurm_srun, slurm_mpirun
#              a Slurm cluster on 2 stand-in nodes (tools/netns-cluster/slurm-up.sh: slurmctld
#              and munged on a head namespace, a slurmd per node); the batch script
#              tools/slurm/cltrain-srun.sbatch (srun --mpi=pmix) or cltrain-mpirun.sbatch
#              (mpirun in the allocation) trains the mlp over 2 nodes x 1 rank as one rank does
#              (the tolerance of cli_mpi_equivalence), 0 divergences; then 2 nodes x 2 ranks,
#              --device cpu, ranks dealt round-robin over the nodes: local rank 0 takes the first
#              CPU device and local rank 1 the second on each node. Skipped (77) without Slurm
#              (tools/install-deps.sh --cluster installs it)
#   slurm_requeue
#              a node lost, Slurm requeues: 3 stand-in nodes of 1 CPU (SlurmdTimeout 10 s,
#              credentials of 5 s), tools/slurm/cltrain-requeue.sbatch (--requeue --nodes=2-3,
#              --resume auto) trains the mlp; after its first checkpoint every process of node 3
#              is killed (slurmd too); Slurm marks the node DOWN and requeues the job, which
#              resumes on nodes 1 and 2 with 2 ranks and ends COMPLETED, exit 0, its test
#              accuracy within 0.5 points of the same run never interrupted (one rank, here:
#              the sample order and the math do not depend on the rank count), its parameters
#              within fp32 summation order of it; every checkpoint is checked as it appears
#              (tests/ckpt_tool.py watch: magic, version, sizes, CRC32), none damaged. Prints the
#              time from the kill to the job requeued, running and training again, and the
#              steps done again
#   relaunch   the same without Slurm: tools/cltrain-relaunch runs mpirun over 3 stand-in nodes
#              (probing them with tools/netns-cluster/probe every 2 s); node 3 loses its link
#              and its processes after the first checkpoint (a power cut); the loop finds it
#              dead, ends the job and runs it again on nodes 1 and 2, which resume and finish
#              (the same checks and figures)
#              (CLTRAIN_TEST_LOSS=kill or cut loses node 3 the other way in either case, to measure
#              it; relaunch then needs "cut": a stand-in node whose processes were killed still
#              answers on the network, and is rightly used again)
#   readme     the README's runnable block across-nodes (mpirun with a hostfile, then sbatch of
#              tools/slurm/cltrain-srun.sbatch) on 2 stand-in nodes with Slurm, at a reduced
#              size (tests/check_readme.sh cluster)
#   sweep      (ctest's fixture cleanup, after the others) removes the namespaces of any case
#              that was killed before its own trap ran (a ctest timeout sends SIGKILL), and with
#              them whatever still runs there (a Slurm case's daemons and jobs)
# Exit 77 (skipped) where namespaces cannot be made: not root, no `ip` or `unshare`, or the
# kernel refuses (a container without CAP_SYS_ADMIN). Every case tears its namespaces down on
# the way out (trap), also on failure, and bounds each job with `timeout`, below ctest's limit.
# The namespaces are named ctc<pid>x... (pid: this script's), so cases running at once, and
# clusters that people make with tools/netns-cluster's default name, never meet.
# Figures printed here (times, accuracies) are for the log; only correctness decides.
set -u
case_=$1
T=${2:-}; TMA=${3:-}; BENCH=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
nc=$here/../tools/netns-cluster
DATA=${CLTRAIN_DATA:-/usr/share/datasets/fashion-mnist}
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

# ---- can namespaces be made here? ---------------------------------------------------------
[ "$(id -u)" = 0 ] || skip "not root: network namespaces need root"
for c in ip unshare mpirun; do command -v $c >/dev/null || skip "no '$c'"; done

# Namespaces of cases that ended without their trap (their pid is gone): removed.
sweep() {
  local p pid
  for p in $(ip netns list 2>/dev/null | awk '{print $1}' | sed -n 's/^\(ctc[0-9]*x\)\(node[0-9]*\|switch\|head\)$/\1/p' | sort -u); do
    pid=${p#ctc}; pid=${pid%x}
    kill -0 "$pid" 2>/dev/null && continue
    echo "sweep: removing the stand-in nodes of a case that is gone: ${p}*"
    CT_NETNS=$p "$nc/down.sh"
  done
}
if [ "$case_" = sweep ]; then
  sweep
  left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^ctc[0-9]+x(node[0-9]+|switch|head)$' \
         | while read -r ns; do pid=${ns#ctc}; pid=${pid%%x*}; kill -0 "$pid" 2>/dev/null || echo "$ns"; done)
  [ -z "$left" ] || fail "namespaces of ended cases remain: $left"
  echo "no namespaces of ended cases remain"
  exit 0
fi
sweep

export CT_NETNS=ctc$$x
work=$(mktemp -d /tmp/cltrain-cluster-XXXXXX)
export HOSTFILE=$work/hostfile
bg=""
cleanup() {   # (timeout passes the TERM on; down.sh ends whatever still runs on the nodes)
  local p
  for p in $bg; do kill -TERM "$p" 2>/dev/null; done
  "$nc/down.sh"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
if ! ip netns add "${CT_NETNS}probe" 2>"$work/probe"; then
  skip "cannot make a network namespace: $(cat "$work/probe")"
fi
ip netns del "${CT_NETNS}probe"
unshare --uts true 2>/dev/null || skip "cannot make a UTS namespace (unshare --uts)"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Every rank one thread; the test's environment goes to every node (-x).
ENVS="-x POCL_MAX_PTHREAD_COUNT=1 -x CL_CONFIG_CPU_TBB_NUM_WORKERS=1 -x CLTRAIN_CACHE_DIR -x CLTRAIN_DATA"
export POCL_MAX_PTHREAD_COUNT=1 CL_CONFIG_CPU_TBB_NUM_WORKERS=1 CLTRAIN_DATA=$DATA
export CLTRAIN_CACHE_DIR=${CLTRAIN_CACHE_DIR:-$work/no-tuning-cache}
LIMIT=240   # seconds for one job: well below ctest's TIMEOUT, so the trap always runs

# up NODES RANKS_PER_NODE [RATE]: a fresh cluster (the previous one down first)
up() {
  "$nc/down.sh"
  SLOTS=$2 "$nc/up.sh" "$1" ${3:-} >/dev/null || fail "up.sh $* failed"
}
# job NAME NP [mpirun args...] -- PROGRAM ARGS: runs under mpirun across the nodes, output in
# $work/NAME, prints its wall time; fails on a non-zero exit
job() {
  local name=$1 np=$2; shift 2
  local t0 rc
  t0=$(date +%s.%N)
  # in the background, so that a signal to this script runs its trap at once (bash runs a trap
  # only after the foreground command ends, and `wait` is interrupted)
  timeout -k 5 $LIMIT "$nc/mpirun.sh" -np "$np" $ENVS "$@" >"$work/$name" 2>&1 &
  bg=$!
  wait $bg; rc=$?; bg=""
  echo "$name: $(python3 -c "print(round($(date +%s.%N)-$t0,1))") s, exit $rc"
  [ $rc -eq 0 ] || { tail -40 "$work/$name"; fail "$name: exit $rc"; }
}
need_data() { [ -e "$DATA/train-images-idx3-ubyte.gz" ] || [ -e "$DATA/train-images-idx3-ubyte" ] || skip "no data set in $DATA"; }
have_dev() { "${T%/*}/cltrain-devices" --device "$1" >/dev/null 2>&1; }
# the per-rank device lines of a cltrain run: "rank node local_rank host device [platform]"
ranks_of() {
  sed -n 's/^cltrain: rank \([0-9]*\) on [0-9]*:[0-9]* \(.*\) \[\(.*\)\] (node \([0-9]*\) of [0-9]*, \([^,]*\), local rank \([0-9]*\)),.*/\1 \4 \6 \5 \3/p' "$1"
}
SMALL="conv3x3:8,relu,maxpool2,conv3x3:8/s2/p1,relu,flatten,dense:32,relu,dense:10"
# placement RANKS CPU0 CPU1 [HOST1 HOST2]: the per-rank lines (ranks_of) of 2 nodes x 2 ranks
# show, on each node, local rank 0 on platform CPU0 and local rank 1 on CPU1, one host name per
# node, different on the two (HOST1 and HOST2 in node order, where given)
placement() {
  python3 - "$@" <<'PY'
import sys
cpu = sys.argv[2:4]
hosts = sys.argv[4:6]
rows = [l.split(" ", 4) for l in open(sys.argv[1]).read().splitlines()]
by = {}
for rank, node, local, host, dev in rows:
    by.setdefault(node, {})[int(local)] = (int(rank), host, dev)
assert sorted(by) == ["0", "1"], by
for node, locs in by.items():
    assert sorted(locs) == [0, 1], (node, locs)
    assert len({h for _, h, _ in locs.values()}) == 1, ("one host name per node", node, locs)
    assert locs[0][2].endswith(cpu[0]), ("local rank 0 takes the first CPU", cpu, node, locs)
    assert locs[1][2].endswith(cpu[1]), ("local rank 1 takes the second CPU", cpu, node, locs)
assert by["0"][0][1] != by["1"][0][1], "the two nodes have different host names"
if hosts:
    assert [by[n][0][1] for n in ("0", "1")] == hosts, ("host names", hosts, by)
print("on both nodes: local rank 0 on", cpu[0], "and local rank 1 on", cpu[1], "(global ranks",
      {n: sorted(r for r, _, _ in l.values()) for n, l in by.items()}, ")")
PY
}
# the platforms local ranks 0 and 1 take with --device cpu (the ICD loader's order decides)
cpu_platforms() {
  local cpus
  cpus=$("${T%/*}/cltrain-devices" --spec cpu --ranks 2 | sed -n 's/^local rank [01]: .* \[\(.*\)\] (CPU)$/\1/p')
  cpu0=$(echo "$cpus" | sed -n 1p) cpu1=$(echo "$cpus" | sed -n 2p)
  [ -n "$cpu0" ] && [ -n "$cpu1" ] && [ "$cpu0" != "$cpu1" ] || fail "cltrain-devices --spec cpu: $cpus"
}

# ---- Slurm (the slurm_* cases) ---------------------------------------------------------------
need_slurm() {
  local c
  for c in slurmctld slurmd munged mungekey srun sbatch scontrol; do
    command -v $c >/dev/null || skip "no '$c': no Slurm here (tools/install-deps.sh --cluster installs it)"
  done
}
# slurm_up NODES CPUS_PER_NODE: a fresh Slurm cluster on fresh stand-in nodes
slurm_up() {
  "$nc/down.sh"
  export CT_SLURM_DIR=$work/slurm
  local t0
  t0=$(date +%s.%N)
  SLOTS=$2 CT_SLURM_WAIT=60 timeout -k 5 120 "$nc/slurm-up.sh" "$1" >"$work/slurm-up" 2>&1 \
    || { cat "$work/slurm-up"; tail -20 "$work"/slurm/log/*.log; fail "slurm-up.sh $* failed"; }
  echo "slurm up on $1 nodes: $(python3 -c "print(round($(date +%s.%N)-$t0,1))") s"
}
sl() { timeout -k 5 30 "$nc/slurm.sh" "$@"; }
# sjob NAME [sbatch args...] -- SCRIPT [script args...]: submits a batch job (output in
# $work/NAME), waits for its end (bounded: LIMIT), prints its wall time; fails unless it
# COMPLETED with exit code 0. sbatch --wait would do, but it polls at growing intervals (a 3 s
# job took 10 s, a 12 s one 42 s); scontrol every 0.3 s costs nothing.
sjob() {
  local name=$1 id st t0 i info; shift
  local sargs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do sargs+=("$1"); shift; done
  shift
  t0=$(date +%s.%N)
  id=$(sl sbatch --parsable -o "$work/$name" "${sargs[@]}" "$@") || fail "$name: sbatch failed: $id"
  id=${id%%;*}
  for i in $(seq 1 $((LIMIT * 10 / 3))); do
    info=$(sl scontrol -o show job "$id" 2>&1)
    st=$(echo "$info" | sed -n 's/.* JobState=\([A-Z_]*\) .*/\1/p')
    case "$st" in PENDING|CONFIGURING|RUNNING|COMPLETING|"") sleep 0.3 ;; *) break ;; esac
  done
  echo "$name: job $id $st, $(python3 -c "print(round($(date +%s.%N)-$t0,1))") s, $(echo "$info" | grep -o 'ExitCode=[0-9:]*')"
  case "$st" in
    COMPLETED) echo "$info" | grep -q "ExitCode=0:0" || fail "$name: $info" ;;
    PENDING|CONFIGURING|RUNNING|COMPLETING|"")
      sl scancel "$id"; cat "$work/$name" 2>/dev/null; fail "$name: job $id still $st after $LIMIT s" ;;
    *) tail -40 "$work/$name" 2>/dev/null; echo "$info"; tail -20 "$work"/slurm/log/slurmd.*.log; fail "$name: job $id $st" ;;
  esac
}

# ---- losing a node (the slurm_requeue and relaunch cases) -----------------------------------
# The job of both: the mlp over 3 epochs (114 steps), a checkpoint every 10 steps, a line a step.
LOSE_A="--device pocl --model mlp --limit 2400 --test-limit 1000 --batch 64 --epochs 3 --seed 3"
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }
# lose_ref: the same run never interrupted, one rank (a rank count changes only the fp32
# summation order): its accuracy in ref_acc, its parameters in $work/ref
lose_ref() {
  timeout -k 5 $LIMIT "$T" $LOSE_A --log-every 0 --save-params "$work/ref" >"$work/ref.out" 2>&1 \
    || { cat "$work/ref.out"; fail "the run never interrupted: exit $?"; }
  ref_acc=$(sed -n 's/^final: test accuracy \([0-9.]*\).*/\1/p' "$work/ref.out")
  echo "never interrupted (one rank): test accuracy $ref_acc"
}
# watch_ckpt: every checkpoint at $work/ck checked as it appears, into $work/ckpts (stopped by
# the file $work/stop, or after LIMIT s)
watch_ckpt() {
  mkdir -p "$work/kept"
  python3 "$here/ckpt_tool.py" watch "$work/ck" "$work/ckpts" "$work/stop" $LIMIT "$work/kept" &
  watcher=$!
  bg="$bg $watcher"
}
# lose_node3 HOW: node 3 lost: "kill" (every process SIGKILLed, slurmd too; its network stack,
# which is the namespace's, still answers) or "cut" (its link down, then every process killed:
# a power cut). CLTRAIN_TEST_LOSS picks another than the case's own, to measure it.
lose_node3() {
  [ "$1" = cut ] && ip -n "${CT_NETNS}switch" link set ct3 down
  kill -9 $(ip netns pids "${CT_NETNS}node3") 2>/dev/null
  case "$1" in kill) what="every process of node 3 killed" ;; *) what="node 3 cut off and its processes killed" ;; esac
}
# wait_first_ckpt OUT: until the first checkpoint was seen whole and the job has logged a step
# 4 to 9 steps past one (midway between two checkpoints, as a failure at a random moment)
wait_first_ckpt() {
  local i
  for i in $(seq 1 $((LIMIT * 20))); do
    if grep -q "^ok step" "$work/ckpts" 2>/dev/null; then
      last_step=$(sed -n 's/^step *\([0-9]*\) .*/\1/p' "$1" | tail -1)
      [ "${last_step:-0}" -ge 14 ] && [ $((last_step % 10)) -ge 4 ] && return 0
    fi
    sleep 0.05
  done
  cat "$1"; fail "no checkpoint, or not 4 steps past it, within $LIMIT s"
}
# check_resumed OUT WORLD: the run after the loss resumed from a checkpoint of 3 ranks with
# WORLD ranks on nodes 1 .. WORLD, and trained as the run never interrupted
check_resumed() {
  local out=$1 world=$2 acc
  grep -q "^cltrain: --resume auto: no checkpoint at $work/ck yet: starting from the seed" "$out" \
    || fail "the first run did not start from the seed"
  resumed=$(sed -n "s|^resumed from $work/ck at step \([0-9]*\) .*saved by 3 rank(s) (--resume auto)\$|\1|p" "$out")
  [ -n "$resumed" ] && [ "$resumed" -ge 10 ] || { cat "$out"; fail "not resumed from a checkpoint of the 3 ranks"; }
  # the last step done before the loss: the largest step line before the resumed run's
  done_before=$(sed -n '/^resumed from/q; s/^step *\([0-9]*\) .*/\1/p' "$out" | sort -n | tail -1)
  sed -n '/^resumed from/,$p' "$out" >"$work/after"
  grep -q "^cltrain: model .* $world rank(s)," "$work/after" || fail "the resumed run has not $world ranks"
  ranks_of "$work/after" | tee "$work/ranks_after"
  [ "$(awk '{print $4}' "$work/ranks_after" | sort -u | tr '\n' ' ')" = "$(for i in $(seq 1 "$world"); do printf '%s ' "${CT_NETNS}node$i"; done)" ] \
    || fail "the resumed ranks are not on nodes 1 .. $world"
  acc=$(sed -n 's/^final: test accuracy \([0-9.]*\).*/\1/p' "$work/after")
  echo "after the loss: resumed at step $resumed on $world ranks; steps done again: $((done_before - resumed)) (done before the loss: $done_before); test accuracy $acc, never interrupted $ref_acc"
  python3 -c "import sys; sys.exit(0 if abs(float('$acc') - float('$ref_acc')) <= 0.005 else 1)" \
    || fail "test accuracy $acc is not within 0.5 points of $ref_acc"
  # (over 114 steps the mlp's parameters do not stay within fp32 summation order of the one-rank
  # run: 1 and 2 ranks never interrupted already differ by more than 1e-4 after 60 steps; the
  # accuracy is what the two runs share.) What the resumed run must equal: the same checkpoint
  # resumed by the same number of ranks on this machine (mpirun, no stand-in nodes)
  [ -e "$work/kept/step$resumed-world3.ck" ] || fail "the checkpoint of step $resumed was not seen"
  timeout -k 5 $LIMIT mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$world" "$T" $LOSE_A \
    --log-every 0 --resume "$work/kept/step$resumed-world3.ck" --save-params "$work/local" >"$work/local.out" 2>&1 \
    || { cat "$work/local.out"; fail "resuming the checkpoint of step $resumed here: exit $?"; }
  python3 "$here/compare_params.py" "$work/final" "$work/local" --exact \
    || fail "the resumed job differs from the same checkpoint resumed here by $world ranks"
  touch "$work/stop"
  wait "$watcher"; local wrc=$?
  bg=${bg/ $watcher/}
  echo "checkpoints seen: $(tr '\n' ';' <"$work/ckpts")"
  [ $wrc -eq 0 ] && ! grep -q BAD "$work/ckpts" || fail "a damaged checkpoint was seen"
  grep -q "^ok step [0-9]* world 3 " "$work/ckpts" && grep -q "^ok step 114 world $world " "$work/ckpts" \
    || fail "not a checkpoint of the 3 ranks and the last one of the $world"
}

case "$case_" in
allreduce)
  for layout in 2x1 3x2; do
    nodes=${layout%x*} per=${layout#*x}
    up "$nodes" "$per"
    job "test_${layout}" $((nodes * per)) -x CLTRAIN_TEST_NODES=$nodes -- "$TMA"
    grep -E "^[0-9]+%: Checks: [0-9]+, Failures: 0, Errors: 0" "$work/test_${layout}" \
      || { cat "$work/test_${layout}"; fail "test_mpi_allreduce over $layout: no clean summary"; }
  done
  up 2 2
  for wire in fp32 fp16; do   # the benchmark exits 1 on any wrong element
    job "bench_2x2_$wire" 4 -- "$BENCH" --max-bytes 4M --factor 4 --iters 3 --warmup 1 --wire $wire
    grep -q "Out of bounds values : 0 OK" "$work/bench_2x2_$wire" || { cat "$work/bench_2x2_$wire"; fail "bench $wire: wrong elements"; }
    grep -q "4 ranks on 2 node(s) (2 on this one)" "$work/bench_2x2_$wire" || fail "bench $wire: not 2 ranks on each of 2 nodes"
    grep -q "transport: network" "$work/bench_2x2_$wire" || fail "bench $wire: the transport is not the network"
    grep -E "^ +(4|4194304) " "$work/bench_2x2_$wire"
  done
  ;;
train)
  need_data
  have_dev pocl || skip "no PoCL device"
  A="--device pocl --model $SMALL --limit 3000 --test-limit 300 --batch 61 --max-steps 20 --log-every 0 --seed 3"
  timeout -k 5 $LIMIT "$T" $A --save-params "$work/p1" >"$work/np1" 2>&1 || { cat "$work/np1"; fail "one rank: exit $?"; }
  for layout in 2x1 3x2; do
    nodes=${layout%x*} per=${layout#*x}
    up "$nodes" "$per"
    job "train_$layout" $((nodes * per)) -- "$T" $A --check-every 5 --save-params "$work/p_$layout"
    [ "$(ranks_of "$work/train_$layout" | awk '{print $2}' | sort -u | wc -l)" -eq "$nodes" ] \
      || { ranks_of "$work/train_$layout"; fail "$layout: the ranks are not on $nodes nodes"; }
    grep -q " 0 divergences" "$work/train_$layout" || fail "$layout: replicas differ"
    python3 "$here/compare_params.py" "$work/p_$layout" "$work/p1" --rtol 1e-5 --atol 1e-7 \
      || fail "$layout: differs from one rank"
    grep "^final:" "$work/train_$layout"
  done
  grep "^final:" "$work/np1"
  ;;
devices)
  need_data
  have_dev pocl && have_dev intel || skip "needs PoCL and Intel's CPU runtime"
  cpu_platforms
  up 2 2
  # --map-by node: ranks 0 and 2 on node 0, 1 and 3 on node 1, so a choice by global rank
  # would put both ranks of a node on the same device
  job devices_2x2 4 --map-by node -- "$T" --device cpu --model dense:16,relu,dense:10 --limit 400 \
    --test-limit 40 --batch 24 --max-steps 2 --log-every 0 --check-every 1
  ranks_of "$work/devices_2x2" | tee "$work/ranks"
  [ "$(wc -l <"$work/ranks")" -eq 4 ] || { cat "$work/devices_2x2"; fail "expected 4 per-rank device lines"; }
  placement "$work/ranks" "$cpu0" "$cpu1" || fail "device choice is not per node by local rank"
  grep -q " 0 divergences" "$work/devices_2x2" || fail "replicas differ"
  # a spec per node (docs/cluster.md): CLTRAIN_DEVICE set per node in an MPMD
  # launch, PoCL on node 1 and Intel's runtime on node 2
  A="--model dense:16,relu,dense:10 --limit 400 --test-limit 40 --batch 24 --max-steps 2 --log-every 0 --check-every 1"
  job devices_per_node 2 --host 10.231.0.1:2 env CLTRAIN_DEVICE=pocl "$T" $A : \
    -np 2 --host 10.231.0.2:2 env CLTRAIN_DEVICE=intel "$T" $A
  ranks_of "$work/devices_per_node" | tee "$work/ranks2"
  # fields: rank node local_rank host platform
  [ "$(awk '($2 == 0 && $5 == "Portable") || ($2 == 1 && $5 == "Intel(R)")' "$work/ranks2" | wc -l)" -eq 4 ] \
    || fail "per-node specs: node 0 on PoCL, node 1 on Intel expected"
  grep -q " 0 divergences" "$work/devices_per_node" || fail "per-node specs: replicas differ"
  ;;
kill)
  need_data
  up 2 1
  A="--model $SMALL --limit 3000 --test-limit 300 --batch 40 --epochs 100 --log-every 1"
  timeout -k 5 $LIMIT "$nc/mpirun.sh" -np 2 $ENVS "$T" $A >"$work/out" 2>&1 &
  mpid=$!; bg=$mpid
  for i in $(seq 1 600); do grep -q "^step  *5 " "$work/out" && break; sleep 0.2; done
  grep -q "^step  *5 " "$work/out" || { cat "$work/out"; fail "the job did not reach step 5"; }
  victim=""
  for p in $(ip netns pids "${CT_NETNS}node2"); do
    [ "$(cat /proc/$p/comm 2>/dev/null)" = cltrain ] && victim=$p
  done
  [ -n "$victim" ] || fail "no cltrain rank found on node 2"
  t0=$(date +%s.%N)
  kill -9 "$victim"
  for i in $(seq 1 300); do kill -0 $mpid 2>/dev/null || break; sleep 0.1; done
  kill -0 $mpid 2>/dev/null && fail "the job still runs 30 s after the rank on node 2 was killed"
  wait $mpid; rc=$?; bg=""
  echo "job ended $(python3 -c "print(round($(date +%s.%N)-$t0,2))") s after rank pid $victim on node 2 was killed, exit $rc"
  [ $rc -ne 0 ] || fail "mpirun exited 0 after a rank was killed"
  left=$(for n in 1 2; do ip netns pids "${CT_NETNS}node$n"; done | xargs -r -n1 sh -c 'cat /proc/$0/comm 2>/dev/null' | grep -c cltrain)
  [ "$left" -eq 0 ] || fail "$left cltrain processes still run on the stand-in nodes"
  ;;
slurm_srun|slurm_mpirun)
  need_data
  need_slurm
  have_dev pocl || skip "no PoCL device"
  how=${case_#slurm_}
  script=$here/../tools/slurm/cltrain-$how.sbatch
  export CLTRAIN=$T   # the batch scripts' binary
  A="--device pocl --model mlp --limit 2400 --test-limit 1000 --batch 64 --epochs 1 --log-every 0 --seed 3"
  timeout -k 5 $LIMIT "$T" $A --save-params "$work/p1" >"$work/np1" 2>&1 || { cat "$work/np1"; fail "one rank: exit $?"; }
  slurm_up 2 2
  sl sinfo -N -o "%N %T %c"
  # 2 nodes x 1 rank, as one rank
  sjob "train_$how" -N 2 --ntasks-per-node=1 -- "$script" $A --check-every 1 --save-params "$work/p_$how"
  ranks_of "$work/train_$how" | tee "$work/ranks1"
  [ "$(awk '{print $2 " " $4}' "$work/ranks1" | sort -u | tr '\n' ' ')" = "0 ${CT_NETNS}node1 1 ${CT_NETNS}node2 " ] \
    || fail "$how: ranks not one on each of the Slurm nodes ${CT_NETNS}node1 and ${CT_NETNS}node2"
  grep -q " 0 divergences" "$work/train_$how" || fail "$how: replicas differ"
  python3 "$here/compare_params.py" "$work/p_$how" "$work/p1" --rtol 1e-5 --atol 1e-7 \
    || fail "$how: differs from one rank"
  grep "^final:" "$work/train_$how" "$work/np1"
  # 2 nodes x 2 ranks, --device cpu, ranks round-robin over the nodes (srun's cyclic
  # distribution; mpirun's --map-by node through its environment): the device by local rank
  if have_dev intel; then
    cpu_platforms
    B="--device cpu --model dense:16,relu,dense:10 --limit 400 --test-limit 40 --batch 24 --max-steps 2 --log-every 0 --check-every 1"
    if [ "$how" = srun ]; then
      sjob "devices_$how" -N 2 --ntasks-per-node=2 --distribution=cyclic -- "$script" $B
    else
      OMPI_MCA_rmaps_base_mapping_policy=node sjob "devices_$how" -N 2 --ntasks-per-node=2 -- "$script" $B
    fi
    ranks_of "$work/devices_$how" | tee "$work/ranks2"
    [ "$(wc -l <"$work/ranks2")" -eq 4 ] || { cat "$work/devices_$how"; fail "expected 4 per-rank device lines"; }
    [ "$(awk '$2 == 0 {print $1}' "$work/ranks2" | sort | tr '\n' ' ')" = "0 2 " ] \
      || fail "$how: ranks 0 and 2 expected on node 0 (round-robin)"
    placement "$work/ranks2" "$cpu0" "$cpu1" "${CT_NETNS}node1" "${CT_NETNS}node2" \
      || fail "$how: device choice is not per node by local rank"
    grep -q " 0 divergences" "$work/devices_$how" || fail "$how, --device cpu: replicas differ"
  else
    echo "(no Intel CPU runtime: the per-local-rank device check of 2 CPU platforms is left out)"
  fi
  ;;
slurm_requeue)
  need_data
  need_slurm
  have_dev pocl || skip "no PoCL device"
  export CLTRAIN=$T
  lose_ref
  CT_SLURM_CRED_EXPIRE=5 CT_SLURM_NODE_TIMEOUT=10 CT_SLURM_EXTRA="SchedulerParameters=bf_interval=2" \
    slurm_up 3 1
  watch_ckpt
  t0=$(now)
  id=$(sl sbatch --parsable -o "$work/job" --requeue --nodes=2-3 --open-mode=append \
       "$here/../tools/slurm/cltrain-requeue.sbatch" $LOSE_A --log-every 1 --checkpoint "$work/ck" \
       --checkpoint-every 10 --save-params "$work/final") || fail "sbatch failed: $id"
  id=${id%%;*}
  wait_first_ckpt "$work/job"
  tk=$(now)
  lose_node3 "${CLTRAIN_TEST_LOSS:-kill}"
  echo "$what $(awk -v a="$t0" -v b="$tk" 'BEGIN {printf "%.1f", b - a}') s after the submission, at step $last_step"
  # the job's states and the first step after the resumed line, each with its time from the kill
  st_last="" trained="" info=""
  for i in $(seq 1 $((LIMIT * 5))); do
    info=$(sl scontrol -o show job "$id" 2>&1)
    st=$(echo "$info" | sed -n 's/.* JobState=\([A-Z_]*\) .*/\1/p')
    if [ "$st" != "$st_last" ]; then echo "  $(since "$tk") s after the loss: $st"; st_last=$st; fi
    if [ -z "$trained" ] && sed -n '/^resumed from/,$p' "$work/job" | grep -q "^step "; then
      trained=$(since "$tk"); echo "  $trained s after the loss: training again"
    fi
    case "$st" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE) break ;; esac
    sleep 0.2
  done
  echo "job $id: $st, $(echo "$info" | grep -o 'Restarts=[0-9]*\|ExitCode=[0-9:]*\|NodeList=[^ ]*' | tr '\n' ' ')"
  [ "$st" = COMPLETED ] && echo "$info" | grep -q "ExitCode=0:0" \
    || { tail -60 "$work/job"; echo "$info"; tail -20 "$work"/slurm/log/slurmctld.log; fail "job $id $st"; }
  echo "$info" | grep -q "Restarts=1 " || fail "job $id was not requeued once"
  grep "^cltrain-requeue:" "$work/job"
  grep -q "^cltrain-requeue: job $id, run 2, on 2 node(s): ${CT_NETNS}node\[1-2\]" "$work/job" \
    || fail "the requeued run is not on nodes 1 and 2"
  check_resumed "$work/job" 2
  ;;
relaunch)
  need_data
  have_dev pocl || skip "no PoCL device"
  lose_ref
  up 3 1
  watch_ckpt
  t0=$(now)
  timeout -k 5 $LIMIT "$here/../tools/cltrain-relaunch" --hostfile "$HOSTFILE" --max-restarts 2 \
    --probe "$nc/probe" --probe-timeout 3 --watch 2 --grace 5 -- \
    env HOSTFILE={hostfile} "$nc/mpirun.sh" -np {np} $ENVS "$T" $LOSE_A --log-every 1 \
    --checkpoint "$work/ck" --checkpoint-every 10 --save-params "$work/final" --resume auto \
    >"$work/job" 2>&1 &
  loop=$!; bg="$bg $loop"
  wait_first_ckpt "$work/job"
  tk=$(now)
  lose_node3 "${CLTRAIN_TEST_LOSS:-cut}"   # (a power cut: no answer on the network, no process left)
  echo "$what $(awk -v a="$t0" -v b="$tk" 'BEGIN {printf "%.1f", b - a}') s after the start, at step $last_step"
  seen="" trained=""
  for i in $(seq 1 $((LIMIT * 5))); do
    if [ -z "$seen" ] && grep -q "^cltrain-relaunch: .* run 2 on" "$work/job"; then seen=1; echo "  $(since "$tk") s after the loss: run 2 started"; fi
    if [ -z "$trained" ] && sed -n '/^resumed from/,$p' "$work/job" | grep -q "^step "; then
      trained=$(since "$tk"); echo "  $trained s after the loss: training again"
    fi
    kill -0 $loop 2>/dev/null || break
    sleep 0.2
  done
  wait $loop; rc=$?; bg=${bg/ $loop/}
  grep "^cltrain-relaunch:" "$work/job"
  [ $rc -eq 0 ] || { tail -60 "$work/job"; fail "cltrain-relaunch: exit $rc"; }
  grep -q "^cltrain-relaunch: .* no answer from 10.231.0.3 within 3 s: ending run 1" "$work/job" \
    || fail "the loop did not find node 3 dead"
  grep -q "^cltrain-relaunch: .* run 2 on 2 node(s), 2 rank(s): 10.231.0.1 10.231.0.2$" "$work/job" \
    || fail "run 2 is not on nodes 1 and 2"
  check_resumed "$work/job" 2
  ;;
readme)
  # the README's cluster recipe (mpirun with a hostfile, then Slurm's srun script) as written,
  # on 2 stand-in nodes of 1 slot with Slurm on them (tests/check_readme.sh cluster)
  need_slurm
  have_dev pocl || skip "no PoCL device"
  slurm_up 2 1
  timeout -k 5 $LIMIT "$here/check_readme.sh" "$here/.." "${T%/*}" cluster; rc=$?
  [ $rc -ne 77 ] || skip "the README's cluster recipe"
  [ $rc -eq 0 ] || fail "the README's cluster recipe"
  ;;
*) echo "check_cluster.sh: unknown case '$case_'" >&2; exit 2 ;;
esac
echo "PASS: $case_"
