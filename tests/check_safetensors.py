#!/usr/bin/env python3
"""An independent forward pass over weights cltrain exported with --save-safetensors.

  check_safetensors.py FILE.safetensors DATA_DIR TEST_LIMIT EXPECTED_ACCURACY

Reads the file by the safetensors format alone (u64 header length, JSON header, raw tensors),
rebuilds the model from __metadata__ (arch, normalize, input) with PyTorch's layouts (dense
[out, in], conv [out, in, kh, kw], NCHW activations, flatten in C,H,W order), runs it in plain
Python on the first TEST_LIMIT test images of DATA_DIR (IDX, gzipped or not) and compares its
accuracy with cltrain's. Exit 0 when they agree within half a percent (borderline samples may
flip with fp32 summation order)."""
import array, gzip, json, os, struct, sys

path, data_dir, limit, expected = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
raw = open(path, "rb").read()
(hl,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8:8 + hl])
meta = header.pop("__metadata__")
body = raw[8 + hl:]
tensors = {}
end = 0
for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    assert t["dtype"] == "F32", t
    b, e = t["data_offsets"]
    assert b == end, f"{name}: a hole or overlap at byte {b}"
    end = e
    a = array.array("f"); a.frombytes(body[b:e])
    n = 1
    for d in t["shape"]: n *= d
    assert len(a) == n, f"{name}: {len(a)} values for shape {t['shape']}"
    tensors[name] = (list(t["shape"]), a)
assert end == len(body), "the tensors do not cover the data"

def idx(name):
    for p in (os.path.join(data_dir, name), os.path.join(data_dir, name + ".gz")):
        if os.path.exists(p):
            return (gzip.open if p.endswith(".gz") else open)(p, "rb").read()
    sys.exit(f"no {name} in {data_dir}")
imgs, labels = idx("t10k-images-idx3-ubyte"), idx("t10k-labels-idx1-ubyte")
c, h, w = map(int, meta["input"].split(","))
mean, std = (0.0, 1.0) if meta["normalize"] == "none" else map(float, meta["normalize"].split(","))

def dense(x, i):
    (o, n), W = tensors[f"{i}.weight"]
    _, B = tensors[f"{i}.bias"]
    assert len(x) == n, (i, len(x), n)
    return [B[r] + sum(W[r * n + k] * x[k] for k in range(n)) for r in range(o)]

def conv(x, shape, i, L):   # x: C*H*W list, NCHW without the batch
    (o, ci, kh, kw), W = tensors[f"{i}.weight"]
    _, B = tensors[f"{i}.bias"]
    _, H, Wd = shape
    s, p = L.get("s", 1), L.get("p", kh // 2)
    oh, ow = (H + 2 * p - kh) // s + 1, (Wd + 2 * p - kw) // s + 1
    out = []
    for oc in range(o):
        for y in range(oh):
            for xx in range(ow):
                acc = B[oc]
                for cc in range(ci):
                    for a in range(kh):
                        iy = y * s - p + a
                        if iy < 0 or iy >= H: continue
                        for b in range(kw):
                            ix = xx * s - p + b
                            if 0 <= ix < Wd:
                                acc += W[((oc * ci + cc) * kh + a) * kw + b] * x[(cc * H + iy) * Wd + ix]
                out.append(acc)
    return out, (o, oh, ow)

def maxpool(x, shape, k):
    C, H, Wd = shape
    oh, ow = H // k, Wd // k
    out = [max(x[(cc * H + y * k + a) * Wd + xx * k + b] for a in range(k) for b in range(k))
           for cc in range(C) for y in range(oh) for xx in range(ow)]
    return out, (C, oh, ow)

layers = []
for tok in meta["arch"].split(","):
    name, _, arg = tok.partition(":")
    L = {"kind": name}
    if name.startswith("conv"):
        parts = arg.split("/")
        L["n"] = int(parts[0])
        for q in parts[1:]: L[q[0]] = int(q[1:])
    layers.append(L)

correct = 0
for n in range(limit):
    px = imgs[16 + n * c * h * w: 16 + (n + 1) * c * h * w]
    x = [(v / 255.0 - mean) / std for v in px]
    shape = (c, h, w)
    for i, L in enumerate(layers):
        k = L["kind"]
        if k == "dense": x = dense(x, i); shape = (len(x), 1, 1)
        elif k == "relu": x = [v if v > 0 else 0.0 for v in x]
        elif k.startswith("conv"): x, shape = conv(x, shape, i, L)
        elif k.startswith("maxpool"): x, shape = maxpool(x, shape, int(k[7:]))
        elif k in ("flatten",) or k.startswith("dropout"): pass
        else: sys.exit(f"layer {tok}: not known to this check")
    correct += max(range(len(x)), key=lambda j: x[j]) == labels[8 + n]
acc = correct / limit
print(f"independent forward pass: {correct}/{limit} = {acc:.4f}, cltrain {expected:.4f}, "
      f"{len(tensors)} tensors, metadata {meta}")
sys.exit(0 if abs(acc - expected) <= 0.005 + 1e-9 else 1)
