#!/usr/bin/env bash
# Training throughput of cltrain next to PyTorch's (tools/peer_torch.py) on the same
# machine, same model, global batch and thread count, measured in the same run. A benchmark:
# prints figures and their ratio, never passes or fails on them.
#   tools/bench-peer.sh [--threads T] [--batch B] [--limit-mlp N] [--limit-cnn N] [--models "mlp cnn"]
#                       [--no-tune]
# Needs build/cltrain and Debian's python3-torch + libopenblas0-pthread
# (tools/install-deps.sh --bench installs them). cltrain's PoCL is pinned to T threads with
# POCL_MAX_PTHREAD_COUNT; the peer sets its BLAS and intra-op threads to T. cltrain runs with
# --tune: when the device's GEMM tuning cache (cltrain-tune) lacks a model's products, they are
# tuned first (a few minutes, once; not counted in samples/s); --no-tune measures as it is.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
peer=${CLTRAIN_PEER:-$root/tools/peer_torch.py}
threads=1 batch=128 limit_mlp=30000 limit_cnn=6000 models="mlp cnn" lr=0.05 tune=--tune
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --limit-mlp) limit_mlp=$2; shift 2 ;;
    --limit-cnn) limit_cnn=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --no-tune) tune=; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "bench-peer.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$root/build/cltrain" ] || { echo "bench-peer.sh: build/cltrain not found: build first" >&2; exit 1; }
[ -f "$peer" ] || { echo "bench-peer.sh: peer script $peer not found (set CLTRAIN_PEER)" >&2; exit 1; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "bench-peer.sh: python3-torch is not installed (tools/install-deps.sh --bench)" >&2; exit 1; }
dev=$("$root/build/cltrain-devices" --device auto --json | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); x=[v for p in d["platforms"] for v in p["devices"]][0]; print(x["name"], "/", x["platform_name"])')
cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)
echo "cltrain vs PyTorch, training throughput; $threads thread(s), global batch $batch, SGD lr $lr momentum 0.9, one epoch"
echo "cltrain device: $dev; CPU: $cpu"
echo "cltrain GEMMs: the device's tuning cache${tune:+ (products missing from it are tuned first: --tune)}"
printf '%-6s %8s %14s %14s %10s %10s %10s\n' model samples cltrain_s/s torch_s/s ratio acc_cl acc_torch
for m in $models; do
  limit=$limit_mlp; [ "$m" = cnn ] && limit=$limit_cnn
  out=$(POCL_MAX_PTHREAD_COUNT=$threads "$root/build/cltrain" --model "$m" --epochs 1 --batch "$batch" \
        --lr $lr --momentum 0.9 --limit "$limit" --log-every 0 $tune)
  cl=$(echo "$out" | sed -n 's/^final: .* \([0-9.]*\) samples\/s$/\1/p')
  clacc=$(echo "$out" | sed -n 's/^final: test accuracy \([0-9.]*\).*/\1/p')
  pout=$(/usr/bin/python3 "$peer" --model "$m" --epochs 1 --batch "$batch" --threads "$threads" --lr $lr --limit "$limit")
  pt=$(echo "$pout" | sed -n 's/.*samples_per_s=\([0-9.]*\).*/\1/p')
  ptacc=$(echo "$pout" | sed -n 's/.*test_acc=\([0-9.]*\).*/\1/p')
  ratio=$(/usr/bin/python3 -c "print(f'{$cl/$pt:.2f}')")
  printf '%-6s %8s %14s %14s %10s %10s %10s\n' "$m" "$limit" "$cl" "$pt" "$ratio" "$clacc" "$ptacc"
done
echo "ratio = cltrain samples/s / PyTorch samples/s (both after 5 warm-up steps)"
