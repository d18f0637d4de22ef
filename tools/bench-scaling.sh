#!/usr/bin/env bash
# Scaling report: every device alone (one thread each), then the data-parallel jobs, all in one
# run, in one table: samples/s, the sum of the solo samples/s of the devices in the job,
# efficiency = job / that sum, speed-up over the fastest of them alone, each rank's waiting
# share of its step, exposed communication (after compute, beyond waiting: the trainer's
# exposed% column), test accuracy after the epochs, and the training time until the test
# accuracy first reached the target. Each device also runs alone at half the batch (a rank's
# share in the jobs), and the jobs are also measured against those rates (eff.@sh), to split
# what a job loses into the smaller per-rank batch and the rest; each device is also measured at
# that share while the other trains beside it in its own process (no communication: the row
# "apart"), which splits the rest into sharing the machine and communicating; the throughput
# job also runs with --shard-update off (row sync*: every rank applies the whole update), and a
# last row runs it at twice the batch (each rank's share = the solo runs' batch: weak scaling).
# A benchmark: it prints what it measured, it never passes or fails on it.
#   tools/bench-scaling.sh [--model mlp] [--limit 60000] [--epochs 2] [--batch 128] [--target 0.80]
#                          [--devices "pocl intel"] [--repeat 2] [--bind core|none] [--tune yes|no]
#                          [--flags "MORE CLTRAIN FLAGS"] (also with --nodes)
#   --model gpt[:...]: the language model on the installed corpus (or --flags "--text FILE"):
#     samples are windows, the metric is the validation loss and --target a loss to reach
#     (default 2.5), e.g. --model gpt --limit 4000 --epochs 1 --batch 16
#     --flags "--optimizer adamw --lr 2e-3 --clip-norm 1 --test-limit 64"
#   tools/bench-scaling.sh --nodes N [--rate R] [--models "mlp cnn"] [--limit 12800] [--epochs 1]
#                          [--device pocl] [--options "fp32 b1 fp16 b1fp16 stale local4"] [--repeat 1]
# --bind core (the default where the machine has two cores or more; Open MPI's own default for
# two ranks): each job's rank k runs on core k (mpirun --bind-to core), and every run of a
# device alone (the solo rows, those at half the batch and the `apart` rows) is pinned to the
# core its rank has in the jobs (taskset), so that a device has one core alone as in a job:
# unpinned, a run alone also puts its host threads (the queue's driver, the batch loader, the
# runtime's own) on the idle second core, which the ranks of a job do not have (1.5-3 % faster
# here, PoCL and Intel). Unbound, the ring's exposed time was 9-14 % of the step against 8-11 %
# bound (7 runs each, two PoCL+Intel ranks on 2 cores). --bind none lets the scheduler move
# them all.
# --tune yes (the default): first, each device's GEMMs are tuned for the model at --batch and at
# half of it (a rank's share) where its tuning cache lacks them (cltrain --tune: nothing to do
# when they are there; on a fresh machine a few minutes, the two devices at once, each on its
# core), so that the report measures tuned devices as a user runs them (untuned, a CPU runs
# every product with one fixed tile of cltrain's kernel, other devices CLBlast's defaults, which
# can run some row counts several times slower than others: on the CPUs here, before that
# default, PoCL ran 7,664 samples/s at batch 128 and 1,207 at 64, and a report of that measured
# the cliff, not the scaling). The table's header says which plans each device ran. --tune no
# measures whatever the caches hold.
# Every configuration runs --repeat times, in rounds (each round runs them all, so that a slow
# spell of a shared machine hits all of them alike); the table shows each one's fastest run.
# Needs build/cltrain, Open MPI, PoCL and Intel's CPU runtime (tools/install-deps.sh --intel).
# One thread per device: POCL_MAX_PTHREAD_COUNT=1, CL_CONFIG_CPU_TBB_NUM_WORKERS=1. Every job
# gets the same global batch, seed and data; run it on an otherwise quiet machine.
#
# --nodes N (as root): the jobs run over 1, 2, 4, ... N stand-in nodes (tools/netns-cluster: one
# rank per node, TCP between them, links capped at --rate, e.g. 1gbit), for each model and each
# communication option (fp32: one fp32 reduction after backward; b1: --bucket-mb 1; fp16: --wire
# fp16; b1fp16: both; stale: --sync stale; local4: --sync local:4); per row the step time split
# into compute (everything but exposed communication) and exposed communication, the MB a rank
# sent per step, samples/s and test accuracy. Then a model of the step time,
#   step(N) = compute + 2(N-1)/N x V / B + 2(N-1) x L     (V: the gradient bytes on the wire),
# with the link's bandwidth B and the per-message latency L fitted (least squares) to the exposed
# communication of the rows that reduce once per step (fp32 and fp16, every model and N >= 2),
# its prediction next to every such measured row, and its prediction for 8, 64 and 512 nodes at
# 10 and 100 Gbit/s (with --rate: B scaled from the measured fraction of the link), clearly a
# model: it assumes the per-rank compute of the largest measured job (the per-rank batch held),
# the latency measured here, and the ring's pace set by one link per rank.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
model=mlp limit=60000 epochs=2 batch=128 target=0.80 devs="pocl intel" repeat=2
nodes="" rate="" models="mlp cnn" device=pocl opts="fp32 b1 fp16 b1fp16 stale local4"
limit_set="" epochs_set="" bind="" tune=yes target_set="" more=""
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --options) opts=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --limit) limit=$2; limit_set=1; shift 2 ;;
    --epochs) epochs=$2; epochs_set=1; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --target) target=$2; target_set=1; shift 2 ;;
    --flags) more=$2; shift 2 ;;
    --devices) devs=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --bind) bind=$2; shift 2 ;;
    --tune) tune=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -eu/{/^#/p}' "$0"; exit 0 ;;
    *) echo "bench-scaling.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$tune" in yes|no) ;; *) echo "bench-scaling.sh: --tune: expected yes or no, got '$tune'" >&2; exit 2 ;; esac
T=$root/build/cltrain
[ -x "$T" ] || { echo "bench-scaling.sh: build/cltrain not found: build first" >&2; exit 1; }
case "$repeat" in ''|*[!0-9]*|0) echo "bench-scaling.sh: --repeat takes a positive integer, got '$repeat'" >&2; exit 2 ;; esac

# ---- --nodes: over stand-in nodes ------------------------------------------------------------
if [ -n "$nodes" ]; then
  case "$nodes" in *[!0-9]*|0) echo "bench-scaling.sh: --nodes takes a positive integer, got '$nodes'" >&2; exit 2 ;; esac
  [ "$nodes" -le 16 ] || { echo "bench-scaling.sh: --nodes: at most 16 stand-in nodes, got $nodes" >&2; exit 2; }
  [ -z "$rate" ] || printf '%s' "$rate" | grep -Eq '^[0-9]+(k|m|g)?bit$' \
    || { echo "bench-scaling.sh: --rate: expected a rate like 1gbit or 500mbit, got '$rate'" >&2; exit 2; }
  for o in $opts; do
    case "$o" in fp32|b1|fp16|b1fp16|stale|local4) ;;
      *) echo "bench-scaling.sh: --options: unknown option '$o' (fp32 b1 fp16 b1fp16 stale local4)" >&2; exit 2 ;;
    esac
  done
  [ "$(id -u)" = 0 ] || { echo "bench-scaling.sh: --nodes needs root (network namespaces)" >&2; exit 1; }
  [ -n "$limit_set" ] || limit=12800
  [ -n "$epochs_set" ] || epochs=1
  nc=$root/tools/netns-cluster
  export CT_NETNS=ctbs$$x
  export POCL_MAX_PTHREAD_COUNT=1 CL_CONFIG_CPU_TBB_NUM_WORKERS=1
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  work=$(mktemp -d /tmp/cltrain-bench-scaling-XXXXXX)
  export HOSTFILE=$work/hostfile
  trap '"$nc/down.sh"; rm -rf "$work"' EXIT
  trap 'exit 1' INT TERM HUP
  counts=""; n=1
  while [ $n -lt "$nodes" ]; do counts="$counts $n"; n=$((n * 2)); done
  counts="$counts $nodes"
  declare -A flags=([fp32]="--bucket-mb 0 --wire fp32" [b1]="--bucket-mb 1" [fp16]="--wire fp16"
                    [b1fp16]="--bucket-mb 1 --wire fp16" [stale]="--sync stale" [local4]="--sync local:4")
  rows=""
  for round in $(seq 1 "$repeat"); do
    for n in $counts; do
      "$nc/down.sh"
      SLOTS=1 "$nc/up.sh" "$n" $rate >/dev/null
      for m in $models; do
        for o in $opts; do
          [ "$n" -gt 1 ] || [ "$o" = fp32 ] || continue   # one node: nothing to communicate
          name=$m.$n.$o.$round
          [ "$round" -gt 1 ] || rows="$rows $m.$n.$o"
          echo "running $name: $n node(s), --model $m ${flags[$o]}" >&2
          timeout -k 5 1800 "$nc/mpirun.sh" -np "$n" --map-by ppr:1:node \
            -x POCL_MAX_PTHREAD_COUNT -x CL_CONFIG_CPU_TBB_NUM_WORKERS "$T" --device "$device" \
            --model "$m" --limit "$limit" --epochs "$epochs" --batch "$batch" --log-every 0 \
            --seed 1 ${flags[$o]} $more >"$work/$name.out" 2>&1 &
          wait $! || { cat "$work/$name.out" >&2; echo "bench-scaling.sh: $name failed" >&2; exit 1; }
        done
      done
    done
  done
  /usr/bin/python3 - "$work" "$repeat" "${rate:-uncapped}" "$limit" "$epochs" "$batch" "$device" $rows <<'PY'
import re, sys
work, repeat, rate, limit, epochs, batch, device = sys.argv[1:8]
names = sys.argv[8:]
def parse1(path):
    t = open(path).read()
    f = re.search(r"^final: test accuracy ([0-9.]+), loss [0-9.naif]+, (\d+) steps .* ([0-9.]+) samples/s$", t, re.M)
    acc, steps, sps = float(f.group(1)), int(f.group(2)), float(f.group(3))
    measured = steps - 5 if re.search(r"^per rank, after the 5 warm-up steps", t, re.M) else steps
    m = re.search(r"^mean +([0-9.]+) +([0-9.]+) +([0-9.]+) +([0-9.]+) +([0-9.]+) +[0-9.]+% +([0-9.]+)%", t, re.M)
    if m is None:   # one rank: its own row
        m = re.search(r"^ +0 +([0-9.]+) +([0-9.]+) +([0-9.]+) +([0-9.]+) +([0-9.]+) +[0-9.]+% +([0-9.]+)%", t, re.M)
    step_s, exposed = float(m.group(5)), float(m.group(6)) / 100
    sent = re.search(r"^all-reduce: ([0-9.e+]+) MB sent per step and rank", t, re.M)
    step = step_s / measured
    return dict(acc=acc, sps=sps, step=step, comm=step * exposed, comp=step * (1 - exposed),
                sent=float(sent.group(1)) if sent else 0.0)
res = {}
for n in names:   # the fastest round
    runs = [parse1(f"{work}/{n}.{k}.out") for k in range(1, int(repeat) + 1)]
    res[n] = min(runs, key=lambda r: r["step"])
def rate_bytes(r):   # "1gbit" -> bytes/s
    m = re.match(r"^(\d+)(k|m|g)?bit$", r)
    if not m: return None
    return int(m.group(1)) * {None: 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)] / 8
# The model: exposed comm = 2(N-1)/N * V / B + 2(N-1) * L, fitted on the rows that reduce once
# per step after backward (fp32, fp16). V = bytes a rank sends per step * N / (2(N-1)).
fit_rows = [(k, r) for k, r in res.items()
            if k.split(".")[2] in ("fp32", "fp16") and int(k.split(".")[1]) > 1]
xs = []
for k, r in fit_rows:
    n = int(k.split(".")[1])
    xs.append((r["sent"] * 1e6, 2.0 * (n - 1), r["comm"]))   # (2(N-1)/N V, 2(N-1), seconds)
invB = L = None
if len(xs) >= 2:
    # least squares for comm = a * bytes + b * msgs, a = 1/B, b = L
    saa = sum(a * a for a, _, _ in xs); sab = sum(a * b for a, b, _ in xs); sbb = sum(b * b for _, b, _ in xs)
    say = sum(a * y for a, _, y in xs); sby = sum(b * y for _, b, y in xs)
    det = saa * sbb - sab * sab
    if det > 0:
        invB, L = (say * sbb - sby * sab) / det, (saa * sby - sab * say) / det
print(f"scaling over stand-in nodes: links {rate}, --device {device}, one rank (one thread) per node, "
      f"--limit {limit} --epochs {epochs} --batch {batch} (global); fastest of {repeat} round(s)")
print("%-6s %5s %-7s %9s %9s %9s %8s %9s %8s %7s %12s" % ("model", "nodes", "option", "step ms",
      "compute", "exposed", "exposed%", "MB sent", "samp/s", "acc", "model ms (err)"))
for k, r in res.items():
    m, n, o = k.split("."); n = int(n)
    pred = ""
    if invB is not None and o in ("fp32", "fp16"):
        p = r["comp"] + r["sent"] * 1e6 * invB + 2 * (n - 1) * L
        pred = "%7.2f (%+.0f%%)" % (1e3 * p, 100 * (p - r["step"]) / r["step"])
    print("%-6s %5d %-7s %9.2f %9.2f %9.2f %7.1f%% %9.3f %8.0f %7.4f %14s" % (m, n, o, 1e3 * r["step"],
          1e3 * r["comp"], 1e3 * r["comm"], 100 * r["comm"] / r["step"], r["sent"], r["sps"], r["acc"], pred))
print("step = compute + exposed (the trainer's per-rank table, mean over ranks, after the warm-up steps);"
      "\nMB sent = per step and rank; model = the fit below, with the row's own compute.")
for m in sorted({k.split(".")[0] for k in res}):   # the done-when pair, where measured
    a, b = res.get(f"{m}.2.fp32"), res.get(f"{m}.2.b1fp16")
    if a and b:
        print(f"{m}, 2 nodes: --bucket-mb 1 --wire fp16 against one fp32 reduction after backward: "
              f"step {1e3*b['step']:.2f} / {1e3*a['step']:.2f} ms = {a['step']/b['step']:.2f}x faster, "
              f"accuracy {100*b['acc']:.2f} % / {100*a['acc']:.2f} % ({100*(b['acc']-a['acc']):+.2f} points)")
if invB is None or invB <= 0:
    print("model: not fitted (needs the fp32 / fp16 rows of at least two jobs of 2+ nodes; got %d)" % len(xs))
    sys.exit(0)
B = 1 / invB
print(f"\nMODEL (a fit, not a measurement): exposed comm = 2(N-1)/N x V / B + 2(N-1) x L, from {len(xs)} rows: "
      f"B = {B/1e6:.1f} MB/s, L = {L*1e6:.1f} us")
link = rate_bytes(rate)
if link is None:
    print("MODEL: no predictions for other links: the links were not capped (--rate), so the fitted B"
          " is this machine's, not a link's")
    sys.exit(0)
eff = B / link
print(f"MODEL: B is {100*eff:.0f} % of the {rate} link; predictions take that fraction of 10 and 100 Gbit/s,"
      f" the L above, and each model's per-rank compute of its largest measured job (per-rank batch held)")
print("%-6s %8s %6s %10s %10s %9s %9s" % ("model", "link", "nodes", "step ms", "comm ms", "comm %", "speed-up"))
for m in sorted({k.split(".")[0] for k in res}):
    big = max((k for k in res if k.startswith(m + ".") and k.endswith(".fp32")), key=lambda k: int(k.split(".")[1]))
    c = res[big]["comp"]
    nb = int(big.split(".")[1])
    if nb < 2: continue
    V = res[big]["sent"] * 1e6 * nb / (2 * (nb - 1))   # the gradient bytes (fp32 on the wire)
    for gbit in (10, 100):
        Bp = eff * gbit * 1e9 / 8
        for n in (8, 64, 512):
            comm = 2 * (n - 1) / n * V / Bp + 2 * (n - 1) * L
            step = c + comm
            print("%-6s %6d Gb %6d %10.2f %10.2f %8.1f%% %8.1fx" % (m, gbit, n, 1e3 * step, 1e3 * comm,
                  100 * comm / step, n * c / step))
print("MODEL: speed-up = N x compute / step against one node with the same per-rank batch (weak scaling).")
PY
  exit 0
fi

set -- $devs
[ $# -eq 2 ] || { echo "bench-scaling.sh: --devices takes two device specs" >&2; exit 2; }
d0=$1 d1=$2
export POCL_MAX_PTHREAD_COUNT=1 CL_CONFIG_CPU_TBB_NUM_WORKERS=1
# the two specs must name two devices (cltrain-devices --spec says which each one takes)
w0=$("${T%/*}/cltrain-devices" --spec "$d0" --ranks 1 | sed -n 's/^local rank 0: //p') || exit $?
w1=$("${T%/*}/cltrain-devices" --spec "$d1" --ranks 1 | sed -n 's/^local rank 0: //p') || exit $?
[ "$w0" != "$w1" ] || { echo "bench-scaling.sh: --devices: '$d0' and '$d1' both select $w0" >&2; exit 2; }
echo "bench-scaling.sh: $d0 -> $w0; $d1 -> $w1" >&2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ -n "$bind" ] || { [ "$(nproc)" -ge 2 ] && bind=core || bind=none; }
case "$bind" in
  core) [ "$(nproc)" -ge 2 ] || { echo "bench-scaling.sh: --bind core: needs two cores, this machine has $(nproc)" >&2; exit 2; }
        command -v taskset >/dev/null || { echo "bench-scaling.sh: --bind core needs taskset (util-linux)" >&2; exit 1; }
        pin0="taskset -c 0" pin1="taskset -c 1" ;;
  none) pin0="" pin1="" ;;
  *) echo "bench-scaling.sh: --bind: expected core or none, got '$bind'" >&2; exit 2 ;;
esac
MPI="mpirun --oversubscribe --bind-to $bind"
work=$(mktemp -d /tmp/cltrain-bench-scaling-XXXXXX)
case "$batch" in ''|*[!0-9]*|0|1) echo "bench-scaling.sh: --batch takes an integer >= 2, got '$batch'" >&2; exit 2 ;; esac
half=$((batch / 2)) double=$((batch * 2))
case "$model" in gpt|gpt:*) [ -n "$target_set" ] || target=2.5 ;; esac
A="--model $model --limit $limit --epochs $epochs --log-every 0 --seed 1 $more"
run() {   # name, batch, then the command
  local name=$1 b=$2; shift 2
  echo "running $name: $* --batch $b" >&2
  "$@" $A --batch "$b" >"$work/$name.out" 2>&1 || { cat "$work/$name.out" >&2; echo "bench-scaling.sh: $name failed" >&2; exit 1; }
}
bg=""
trap '[ -z "$bg" ] || kill -- -"$bg" 2>/dev/null; rm -rf "$work"' EXIT
corun() {   # name, batch, device measured, its pin, device training in a loop beside it, its pin
  local name=$1 b=$2 d=$3 pin=$4 other=$5 opin=$6
  # its own session (process group), so that the loop and its run stop together
  setsid bash -c 'while :; do "$@" >/dev/null 2>&1 || exit 1; done' _ $opin "$T" --device "$other" $A \
    --batch "$b" --epochs 100 &
  bg=$!
  sleep 4   # past the other run's start (device set-up, kernel builds)
  run "$name" "$b" $pin "$T" --device "$d"
  kill -- -"$bg" 2>/dev/null || { echo "bench-scaling.sh: $name: the run beside it ($other) failed" >&2; exit 1; }
  wait "$bg" 2>/dev/null || true
  bg=""
}
trap 'exit 1' INT TERM HUP
case "$tune" in
  yes)  # each device on its core, the two at once; a rank's share first, then the whole batch
    for b in "$half" "$batch"; do
      echo "tuning (where the caches lack them) the GEMMs of $model at batch $b on $d0 and $d1" >&2
      $pin0 "$T" --device "$d0" $more --model "$model" --batch "$b" --tune --limit "$b" --test-limit "$b" \
        --epochs 1 --log-every 0 >"$work/tune0.out" 2>&1 & t0=$!
      $pin1 "$T" --device "$d1" $more --model "$model" --batch "$b" --tune --limit "$b" --test-limit "$b" \
        --epochs 1 --log-every 0 >"$work/tune1.out" 2>&1 ||
        { kill "$t0" 2>/dev/null; cat "$work/tune1.out" >&2; echo "bench-scaling.sh: tuning $d1 failed" >&2; exit 1; }
      wait "$t0" || { cat "$work/tune0.out" >&2; echo "bench-scaling.sh: tuning $d0 failed" >&2; exit 1; }
    done ;;
esac
for round in $(seq 1 "$repeat"); do
  run solo_$d0.$round "$batch" $pin0 "$T" --device "$d0"
  run solo_$d1.$round "$batch" $pin1 "$T" --device "$d1"
  # each device alone at a rank's share of the batch: what a rank could do without the others
  run half_$d0.$round "$half" $pin0 "$T" --device "$d0"
  run half_$d1.$round "$half" $pin1 "$T" --device "$d1"
  # the same, while the other device trains beside it (its own process, no communication):
  # what two ranks could do sharing this machine's cores, caches and memory
  corun side_$d0.$round "$half" "$d0" "$pin0" "$d1" "$pin1"
  corun side_$d1.$round "$half" "$d1" "$pin1" "$d0" "$pin0"
  run x2_$d0.$round "$batch" $MPI -np 2 "$T" --device "$d0" --balance even
  run mix_even.$round "$batch" $MPI -np 2 "$T" --device "0=$d0,1=$d1" --balance even
  run mix_tp.$round "$batch" $MPI -np 2 "$T" --device "0=$d0,1=$d1" --balance throughput
  # the same with every rank applying the whole update (what --shard-update saves)
  run mix_tp_whole.$round "$batch" $MPI -np 2 "$T" --device "0=$d0,1=$d1" --balance throughput \
    --shard-update off
  run mix_tp_stale.$round "$batch" $MPI -np 2 "$T" --device "0=$d0,1=$d1" --balance throughput --sync stale
  run mix_tp_local4.$round "$batch" $MPI -np 2 "$T" --device "0=$d0,1=$d1" --balance throughput --sync local:4
  # weak scaling: twice the global batch, so that each rank's share is the solo runs' batch
  run mix_tp_weak.$round "$double" $MPI -np 2 "$T" --device "0=$d0,1=$d1" --balance throughput
done
/usr/bin/python3 - "$work" "$d0" "$d1" "$target" "$model" "$limit" "$epochs" "$batch" "$repeat" "$bind" <<'PY'
import re, sys
work, d0, d1, target = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
model, limit, epochs, batch, repeat, bind = sys.argv[5:11]
batch = int(batch); half, double = batch // 2, 2 * batch
lm = model == "gpt" or model.startswith("gpt:")   # the language model: validation loss, lower is better
metric = "validation loss" if lm else "test accuracy"
def parse(name):   # the fastest of the rounds
    runs = [parse1(f"{name}.{k}") for k in range(1, int(repeat) + 1)]
    return max(runs, key=lambda r: r["sps"])
def parse1(name):
    t = open(f"{work}/{name}.out").read()
    sps = float(re.search(r"^final: .* ([0-9.]+) samples/s( \(.*\))?$", t, re.M).group(1))
    acc = float(re.search(r"^final: " + metric + r" ([0-9.]+)", t, re.M).group(1))
    ranks = []
    for m in re.finditer(r"^ +(\d+) +([0-9.]+) +([0-9.]+) +([0-9.]+) +([0-9.]+) +([0-9.]+) +"
                         r"[0-9.]+% +([0-9.]+)%", t, re.M):
        comp, copies, mpi, wait, step, exposed = map(float, m.groups()[1:])
        ranks.append((wait / step if step else 0, exposed / 100))
    reach = None
    for m in re.finditer(r"^epoch +\d+ +" + metric + r" ([0-9.]+) +(?:\(perplexity [0-9.]+\) +)?"
                         r"\(([0-9.]+) s training", t, re.M):
        met = float(m.group(1)) <= target if lm else float(m.group(1)) >= target
        if met and reach is None: reach = float(m.group(2))
    shares = re.search(r"^shares of a batch of \d+ at the end: (.*) \(", t, re.M)
    return dict(sps=sps, acc=acc, ranks=ranks, reach=reach, shares=shares.group(1) if shares else "-")
rows = [("solo_" + d0, d0, "-", "-", [d0], batch), ("solo_" + d1, d1, "-", "-", [d1], batch),
        ("half_" + d0, d0, "-", "-", [d0], half), ("half_" + d1, d1, "-", "-", [d1], half),
        ("x2_" + d0, d0 + " x2", "sync", "even", [d0, d0], batch),
        ("mix_even", d0 + "+" + d1, "sync", "even", [d0, d1], batch),
        ("mix_tp", d0 + "+" + d1, "sync", "throughput", [d0, d1], batch),
        ("mix_tp_whole", d0 + "+" + d1, "sync*", "throughput", [d0, d1], batch),
        ("mix_tp_stale", d0 + "+" + d1, "stale", "throughput", [d0, d1], batch),
        ("mix_tp_local4", d0 + "+" + d1, "local:4", "throughput", [d0, d1], batch),
        ("mix_tp_weak", d0 + "+" + d1, "sync", "throughput", [d0, d1], double)]
res = {r[0]: parse(r[0]) for r in rows}
solo = {d0: res["solo_" + d0]["sps"], d1: res["solo_" + d1]["sps"]}
at_half = {d0: res["half_" + d0]["sps"], d1: res["half_" + d1]["sps"]}
side = {d0: parse("side_" + d0)["sps"], d1: parse("side_" + d1)["sps"]}
print(f"scaling: --model {model} --limit {limit} --epochs {epochs} --batch {batch}, one thread per device; "
      f"target {metric} {target}; fastest of {repeat} runs each; "
      + ("ranks bound to cores 0 and 1, each device alone pinned to its rank's core" if bind == "core" else "ranks unbound"))
def plans(name):   # the GEMM plans a run used, as cltrain's device line names them
    m = re.search(r"GEMMs: (.*)$", open(f"{work}/{name}.1.out").read(), re.M)
    return m.group(1) if m else "?"
def plans2(d):   # at --batch and at a rank's share: once when the same
    a, h = plans("solo_" + d), plans("half_" + d)
    return f"{d}: {a}" if a == h else f"{d}: {a} (batch {batch}), {h} (batch {half})"
print("GEMM plans: " + "; ".join(plans2(d) for d in (d0, d1)))
print("%-14s %-8s %-10s %5s %10s %10s %6s %7s %8s %-13s %7s %-9s %6s %9s" % (
    "devices", "sync", "balance", "batch", "samples/s", "sum solo", "eff.", "eff.@sh", "speed-up",
    "wait % r0/r1", "exposed", "shares", "loss" if lm else "acc", "to target"))
for name, devices, mode, bal, ds, b in rows:
    r = res[name]
    s = sum(solo[d] for d in ds)
    fast = max(solo[d] for d in ds)
    job = len(ds) > 1
    # eff.@sh: against the devices alone at a rank's share of the batch (even shares assumed)
    per = b // len(ds) if job else b
    ceil = sum(at_half[d] if per == half else solo[d] for d in ds) if job and per in (half, batch) else None
    waits = "/".join("%.0f" % (100 * w) for w, _ in r["ranks"]) if job else "-"
    comm = "%.1f" % (100 * sum(c for _, c in r["ranks"]) / len(r["ranks"])) if job else "-"
    reach = "%.1f s" % r["reach"] if r["reach"] is not None else "not reached"
    print("%-14s %-8s %-10s %5d %10.0f %10s %6s %7s %8s %-13s %7s %-9s %6.4f %9s" % (
        devices, mode, bal, b, r["sps"], "%.0f" % s if b != half else "-",
        "%.2f" % (r["sps"] / s) if b != half else "-", "%.2f" % (r["sps"] / ceil) if ceil else "-",
        "%.2f" % (r["sps"] / fast) if b != half else "-", waits, comm,
        r["shares"].replace(" ", "/"), r["acc"], reach))
    if name == "half_" + d1:   # both at a rank's share, side by side, no communication
        sb = side[d0] + side[d1]
        print("%-14s %-8s %-10s %5d %10.0f %10.0f %6.2f %7.2f %8s %-13s %7s %-9s %6s %9s" % (
            d0 + "|" + d1, "apart", "-", half, sb, solo[d0] + solo[d1], sb / (solo[d0] + solo[d1]),
            sb / (at_half[d0] + at_half[d1]), "%.2f" % (sb / max(solo[d0], solo[d1])), "-", "-",
            "%.0f+%.0f" % (side[d0], side[d1]), "-", "-"))
print("eff. = samples/s / sum of the solo samples/s (at --batch) of the job's devices; eff.@sh = the same "
      "against the devices alone at a rank's share of the job's batch\n(the rows at batch %d: what each "
      "rank could do with nobody to wait for or talk to); speed-up = over the fastest of them alone;\n"
      "wait %% = time a rank waited for the slowest one, of its step; exposed = %% of the step spent "
      "communicating after compute, beyond waiting (mean over ranks);\nshares = of a full batch at the end; "
      "'to target' = training time until the %s first reached the target; the last row holds "
      "each rank's share at --batch (weak scaling: twice the global batch, other math);\n"
      "%s|%s apart = each device alone at a rank's share while the other trains beside it in its own "
      "process (no communication): the sum of the two rates (each in the shares column);\n"
      "sync* = --shard-update off: every rank applies the whole optimizer update (the other sync rows "
      "shard it where every rank's device shares host memory, as CPUs do)." % (half, metric, d0, d1))
if lm: print("(the language model: samples are windows of its sequence length; samples/s x that length = tokens/s)")
tp, ss, sh = res["mix_tp"]["sps"], solo[d0] + solo[d1], at_half[d0] + at_half[d1]
sb = side[d0] + side[d1]
print(f"where {d0}+{d1} throughput loses against the sum of the solo rates ({tp:.0f} of {ss:.0f} samples/s, "
      f"{tp/ss:.2f}) = {sh/ss:.2f} x {sb/sh:.2f} x {tp/sb:.2f}:\n  a rank's share of the batch alone runs at "
      f"{sh/ss:.2f} of it (fixed costs per step, smaller matrix products); the two devices at those shares "
      f"side by side,\n  with no communication, at {sb/sh:.2f} of that (sharing the cores, caches and "
      f"memory); the job at {tp/sb:.2f} of that (communication and waiting)")
PY
