#!/usr/bin/env bash
# cltrain run as a user runs it, one case per ctest entry (tests/cli.cmake):
#   check_cli.sh CASE path/to/cltrain
# Environment: CLTRAIN_MPIEXEC (mpiexec with the flags root and 2 cores need), CLTRAIN_DATA.
# Figures printed here (accuracy, samples/s) are for the log; only correctness decides.
set -u
case_=$1
T=$2
here=$(cd "$(dirname "$0")" && pwd)
cmp_params="python3 $here/compare_params.py"
ckpt="python3 $here/ckpt_tool.py"
MPI=${CLTRAIN_MPIEXEC:-mpiexec --allow-run-as-root --oversubscribe}
DATA=${CLTRAIN_DATA:-/usr/share/datasets/fashion-mnist}
work=$(mktemp -d /tmp/cltrain-test-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
need_data() { [ -e "$DATA/train-images-idx3-ubyte.gz" ] || [ -e "$DATA/train-images-idx3-ubyte" ] || { echo "SKIP: no data set in $DATA"; exit 77; }; }
acc_of() { sed -n 's/^final: test accuracy \([0-9.]*\).*/\1/p' "$1"; }
ge() { python3 -c "import sys; sys.exit(0 if float('$1') >= float('$2') else 1)"; }
# a small model that has every layer kind but dropout, cheap on PoCL
SMALL="conv3x3:8,relu,maxpool2,conv3x3:8/s2/p1,relu,flatten,dense:32,relu,dense:10"
QUICK="--limit 1200 --test-limit 500 --batch 40 --log-every 0"
need_data

case "$case_" in
# ---- one device ------------------------------------------------------------------------------
train_subset)   # the mlp preset, 6,000 images, one epoch: >= 75 % on the 10,000 test images
  "$T" --model mlp --limit 6000 --epochs 1 --log-every 10 >"$work/out" 2>&1 || { cat "$work/out"; fail "exit $?"; }
  cat "$work/out"
  acc=$(acc_of "$work/out")
  [ -n "$acc" ] || fail "no final accuracy line"
  grep -q "samples/s" "$work/out" || fail "no samples/s figure"
  ge "$acc" 0.75 || fail "test accuracy $acc < 0.75"
  # not a terminal: the plain lines only; on a terminal (script(1) gives a pseudo-terminal): one
  # progress line per epoch, redrawn in place, ending at the epoch's last step
  if grep -q $'\r' "$work/out"; then fail "progress drawn into a log"; fi
  if command -v script >/dev/null; then
    script -qc "'$T' --model mlp --limit 3000 --epochs 2 --log-every 0" "$work/tty" >/dev/null 2>&1 || fail "under script: exit $?"
    tr '\r' '\n' <"$work/tty" | grep -Eq '^epoch 1/2 \[#+\] 24/24 .*ETA 0:00' || { cat -v "$work/tty"; fail "no finished progress line for epoch 1"; }
    tr '\r' '\n' <"$work/tty" | grep -Eq '^epoch 2/2 \[' || fail "no progress line for epoch 2"
    grep -q '^final: test accuracy' "$work/tty" || fail "no final line under a terminal"
  fi
  ;;
log_rates)   # every log line's samples/s: the samples and the training time since the line before
  # 24 steps an epoch, a line every 10: lines straddle epoch ends (evaluation, checkpoints)
  "$T" --model mlp --limit 2400 --batch 100 --epochs 3 --log-every 10 --test-limit 2000 \
    --checkpoint "$work/ck" --metrics "$work/m.jsonl" >"$work/out" 2>&1 || { cat "$work/out"; fail "exit $?"; }
  cat "$work/out"
  python3 - "$work/m.jsonl" "$work/out" <<'PY' || fail "log lines' samples/s do not match their interval"
import json, re, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
logs = [r for r in recs if r["type"] == "log"]
final = [r for r in recs if r["type"] == "final"][0]
printed = [float(m.group(1)) for m in re.finditer(r"^step +\d+ .* ([0-9.]+) samples/s$", open(sys.argv[2]).read(), re.M)]
assert len(logs) == 7 and len(printed) == 7, (len(logs), len(printed))
prev_step, prev_t, bad = 0, 0.0, 0
for r, p in zip(logs, printed):
    samples = (r["step"] - prev_step) * 100
    rate = samples / (r["train_s"] - prev_t)
    ok = abs(r["samples_per_s"] - rate) <= 1e-3 * rate and abs(p - r["samples_per_s"]) <= 0.051
    print("step %3d: %6d samples in %.4f s of training: %.1f samples/s, the line says %.1f (record %.1f)%s"
          % (r["step"], samples, r["train_s"] - prev_t, rate, p, r["samples_per_s"], "" if ok else "  WRONG"))
    bad += not ok
    prev_step, prev_t = r["step"], r["train_s"]
print("final: %.1f samples/s" % final["samples_per_s"])
sys.exit(1 if bad else 0)
PY
  ;;
help)
  "$T" --help >"$work/h" || fail "--help exited $?"
  for f in --model --epochs --batch --optimizer --lr --momentum --weight-decay --schedule --warmup \
           --seed --device --data --shard --checkpoint --checkpoint-every --resume --max-bad-steps \
           --check-every --on-divergence --log-every --profile --timing --tune --tune-budget \
           --balance --sync --wire --bucket-mb --accumulate --metrics --trace --trace-steps \
           --save-safetensors --classes --version; do
    grep -q -- "$f" "$work/h" || fail "--help does not list $f"
  done
  ;;
# ---- bad input -------------------------------------------------------------------------------
bad_input)
  mkdir -p "$work/bad"
  cp "$DATA"/*-ubyte* "$work/bad/"
  python3 - "$work/bad" <<'PY'
import gzip, os, sys
d = sys.argv[1]
p = [f for f in os.listdir(d) if f.startswith("train-labels")][0]
raw = gzip.open(os.path.join(d, p)).read() if p.endswith(".gz") else open(os.path.join(d, p), "rb").read()
raw = bytearray(raw); raw[8 + 5] = 12          # label 12 at index 5
os.remove(os.path.join(d, p))
open(os.path.join(d, "train-labels-idx1-ubyte"), "wb").write(raw)
PY
  mkdir -p "$work/trunc" && cp "$DATA"/*-ubyte* "$work/trunc/"
  f=$(ls "$work/trunc"/t10k-images*); python3 -c "
import gzip,sys; f=sys.argv[1]; r=gzip.open(f).read() if f.endswith('.gz') else open(f,'rb').read()
open(f,'wb').write(gzip.compress(r[:len(r)//2]) if f.endswith('.gz') else r[:len(r)//2])" "$f"
  L="--limit 200 --test-limit 100 --batch 10 --epochs 1 --log-every 0"
  n=0
  # expect EXIT_CODE REGEX -- ARGS...
  expect() {
    local code=$1 re=$2; shift 3
    local err rc
    err=$("$T" "$@" 2>&1 >/dev/null); rc=$?
    n=$((n + 1))
    printf '%-70s -> exit %d: %s\n' "$*" "$rc" "$err"
    [ "$rc" -eq "$code" ] || fail "'$*': exit $rc, expected $code"
    [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "'$*': more than one line: $err"
    printf '%s' "$err" | grep -Eq -- "$re" || fail "'$*': message does not match /$re/: $err"
    printf '%s' "$err" | grep -q "Segmentation\|core dumped\|Abort" && fail "'$*': crashed"
    return 0
  }
  expect 2 "unknown option '--bogus'"        -- --bogus
  expect 2 "--epochs: needs a value"          -- --epochs
  expect 2 "--epochs: expected an integer"    -- --epochs -3
  expect 2 "--epochs: expected an integer"    -- --epochs 0
  expect 2 "--epochs: expected an integer"    -- --epochs 99999999999999999999999
  expect 2 "--batch: expected an integer"     -- --batch 12abc
  expect 2 "--limit: expected an integer in 1\.\.2147483647"  -- --limit 2147483648
  expect 2 "--test-limit: expected an integer" -- --test-limit 4294967296
  expect 2 "--lr: expected a number"          -- --lr -0.1
  expect 2 "--lr: expected a number"          -- --lr nan
  expect 2 "--lr: expected a number"          -- --lr 1e999
  expect 2 "--seed: expected"                 -- --seed -1
  expect 2 "--optimizer"                      -- --optimizer adam
  expect 2 "--schedule"                       -- --schedule linear
  expect 2 "--shard"                          -- --shard blocks
  expect 2 "--on-divergence"                  -- --on-divergence ignore
  expect 2 "--normalize"                      -- --normalize 0.5
  expect 2 "--normalize \(std\)"              -- --normalize 0.5,0
  expect 2 "--checkpoint-every: needs --checkpoint" -- --checkpoint-every 5
  expect 2 "--resume auto: needs --checkpoint PATH" -- --resume auto
  expect 2 "--nesterov"                       -- --nesterov --optimizer adamw
  expect 2 "unexpected argument 'extra'"      -- extra
  expect 2 "conv3x:32"                        -- --model conv3x:32,relu,dense:10 $L
  expect 2 "bogus"                            -- --model dense:64,bogus,dense:10 $L
  expect 2 "maxpool"                          -- --model conv3x3:4,maxpool2,maxpool2,maxpool2,maxpool2,maxpool2,dense:10 $L
  expect 2 "10"                               -- --model dense:64,relu,dense:7 $L
  expect 2 "--batch: 500 is larger than the training set \(200"  -- $L --batch 500
  expect 1 "--device 'nosuchthing'.*devices: "   -- --device nosuchthing $L
  expect 1 "cannot open|no such|not found"       -- --data "$work/nowhere" $L
  expect 1 "train-labels-idx1-ubyte: label 12 at index 5 lies above labels that never occur \(10, 11\)"   -- --data "$work/bad" $L
  expect 1 "train-labels-idx1-ubyte: label 12 at index 5 is out of range 0..9"   -- --data "$work/bad" --classes 10 $L
  expect 1 "t10k-images"                         -- --data "$work/trunc" $L
  expect 1 "--resume: cannot open"               -- --resume "$work/none.ckpt" $L
  if "$T" --help >/dev/null && "${T%/*}/cltrain-devices" --device oclgrind >/dev/null 2>&1; then
    # Oclgrind's device has 128 MiB: a 40-million-parameter model cannot fit
    expect 1 "bytes|MiB|GiB"                     -- --device oclgrind --model dense:50000,relu,dense:10 $L
  fi
  echo "$n bad inputs, each one line with the expected exit code"
  ;;
# ---- determinism, checkpoint and resume --------------------------------------------------------
determinism)
  A="--model conv3x3:8,relu,maxpool2,dense:32,relu,dropout:0.25,dense:10 $QUICK --epochs 2 --seed 7"
  "$T" $A --save-params "$work/a" >/dev/null || fail "run a"
  "$T" $A --save-params "$work/b" >/dev/null || fail "run b"
  $cmp_params "$work/a" "$work/b" --exact || fail "two runs differ"
  "$T" $A --seed 8 --save-params "$work/c" >/dev/null || fail "run c"
  cmp -s "$work/a" "$work/c" && fail "another seed gave the same parameters"
  # stopped mid-epoch (last checkpoint at step 21 of 60) and resumed: bitwise the same
  "$T" $A --checkpoint "$work/ck" --checkpoint-every 7 --max-steps 25 >/dev/null || fail "run to step 25"
  "$T" $A --resume "$work/ck" --save-params "$work/d" >"$work/out" || fail "resume"
  grep -q "resumed from .* at step 21" "$work/out" || { cat "$work/out"; fail "did not resume at step 21"; }
  $cmp_params "$work/a" "$work/d" --exact || fail "resumed run differs"
  # resumed from an end-of-epoch checkpoint, with AdamW
  B="$A --optimizer adamw --schedule cosine --warmup 5"
  "$T" $B --save-params "$work/e" >/dev/null || fail "adamw run"
  # (stopped by a rank's exit as step 30 begins: --max-steps would make the cosine span 30 steps)
  CLTRAIN_INJECT_EXIT_STEP=30 CLTRAIN_INJECT_EXIT_RANK=0 "$T" $B --checkpoint "$work/ck2" \
    >/dev/null 2>&1; [ $? -eq 3 ] || fail "adamw epoch 1"
  "$T" $B --resume "$work/ck2" --save-params "$work/f" >/dev/null || fail "adamw resume"
  $cmp_params "$work/e" "$work/f" --exact || fail "adamw resumed run differs"
  # --schedule cosine spans --max-steps when given (nanoGPT's lr_decay_iters): at step 20 of
  # 20 the rate is near --min-lr, where over the 60 steps of --epochs 2 it would be 0.078
  "$T" $A --schedule cosine --lr 0.1 --min-lr 0.01 --max-steps 20 --log-every 20 >"$work/out" \
    || fail "cosine over --max-steps"
  lr=$(sed -n 's/^step *20 .* lr \([0-9.]*\) .*/\1/p' "$work/out")
  [ -n "$lr" ] && ge 0.02 "$lr" || { cat "$work/out"; fail "cosine over --max-steps: lr $lr at step 20"; }
  # resumed with nothing left to train: the checkpoint's model evaluated, no table, exit 0
  "$T" $B --epochs 1 --resume "$work/ck2" --save-params "$work/g" >"$work/out" 2>&1 || { cat "$work/out"; fail "resume at the end: exit $?"; }
  grep -q "final: test accuracy [0-9.]*, 0 steps (the checkpoint is already at the end of --epochs 1)" "$work/out" \
    || { cat "$work/out"; fail "resume at the end: no 0-steps line"; }
  grep -q "^rank  compute_s" "$work/out" && fail "resume at the end: an empty phase table"
  [ -s "$work/g" ] || fail "resume at the end: no parameters saved"
  ;;
checkpoint_damage)
  A="--model $SMALL $QUICK --epochs 1"
  "$T" $A --checkpoint "$work/ck" >/dev/null || fail "writing a checkpoint"
  cp "$work/ck" "$work/orig"
  sz=$(stat -c %s "$work/ck")
  head -c $((sz / 2)) "$work/ck" >"$work/trunc.ckpt"
  python3 -c "import sys; b=bytearray(open(sys.argv[1],'rb').read()); b[len(b)//2]^=0x40; open(sys.argv[2],'wb').write(b)" "$work/ck" "$work/flip.ckpt"
  printf 'hello, not a checkpoint' >"$work/junk.ckpt"
  check() {
    local re=$1; shift
    local err rc
    err=$("$T" "$@" --checkpoint "$work/ck" 2>&1 >/dev/null); rc=$?
    printf '%s -> exit %d: %s\n' "$*" "$rc" "$err"
    [ "$rc" -eq 1 ] || fail "exit $rc"
    [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "more than one line: $err"
    printf '%s' "$err" | grep -Eq -- "$re" || fail "message does not match /$re/: $err"
    cmp -s "$work/ck" "$work/orig" || fail "the checkpoint was overwritten"
  }
  check "trunc.ckpt: truncated"                    $A --epochs 2 --resume "$work/trunc.ckpt"
  check "flip.ckpt: CRC32 mismatch"                $A --epochs 2 --resume "$work/flip.ckpt"
  check "junk.ckpt: not a cltrain checkpoint"      $A --epochs 2 --resume "$work/junk.ckpt"
  check "architecture differs"                     --model mlp $QUICK --epochs 2 --resume "$work/orig"
  check "optimizer differs: checkpoint sgd, this run adamw" $A --epochs 2 --optimizer adamw --resume "$work/orig"
  check "seed differs"                             $A --epochs 2 --seed 5 --resume "$work/orig"
  check "global batch differs: checkpoint --batch 40, this run 20" $A --epochs 2 --batch 20 --resume "$work/orig"
  # the run state (format 2), damaged with a CRC that matches, and a format this build predates
  $ckpt set-run "$work/orig" "$work/pend.ckpt" pending=1 || fail "ckpt_tool set-run"
  $ckpt set-run "$work/orig" "$work/w0.ckpt" weights=0 || fail "ckpt_tool set-run"
  $ckpt set-version "$work/orig" "$work/v3.ckpt" 3 || fail "ckpt_tool set-version"
  check "pend.ckpt: saved with a stale step pending"  $A --epochs 2 --resume "$work/pend.ckpt"
  check "w0.ckpt: every share weight is 0"             $A --epochs 2 --resume "$work/w0.ckpt"
  check "v3.ckpt: format version 3, this build reads versions up to 2" $A --epochs 2 --resume "$work/v3.ckpt"
  # --resume auto finds a damaged checkpoint at --checkpoint: refused in one line, not passed
  # over (a fresh start would write over it), the file as it was
  for bad in trunc flip junk v3; do
    cp "$work/$bad.ckpt" "$work/auto.ckpt"
    err=$("$T" $A --epochs 2 --resume auto --checkpoint "$work/auto.ckpt" 2>&1 >/dev/null); rc=$?
    printf -- '--resume auto --checkpoint %s.ckpt (copied) -> exit %d: %s\n' "$bad" "$rc" "$err"
    [ "$rc" -eq 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "--resume auto, $bad: exit $rc: $err"
    printf '%s' "$err" | grep -q "auto.ckpt: " || fail "--resume auto, $bad: the file is not named: $err"
    cmp -s "$work/auto.ckpt" "$work/$bad.ckpt" || fail "--resume auto, $bad: the checkpoint was overwritten"
  done
  # the writer killed in the middle of a checkpoint: the previous one stays valid
  CLTRAIN_INJECT_WRITE_KILL=1 "$T" $A --epochs 2 --resume "$work/orig" --checkpoint "$work/ck" >/dev/null 2>&1
  rc=$?
  [ "$rc" -eq 137 ] || fail "killed writer: exit $rc, expected 137 (SIGKILL)"
  cmp -s "$work/ck" "$work/orig" || fail "a killed writer changed the checkpoint"
  "$T" $A --epochs 2 --resume "$work/ck" >/dev/null || fail "the previous checkpoint does not load"
  echo "checkpoint damage: all rejected in one line, nothing overwritten"
  ;;
resume_auto)   # --resume auto: no checkpoint, a good one, a damaged one; a version-1 checkpoint
  A="--model $SMALL $QUICK --epochs 2 --seed 7 --checkpoint-every 7"
  "$T" $A --checkpoint "$work/full.ck" --save-params "$work/full" >/dev/null || fail "the run never stopped"
  # nothing at --checkpoint: from the seed, said in one line
  "$T" $A --resume auto --checkpoint "$work/ck" --max-steps 25 --metrics "$work/m0.jsonl" >"$work/out" 2>&1 || { cat "$work/out"; fail "first run: exit $?"; }
  grep "resume" "$work/out"
  [ "$(grep -c "^cltrain: --resume auto: no checkpoint at $work/ck yet: starting from the seed$" "$work/out")" -eq 1 ] \
    || fail "the fresh start is not said in one line"
  grep -q "^resumed from" "$work/out" && fail "resumed from nothing"
  cp "$work/ck" "$work/ck21"
  # a checkpoint there (step 21 of 60): resumed, the same bits as the run never stopped
  "$T" $A --resume auto --checkpoint "$work/ck" --save-params "$work/auto" --metrics "$work/m1.jsonl" >"$work/out" 2>&1 || { cat "$work/out"; fail "resume: exit $?"; }
  grep "resume" "$work/out"
  grep -q "^resumed from $work/ck at step 21 (epoch 1, step 21 of it), saved by 1 rank(s) (--resume auto)$" "$work/out" \
    || fail "not resumed at step 21 in one line"
  $cmp_params "$work/full" "$work/auto" --exact || fail "the resumed run differs from the run never stopped"
  # the config record says where each run started (docs/metrics.md)
  python3 - "$work/m0.jsonl" "$work/m1.jsonl" "$work/ck" <<'PY' || fail "--metrics: resumed"
import json, sys
c0, c1 = (json.loads(open(f).readline()) for f in sys.argv[1:3])
assert c0["type"] == "config" and c0["resumed"] is None, c0.get("resumed")
assert c1["resumed"] == {"path": sys.argv[3], "step": 21, "world": 1, "format": 2}, c1.get("resumed")
print("config records: resumed", c0["resumed"], "then", c1["resumed"])
PY
  cmp -s "$work/ck" "$work/full.ck" || fail "the last checkpoints differ"
  # a damaged checkpoint there: refused in one line (exit 1), never passed over, left as it was
  sz=$(stat -c %s "$work/ck21")
  head -c $((sz - 7)) "$work/ck21" >"$work/trunc.ck"
  python3 -c "import sys; b=bytearray(open(sys.argv[1],'rb').read()); b[len(b)//3]^=1; open(sys.argv[2],'wb').write(b)" "$work/ck21" "$work/flip.ck"
  : >"$work/empty.ck"
  mkdir "$work/folder.ck"
  for bad in trunc:truncated flip:"CRC32 mismatch" empty:"not a cltrain checkpoint" folder:"not a regular file"; do
    f=$work/${bad%%:*}.ck
    [ -d "$f" ] || cp "$f" "$work/copy"
    err=$("$T" $A --resume auto --checkpoint "$f" 2>&1 >/dev/null); rc=$?
    printf -- '--resume auto --checkpoint %s -> exit %d: %s\n' "${bad%%:*}.ck" "$rc" "$err"
    [ "$rc" -eq 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "${bad%%:*}: exit $rc: $err"
    printf '%s' "$err" | grep -q "${bad#*:}" || fail "${bad%%:*}: message: $err"
    [ -d "$f" ] || cmp -s "$f" "$work/copy" || fail "${bad%%:*}: the checkpoint was written over"
  done
  # version 1, the format before the run state (ckpt_tool.py to-v1 gives, byte for byte, the file
  # that commit 19d6f00 wrote for the same run): loads, says so, continues with the same bits
  $ckpt to-v1 "$work/ck21" "$work/v1.ck" || fail "ckpt_tool to-v1"
  $ckpt check "$work/v1.ck" | grep -q "version 1, step 21" || fail "not a version-1 file"
  "$T" $A --resume auto --checkpoint "$work/v1.ck" --save-params "$work/v1" >"$work/out" 2>&1 || { cat "$work/out"; fail "version 1: exit $?"; }
  grep "resume" "$work/out"
  grep -q "^resumed from .* at step 21 .*; format version 1: it holds no shares or sync state (this run's defaults)$" "$work/out" \
    || fail "version 1: not resumed, or not said"
  $cmp_params "$work/full" "$work/v1" --exact || fail "version 1: the resumed run differs"
  $ckpt check "$work/v1.ck" | grep -q "version 2, step 60" || fail "version 1: the run's own checkpoints are not version 2"
  # a later format: refused in one line naming it
  $ckpt set-version "$work/ck21" "$work/v3.ck" 3
  err=$("$T" $A --resume auto --checkpoint "$work/v3.ck" 2>&1 >/dev/null); rc=$?
  echo "--resume auto --checkpoint v3.ck -> exit $rc: $err"
  [ "$rc" -eq 1 ] && [ "$err" = "cltrain: $work/v3.ck: format version 3, this build reads versions up to 2" ] || fail "version 3: $err"
  # no --checkpoint: a usage error
  err=$("$T" $A --resume auto 2>&1 >/dev/null); rc=$?
  [ "$rc" -eq 2 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "--resume auto without --checkpoint: exit $rc: $err"
  ;;
nonfinite)
  A="--model $SMALL $QUICK --epochs 1"
  CLTRAIN_INJECT_NAN_STEP=4 "$T" $A --checkpoint "$work/ck" >"$work/out" 2>&1 || { cat "$work/out"; fail "one bad step stopped the run"; }
  grep -q "step 4: non-finite" "$work/out" || fail "the bad step was not reported"
  grep -q "(1 skipped)" "$work/out" || fail "the skipped step was not counted"
  err=$(CLTRAIN_INJECT_NAN_STEP=3 CLTRAIN_INJECT_NAN_COUNT=100 "$T" $A --max-bad-steps 4 --checkpoint "$work/ck2" --checkpoint-every 1 2>&1 >/dev/null); rc=$?
  echo "$err"
  [ "$rc" -eq 1 ] || fail "exit $rc after 4 bad steps, expected 1"
  echo "$err" | grep -q "4 consecutive steps with non-finite" || fail "message: $err"
  # the checkpoint written before the bad steps holds finite values and loads
  "$T" $A --epochs 2 --resume "$work/ck2" --max-steps 4 >/dev/null || fail "checkpoint after bad steps does not load"
  ;;
# ---- speed on one device -----------------------------------------------------------------------
profile)   # --profile: a table per rank whose rows account for the step time (within 10 %)
  CLTRAIN_CACHE_DIR="$work/cache" POCL_MAX_PTHREAD_COUNT=1 "$T" --device pocl --model "$SMALL" --limit 2400 \
    --test-limit 200 --batch 40 --epochs 1 --log-every 0 --profile >"$work/out" 2>&1 || { cat "$work/out"; fail "exit $?"; }
  cat "$work/out"
  grep -q "^profile, rank 0 on " "$work/out" || fail "no profile table"
  for k in "gemm conv fwd" "gemm dense fwd" "conv_dy_permute" "im2col" "sgd_step" "softmax_xent" \
           "count_nonfinite_f32" "write batch (inputs)" "host: waiting for the loader thread"; do
    grep -q "^$k" "$work/out" || fail "no row for $k"
  done
  # GEMM rows carry GFLOP/s
  grep -Eq '^gemm dense fwd .* [0-9]+\.[0-9]+%[ ]+[0-9]+\.[0-9]+$' "$work/out" || fail "no GFLOP/s on the GEMM rows"
  pct=$(sed -n 's/^sum of the rows  *[0-9.]*  *\([0-9.]*\)%.*/\1/p' "$work/out")
  [ -n "$pct" ] || fail "no sum row"
  echo "the rows sum to $pct % of the measured step time"
  ge "$pct" 90 && ge 110 "$pct" || fail "rows sum to $pct % of the step time, not within 10 %"
  grep -q "^flops: .* MFLOP per sample" "$work/out" || fail "no flops line"
  ;;
tune_cache)   # cltrain-tune writes the device's cache; cltrain uses it; a bad cache is one warning
  D="${T%/*}"
  export CLTRAIN_CACHE_DIR="$work/cache"
  M="--model dense:32,relu,dense:10"
  POCL_MAX_PTHREAD_COUNT=1 "$D/cltrain-tune" --device pocl $M --batch 40 --list >"$work/list" || fail "--list"
  cat "$work/list"
  [ "$(grep -Ec '^dense (fwd|bwd-w|bwd-x) ' "$work/list")" -eq 5 ] || fail "--list: expected 5 GEMMs"
  [ ! -e "$work/cache" ] || fail "--list wrote a cache"
  POCL_MAX_PTHREAD_COUNT=1 "$D/cltrain-tune" --device pocl $M --batch 40 --budget 6 --no-clblast >"$work/tune" 2>"$work/tune.err" \
    || { cat "$work/tune" "$work/tune.err"; fail "cltrain-tune exit $?"; }
  cat "$work/tune"
  cache=$(sed -n 's/^wrote //p' "$work/tune")
  [ -f "$cache" ] || fail "no cache file written"
  case "$cache" in "$work/cache/"*) ;; *) fail "cache not under CLTRAIN_CACHE_DIR: $cache" ;; esac
  grep -q "^format 1" "$cache" && grep -q "^driver " "$cache" && grep -q "^gemm NT 40 32 784 own" "$cache" \
    || { cat "$cache"; fail "cache content"; }
  [ "$(grep -Ec '^dense .* [0-9.]+ +[0-9.]+ +[0-9.]+x ' "$work/tune")" -eq 5 ] || fail "no before/after per shape"
  A="$M $QUICK --epochs 1 --device pocl"
  POCL_MAX_PTHREAD_COUNT=1 "$T" $A --save-params "$work/p_tuned" >"$work/out" 2>"$work/err" || { cat "$work/out" "$work/err"; fail "tuned run"; }
  grep -q "GEMMs: $cache" "$work/out" || { cat "$work/out"; fail "the cache was not used"; }
  [ ! -s "$work/err" ] || { cat "$work/err"; fail "stderr on a good cache"; }
  POCL_MAX_PTHREAD_COUNT=1 "$D/cltrain-tune" --device pocl $M --batch 40 --bench >"$work/bench" || fail "--bench"
  grep -q "^GEMMs: $cache" "$work/bench" || fail "--bench did not load the cache"
  # stale (another driver) and damaged: one warning line each, defaults, the run succeeds
  cp "$cache" "$work/good"
  sed -i 's/^driver .*/driver 0.0-elsewhere/' "$cache"
  POCL_MAX_PTHREAD_COUNT=1 "$T" $A >"$work/out" 2>"$work/err" || { cat "$work/err"; fail "stale cache failed the run"; }
  cat "$work/err"
  [ "$(wc -l <"$work/err")" -eq 1 ] && grep -q "warning: GEMM tuning cache stale.*driver" "$work/err" || fail "stale: not one warning line"
  grep -q "GEMMs: defaults" "$work/out" || fail "stale: defaults not used"
  printf 'format 1\ngemm NT 1 2\n' >"$cache"
  POCL_MAX_PTHREAD_COUNT=1 "$T" $A --save-params "$work/p_def" >"$work/out" 2>"$work/err" || { cat "$work/err"; fail "damaged cache failed the run"; }
  cat "$work/err"
  [ "$(wc -l <"$work/err")" -eq 1 ] && grep -q "warning: GEMM tuning cache damaged.*line 2" "$work/err" || fail "damaged: not one warning line"
  $cmp_params "$work/p_tuned" "$work/p_def" --rtol 1e-4 --atol 1e-6 || fail "tuned and default GEMMs train differently"
  # --tune with no cache: tunes first, then trains with it
  rm -f "$cache"
  POCL_MAX_PTHREAD_COUNT=1 "$T" $A --tune --tune-budget 4 >"$work/out" 2>"$work/err" || { cat "$work/out" "$work/err"; fail "--tune"; }
  cat "$work/err"
  [ -f "$cache" ] || fail "--tune wrote no cache"
  grep -q "GEMMs: $cache" "$work/out" || fail "--tune: the new cache was not used"
  POCL_MAX_PTHREAD_COUNT=1 "$T" $A --tune --tune-budget 4 >"$work/out" 2>"$work/err" || fail "--tune again"
  grep -q "tuning the GEMMs" "$work/err" && fail "--tune tuned again although every product has a plan"
  POCL_MAX_PTHREAD_COUNT=1 "$T" $QUICK --epochs 1 --device pocl --model dense:24,dense:10 --tune --tune-budget 4 \
    >"$work/out" 2>"$work/err" || { cat "$work/err"; fail "--tune, another model"; }
  grep -q "tuning the GEMMs" "$work/err" || fail "--tune did not tune the products the cache lacks"
  grep -q "^gemm NT 40 32 784 own" "$cache" && grep -q "^gemm NT 40 24 784 " "$cache" \
    || { cat "$cache"; fail "the cache did not keep both models' plans"; }
  unset CLTRAIN_CACHE_DIR
  ;;
tune_bad_input)   # cltrain-tune: one line, exit 2 for the command line, 1 at run time
  D="${T%/*}"
  tb() {
    local code=$1 re=$2; shift 2
    local err rc
    err=$(CLTRAIN_CACHE_DIR="$work/c" "$D/cltrain-tune" "$@" 2>&1 >/dev/null); rc=$?
    printf '%-50s -> exit %d: %s\n' "$*" "$rc" "$err"
    [ "$rc" -eq "$code" ] || fail "'$*': exit $rc, expected $code"
    [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "'$*': more than one line"
    printf '%s' "$err" | grep -Eq -- "$re" || fail "'$*': message does not match /$re/"
  }
  tb 2 "unknown option '--bogus'"   --bogus
  tb 2 "--batch: expected an integer" --batch 0
  tb 2 "--ranks: expected an integer" --ranks x
  tb 2 "--batch: 2 is smaller than --ranks 3" --batch 2 --ranks 3
  tb 2 "--budget: expected a number" --budget -1
  tb 2 "--input: expected C,H,W"     --input 1,28
  tb 2 "--arch: token 1 'bogus'"     --model bogus --list
  tb 1 "--device 'nosuchthing' matches no device" --device nosuchthing --list
  "$D/cltrain-tune" --help | grep -q -- "--budget" || fail "--help"
  ;;
# ---- data parallel under mpiexec ---------------------------------------------------------------
mpi_equivalence)   # -np 3 with uneven shares == -np 1 with the same global batch
  A="--model $SMALL --limit 3000 --test-limit 300 --batch 61 --max-steps 20 --log-every 0 --seed 3"
  POCL_MAX_PTHREAD_COUNT=2 "$T" $A --save-params "$work/p1" >/dev/null || fail "np 1"
  for shard in stratified random; do
    POCL_MAX_PTHREAD_COUNT=1 $MPI -n 3 "$T" $A --shard $shard --check-every 5 --save-params "$work/p3" >"$work/out" 2>&1 || { cat "$work/out"; fail "np 3 ($shard)"; }
    $cmp_params "$work/p3" "$work/p1" --rtol 1e-5 --atol 1e-7 || fail "np 3 ($shard) differs from np 1"
  done
  grep -q "divergences" "$work/out" && grep -q " 0 divergences" "$work/out" || fail "replicas were not identical"
  # throughput balance: shares that follow measured speed change the summation order only
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 3 "$T" $A --balance throughput --check-every 5 --save-params "$work/p3" >"$work/out" 2>&1 || { cat "$work/out"; fail "np 3 (throughput)"; }
  $cmp_params "$work/p3" "$work/p1" --rtol 1e-5 --atol 1e-7 || fail "np 3 (throughput) differs from np 1"
  grep -q " 0 divergences" "$work/out" || fail "throughput: replicas were not identical"
  ;;
mpi_cross_platform)   # rank 0 on PoCL, rank 1 on Oclgrind: identical parameters on both
  "${T%/*}/cltrain-devices" --device oclgrind >/dev/null 2>&1 || { echo "SKIP: no Oclgrind"; exit 77; }
  "${T%/*}/cltrain-devices" --device pocl >/dev/null 2>&1 || { echo "SKIP: no PoCL"; exit 77; }
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" --device 0=pocl,1=oclgrind --model dense:16,relu,dense:10 \
    --limit 400 --test-limit 40 --batch 16 --max-steps 4 --log-every 1 --check-every 1 >"$work/out" 2>&1 \
    || { cat "$work/out"; fail "exit $?"; }
  cat "$work/out"
  grep -q " 0 divergences" "$work/out" || fail "replicas differ"
  ;;
mpi_three_platforms)   # PoCL, Intel's CPU runtime and Oclgrind in one job: identical replicas
  for d in pocl intel oclgrind; do
    "${T%/*}/cltrain-devices" --device $d >/dev/null 2>&1 || { echo "SKIP: no $d device"; exit 77; }
  done
  CL_CONFIG_CPU_TBB_NUM_WORKERS=1 POCL_MAX_PTHREAD_COUNT=1 $MPI -n 3 "$T" --device 0=pocl,1=intel,2=oclgrind \
    --model dense:16,relu,dense:10 --limit 400 --test-limit 40 --batch 24 --max-steps 4 --log-every 1 \
    --check-every 1 >"$work/out" 2>&1 || { cat "$work/out"; fail "exit $?"; }
  cat "$work/out"
  # (the platform in brackets: on an Intel host PoCL's device name holds "Intel" too)
  grep -q "rank 1 on .*\[Intel(R) OpenCL\]" "$work/out" || fail "rank 1 is not on Intel's runtime"
  grep -q "rank 0 on .*\[Portable Computing Language\]" "$work/out" || fail "rank 0 is not on PoCL"
  grep -q " 0 divergences" "$work/out" || fail "replicas differ"
  for mode in stale local:2; do
    CL_CONFIG_CPU_TBB_NUM_WORKERS=1 POCL_MAX_PTHREAD_COUNT=1 $MPI -n 3 "$T" --device 0=pocl,1=intel,2=oclgrind \
      --model dense:16,relu,dense:10 --limit 400 --test-limit 40 --batch 24 --max-steps 6 --log-every 1 \
      --check-every 1 --sync $mode --balance throughput >"$work/out" 2>&1 || { cat "$work/out"; fail "$mode: exit $?"; }
    grep -q " 0 divergences" "$work/out" || { cat "$work/out"; fail "$mode: replicas differ"; }
    echo "$mode: 0 divergences"
  done
  ;;
mpi_balance)   # --balance: a rank slowed on purpose gets fewer samples; the math does not change
  A="--model dense:32,relu,dense:10 --limit 3000 --test-limit 300 --batch 64 --max-steps 40 --log-every 0 --seed 3 --device pocl"
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --balance even --save-params "$work/even" >"$work/out" 2>&1 || { cat "$work/out"; fail "even"; }
  grep -q "shares of a batch of 64: 32 32" "$work/out" || { cat "$work/out"; fail "even: not 32 32"; }
  # rank 1 sleeps 300 us per sample of its share, each step: a device 10x slower
  CLTRAIN_INJECT_SLOW_RANK=1 CLTRAIN_INJECT_SLOW_US=300 POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --balance throughput \
    --check-every 10 --save-params "$work/tp" >"$work/out" 2>&1 || { cat "$work/out"; fail "throughput"; }
  cat "$work/out"
  last=$(sed -n 's/^shares of a batch of 64 at the end: \([0-9]*\) \([0-9]*\) .*/\1 \2/p' "$work/out")
  set -- $last
  [ -n "$last" ] && [ "$2" -lt 16 ] && [ "$1" -gt 48 ] || fail "the slowed rank still has $2 of 64 samples (shares: $last)"
  grep -q "shares of a batch of 64 now" "$work/out" || fail "no share change logged"
  grep -q " 0 divergences" "$work/out" || fail "replicas differ"
  $cmp_params "$work/tp" "$work/even" --rtol 1e-5 --atol 1e-7 || fail "throughput shares changed the result"
  # the same in stale and local:K mode, and over 3 ranks (the slowed one in the middle): the
  # slowed rank's share falls to a quarter of an even one or less (stale measures the device
  # between markers, local:K over each averaging window). Shares snap to multiples of 8 while
  # every rank still gets 8: at a measured slowdown of about 14x (300 us a sample against a
  # device's 20-30) the slowed rank of two gets 8 of 64 or, below 1/16 of the batch, its exact
  # proportion (4): both are right, and which one depends on the machine's noise
  for run in "2 stale 1" "2 local:4 1" "3 sync 1"; do
    set -- $run
    CLTRAIN_INJECT_SLOW_RANK=$3 CLTRAIN_INJECT_SLOW_US=300 POCL_MAX_PTHREAD_COUNT=1 $MPI -n $1 "$T" $A --balance throughput \
      --sync $2 --check-every 10 >"$work/out" 2>&1 || { cat "$work/out"; fail "throughput, $1 ranks, --sync $2"; }
    last=$(sed -n 's/^shares of a batch of 64 at the end: \([0-9 ]*\) (.*/\1/p' "$work/out")
    echo "$1 ranks, --sync $2, rank $3 slowed: shares at the end $last"
    slow=$(echo $last | cut -d' ' -f$(($3 + 1)))
    [ -n "$slow" ] && [ "$slow" -le $((64 / $1 / 4)) ] || { cat "$work/out"; fail "$1 ranks, --sync $2: the slowed rank still has $slow of 64 samples"; }
    grep -q " 0 divergences" "$work/out" || { cat "$work/out"; fail "$1 ranks, --sync $2: replicas differ"; }
  done
  # static weights: 3 to 1
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --balance static:3,1 --save-params "$work/st" >"$work/out" 2>&1 || { cat "$work/out"; fail "static"; }
  grep -q "shares of a batch of 64: 48 16" "$work/out" || { cat "$work/out"; fail "static: not 48 16"; }
  $cmp_params "$work/st" "$work/even" --rtol 1e-5 --atol 1e-7 || fail "static shares changed the result"
  # auto: the same device model on both ranks -> even (bitwise reproducible)
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --save-params "$work/auto" >"$work/out" 2>&1 || fail "auto"
  grep -q -- "--balance even (auto)" "$work/out" || { cat "$work/out"; fail "auto did not pick even"; }
  $cmp_params "$work/auto" "$work/even" --exact || fail "auto (even) is not bitwise the even run"
  # bad values: one line, exit 2
  for bad in "static:1" "static:0,0" "static:1,x" "fast"; do
    err=$(POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --balance "$bad" 2>&1 >/dev/null); rc=$?
    echo "--balance $bad -> exit $rc: $(echo "$err" | grep -m1 balance)"
    [ "$rc" -eq 2 ] || fail "--balance $bad: exit $rc"
    echo "$err" | grep -q -- "--balance" || fail "--balance $bad: message $err"
  done
  ;;
mpi_sync_modes)   # --sync stale and local:K: train like sync, identical replicas, exact resume
  A="--model $SMALL --limit 1200 --test-limit 300 --batch 40 --log-every 0 --seed 7 --device pocl"
  # (stale's own math, a late update at predicted parameters: CLTRAIN_STALE_OVERLAP=0 keeps it
  # on CPU devices, where a job of CPUs otherwise runs sync's; both below)
  for mode in stale local:3; do
    export CLTRAIN_STALE_OVERLAP=0
    POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --sync $mode --epochs 2 --check-every 4 \
      --checkpoint "$work/ckf" --checkpoint-every 7 --save-params "$work/full" >"$work/out" 2>&1 || { cat "$work/out"; fail "$mode"; }
    grep -q " 0 divergences" "$work/out" || { cat "$work/out"; fail "$mode: replicas differ"; }
    acc=$(acc_of "$work/out"); echo "$mode: accuracy $acc"
    cp "$work/out" "$work/out_${mode%%:*}"; cp "$work/full" "$work/full_${mode%%:*}"
    ge "$acc" 0.55 || fail "$mode: accuracy $acc"
    # stopped at step 25 (last checkpoint 21), resumed: the same bits as the run never stopped
    POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --sync $mode --epochs 2 --checkpoint "$work/ck" --checkpoint-every 7 \
      --max-steps 25 >/dev/null 2>&1 || fail "$mode: to step 25"
    POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --sync $mode --epochs 2 --checkpoint "$work/ck" --checkpoint-every 7 \
      --resume "$work/ck" --save-params "$work/resumed" >"$work/out" 2>&1 || { cat "$work/out"; fail "$mode: resume"; }
    grep -q "resumed from .* at step 21" "$work/out" || { cat "$work/out"; fail "$mode: not resumed at 21"; }
    $cmp_params "$work/full" "$work/resumed" --exact || fail "$mode: the resumed run differs"
    unset CLTRAIN_STALE_OVERLAP
  done
  # stale's math on a CPU device reduces the pending step before the next one computes;
  # overlapped (as on a GPU) the same operations run in another order: the same bits, and the
  # line says so
  grep -q -- "--sync stale: every rank reduces the pending step before computing" "$work/out_stale" \
    || { cat "$work/out_stale"; fail "stale: no line saying it reduces first on a CPU device"; }
  CLTRAIN_STALE_OVERLAP=1 POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --sync stale --epochs 2 --check-every 4 \
    --checkpoint "$work/cko" --checkpoint-every 7 --save-params "$work/overlapped" >"$work/out" 2>&1 || { cat "$work/out"; fail "stale overlapped"; }
  grep -q "reduces the pending step before\|every rank's device is a CPU" "$work/out" && { cat "$work/out"; fail "stale: CLTRAIN_STALE_OVERLAP=1 not taken"; }
  $cmp_params "$work/full_stale" "$work/overlapped" --exact || fail "stale: overlapped and reduced-first runs differ"
  # a job of CPU devices (the default here): nothing to overlap, so each update applies before
  # the next step computes, no prediction: the bits of --sync sync (its update not sharded),
  # and not those of the late update
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --sync stale --epochs 2 --check-every 4 \
    --checkpoint "$work/cka" --checkpoint-every 7 --save-params "$work/first" >"$work/out" 2>&1 || { cat "$work/out"; fail "stale, CPUs"; }
  grep -q -- "--sync stale: every rank's device is a CPU .*--sync sync's math" "$work/out" \
    || { cat "$work/out"; fail "stale: no line saying a job of CPUs applies each update first"; }
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --sync sync --shard-update off --epochs 2 --save-params "$work/sync" \
    >"$work/out" 2>&1 || { cat "$work/out"; fail "sync"; }
  $cmp_params "$work/first" "$work/sync" --exact || fail "stale on CPUs: not the bits of sync"
  $cmp_params "$work/first" "$work/full_stale" --exact 2>/dev/null && fail "stale on CPUs: the late update's bits"
  # the non-finite guard in stale mode (both schedules): the bad step is skipped on every rank
  for o in 0 ""; do
    CLTRAIN_STALE_OVERLAP=$o CLTRAIN_INJECT_NAN_STEP=4 POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --sync stale --epochs 1 --check-every 5 >"$work/out" 2>&1 || { cat "$work/out"; fail "stale nan"; }
    grep -q "step 4: non-finite" "$work/out" && grep -q "(1 skipped)" "$work/out" && grep -q " 0 divergences" "$work/out" \
      || { cat "$work/out"; fail "stale ($o): the bad step was not skipped alike"; }
  done
  for bad in "local:0" "local:x" "async"; do
    err=$("$T" --sync "$bad" 2>&1 >/dev/null); rc=$?
    echo "--sync $bad -> exit $rc: $err"
    [ "$rc" -eq 2 ] && echo "$err" | grep -q -- "--sync" || fail "--sync $bad: exit $rc, $err"
  done
  ;;
mpi_comm_options)   # --bucket-mb, --shard-update, --wire, --accumulate
  A="--model $SMALL --limit 1200 --test-limit 300 --batch 40 --log-every 0 --seed 3 --device pocl --epochs 1"
  # buckets: the same bits as one reduction, with 2 and 3 ranks (3: the order of additions
  # differs by segment, so only windows of one layout keep it)
  for n in 2 3; do
    POCL_MAX_PTHREAD_COUNT=1 $MPI -n $n "$T" $A --bucket-mb 0 --save-params "$work/b0" >"$work/out0" 2>&1 || { cat "$work/out0"; fail "np $n bucket 0"; }
    POCL_MAX_PTHREAD_COUNT=1 $MPI -n $n "$T" $A --bucket-mb 0.01 --save-params "$work/b1" >"$work/out1" 2>&1 || { cat "$work/out1"; fail "np $n buckets"; }
    grep -q "gradients in [2-9] buckets" "$work/out1" || { cat "$work/out1"; fail "np $n: not several buckets"; }
    $cmp_params "$work/b0" "$work/b1" --exact || fail "np $n: buckets changed the result"
    [ "$(grep '^final' "$work/out0" | cut -d, -f1-2)" = "$(grep '^final' "$work/out1" | cut -d, -f1-2)" ] || fail "np $n: final lines differ"
    # staged through host memory (the path of devices that do not share it, GPUs)
    CLTRAIN_ALLREDUCE_STAGED=1 POCL_MAX_PTHREAD_COUNT=1 timeout 300 $MPI -n $n "$T" $A --bucket-mb 0.01 --save-params "$work/b2" >"$work/out2" 2>&1 || { cat "$work/out2"; fail "np $n staged buckets"; }
    $cmp_params "$work/b0" "$work/b2" --exact || fail "np $n: staged buckets changed the result"
  done
  # --shard-update (auto: every rank updates its segment, then the parameters are all-gathered)
  # gives the bits of every rank updating everything: SGD with momentum and AdamW, 2 and 3
  # ranks, a NaN in one element of one rank's gradients (a segment another rank owns: the
  # step is skipped on every rank), and a checkpoint holding the whole optimizer state
  for n in 2 3; do
    for opt in "--momentum 0.9" "--optimizer adamw"; do
      for sh in off auto; do
        CLTRAIN_INJECT_NAN_STEP=4 CLTRAIN_INJECT_NAN_RANK=0 POCL_MAX_PTHREAD_COUNT=1 $MPI -n $n \
          "$T" $A $opt --shard-update $sh \
          --check-every 5 --checkpoint "$work/sh_$sh.ck" --save-params "$work/sh_$sh" >"$work/sh_$sh.out" 2>&1 ||
          { cat "$work/sh_$sh.out"; fail "np $n $opt --shard-update $sh"; }
        grep -q "(1 skipped), 0 divergences" "$work/sh_$sh.out" || { cat "$work/sh_$sh.out"; fail "np $n $opt --shard-update $sh: the NaN step"; }
      done
      grep -q "optimizer update sharded over $n ranks" "$work/sh_auto.out" || { cat "$work/sh_auto.out"; fail "np $n: not sharded"; }
      ! grep -q "sharded" "$work/sh_off.out" || fail "np $n: sharded with --shard-update off"
      $cmp_params "$work/sh_off" "$work/sh_auto" --exact || fail "np $n $opt: --shard-update changed the result"
      cmp -s "$work/sh_off.ck" "$work/sh_auto.ck" || fail "np $n $opt: the checkpoints differ (optimizer state)"
    done
  done
  for o in "--wire fp16" "--bucket-mb 0.01" "--sync stale"; do   # (auto: not with these)
    POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A $o --max-steps 3 >"$work/out" 2>&1 || { cat "$work/out"; fail "$o"; }
    ! grep -q "sharded" "$work/out" || fail "sharded with $o"
  done
  err=$("$T" --shard-update on 2>&1 >/dev/null); rc=$?
  [ "$rc" -eq 2 ] && echo "$err" | grep -q -- "--shard-update" || fail "--shard-update on: exit $rc, $err"
  # wire formats: identical replicas, accuracy near fp32's, half the bytes
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --check-every 5 >"$work/w32" 2>&1 || { cat "$work/w32"; fail "fp32"; }
  sent32=$(sed -n 's/^all-reduce: \([0-9.e+-]*\) MB sent.*/\1/p' "$work/w32")
  for w in fp16 bf16; do
    POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --check-every 5 --wire $w >"$work/w" 2>&1 || { cat "$work/w"; fail "$w"; }
    grep -q " 0 divergences" "$work/w" || { cat "$work/w"; fail "$w: replicas differ"; }
    sent=$(sed -n 's/^all-reduce: \([0-9.e+-]*\) MB sent.*/\1/p' "$work/w")
    echo "$w: accuracy $(acc_of "$work/w") (fp32 $(acc_of "$work/w32")), $sent MB sent per step (fp32 $sent32)"
    python3 -c "import sys; a,b,s,t=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b)<=0.03 and 0.45<=s/t<=0.55 else 1)" \
      "$(acc_of "$work/w")" "$(acc_of "$work/w32")" "$sent" "$sent32" || fail "$w: accuracy or bytes off"
  done
  # accumulation: 2 x 20 per step is the step of 40, within fp32 rounding (1 and 2 ranks)
  B="--model $SMALL --limit 1200 --test-limit 300 --log-every 0 --seed 3 --device pocl --max-steps 15"
  POCL_MAX_PTHREAD_COUNT=2 "$T" $B --batch 40 --save-params "$work/a1" >/dev/null 2>&1 || fail "batch 40"
  POCL_MAX_PTHREAD_COUNT=2 "$T" $B --batch 20 --accumulate 2 --save-params "$work/a2" >/dev/null 2>&1 || fail "accumulate 2"
  $cmp_params "$work/a1" "$work/a2" --rtol 1e-3 --atol 1e-5 || fail "accumulate 2 x 20 differs from 40"
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $B --batch 10 --accumulate 4 --save-params "$work/a4" >"$work/out" 2>&1 || { cat "$work/out"; fail "np 2 accumulate 4"; }
  $cmp_params "$work/a1" "$work/a4" --rtol 1e-3 --atol 1e-5 || fail "np 2: accumulate 4 x 10 differs from 40"
  for bad in "--wire fp8" "--wire" "--accumulate 0" "--accumulate x" "--bucket-mb -1" "--bucket-mb 1 --sync stale"; do
    err=$("$T" $bad 2>&1 >/dev/null); rc=$?
    echo "$bad -> exit $rc: $err"
    flag=${bad%% *}
    [ "$rc" -eq 2 ] && echo "$err" | grep -q -- "$flag" || fail "$bad: exit $rc, $err"
  done
  ;;
npy_data)   # --data with NumPy files: Fashion-MNIST as .npy trains exactly as from IDX; a
            # generated 3-channel 32x32 set trains through a conv arch; damaged files, one line each
  mk="python3 $here/make_npy.py"
  $mk from-idx "$DATA" "$work/fm" || fail "make_npy from-idx"
  $mk from-idx "$DATA" "$work/fmf" --float32 --channels-last --labels '>u2' --limit 4000 || fail "make_npy --float32"
  run="--model mlp --limit 4000 --test-limit 1000 --epochs 1 --log-every 0"
  POCL_MAX_PTHREAD_COUNT=2 "$T" $run --save-params "$work/idx.bin" >"$work/idx" 2>&1 || { cat "$work/idx"; fail "IDX: exit $?"; }
  POCL_MAX_PTHREAD_COUNT=2 "$T" $run --data "$work/fm" --save-params "$work/npy.bin" >"$work/npy" 2>&1 || { cat "$work/npy"; fail "npy: exit $?"; }
  POCL_MAX_PTHREAD_COUNT=2 "$T" $run --data "$work/fmf" --save-params "$work/npyf.bin" >"$work/npyf" 2>&1 || { cat "$work/npyf"; fail "npy float32: exit $?"; }
  echo "IDX $(acc_of "$work/idx"), npy uint8 $(acc_of "$work/npy"), npy float32 NxHxWx1 $(acc_of "$work/npyf")"
  grep -q "data $work/fm (npy, 1x28x28, 10 classes; 4000 train, 1000 test)" "$work/npy" || { cat "$work/npy"; fail "npy: no data line"; }
  grep -q "(idx, 1x28x28, 10 classes;" "$work/idx" || fail "IDX: no data line"
  [ "$(acc_of "$work/idx")" = "$(acc_of "$work/npy")" ] || fail "npy accuracy differs from IDX"
  cmp -s "$work/idx.bin" "$work/npy.bin" || fail "npy uint8: parameters differ from IDX"
  cmp -s "$work/idx.bin" "$work/npyf.bin" || fail "npy float32 (pixel/255, channels last): parameters differ from IDX"
  # 3 channels, 32x32, 4 classes (chance 0.25), channels last, uint8
  $mk synthetic "$work/rgb" --train 1200 --test 300 --classes 4 --seed 5 || fail "make_npy synthetic"
  POCL_MAX_PTHREAD_COUNT=2 "$T" --arch "conv3x3:8,relu,maxpool2,flatten,dense:32,relu,dense:4" --data "$work/rgb" \
    --epochs 2 --lr 0.02 --log-every 0 --metrics "$work/m.jsonl" >"$work/rgb.out" 2>&1 || { cat "$work/rgb.out"; fail "3-channel: exit $?"; }
  cat "$work/rgb.out"
  grep -q "(npy, 3x32x32, 4 classes; 1200 train, 300 test)" "$work/rgb.out" || fail "3-channel: no data line"
  ge "$(acc_of "$work/rgb.out")" 0.9 || fail "3-channel: test accuracy $(acc_of "$work/rgb.out") < 0.9"
  python3 -c "import json,sys; r=json.loads(open(sys.argv[1]).readline()); sys.exit(0 if r['input_shape']==[3,32,32] and r['classes']==4 and r['data_format']=='npy' else 1)" "$work/m.jsonl" || fail "metrics: no input shape / classes"
  # the arch's last layer must match the classes found in the data
  "$T" --arch "flatten,dense:10" --data "$work/rgb" --epochs 1 >"$work/o" 2>"$work/e"; rc=$?
  [ $rc -eq 2 ] && grep -q "4 classes" "$work/e" || { cat "$work/e"; fail "dense:10 on 4 classes: exit $rc"; }
  # --classes: more than the labels need is fine; fewer is one line naming the label file
  "$T" --model mlp --data "$work/rgb" --classes 3 --epochs 1 >"$work/o" 2>"$work/e"; rc=$?
  [ $rc -eq 1 ] && [ "$(wc -l <"$work/e")" -eq 1 ] && grep -q "train_labels.npy: label 3 at index" "$work/e" || { cat "$work/e"; fail "--classes 3: exit $rc"; }
  "$T" --model mlp --classes 0 >"$work/o" 2>"$work/e"; rc=$?
  [ $rc -eq 2 ] && grep -q -- "--classes" "$work/e" || { cat "$work/e"; fail "--classes 0: exit $rc"; }
  "$T" --model mlp --classes 1 >"$work/o" 2>"$work/e"; rc=$?
  [ $rc -eq 2 ] && grep -q -- "--classes: expected an integer in 2\.\.256" "$work/e" || { cat "$work/e"; fail "--classes 1: exit $rc"; }
  # one class only (every label 0): a softmax over one class learns nothing; refused
  $mk synthetic "$work/one" --train 60 --test 20 --classes 1 || fail "make_npy synthetic, 1 class"
  "$T" --model mlp --data "$work/one" --batch 20 --epochs 1 >"$work/o" 2>"$work/e"; rc=$?
  [ $rc -eq 1 ] && [ "$(wc -l <"$work/e")" -eq 1 ] && grep -q "every label is 0" "$work/e" || { cat "$work/e"; fail "1 class: exit $rc"; }
  # damaged files: exit 1, one line naming the file and what is wrong
  $mk damaged "$work/bad" >"$work/cases" || fail "make_npy damaged"
  n=0
  while IFS=$'\t' read -r c file phrase; do
    "$T" --model mlp --batch 4 --epochs 1 --data "$work/bad/$c" >"$work/o" 2>"$work/e"; rc=$?
    msg=$(cat "$work/e")
    [ $rc -eq 1 ] || fail "$c: exit $rc, want 1: $msg"
    [ "$(wc -l <"$work/e")" -eq 1 ] || fail "$c: not one line: $msg"
    case "$msg" in *"$phrase"*) ;; *) fail "$c: '$msg' lacks '$phrase'" ;; esac
    case "$c" in test-shape*) ;; *) case "$msg" in *"$file"*) ;; *) fail "$c: '$msg' does not name $file" ;; esac ;; esac
    echo "  $c: $msg"
    n=$((n + 1))
  done <"$work/cases"
  [ $n -ge 15 ] || fail "only $n damaged cases"
  ;;
safetensors)   # --save-safetensors: an independent forward pass over the file gives cltrain's accuracy
  POCL_MAX_PTHREAD_COUNT=2 "$T" --model flatten,dense:32,relu,dense:10 --limit 6000 --test-limit 300 --epochs 1 \
    --log-every 0 --normalize 0.286,0.353 --save-safetensors "$work/a.safetensors" >"$work/out" 2>&1 || { cat "$work/out"; fail "mlp: exit $?"; }
  python3 "$here/check_safetensors.py" "$work/a.safetensors" "$DATA" 300 "$(acc_of "$work/out")" || fail "mlp: the exported weights differ"
  # a convolution's layout, from two ranks (rank 0 writes)
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" --model $SMALL --limit 3000 --test-limit 100 --epochs 1 --log-every 0 \
    --save-safetensors "$work/c.safetensors" >"$work/out" 2>&1 || { cat "$work/out"; fail "conv: exit $?"; }
  python3 "$here/check_safetensors.py" "$work/c.safetensors" "$DATA" 100 "$(acc_of "$work/out")" || fail "conv: the exported weights differ"
  # cltrain-export: a checkpoint of the same run gives the same file, byte for byte
  X="$(dirname "$T")/cltrain-export"
  if [ -x "$X" ]; then
    POCL_MAX_PTHREAD_COUNT=2 "$T" --model $SMALL --limit 1200 --test-limit 100 --epochs 1 --log-every 0 \
      --checkpoint "$work/ck" --save-safetensors "$work/e1.safetensors" >/dev/null 2>&1 || fail "export run"
    "$X" "$work/ck" "$work/e2.safetensors" || fail "cltrain-export: exit $?"
    cmp "$work/e1.safetensors" "$work/e2.safetensors" || fail "cltrain-export differs from --save-safetensors"
    head -c 100 "$work/ck" >"$work/ckbad"
    for args in "$work/ckbad $work/e3" "$work/ck $work/e3 --input 3,32,32" "$work/ck" "$work/ck $work/e3 --classes 1" "$work/ck $work/e3 --bogus"; do
      err=$("$X" $args 2>&1 >/dev/null); rc=$?
      echo "cltrain-export $args -> exit $rc: $err"
      [ "$rc" -eq 1 ] || [ "$rc" -eq 2 ] || fail "cltrain-export $args: exit $rc"
      [ "$(echo "$err" | wc -l)" -eq 1 ] && [ ! -e "$work/e3" ] || fail "cltrain-export $args: not one line, or wrote a file"
    done
  fi
  err=$("$T" --model dense:10 --limit 300 --test-limit 100 --epochs 1 --save-safetensors /nonexistent/dir/w.safetensors 2>&1 >/dev/null); rc=$?
  echo "--save-safetensors /nonexistent/dir/w.safetensors -> exit $rc: $err"
  [ "$rc" -eq 1 ] && echo "$err" | grep -q "/nonexistent/dir/w.safetensors" || fail "bad path: exit $rc, $err"
  ;;
mpi_train)   # the trainer under mpiexec: shares, per-rank metrics, accuracy on a subset
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" --model mlp --limit 6000 --epochs 1 --batch 128 --log-every 10 >"$work/out" 2>&1 || { cat "$work/out"; fail "exit $?"; }
  cat "$work/out"
  ge "$(acc_of "$work/out")" 0.75 || fail "accuracy below 0.75"
  [ "$(grep -Ec '^ +[01] +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+%' "$work/out")" -eq 2 ] || fail "no per-rank metrics for both ranks"
  grep -Eq '^mean +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+%' "$work/out" || fail "no mean row"
  # --metrics: JSON Lines as docs/metrics.md says (config first, log and epoch records, final last)
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" --model mlp --limit 3000 --epochs 2 --batch 128 --log-every 10 \
    --metrics "$work/m.jsonl" >"$work/out" 2>&1 || { cat "$work/out"; fail "--metrics: exit $?"; }
  python3 - "$work/m.jsonl" "$(acc_of "$work/out")" <<'PY' || fail "--metrics records"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
types = [r["type"] for r in recs]
assert types[0] == "config" and types[-1] == "final", types
c = recs[0]
assert c["world"] == 2 and len(c["devices"]) == 2 and c["params"] > 0, c
assert all(d["device"] and d["platform"] for d in c["devices"]), c["devices"]
logs = [r for r in recs if r["type"] == "log"]
epochs = [r for r in recs if r["type"] == "epoch"]
assert [r["step"] for r in logs] == [10, 20, 30, 40], [r["step"] for r in logs]
assert all(r["loss"] > 0 and r["samples_per_s"] > 0 and len(r["shares"]) == 2 for r in logs)
assert [e["epoch"] for e in epochs] == [1, 2] and all(len(e["ranks"]) == 2 for e in epochs)
f = recs[-1]
assert abs(f["test_accuracy"] - float(sys.argv[2])) < 1e-4 and f["steps"] == 48, f
assert epochs[-1]["test_accuracy"] == f["test_accuracy"]
print("metrics:", len(recs), "records", types.count("log"), "log", len(epochs), "epoch")
PY
  # --trace: one file, one process per rank, the steps asked for, the buckets on their own track
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" --model mlp --limit 3000 --epochs 1 --batch 128 --log-every 0 \
    --bucket-mb 1 --trace "$work/t.json" --trace-steps 5:15 >"$work/out" 2>&1 || { cat "$work/out"; fail "--trace: exit $?"; }
  python3 - "$work/t.json" <<'PY' || fail "--trace file"
import json, sys
ev = json.load(open(sys.argv[1]))["traceEvents"]
names = {e["pid"]: e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "process_name"}
assert sorted(names) == [0, 1] and all(n.startswith("rank ") for n in names.values()), names
x = [e for e in ev if e["ph"] == "X"]
steps = sorted({e["args"]["step"] for e in x})
assert steps == list(range(5, 15)), steps
for pid in (0, 1):
    mine = [e for e in x if e["pid"] == pid]
    assert sum(e["name"].startswith("step ") for e in mine) == 10
    assert any(e["tid"] == 1 and e["name"].startswith("bucket ") for e in mine)
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in mine)
print("trace:", len(x), "events over steps", steps[0], "..", steps[-1])
PY
  # --profile adds the device's commands, OpenCL event times on the host's clock: every command
  # enqueued in step k starts after step k's host span starts, most inside it (the update and
  # the status words may run after the host moved on), and ends before step k+1 ends (the next
  # step waits for its compute, which follows on the same in-order queue)
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" --model mlp --limit 3000 --epochs 1 --batch 128 --log-every 0 \
    --profile --trace "$work/tp.json" --trace-steps 5:10 >"$work/out" 2>&1 || { cat "$work/out"; fail "--trace --profile: exit $?"; }
  python3 - "$work/tp.json" <<'PY' || fail "--trace --profile file"
import json, sys
ev = json.load(open(sys.argv[1]))["traceEvents"]
x = [e for e in ev if e["ph"] == "X"]
tracks = {(e["pid"], e["args"]["name"]) for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
for pid in (0, 1):
    assert (pid, "device commands (OpenCL events)") in tracks, tracks
    span = {e["args"]["step"]: (e["ts"], e["ts"] + e["dur"]) for e in x
            if e["pid"] == pid and e["tid"] == 0 and e["name"].startswith("step ")}
    dev = [e for e in x if e["pid"] == pid and e["tid"] == 2]
    assert {e["args"]["step"] for e in dev} == set(range(5, 10)), sorted({e["args"]["step"] for e in dev})
    assert any(e["name"].startswith("gemm") for e in dev) and any(e["name"] == "sgd_step" for e in dev)
    tol = 1000.0   # us: the clock mapping's bracket is a few us; margin for a descheduled host
    inside = 0
    for e in dev:
        k = e["args"]["step"]
        a, b = span[k]
        end_by = span[k + 1][1] if k + 1 in span else b + 50000
        assert a - tol <= e["ts"], (pid, e, span[k])
        assert e["ts"] + e["dur"] <= end_by + tol, (pid, e, end_by)
        inside += e["ts"] <= b
    assert inside >= len(dev) / 2, (inside, len(dev))
    print("rank %d: %d device commands over steps 5..9, %d of them starting inside their step's host span" % (pid, len(dev), inside))
PY
  for bad in "--trace-steps 5" "--trace-steps 9:3 --trace $work/x.json" "--trace-steps 1:2"; do
    err=$("$T" $bad 2>&1 >/dev/null); rc=$?
    echo "$bad -> exit $rc: $err"
    [ "$rc" -eq 2 ] && echo "$err" | grep -q -- "--trace-steps" || fail "$bad: exit $rc, $err"
  done
  # tools/cltrain-plot draws it (gnuplot: tools/install-deps.sh installs it)
  plot="$here/../tools/cltrain-plot"
  if command -v gnuplot >/dev/null; then
    "$plot" "$work/m.jsonl" "$work/m.jsonl" -o "$work/p.png" || fail "cltrain-plot: exit $?"
    [ "$(head -c 8 "$work/p.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "cltrain-plot: not a PNG"
    [ "$(stat -c %s "$work/p.png")" -gt 20000 ] || fail "cltrain-plot: an empty-looking PNG"
  fi
  head -1 "$work/m.jsonl" >"$work/cfg.jsonl"                          # a config record only
  { head -1 "$work/m.jsonl"; echo '{"step": 3}'; } >"$work/notype.jsonl"  # a record without a type
  for args in "$work/m.jsonl" "$work/m.jsonl -o $work/p.txt" "$work/out -o $work/q.png" "$work/none.jsonl -o $work/q.png" \
              "$work/cfg.jsonl -o $work/q.png" "$work/notype.jsonl -o $work/q.png"; do
    err=$("$plot" $args 2>&1 >/dev/null); rc=$?
    echo "cltrain-plot $args -> exit $rc: $err"
    [ "$rc" -eq 1 ] || [ "$rc" -eq 2 ] || fail "cltrain-plot $args: exit $rc"
    [ "$(echo "$err" | wc -l)" -eq 1 ] && [ ! -e "$work/q.png" ] || fail "cltrain-plot $args: not one line, or wrote a file"
  done
  err=$("$T" --model mlp --limit 300 --epochs 1 --metrics /nonexistent/dir/m.jsonl 2>&1 >/dev/null); rc=$?
  echo "--metrics /nonexistent/dir/m.jsonl -> exit $rc: $err"
  [ "$rc" -eq 1 ] && echo "$err" | grep -q -- "--metrics" || fail "--metrics to a bad path: exit $rc, $err"
  # the epoch's last batch holds 1 sample: ranks 1 and 2 get none after the last log line, and
  # every collective must still be entered by all three (a hang here is a failure by timeout)
  POCL_MAX_PTHREAD_COUNT=1 timeout 120 $MPI -n 3 "$T" --model dense:16,relu,dense:10 --limit 301 --batch 3 \
    --epochs 1 --log-every 100 --test-limit 300 >"$work/out" 2>&1 || { cat "$work/out"; fail "empty shares: exit $?"; }
  grep -q "^final: .* 101 steps" "$work/out" || fail "empty shares: not 101 steps"
  ;;
mpi_resume_world)   # written by 2 ranks, resumed by 1 (and by 3): same sample order, equal within fp32 rounding
  A="--model $SMALL --limit 3000 --test-limit 300 --batch 60 --log-every 0 --seed 5"
  POCL_MAX_PTHREAD_COUNT=2 "$T" $A --max-steps 20 --save-params "$work/ref" >/dev/null || fail "np 1 reference"
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --max-steps 10 --checkpoint "$work/ck" --checkpoint-every 10 >/dev/null 2>&1 || fail "np 2 to step 10"
  POCL_MAX_PTHREAD_COUNT=2 "$T" $A --max-steps 20 --resume "$work/ck" --save-params "$work/r1" >"$work/out" || fail "np 1 resume"
  grep -q "saved by 2 rank" "$work/out" || fail "resume did not say the writer's world size"
  $cmp_params "$work/r1" "$work/ref" --rtol 1e-5 --atol 1e-7 || fail "np 2 -> np 1 differs"
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 3 "$T" $A --max-steps 20 --resume "$work/ck" --save-params "$work/r3" >/dev/null 2>&1 || fail "np 3 resume"
  $cmp_params "$work/r3" "$work/ref" --rtol 1e-5 --atol 1e-7 || fail "np 2 -> np 3 differs"
  # the same checkpoint in format version 1 (no run state): resumed by 3 ranks, the same order
  $ckpt to-v1 "$work/ck" "$work/ck1" || fail "ckpt_tool to-v1"
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 3 "$T" $A --max-steps 20 --resume "$work/ck1" --save-params "$work/r3v1" >"$work/out" 2>&1 || { cat "$work/out"; fail "np 3 resume of version 1"; }
  grep -q "saved by 2 rank(s); format version 1" "$work/out" || fail "version 1 not said"
  $cmp_params "$work/r3v1" "$work/ref" --rtol 1e-5 --atol 1e-7 || fail "np 2 (version 1) -> np 3 differs"
  # the sync mode's state: a stale or local:3 checkpoint holds no pending step and no steps
  # since an average (it is written where the replicas agree), and 3 ranks resume it
  C="--model dense:32,relu,dense:10 --limit 3000 --test-limit 300 --batch 60 --log-every 0 --seed 5 --device pocl"
  for mode in stale local:3; do
    POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $C --sync $mode --max-steps 10 --checkpoint "$work/cks" --checkpoint-every 10 >/dev/null 2>&1 || fail "$mode: np 2"
    $ckpt show "$work/cks" | tee "$work/show"
    grep -q "^sync $mode since 0 pending 0 balance even " "$work/show" || fail "$mode: the run state"
    POCL_MAX_PTHREAD_COUNT=1 $MPI -n 3 "$T" $C --sync $mode --max-steps 14 --resume "$work/cks" --check-every 2 >"$work/out" 2>&1 || { cat "$work/out"; fail "$mode: np 3 resume"; }
    grep -q "^resumed from .* at step 10 .*saved by 2 rank(s)$" "$work/out" && grep -q " 0 divergences" "$work/out" || { cat "$work/out"; fail "$mode: np 3 resume"; }
  done
  # the balance state: a throughput run (rank 1 slowed 300 us per sample), resumed by the same
  # 2 ranks (the shares as saved) and by 3 (each rank the rate measured for its device: ranks
  # 0 and 1 on the same host and local rank; rank 2 that of its device model, PoCL)
  B="--model dense:32,relu,dense:10 --limit 3000 --test-limit 300 --batch 64 --log-every 0 --seed 3 --device pocl --balance throughput"
  CLTRAIN_INJECT_SLOW_RANK=1 CLTRAIN_INJECT_SLOW_US=300 POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $B --max-steps 30 \
    --checkpoint "$work/tp" --checkpoint-every 30 >"$work/out" 2>&1 || { cat "$work/out"; fail "throughput np 2"; }
  end=$(sed -n 's/^shares of a batch of 64 at the end: \([0-9 ]*\) (.*/\1/p' "$work/out")
  $ckpt show "$work/tp" | tee "$work/show"
  grep -q "balance throughput measured 1 " "$work/show" || fail "throughput: no measured rates saved"
  [ "${end% *}" -ge 48 ] || { cat "$work/out"; fail "throughput: the slowed rank still has ${end#* } of 64"; }
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $B --max-steps 31 --resume "$work/tp" >"$work/out" 2>&1 || { cat "$work/out"; fail "throughput: np 2 resume"; }
  grep "shares" "$work/out"
  grep -q "^cltrain: --balance throughput: shares as saved (the same 2 ranks on the same devices)$" "$work/out" \
    && grep -q "shares of a batch of 64: $end\$" "$work/out" || fail "np 2: the saved shares ($end) not taken"
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 3 "$T" $B --max-steps 31 --resume "$work/tp" >"$work/out" 2>&1 || { cat "$work/out"; fail "throughput: np 3 resume"; }
  grep "shares" "$work/out"
  grep -q "^cltrain: --balance throughput: shares from the rates the checkpoint measured (2 rank(s) on a device it measured, 1 on a model it measured)$" "$work/out" \
    || fail "np 3: not the measured rates"
  first=$(sed -n 's/^cltrain: --balance throughput, --sync sync; shares of a batch of 64: \([0-9]*\) .*/\1/p' "$work/out")
  [ -n "$first" ] && [ "$first" -ge 40 ] || fail "np 3: rank 0 (the fast device) starts with $first of 64"
  ;;
mpi_kill)   # a rank killed with SIGKILL: the job ends within seconds, the last checkpoint is intact
  A="--model $SMALL --limit 3000 --test-limit 300 --batch 40 --epochs 100 --log-every 1"
  POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --checkpoint "$work/ck" --checkpoint-every 3 >"$work/out" 2>&1 &
  mpid=$!
  for i in $(seq 1 600); do
    [ -e "$work/ck" ] && grep -q "^step  *1[0-9] " "$work/out" && break
    sleep 0.2
  done
  [ -e "$work/ck" ] || { kill -9 $mpid; cat "$work/out"; fail "no checkpoint written"; }
  victim=$(pgrep -n -P $mpid)
  [ -n "$victim" ] || fail "no rank process found under mpiexec"
  t0=$(date +%s.%N)
  kill -9 "$victim"
  for i in $(seq 1 300); do kill -0 $mpid 2>/dev/null || break; sleep 0.1; done
  if kill -0 $mpid 2>/dev/null; then kill -9 $mpid; fail "the job still runs 30 s after a rank was killed"; fi
  wait $mpid; rc=$?
  t1=$(date +%s.%N)
  echo "job ended $(python3 -c "print(round($t1-$t0,2))") s after rank pid $victim was killed, exit $rc"
  [ "$rc" -ne 0 ] || fail "mpiexec exited 0 after a rank was killed"
  "$T" $A --resume "$work/ck" --max-steps 1 2>&1 | grep -q "resumed from" \
    || fail "the last checkpoint does not load"
  ;;
mpi_divergence)   # replicas made to differ: abort / resync / warn
  A="--model $SMALL --limit 1200 --test-limit 200 --batch 40 --max-steps 8 --log-every 0 --check-every 2"
  err=$(CLTRAIN_INJECT_DIVERGE_STEP=3 POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --on-divergence abort 2>&1 >/dev/null); rc=$?
  [ "$rc" -ne 0 ] || fail "abort: exit 0"
  echo "$err" | grep -q "replicas diverged at step 4" || fail "abort: $err"
  CLTRAIN_INJECT_DIVERGE_STEP=3 POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --on-divergence resync --save-params "$work/p" >"$work/out" 2>&1 || { cat "$work/out"; fail "resync: exit $?"; }
  grep -q "resynchronised from rank 0 at step 4" "$work/out" || fail "resync did not happen"
  grep -q " 1 divergences" "$work/out" || fail "resync: divergence not counted once"
  CLTRAIN_INJECT_DIVERGE_STEP=3 POCL_MAX_PTHREAD_COUNT=1 $MPI -n 2 "$T" $A --on-divergence warn >"$work/out" 2>&1 || { cat "$work/out"; fail "warn: exit $?"; }
  grep -q "replicas differ at step 4" "$work/out" || fail "warn: no warning"
  ;;
*) echo "unknown case $case_"; exit 2 ;;
esac
echo "PASS $case_"
