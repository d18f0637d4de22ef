#!/usr/bin/env bash
# The language model (cltrain --model gpt, cltrain-generate) run as a user runs it, one case per
# ctest entry (tests/gptcli.cmake):
#   check_gpt.sh CASE path/to/cltrain
# cltrain-generate is taken from beside cltrain. Each case trains tiny models (layers=1,
# channels=16, heads=2, seq=8) on a small play-like text written here from a fixed seed, so
# the whole set takes about three minutes on two cores.
# Environment: CLTRAIN_MPIEXEC (mpiexec with the flags root and 2 cores need).
# Figures printed here are for the log; only correctness decides.
set -u
case_=$1
T=$2
G=${T%/*}/cltrain-generate
here=$(cd "$(dirname "$0")" && pwd)
cmp_params="python3 $here/compare_params.py"
MPI=${CLTRAIN_MPIEXEC:-mpiexec --allow-run-as-root --oversubscribe}
work=$(mktemp -d /tmp/cltrain-gpt-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
have() { "${T%/*}/cltrain-devices" --device "$1" >/dev/null 2>&1; }
# one PoCL / Intel worker thread per rank where several ranks share the two cores
export POCL_MAX_PTHREAD_COUNT=${POCL_MAX_PTHREAD_COUNT:-1} CL_CONFIG_CPU_TBB_NUM_WORKERS=${CL_CONFIG_CPU_TBB_NUM_WORKERS:-1}
[ -x "$G" ] || fail "no cltrain-generate beside $T"
have pocl || { echo "SKIP: no PoCL device"; exit 77; }

# A play-like text: speakers' names, lines of words, blank lines (68 KB, 46 distinct bytes).
TXT=$work/play.txt
python3 - "$TXT" <<'PY'
import random, sys
r = random.Random(29)
names = ["KING", "QUEEN", "HAMLET", "YORK", "NURSE"]
words = "the king and queen shall speak of love and war in the house of york my lord good night".split()
out = []
while sum(map(len, out)) < 68000:
    out.append(r.choice(names) + ":\n")
    for _ in range(r.randint(1, 3)):
        line = " ".join(r.choice(words) for _ in range(r.randint(3, 8)))
        out.append(line[0].upper() + line[1:] + r.choice(".,;!?") + "\n")
    out.append("\n")
open(sys.argv[1], "w").write("".join(out))
PY
M="--model gpt:layers=1,channels=16,heads=2,seq=8 --text $TXT"
DEV="--device pocl"

case "$case_" in
# ---- bad input: one line and exit 1 or 2, naming the flag, the file or the tensor -----------
gpt_bad_input)
  : >"$work/empty.txt"
  python3 -c "import random,sys; r=random.Random(5); open(sys.argv[1],'wb').write(bytes(r.randrange(256) for _ in range(9)))" "$work/bin.txt"
  python3 -c "import sys; open(sys.argv[1],'w').write('ab' * 50)" "$work/shortval.txt"   # validation: 10 bytes
  tr '?' '~' <"$TXT" >"$work/other.txt"   # as many distinct bytes, not the same ones
  Q="--batch 4 --max-steps 2 --log-every 0 $DEV"
  "$T" $M $Q --save-safetensors "$work/m.st" --sample 16 >"$work/out" || fail "training the model to damage"
  # (--max-steps ended it mid-epoch: the sample after the last evaluation)
  grep -q "^sample after step 2:$" "$work/out" || { cat "$work/out"; fail "no sample after the last step"; }
  "$T" --model gpt:layers=1,channels=16,heads=2,seq=8 --text "$work/other.txt" $Q --save-safetensors "$work/other.st" >/dev/null || fail "training on another text"
  python3 - "$work" <<'PY' || fail "writing the damaged files"
import json, struct, sys
d = sys.argv[1]
raw = open(d + "/m.st", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h, data = json.loads(raw[8:8 + n]), raw[8 + n:]
def write(name, hdr, data):
    b = json.dumps(hdr).encode(); b += b" " * (-len(b) % 8)
    open(d + "/" + name, "wb").write(struct.pack("<Q", len(b)) + b + data)
open(d + "/trunc.st", "wb").write(raw[:8 + n + len(data) // 2])     # the data cut short
bad = bytearray(raw); bad[8 + 5] = ord("#"); open(d + "/badjson.st", "wb").write(bytes(bad))
x = json.loads(json.dumps(h)); x["transformer.h.0.mlp.c_fc.weight"]["shape"] = [16, 64]; write("shape.st", x, data)
x = json.loads(json.dumps(h)); del x["transformer.ln_f.bias"]; write("missing.st", x, data)
x = json.loads(json.dumps(h)); x["transformer.h.1.ln_1.bias"] = dict(h["transformer.ln_f.bias"]); write("extra.st", x, data)
x = json.loads(json.dumps(h)); x["__metadata__"]["n_head"] = "3"; write("heads.st", x, data)
x = json.loads(json.dumps(h)); x["__metadata__"]["vocab"] = "[10, 10]"; write("vocab.st", x, data)
# a classifier's weights: no language model's metadata
write("classifier.st", {"__metadata__": {"format": "pt", "arch": "dense:2"},
                        "1.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, bytes(16))
PY
  n=0
  # expect TOOL EXIT_CODE REGEX -- ARGS...
  expect() {
    local tool=$1 code=$2 re=$3; shift 4
    local err rc
    err=$("$tool" "$@" 2>&1 >/dev/null); rc=$?
    n=$((n + 1))
    printf '%s %-60s -> exit %d: %s\n' "${tool##*/}" "$(echo "$*" | sed "s|$work/||g")" "$rc" "$err"
    [ "$rc" -eq "$code" ] || fail "'$*': exit $rc, expected $code"
    [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "'$*': more than one line: $err"
    printf '%s' "$err" | grep -Eq -- "$re" || fail "'$*': message does not match /$re/: $err"
    return 0
  }
  L="--model gpt:layers=1,channels=16,heads=2,seq=8 $Q"
  expect "$T" 1 "^cltrain: --text: cannot open .*nowhere.txt"                       -- $L --text "$work/nowhere.txt"
  expect "$T" 1 "^cltrain: --text: .*empty.txt: the text is empty"                  -- $L --text "$work/empty.txt"
  expect "$T" 1 "^cltrain: --text: .*bin.txt: the training split has 8 bytes, shorter than one window of --model gpt's seq\+1 = 9 tokens" -- $L --text "$work/bin.txt"
  expect "$T" 1 "^cltrain: --text: .*shortval.txt: the validation split has 10 bytes, shorter than one window of --model gpt's seq\+1 = 13 tokens" \
    -- --model gpt:layers=1,channels=16,heads=2,seq=12 $Q --text "$work/shortval.txt"
  expect "$T" 2 "^cltrain: --model gpt:layers=1,channels=16,heads=3: heads=3 do not divide channels=16$" -- --model gpt:layers=1,channels=16,heads=3 $Q --text "$TXT"
  expect "$T" 2 "^cltrain: --model gpt:layers=1,foo=2: unknown key 'foo'"           -- --model gpt:layers=1,foo=2 $Q --text "$TXT"
  expect "$T" 2 "^cltrain: --model gpt:layers=1,layers=2: layers given twice"       -- --model gpt:layers=1,layers=2 $Q --text "$TXT"
  expect "$T" 2 "^cltrain: --model gpt:layers=0: layers must be an integer in 1\.\.40, got '0'" -- --model gpt:layers=0 $Q --text "$TXT"
  expect "$T" 2 "^cltrain: --model gpt:seq=99999: seq must be an integer in 1\.\.4096" -- --model gpt:seq=99999 $Q --text "$TXT"
  expect "$T" 2 "^cltrain: --model gpt:heads=x: heads must be an integer"           -- --model gpt:heads=x $Q --text "$TXT"
  expect "$T" 2 "^cltrain: --model gpt:layers: 'layers' is not KEY=VALUE"           -- --model gpt:layers $Q --text "$TXT"
  expect "$T" 2 "^cltrain: --shard stratified: a language model's samples have no class" -- $M $Q --shard stratified
  expect "$T" 1 "^cltrain: --init-from: cannot open .*nowhere.st"                   -- $M $Q --init-from "$work/nowhere.st"
  expect "$T" 1 "^cltrain: --init-from: .*trunc.st: tensor transformer\..* past the file's end" -- $M $Q --init-from "$work/trunc.st"
  expect "$T" 1 "^cltrain: --init-from: .*badjson.st: the safetensors header is not valid JSON" -- $M $Q --init-from "$work/badjson.st"
  expect "$T" 1 "^cltrain: --init-from: .*shape.st: tensor transformer.h.0.mlp.c_fc.weight is F32 \(16, 64\), the model's is F32 \(64, 16\)" \
    -- $M $Q --init-from "$work/shape.st"
  expect "$T" 1 "^cltrain: --init-from: .*missing.st: no tensor transformer.ln_f.bias" -- $M $Q --init-from "$work/missing.st"
  expect "$T" 1 "^cltrain: --init-from: .*extra.st: tensor transformer.h.1.ln_1.bias is not one of the model's" -- $M $Q --init-from "$work/extra.st"
  expect "$T" 1 "^cltrain: --init-from: .*other.st: its vocabulary \(46 bytes\) is not the text's \(46 bytes\): token 7 is byte 65 \('A'\) in the file, 63 \('\?'\) in the text" -- $M $Q --init-from "$work/other.st"
  expect "$T" 2 "^cltrain: --sample: only a language model \(--model gpt\) writes text; 'mlp' is a classifier" -- --model mlp --sample 10 $Q
  expect "$T" 2 "^cltrain: --sample: expected an integer"                           -- $M $Q --sample -1
  # cltrain-generate
  W="--weights $work/m.st --tokens 4 $DEV"
  expect "$G" 2 "^cltrain-generate: --weights FILE.safetensors: needed"             -- --tokens 4
  expect "$G" 2 "^cltrain-generate: unknown option '--bogus'"                       -- $W --bogus
  expect "$G" 2 "^cltrain-generate: --tokens: needs a value"                        -- --weights "$work/m.st" --tokens
  expect "$G" 2 "^cltrain-generate: --tokens: expected an integer in 0\.\.1048576, got '-1'" -- $W --tokens -1
  expect "$G" 2 "^cltrain-generate: --tokens: expected an integer"                  -- $W --tokens 12x
  expect "$G" 2 "^cltrain-generate: --temperature: expected a number in \[0, 1000\], got 'hot'" -- $W --temperature hot
  expect "$G" 2 "^cltrain-generate: --temperature: expected a number"               -- $W --temperature -0.5
  expect "$G" 2 "^cltrain-generate: --temperature: expected a number"               -- $W --temperature nan
  expect "$G" 2 "^cltrain-generate: --top-k: expected an integer in 0\.\.65536, got '-3'" -- $W --top-k -3
  expect "$G" 2 "^cltrain-generate: --seed: expected a non-negative integer"        -- $W --seed -5
  expect "$G" 2 "^cltrain-generate: --prompt: empty"                                -- $W --prompt ""
  expect "$G" 2 "^cltrain-generate: --prompt: byte 0x7e \('~'\) at offset 3 is not in the vocabulary of .*m.st \(46 bytes\)" -- $W --prompt "KIN~G"
  expect "$G" 2 "^cltrain-generate: --prompt: byte 0xc3 at offset 0 is not in the vocabulary" -- $W --prompt "é"
  expect "$G" 2 "^cltrain-generate: unexpected argument 'extra'"                    -- $W extra
  expect "$G" 1 "^cltrain-generate: --weights: cannot open .*nowhere.st"                       -- --weights "$work/nowhere.st"
  expect "$G" 1 "^cltrain-generate: --weights: .*trunc.st: tensor transformer\..* past the file's end" -- --weights "$work/trunc.st"
  expect "$G" 1 "^cltrain-generate: --weights: .*badjson.st: the safetensors header is not valid JSON" -- --weights "$work/badjson.st"
  expect "$G" 1 "^cltrain-generate: --weights: .*classifier.st: no \"n_layer\" in its metadata: not a language model's weights" -- --weights "$work/classifier.st"
  expect "$G" 1 "^cltrain-generate: --weights: .*heads.st: its metadata \(n_layer 1, n_head 3, n_embd 16, block_size 8\) is not a model: .*heads=3 do not divide channels=16" \
    -- --weights "$work/heads.st"
  expect "$G" 1 "^cltrain-generate: --weights: .*vocab.st: metadata vocab '\[10, 10\]' is not a JSON list of distinct byte values" -- --weights "$work/vocab.st"
  expect "$G" 1 "^cltrain-generate: --weights: .*shape.st: tensor transformer.h.0.mlp.c_fc.weight is F32 \(16, 64\)" -- --weights "$work/shape.st"
  expect "$G" 1 "^cltrain-generate: --weights: .*extra.st: tensor transformer.h.1.ln_1.bias is not one of the model's" -- --weights "$work/extra.st"
  expect "$G" 1 "^cltrain-generate: --device 'nosuchthing'"                          -- --weights "$work/m.st" --device nosuchthing
  "$G" --help >"$work/h" || fail "cltrain-generate --help: exit $?"
  for f in --weights --prompt --tokens --temperature --top-k --seed --device --version; do
    grep -q -- "$f" "$work/h" || fail "cltrain-generate --help does not list $f"
  done
  echo "PASS: $n bad inputs, one line each"
  ;;

# ---- a tiny model trains, writes its weights, and they write text -----------------------------
gpt_train)
  A="$M --optimizer adamw --lr 0.003 --batch 16 --epochs 2 --limit 400 --test-limit 100 --seed 4 $DEV"
  "$T" $A --log-every 5 --sample 48 --metrics "$work/m.jsonl" --save-safetensors "$work/m.st" \
    --save-params "$work/with" >"$work/out" 2>&1 || { cat "$work/out"; fail "training: exit $?"; }
  cat "$work/out"
  python3 - "$work/out" "$work/m.jsonl" "$TXT" <<'PY' || fail "the run's lines and records"
import json, math, re, sys
out = open(sys.argv[1], "rb").read().decode("latin-1")
recs = [json.loads(l) for l in open(sys.argv[2])]
text = open(sys.argv[3], "rb").read()
losses = [float(x) for x in re.findall(r"^step +\d+  epoch +\d+  loss ([0-9.]+) ", out, re.M)]
assert len(losses) == 10, losses
assert losses[-1] < 0.85 * losses[0], f"the loss per token did not fall: {losses}"
# epoch and final lines: "validation loss X (perplexity P)", X with 5 decimals (>= 5 digits)
ep = re.findall(r"^epoch +(\d)  validation loss (\d+\.\d{5}) \(perplexity ([0-9.]+)\)", out, re.M)
fin = re.findall(r"^final: validation loss (\d+\.\d{5}) \(perplexity ([0-9.]+)\)", out, re.M)
assert [e[0] for e in ep] == ["1", "2"] and len(fin) == 1, (ep, fin)
for _, v, p in ep + [("f",) + fin[0]]:
    assert len(v.replace(".", "").lstrip("0")) >= 5, v
    assert abs(math.exp(float(v)) - float(p)) <= 1e-3 * float(p), (v, p)
assert float(ep[1][1]) < float(ep[0][1]), "the validation loss did not fall"
# the records carry val_loss, the value the lines print
er = [r for r in recs if r["type"] == "epoch"]
fr = [r for r in recs if r["type"] == "final"]
assert len(er) == 2 and len(fr) == 1, recs
for r, (_, v, _) in zip(er, ep):
    assert "test_accuracy" not in r and abs(r["val_loss"] - float(v)) <= 5e-6, (r, v)
assert abs(fr[0]["val_loss"] - float(fin[0][0])) <= 5e-6, fr
# the samples: a header, the prompt (the validation text's first seq/2 = 4 bytes), 48 bytes
# of the text's vocabulary, a newline
vocab = set(text)
prompt = text[int(0.9 * len(text)):][:4].decode("latin-1")
for e in (1, 2):
    h = f"sample after epoch {e}:\n"
    at = out.index(h) + len(h)
    s = out[at:at + 4 + 48]
    assert s.startswith(prompt) and out[at + 52] == "\n", repr(out[at:at + 60])
    assert set(s.encode("latin-1")) <= vocab, repr(s)
    assert out.index(f"epoch   {e}  validation loss") < out.index(h), "the sample before its epoch's line"
print(f"losses {losses[0]} -> {losses[-1]}; validation {ep[0][1]} -> {ep[1][1]}; samples ok")
PY
  # --sample changes nothing of the training
  "$T" $A --log-every 0 --save-params "$work/without" >/dev/null 2>&1 || fail "training without --sample"
  $cmp_params "$work/with" "$work/without" --exact || fail "--sample changed the trained parameters"
  # cltrain-generate: the prompt, then exactly --tokens bytes of the vocabulary
  "$G" --weights "$work/m.st" --prompt "KING:" --tokens 300 --seed 11 $DEV >"$work/pocl.txt" || fail "cltrain-generate: exit $?"
  cat "$work/pocl.txt"; echo
  python3 - "$work/pocl.txt" "$TXT" <<'PY' || fail "the generated text"
import sys
g, text = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
assert g.startswith(b"KING:") and len(g) == 5 + 300, (len(g), g[:20])
assert set(g) <= set(text), set(g) - set(text)
assert len(set(g[5:])) >= 8, "hardly any distinct bytes: %r" % g
PY
  "$G" --weights "$work/m.st" --prompt "KING:" --tokens 300 --seed 11 $DEV | cmp -s - "$work/pocl.txt" || fail "the same seed gave another text"
  "$G" --weights "$work/m.st" --prompt "KING:" --tokens 300 --seed 12 $DEV | cmp -s - "$work/pocl.txt" && fail "another seed gave the same text"
  "$G" --weights "$work/m.st" --prompt "KING:" --tokens 100 --temperature 0 $DEV >"$work/greedy" || fail "greedy: exit $?"
  if have intel; then   # the same text on Intel's runtime: sampled, and greedy
    "$G" --weights "$work/m.st" --prompt "KING:" --tokens 300 --seed 11 --device intel >"$work/intel.txt" || fail "on intel: exit $?"
    cmp "$work/pocl.txt" "$work/intel.txt" || fail "PoCL and Intel's runtime wrote different texts"
    "$G" --weights "$work/m.st" --prompt "KING:" --tokens 100 --temperature 0 --device intel | cmp -s - "$work/greedy" \
      || fail "PoCL and Intel's runtime: different greedy texts"
    echo "PoCL and Intel's runtime: the same 300 sampled and 100 greedy bytes"
  else
    echo "note: no Intel OpenCL runtime: the cross-vendor text not compared"
  fi
  ;;

# ---- PyTorch's forward pass on cltrain's weights, and cltrain on PyTorch's --------------------
gpt_pytorch)
  /usr/bin/python3 -c "import torch" 2>/dev/null || { echo "SKIP: no PyTorch for /usr/bin/python3"; exit 77; }
  PEER="/usr/bin/python3 $here/../tools/peer_gpt.py --text $TXT --layers 1 --channels 16 --heads 2 --seq 8 --eval-windows 60 --threads 1"
  val_of() { python3 -c "import json,sys; print([json.loads(l) for l in open(sys.argv[1])][-1]['val_loss'])" "$1"; }
  close() {   # close A B WHAT: |A - B| <= 1e-4 |B|
    python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); r = abs(a - b) / abs(b); print('%s: cltrain %.7f, PyTorch %.7f, relative difference %.2e' % (sys.argv[3], a, b, r)); sys.exit(0 if r <= 1e-4 else 1)" "$1" "$2" "$3"
  }
  # cltrain trains; PyTorch evaluates its exported weights
  "$T" $M --optimizer adamw --lr 0.003 --batch 16 --max-steps 40 --limit 640 --test-limit 60 --seed 2 $DEV \
    --log-every 0 --metrics "$work/c.jsonl" --save-safetensors "$work/c.st" >"$work/out" 2>&1 || { cat "$work/out"; fail "cltrain: exit $?"; }
  grep "^final" "$work/out"
  mine=$(val_of "$work/c.jsonl")
  theirs=$($PEER --steps 0 --init "$work/c.st" | sed -n 's/^val loss //p')
  [ -n "$theirs" ] || fail "peer_gpt.py printed no validation loss"
  close "$mine" "$theirs" "trained by cltrain, evaluated by both" || fail "PyTorch's validation loss on cltrain's weights differs"
  # PyTorch trains a little and saves; cltrain starts from that file (an SGD step of 1e-30
  # leaves the weights as they are) and evaluates it
  $PEER --steps 30 --lr 0.003 --seed 5 --save "$work/p.st" >"$work/peer" || fail "peer_gpt.py --save: exit $?"
  theirs=$(sed -n 's/^val loss //p' "$work/peer")
  "$T" $M --init-from "$work/p.st" --optimizer sgd --lr 1e-30 --batch 16 --max-steps 1 --test-limit 60 $DEV \
    --log-every 0 --metrics "$work/p.jsonl" >"$work/out" 2>&1 || { cat "$work/out"; fail "cltrain --init-from: exit $?"; }
  grep -q "initial weights from .*p.st" "$work/out" || fail "no initial-weights line"
  mine=$(val_of "$work/p.jsonl")
  close "$mine" "$theirs" "trained by PyTorch, loaded by cltrain" || fail "cltrain's validation loss of PyTorch's weights differs"
  python3 -c "import math,sys; sys.exit(0 if float(sys.argv[1]) < math.log(46) - 0.2 else 1)" "$theirs" \
    || fail "PyTorch's 30 steps left the weights near their initial loss ($theirs): a weak check"
  # and cltrain-generate reads PyTorch's file (its metadata has no vocab_size)
  "$G" --weights "$work/p.st" --prompt "YORK:" --tokens 40 $DEV >/dev/null || fail "cltrain-generate on PyTorch's weights: exit $?"
  ;;

# ---- data-parallel ----------------------------------------------------------------------------
gpt_mpi_equivalence)   # -np 3 with uneven shares (4 3 3) == -np 1, within the classifier test's tolerance
  A="$M --optimizer sgd --lr 0.1 --clip-norm 1 --batch 10 --max-steps 12 --limit 600 --test-limit 30 --log-every 0 --seed 3 $DEV"
  "$T" $A --save-params "$work/p1" >/dev/null || fail "np 1"
  for shard in sequential random; do
    $MPI -n 3 "$T" $A --shard $shard --check-every 4 --save-params "$work/p3" >"$work/out" 2>&1 || { cat "$work/out"; fail "np 3 ($shard)"; }
    grep -q "shares of a batch of 10: 4 3 3" "$work/out" || { cat "$work/out"; fail "np 3: not the shares 4 3 3"; }
    grep -q " 0 divergences" "$work/out" || { cat "$work/out"; fail "np 3 ($shard): replicas differ"; }
    $cmp_params "$work/p3" "$work/p1" --rtol 1e-5 --atol 1e-7 || fail "np 3 ($shard) differs from np 1"
  done
  ;;
gpt_mpi_three_platforms)   # PoCL, Intel's runtime and Oclgrind in one job: identical replicas
  for d in intel oclgrind; do have $d || { echo "SKIP: no $d device"; exit 77; }; done
  A="--model gpt:layers=1,channels=8,heads=2,seq=4 --text $TXT --optimizer adamw --clip-norm 1 --batch 6 --limit 60 --test-limit 6 --log-every 1 --check-every 1"
  for mode in sync stale; do
    $MPI -n 3 "$T" --device 0=pocl,1=intel,2=oclgrind $A --max-steps 3 --sync $mode >"$work/out" 2>&1 \
      || { cat "$work/out"; fail "$mode: exit $?"; }
    [ $mode = sync ] && cat "$work/out"
    grep -q "rank 0 on .*\[Portable Computing Language\]" "$work/out" || fail "rank 0 is not on PoCL"
    grep -q "rank 1 on .*\[Intel(R) OpenCL\]" "$work/out" || fail "rank 1 is not on Intel's runtime"
    grep -q "rank 2 on .*\[Oclgrind\]" "$work/out" || fail "rank 2 is not on Oclgrind"
    [ "$(grep -c '^step ' "$work/out")" -eq 3 ] || fail "$mode: not 3 steps"
    grep -q "final: validation loss .* 0 divergences" "$work/out" || { cat "$work/out"; fail "$mode: replicas differ"; }
    echo "$mode: 0 divergences"
  done
  ;;
gpt_resume)   # stopped mid-epoch, resumed: bit-identical to the run that was not stopped
  A="$M --optimizer adamw --lr 0.003 --clip-norm 1 --schedule cosine --warmup 5 --batch 16 --epochs 2 --limit 208 --test-limit 20 --log-every 0 --seed 6 $DEV"
  "$T" $A --save-params "$work/a" >/dev/null || fail "the whole run"
  # (13 steps an epoch; the process ends as step 22 begins: its last checkpoint is step 20's,
  # in the second epoch; --max-steps would change the cosine's span)
  CLTRAIN_INJECT_EXIT_STEP=22 CLTRAIN_INJECT_EXIT_RANK=0 "$T" $A --checkpoint "$work/ck" --checkpoint-every 5 >/dev/null 2>&1
  [ $? -eq 3 ] || fail "the stopped run did not stop"
  "$T" $A --resume "$work/ck" --save-params "$work/b" >"$work/out" || fail "resume: exit $?"
  grep -q "resumed from .* at step 20 (epoch 2, step 7 of it)" "$work/out" || { cat "$work/out"; fail "did not resume at step 20"; }
  $cmp_params "$work/b" "$work/a" --exact || fail "the resumed run differs"
  # resumed by 2 ranks from the same checkpoint: the data-parallel tolerance, with an absolute
  # 1e-6 for AdamW where SGD's test takes 1e-7 (AdamW divides by the gradient's own scale: a
  # parameter near zero whose gradient is mostly rounding moves by other roundings)
  $MPI -n 2 "$T" $A --resume "$work/ck" --save-params "$work/c" >"$work/out" 2>&1 || { cat "$work/out"; fail "resume on 2 ranks: exit $?"; }
  grep -q "resumed from .* at step 20 (epoch 2, step 7 of it), saved by 1 rank" "$work/out" || { cat "$work/out"; fail "2 ranks did not resume at step 20"; }
  $cmp_params "$work/c" "$work/a" --rtol 1e-5 --atol 1e-6 || fail "resumed on 2 ranks differs"
  ;;
gpt_clip)   # --clip-norm on 2 ranks (PoCL + Intel's runtime) with and without the sharded update and buckets
  D="0=pocl,1=intel"
  have intel || { D="pocl"; echo "note: no Intel OpenCL runtime: both ranks on PoCL"; }
  # (SGD: a clipped gradient is a smaller step; AdamW's update hardly sees a factor that changes
  # little from step to step)
  A="$M --optimizer sgd --lr 0.2 --batch 12 --max-steps 8 --limit 300 --test-limit 20 --log-every 0 --seed 8 --check-every 1 --device $D"
  run() {   # run NAME ARGS...: parameters into $work/NAME
    local name=$1; shift
    $MPI -n 2 "$T" $A "$@" --save-params "$work/$name" >"$work/out" 2>&1 || { cat "$work/out"; fail "$name: exit $?"; }
    grep -q "final: validation loss .* 0 divergences" "$work/out" || { cat "$work/out"; fail "$name: replicas differ"; }
    echo "$name: 0 divergences"
  }
  run none
  run auto --clip-norm 0.05 --shard-update auto
  run off --clip-norm 0.05 --shard-update off
  run buckets --clip-norm 0.05 --shard-update off --bucket-mb 0.004
  run loose --clip-norm 1e6
  # the three ways to clip give the same step (the sharded update's norm is summed on the host,
  # in double: within the data-parallel tolerance); a clip that never bites changes nothing; a
  # small one changes the result
  $cmp_params "$work/off" "$work/auto" --rtol 1e-5 --atol 1e-7 || fail "--shard-update auto and off clip differently"
  $cmp_params "$work/buckets" "$work/off" --exact || fail "--bucket-mb clips differently"
  $cmp_params "$work/loose" "$work/none" --exact || fail "--clip-norm 1e6 changed the parameters"
  $cmp_params "$work/auto" "$work/none" --rtol 1e-3 --atol 1e-5 && fail "--clip-norm 0.05 gave the parameters of no clipping"
  echo "clipping: the same with the sharded update and buckets, and it changes the result"
  ;;
*) echo "unknown case $case_"; exit 2 ;;
esac
exit 0
