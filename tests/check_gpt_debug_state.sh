#!/usr/bin/env bash
# The checked-in GPT debug state is what its generator writes: runs tests/gpt_debug_state.py into
# a temporary file and compares it with tests/gpt_debug_state.safetensors: the same tensors,
# shapes, types, metadata and tokens, and every float within 1e-6 of its tensor's largest
# magnitude (another BLAS under PyTorch may round the double-precision sums differently). Exits
# 77 (skipped) without PyTorch (Debian's python3-torch, `tools/install-deps.sh --bench`).
#   tests/check_gpt_debug_state.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "SKIP: no PyTorch (python3-torch)"; exit 77; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
/usr/bin/python3 "$here/gpt_debug_state.py" --out "$out"
/usr/bin/python3 - "$here/../tools/peer_gpt.py" "$out" "$here/gpt_debug_state.safetensors" <<'PY'
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("peer_gpt", sys.argv[1])
pg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pg)
new, new_meta = pg.load_safetensors(sys.argv[2])
old, old_meta = pg.load_safetensors(sys.argv[3])
bad = []
if sorted(new) != sorted(old):
    bad.append(f"tensors {sorted(set(new) ^ set(old))} in one file only")
if new_meta != old_meta:
    bad.append("metadata differs")
for name in sorted(set(new) & set(old)):
    a, b = new[name], old[name]
    if a.shape != b.shape or a.dtype != b.dtype:
        bad.append(f"{name}: {a.dtype}{a.shape} against {b.dtype}{b.shape}")
    elif a.dtype.kind == "i" and not np.array_equal(a, b):
        bad.append(f"{name}: other tokens")
    elif a.dtype.kind == "f":
        d = float(np.max(np.abs(a.astype(np.float64) - b)))
        if d > 1e-6 * max(1e-30, float(np.max(np.abs(b)))):
            bad.append(f"{name}: differs by {d:.3g}")
for b in bad:
    print(f"tests/gpt_debug_state.safetensors: {b}", file=sys.stderr)
if bad:
    sys.exit("tests/gpt_debug_state.safetensors is not what tests/gpt_debug_state.py writes now: "
             "run it and check the new state in")
print(f"tests/gpt_debug_state.safetensors: {len(old)} tensors reproduced")
PY
