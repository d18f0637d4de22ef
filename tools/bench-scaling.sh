#!/usr/bin/env bash
# Scaling report: every device alone (one thread each), then the data-parallel jobs, all in one
# run, in one table: samples/s, the sum of the solo samples/s of the devices in the job,
# efficiency = job / that sum, speed-up over the fastest of them alone, each rank's waiting
# share of its step, exposed communication (after compute, beyond waiting: the trainer's exposed% column), test
# accuracy after the epochs, and the training time until the test accuracy first reached the
# target. A benchmark: it prints what it measured, it never passes or fails on it.
#   tools/bench-scaling.sh [--model mlp] [--limit 60000] [--epochs 2] [--batch 128] [--target 0.80]
#                          [--devices "pocl intel"] [--repeat 2]
# Every configuration runs --repeat times, in rounds (each round runs them all, so that a slow
# spell of a shared machine hits all of them alike); the table shows each one's fastest run.
# Needs build/cltrain, Open MPI, PoCL and Intel's CPU runtime (tools/install-deps.sh --intel).
# One thread per device: POCL_MAX_PTHREAD_COUNT=1, CL_CONFIG_CPU_TBB_NUM_WORKERS=1. Every job
# gets the same global batch, seed and data; run it on an otherwise quiet machine.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
model=mlp limit=60000 epochs=2 batch=128 target=0.80 devs="pocl intel" repeat=2
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --devices) devs=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench-scaling.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
T=$root/build/cltrain
[ -x "$T" ] || { echo "bench-scaling.sh: build/cltrain not found: build first" >&2; exit 1; }
case "$repeat" in ''|*[!0-9]*|0) echo "bench-scaling.sh: --repeat takes a positive integer, got '$repeat'" >&2; exit 2 ;; esac
set -- $devs
[ $# -eq 2 ] || { echo "bench-scaling.sh: --devices takes two device specs" >&2; exit 2; }
d0=$1 d1=$2
export POCL_MAX_PTHREAD_COUNT=1 CL_CONFIG_CPU_TBB_NUM_WORKERS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI="mpirun --oversubscribe --bind-to none"
work=$(mktemp -d /tmp/cltrain-bench-scaling-XXXXXX)
trap 'rm -rf "$work"' EXIT
A="--model $model --limit $limit --epochs $epochs --batch $batch --log-every 0 --seed 1"
run() {   # name, then the command
  local name=$1; shift
  echo "running $name: $*" >&2
  "$@" $A >"$work/$name.out" 2>&1 || { cat "$work/$name.out" >&2; echo "bench-scaling.sh: $name failed" >&2; exit 1; }
}
for round in $(seq 1 "$repeat"); do
  run solo_$d0.$round "$T" --device "$d0"
  run solo_$d1.$round "$T" --device "$d1"
  run x2_$d0.$round $MPI -np 2 "$T" --device "$d0" --balance even
  run mix_even.$round $MPI -np 2 "$T" --device "0=$d0,1=$d1" --balance even
  run mix_tp.$round $MPI -np 2 "$T" --device "0=$d0,1=$d1" --balance throughput
  run mix_tp_stale.$round $MPI -np 2 "$T" --device "0=$d0,1=$d1" --balance throughput --sync stale
  run mix_tp_local4.$round $MPI -np 2 "$T" --device "0=$d0,1=$d1" --balance throughput --sync local:4
done
/usr/bin/python3 - "$work" "$d0" "$d1" "$target" "$model" "$limit" "$epochs" "$batch" "$repeat" <<'PY'
import re, sys
work, d0, d1, target = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
model, limit, epochs, batch, repeat = sys.argv[5:10]
def parse(name):   # the fastest of the rounds
    runs = [parse1(f"{name}.{k}") for k in range(1, int(repeat) + 1)]
    return max(runs, key=lambda r: r["sps"])
def parse1(name):
    t = open(f"{work}/{name}.out").read()
    sps = float(re.search(r"^final: .* ([0-9.]+) samples/s$", t, re.M).group(1))
    acc = float(re.search(r"^final: test accuracy ([0-9.]+)", t, re.M).group(1))
    ranks = []
    for m in re.finditer(r"^ +(\d+) +([0-9.]+) +([0-9.]+) +([0-9.]+) +([0-9.]+) +([0-9.]+) +"
                         r"[0-9.]+% +([0-9.]+)%", t, re.M):
        comp, copies, mpi, wait, step, exposed = map(float, m.groups()[1:])
        ranks.append((wait / step if step else 0, exposed / 100))
    reach = None
    for m in re.finditer(r"^epoch +\d+ +test accuracy ([0-9.]+) +\(([0-9.]+) s training", t, re.M):
        if float(m.group(1)) >= target and reach is None: reach = float(m.group(2))
    shares = re.search(r"^shares of a batch of \d+ at the end: (.*) \(", t, re.M)
    return dict(sps=sps, acc=acc, ranks=ranks, reach=reach, shares=shares.group(1) if shares else "-")
rows = [("solo_" + d0, d0, "-", "-", [d0]), ("solo_" + d1, d1, "-", "-", [d1]),
        ("x2_" + d0, d0 + " x2", "sync", "even", [d0, d0]),
        ("mix_even", d0 + "+" + d1, "sync", "even", [d0, d1]),
        ("mix_tp", d0 + "+" + d1, "sync", "throughput", [d0, d1]),
        ("mix_tp_stale", d0 + "+" + d1, "stale", "throughput", [d0, d1]),
        ("mix_tp_local4", d0 + "+" + d1, "local:4", "throughput", [d0, d1])]
res = {r[0]: parse(r[0]) for r in rows}
solo = {d0: res["solo_" + d0]["sps"], d1: res["solo_" + d1]["sps"]}
print(f"scaling: --model {model} --limit {limit} --epochs {epochs} --batch {batch}, one thread per device; "
      f"target accuracy {target}; fastest of {repeat} runs each")
print("%-14s %-8s %-10s %10s %10s %6s %8s %-13s %7s %-9s %6s %9s" % (
    "devices", "sync", "balance", "samples/s", "sum solo", "eff.", "speed-up", "wait % r0/r1",
    "exposed", "shares", "acc", "to target"))
for name, devices, mode, bal, ds in rows:
    r = res[name]
    s = sum(solo[d] for d in ds)
    fast = max(solo[d] for d in ds)
    waits = "/".join("%.0f" % (100 * w) for w, _ in r["ranks"]) if len(ds) > 1 else "-"
    comm = "%.1f" % (100 * sum(c for _, c in r["ranks"]) / len(r["ranks"])) if len(ds) > 1 else "-"
    reach = "%.1f s" % r["reach"] if r["reach"] is not None else "not reached"
    print("%-14s %-8s %-10s %10.0f %10.0f %6.2f %8.2f %-13s %7s %-9s %6.4f %9s" % (
        devices, mode, bal, r["sps"], s, r["sps"] / s, r["sps"] / fast, waits, comm,
        r["shares"].replace(" ", "/"), r["acc"], reach))
print("eff. = samples/s / sum of the solo samples/s of the job's devices; speed-up = over the fastest "
      "of them alone;\nwait % = time a rank waited for the slowest one, of its step; exposed = % of "
      "the step spent communicating after compute, beyond waiting (mean over ranks);\nshares = of a full batch at the end; "
      "'to target' = training time until the test accuracy first reached the target.")
PY
