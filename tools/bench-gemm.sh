#!/usr/bin/env bash
# Matrix-product throughput at a model's own GEMM shapes: cltrain (as it trains: the device's
# tuning cache, or its defaults) next to torch.mm (PyTorch on OpenBLAS) on the same cores, in
# the same run, rounds interleaved, the best of each; ratio = cltrain / torch. A benchmark: it
# prints figures, it never passes or fails on them.
#   tools/bench-gemm.sh [--device SPEC] [--model mlp|cnn|ARCH] [--batch N] [--threads T] [--rounds R]
# Needs build/cltrain-tune and Debian's python3-torch + libopenblas0-pthread
# (tools/install-deps.sh --bench). PoCL is pinned to T threads with POCL_MAX_PTHREAD_COUNT,
# Intel's runtime with CL_CONFIG_CPU_TBB_NUM_WORKERS, OpenBLAS and torch with T threads.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
device=pocl model=mlp batch=128 threads=1 rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "bench-gemm.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
tune=$root/build/cltrain-tune
[ -x "$tune" ] || { echo "bench-gemm.sh: build/cltrain-tune not found: build first" >&2; exit 1; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "bench-gemm.sh: python3-torch is not installed (tools/install-deps.sh --bench)" >&2; exit 1; }
work=$(mktemp -d /tmp/cltrain-bench-gemm-XXXXXX)
trap 'rm -rf "$work"' EXIT
export POCL_MAX_PTHREAD_COUNT=$threads CL_CONFIG_CPU_TBB_NUM_WORKERS=$threads
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
for r in $(seq 1 "$rounds"); do
  "$tune" --device "$device" --model "$model" --batch "$batch" --bench >"$work/cl.$r"
  /usr/bin/python3 - "$work/cl.$r" "$threads" >"$work/torch.$r" <<'PY'
import sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 7 or f[-6] not in ("NN", "NT", "TN", "TT") or not f[-2].replace(".", "").isdigit():
        continue
    op, m, n, k = f[-6], int(f[-5]), int(f[-4]), int(f[-3])
    a = torch.randn(k, m).t() if op[0] == "T" else torch.randn(m, k)
    b = torch.randn(n, k).t() if op[1] == "T" else torch.randn(k, n)
    torch.mm(a, b)
    t0 = time.perf_counter(); torch.mm(a, b); one = time.perf_counter() - t0
    reps = max(2, min(200, int(0.02 / max(one, 1e-6))))
    best = 1e30
    for _ in range(2):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        best = min(best, (time.perf_counter() - t0) / reps)
    print(op, m, n, k, "%.2f" % (2.0 * m * n * k / best / 1e9))
PY
done
/usr/bin/python3 - "$work" "$rounds" "$device" "$model" "$batch" "$threads" <<'PY'
import sys, glob
work, rounds = sys.argv[1], int(sys.argv[2])
cl, th, rows, head = {}, {}, [], ""
for r in range(1, rounds + 1):
    for line in open(f"{work}/cl.{r}"):
        f = line.split()
        if line.startswith("device:") and not head: head = line.strip()
        if len(f) >= 7 and f[-6] in ("NN", "NT", "TN", "TT") and f[-2].replace(".", "").isdigit():
            key = (f[-6], int(f[-5]), int(f[-4]), int(f[-3]))
            if key not in cl: rows.append((" ".join(f[:-6]), key, f[-1]))
            cl[key] = max(cl.get(key, 0), float(f[-2]))
    for line in open(f"{work}/torch.{r}"):
        op, m, n, k, g = line.split()
        key = (op, int(m), int(n), int(k))
        th[key] = max(th.get(key, 0), float(g))
print(f"GEMM at the shapes of --model {sys.argv[4]} --batch {sys.argv[5]}, {sys.argv[6]} thread(s), best of {rounds} interleaved rounds")
print(head)
print("%-14s %2s %6s %6s %6s %9s %9s %7s  %s" % ("role", "op", "M", "N", "K", "cltrain", "torch.mm", "ratio", "cltrain uses"))
tot_cl = tot_th = 0.0
for role, key, impl in rows:
    op, m, n, k = key
    g1, g2 = cl[key], th.get(key, 0)
    fl = 2.0 * m * n * k
    tot_cl += fl / (g1 * 1e9) if g1 else 0
    tot_th += fl / (g2 * 1e9) if g2 else 0
    print("%-14s %2s %6d %6d %6d %9.1f %9.1f %7.2f  %s" % (role, op, m, n, k, g1, g2, g1 / g2 if g2 else 0, impl))
print("time-weighted: cltrain / torch.mm = %.2f (the time torch.mm needs for all these products over cltrain's)" % (tot_th / tot_cl if tot_cl else 0))
print("GFLOP/s; ratio = cltrain / torch.mm at that shape")
PY
