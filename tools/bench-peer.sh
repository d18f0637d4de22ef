#!/usr/bin/env bash
# Training throughput of cltrain next to PyTorch's (tools/peer_torch.py) and tinygrad's
# (tools/peer_tinygrad.py) on the same machine, same model, global batch and thread count,
# measured in the same run. A benchmark: prints figures and their ratios, never passes or fails
# on them.
#   tools/bench-peer.sh [--threads T] [--batch B] [--limit-mlp N] [--limit-cnn N]
#                       [--models "mlp cnn gpt"] [--gpt-steps N] [--device SPEC] [--no-tune]
#                       [--no-tinygrad]
# tinygrad (0.14, DEV=CL, default settings) trains mlp and cnn on the OpenCL platform of
# cltrain's --device, chosen through the ICD loader (the /etc/OpenCL/vendors/*.icd file whose
# platform has that name), from the virtual environment of tools/install-deps.sh --bench
# (/opt/cltrain-tinygrad, or CLTRAIN_TINYGRAD_DIR); without it the columns say "-".
# gpt: the language model (L4 C128 H4 T64, batch 12, AdamW, clip 1.0) next to tools/peer_gpt.py
# on the installed corpus, --gpt-steps steps each (tokens/s after 5 warm-up steps).
# Needs build/cltrain and Debian's python3-torch + libopenblas0-pthread
# (tools/install-deps.sh --bench installs them). cltrain's PoCL is pinned to T threads with
# POCL_MAX_PTHREAD_COUNT; the peer sets its BLAS and intra-op threads to T. cltrain runs with
# --tune: when the device's GEMM tuning cache (cltrain-tune) lacks a model's products, they are
# tuned first (a few minutes, once; not counted in samples/s); --no-tune measures as it is.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
peer=${CLTRAIN_PEER:-$root/tools/peer_torch.py}
peer_gpt=$root/tools/peer_gpt.py
text=/usr/local/share/cltrain/shakespeare.txt
threads=1 batch=128 limit_mlp=30000 limit_cnn=6000 models="mlp cnn gpt" lr=0.05 tune=--tune
gpt_steps=150 device=pocl tinygrad=1
tg_python=${CLTRAIN_TINYGRAD_DIR:-/opt/cltrain-tinygrad}/bin/python
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --limit-mlp) limit_mlp=$2; shift 2 ;;
    --limit-cnn) limit_cnn=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --gpt-steps) gpt_steps=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --no-tune) tune=; shift ;;
    --no-tinygrad) tinygrad=0; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "bench-peer.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$root/build/cltrain" ] || { echo "bench-peer.sh: build/cltrain not found: build first" >&2; exit 1; }
[ -f "$peer" ] || { echo "bench-peer.sh: peer script $peer not found (set CLTRAIN_PEER)" >&2; exit 1; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "bench-peer.sh: python3-torch is not installed (tools/install-deps.sh --bench)" >&2; exit 1; }
dev=$("$root/build/cltrain-devices" --device "$device" --json | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); x=[v for p in d["platforms"] for v in p["devices"]][0]; print(x["name"], "/", x["platform_name"])')
cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)
# tinygrad's platform: the ICD file that loads the platform of cltrain's device
tg_icd=""
if [ "$tinygrad" = 1 ]; then
  if "$tg_python" -c 'import tinygrad' 2>/dev/null; then
    plat=${dev#* / }
    for f in /etc/OpenCL/vendors/*.icd; do
      p=$(OCL_ICD_VENDORS=$f "$root/build/cltrain-devices" --json 2>/dev/null | /usr/bin/python3 -c \
          'import json,sys; d=json.load(sys.stdin); print(d["platforms"][0]["name"] if d["platforms"] else "")' 2>/dev/null || true)
      [ "$p" = "$plat" ] && { tg_icd=$f; break; }
    done
    [ -n "$tg_icd" ] || echo "bench-peer.sh: no ICD file loads '$plat' alone: no tinygrad column" >&2
  else
    echo "bench-peer.sh: tinygrad not found in $tg_python (tools/install-deps.sh --bench): no tinygrad column" >&2
  fi
fi
echo "cltrain vs PyTorch and tinygrad, training throughput; $threads thread(s), global batch $batch, SGD lr $lr momentum 0.9, one epoch"
echo "cltrain device: $dev; CPU: $cpu"
echo "cltrain GEMMs: the device's tuning cache${tune:+ (products missing from it are tuned first: --tune)}"
[ -n "$tg_icd" ] && echo "tinygrad: $("$tg_python" -c 'import importlib.metadata as m; print(m.version("tinygrad"))') DEV=CL through $tg_icd"
printf '%-6s %8s %14s %14s %10s %10s %10s %14s %10s %10s\n' model samples cltrain_s/s torch_s/s ratio acc_cl acc_torch tinygrad_s/s ratio_tg acc_tg
export POCL_MAX_PTHREAD_COUNT=$threads CL_CONFIG_CPU_TBB_NUM_WORKERS=$threads
for m in $models; do
  if [ "$m" = gpt ]; then   # tokens/s of the language model, the same recipe on both
    G="--batch 12 --lr 1e-3 --beta2 0.99 --warmup 10 --min-lr 1e-4"
    out=$("$root/build/cltrain" --model gpt --device "$device" --text "$text" --optimizer adamw \
          $G --weight-decay 0.1 --clip-norm 1 --schedule cosine --max-steps "$gpt_steps" \
          --test-limit 64 --log-every 0 $tune)
    cl=$(echo "$out" | sed -n 's/^final: .* (\([0-9]*\) tokens\/s)$/\1/p')
    clv=$(echo "$out" | sed -n 's/^final: validation loss \([0-9.]*\).*/\1/p')
    pout=$(/usr/bin/python3 "$peer_gpt" --text "$text" --steps "$gpt_steps" $G --wd 0.1 --clip 1.0 \
           --threads "$threads" --eval-windows 64 --log-every 0)
    pt=$(echo "$pout" | sed -n 's/^tokens\/s \([0-9.]*\)/\1/p')
    ptv=$(echo "$pout" | sed -n 's/^val loss \([0-9.]*\)/\1/p')
    ratio=$(/usr/bin/python3 -c "print(f'{$cl/$pt:.2f}')")
    printf '%-6s %8s %14s %14s %10s %10s %10s %14s %10s %10s   (tokens/s, validation loss)\n' gpt \
      "$((gpt_steps * 12))" "$cl" "$pt" "$ratio" "$clv" "$ptv" - - -
    continue
  fi
  limit=$limit_mlp; [ "$m" = cnn ] && limit=$limit_cnn
  out=$("$root/build/cltrain" --model "$m" --device "$device" --epochs 1 --batch "$batch" \
        --lr $lr --momentum 0.9 --limit "$limit" --log-every 0 $tune)
  cl=$(echo "$out" | sed -n 's/^final: .* \([0-9.]*\) samples\/s$/\1/p')
  clacc=$(echo "$out" | sed -n 's/^final: test accuracy \([0-9.]*\).*/\1/p')
  pout=$(/usr/bin/python3 "$peer" --model "$m" --epochs 1 --batch "$batch" --threads "$threads" --lr $lr --limit "$limit")
  pt=$(echo "$pout" | sed -n 's/.*samples_per_s=\([0-9.]*\).*/\1/p')
  ptacc=$(echo "$pout" | sed -n 's/.*test_acc=\([0-9.]*\).*/\1/p')
  ratio=$(/usr/bin/python3 -c "print(f'{$cl/$pt:.2f}')")
  tg=- tgr=- tgacc=-
  if [ -n "$tg_icd" ]; then
    tout=$("$tg_python" "$root/tools/peer_tinygrad.py" --model "$m" --epochs 1 --batch "$batch" \
           --lr $lr --limit "$limit" --icd "$tg_icd" 2>/dev/null)
    tg=$(echo "$tout" | sed -n 's/.*samples_per_s=\([0-9.]*\).*/\1/p')
    tgacc=$(echo "$tout" | sed -n 's/.*test_acc=\([0-9.]*\).*/\1/p')
    tgr=$(/usr/bin/python3 -c "print(f'{$cl/$tg:.2f}')")
  fi
  printf '%-6s %8s %14s %14s %10s %10s %10s %14s %10s %10s\n' "$m" "$limit" "$cl" "$pt" "$ratio" "$clacc" "$ptacc" "$tg" "$tgr" "$tgacc"
done
echo "ratio = cltrain samples/s / PyTorch samples/s, ratio_tg = cltrain / tinygrad (all after 5 warm-up steps)"
