#!/usr/bin/python3
"""cltrain's PyTorch peer: the `mlp` and `cnn` presets trained by PyTorch on the CPU, for
tools/bench-peer.sh, on the same work as cltrain's own run: the same model, data, global batch,
SGD with momentum and thread count, timed the same way (samples/s after 5 warm-up steps).

  tools/peer_torch.py --model mlp|cnn [--epochs E] [--batch B] [--threads T] [--lr LR]
                      [--limit N] [--data DIR]

Needs Debian's python3-torch, and libopenblas0-pthread for a fast BLAS (without it PyTorch's
products run on the reference BLAS); `tools/install-deps.sh --bench` installs both. Prints one
line of key=value pairs: samples_per_s, test_acc, loss.

The same step as cltrain's: each epoch a seeded permutation of the (limited) training set, whole
batches only, mean cross-entropy, SGD with momentum 0.9 and no weight decay; images scaled by
1/255. The models are nn.Sequential's with PyTorch's default initialisation (the throughput
does not depend on it; accuracy is printed for a sanity check, not for comparison).
"""
import argparse
import gzip
import os
import struct
import sys
import time


def read_idx(path):
    """An IDX file (.gz or raw) as a numpy array of its stated dimensions."""
    import numpy as np
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def split(data, name):
    for suffix in (".gz", ""):
        img = os.path.join(data, f"{name}-images-idx3-ubyte{suffix}")
        lab = os.path.join(data, f"{name}-labels-idx1-ubyte{suffix}")
        if os.path.exists(img) and os.path.exists(lab):
            return read_idx(img), read_idx(lab)
    sys.exit(f"{os.path.basename(sys.argv[0])}: --data {data}: no {name}-images-idx3-ubyte[.gz] "
             "and labels")


def build(kind, torch):
    nn = torch.nn
    if kind == "mlp":   # cltrain: flatten,dense:512,relu,dense:512,relu,dense:10
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(),
                             nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    # cltrain: conv3x3:32,relu,maxpool2,conv3x3:64,relu,maxpool2,flatten,dense:128,relu,dense:10
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    if a.epochs < 1 or a.batch < 1 or a.threads < 1 or a.limit < 0:
        ap.error("--epochs, --batch and --threads take integers >= 1, --limit >= 0")
    # OpenBLAS fixes its thread count when it loads: before torch is imported
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(a.threads)
    import torch
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    xtr, ytr = split(a.data, "train")
    xte, yte = split(a.data, "t10k")
    if a.limit:
        xtr, ytr = xtr[:a.limit], ytr[:a.limit]
    to_x = lambda x: torch.from_numpy(x.astype("float32") / 255.0).unsqueeze(1)
    xtr, xte = to_x(xtr), to_x(xte)
    ytr, yte = torch.from_numpy(ytr.astype("int64")), torch.from_numpy(yte.astype("int64"))
    whole = len(xtr) // a.batch * a.batch
    if whole < 6 * a.batch:
        sys.exit(f"peer_torch.py: {len(xtr)} samples give fewer than 6 batches of {a.batch}: "
                 "nothing left to time after the 5 warm-up steps")

    model = build(a.model, torch)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    steps, timed, start = 0, 0, None
    for epoch in range(a.epochs):
        order = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(epoch))[:whole]
        for first in range(0, whole, a.batch):
            if steps == 5:   # the first steps allocate and warm up: not throughput
                start, timed = time.perf_counter(), 0
            pick = order[first:first + a.batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xtr[pick]), ytr[pick])
            loss.backward()
            opt.step()
            steps += 1
            timed += a.batch
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    print(f"peer=torch-{torch.__version__} model={a.model} threads={a.threads} batch={a.batch} "
          f"epochs={a.epochs} samples_per_s={timed / seconds:.1f} test_acc={acc:.4f} "
          f"loss={loss.item():.4f}")


if __name__ == "__main__":
    main()
