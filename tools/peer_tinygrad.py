#!/usr/bin/env python3
"""cltrain's tinygrad peer: the `mlp` and `cnn` presets trained by tinygrad on an OpenCL device,
for tools/bench-peer.sh's tinygrad column: the same model, data, global batch, SGD with momentum
and timing as tools/peer_torch.py (samples/s after 5 warm-up steps), on the OpenCL runtime that
cltrain runs on.

  /opt/cltrain-tinygrad/bin/python tools/peer_tinygrad.py --model mlp|cnn [--epochs E]
      [--batch B] [--lr LR] [--limit N] [--data DIR] [--icd FILE]

Needs tinygrad 0.14 in a virtual environment (`tools/install-deps.sh --bench` makes
/opt/cltrain-tinygrad). The device is tinygrad's OpenCL backend (DEV=CL, set here); tinygrad
opens the first OpenCL platform the ICD loader lists, so --icd FILE (or OCL_ICD_VENDORS in the
environment) names the one platform to load, e.g. /etc/OpenCL/vendors/pocl.icd or
intel-cpu.icd. Thread counts are the runtime's own: POCL_MAX_PTHREAD_COUNT,
CL_CONFIG_CPU_TBB_NUM_WORKERS. Default settings: no BEAM search. Prints one line of key=value
pairs: samples_per_s, test_acc, loss, and the device's name.

The step: each epoch a seeded permutation of the (limited) training set, whole batches only,
mean cross-entropy, SGD with momentum 0.9 and no weight decay, images scaled by 1/255; the
step (forward, backward, update) is one TinyJit function, as tinygrad's own examples train.
The batch is copied to the device every step (PyTorch's peer indexes host memory, cltrain
uploads each rank's share), and the clock stops after the device has finished the last step.
"""
import argparse
import os
import sys
import time


# The data set's reader is peer_torch.py's (stdlib and numpy only at import).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_torch import split  # noqa: E402


def build(kind, nn):
    """The preset as a list of callables, each Tensor -> Tensor."""
    if kind == "mlp":   # cltrain: flatten,dense:512,relu,dense:512,relu,dense:10
        l1, l2, l3 = nn.Linear(784, 512), nn.Linear(512, 512), nn.Linear(512, 10)
        return [lambda x: x.flatten(1), l1, lambda x: x.relu(), l2, lambda x: x.relu(), l3]
    # cltrain: conv3x3:32,relu,maxpool2,conv3x3:64,relu,maxpool2,flatten,dense:128,relu,dense:10
    c1, c2 = nn.Conv2d(1, 32, 3, padding=1), nn.Conv2d(32, 64, 3, padding=1)
    f1, f2 = nn.Linear(64 * 7 * 7, 128), nn.Linear(128, 10)
    return [c1, lambda x: x.relu().max_pool2d(2), c2, lambda x: x.relu().max_pool2d(2),
            lambda x: x.flatten(1), f1, lambda x: x.relu(), f2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--icd", default="", help="the ICD file of the OpenCL platform to use")
    a = ap.parse_args()
    if a.epochs < 1 or a.batch < 1 or a.limit < 0:
        ap.error("--epochs and --batch take integers >= 1, --limit >= 0")
    if a.icd:
        if not os.path.isfile(a.icd):
            sys.exit(f"peer_tinygrad.py: --icd {a.icd}: no such file")
        os.environ["OCL_ICD_VENDORS"] = a.icd
    os.environ["DEV"] = "CL"   # before tinygrad is imported: it reads DEV once
    try:
        import numpy as np
        from tinygrad import Device, Tensor, TinyJit, nn
        from tinygrad.helpers import Context
    except ImportError as e:
        sys.exit(f"peer_tinygrad.py: {e} (tools/install-deps.sh --bench makes "
                 "/opt/cltrain-tinygrad; run this script with its bin/python)")

    xtr, ytr = split(a.data, "train")
    xte, yte = split(a.data, "t10k")
    if a.limit:
        xtr, ytr = xtr[:a.limit], ytr[:a.limit]
    to_x = lambda x: (x.astype(np.float32) / 255.0)[:, None]
    xtr, xte = to_x(xtr), to_x(xte)
    ytr, yte = ytr.astype(np.int32), yte.astype(np.int32)
    whole = len(xtr) // a.batch * a.batch
    if whole < 6 * a.batch:
        sys.exit(f"peer_tinygrad.py: {len(xtr)} samples give fewer than 6 batches of {a.batch}: "
                 "nothing left to time after the 5 warm-up steps")

    Tensor.manual_seed(0)
    layers = build(a.model, nn)
    forward = lambda x: x.sequential(layers)
    params = nn.state.get_parameters(layers)
    opt = nn.optim.SGD(params, lr=a.lr, momentum=0.9)

    @TinyJit
    def step(x, y):
        opt.zero_grad()
        loss = forward(x).sparse_categorical_crossentropy(y)
        loss.backward()
        opt.step()
        return loss.realize()

    dev = Device[Device.DEFAULT]
    rng = np.random.default_rng(0)
    steps, timed, start, loss = 0, 0, None, None
    with Context(TRAINING=1):
        for epoch in range(a.epochs):
            order = rng.permutation(len(xtr))[:whole]
            for first in range(0, whole, a.batch):
                if steps == 5:   # the first steps compile and capture the JIT: not throughput
                    dev.synchronize()
                    start, timed = time.perf_counter(), 0
                pick = order[first:first + a.batch]
                loss = step(Tensor(xtr[pick]), Tensor(ytr[pick]))
                steps += 1
                timed += a.batch
        final_loss = loss.item()   # waits for the device
        dev.synchronize()
    seconds = time.perf_counter() - start
    correct = 0
    for s0 in range(0, len(xte), 1000):
        pred = forward(Tensor(xte[s0:s0 + 1000])).argmax(1).numpy()
        correct += int((pred == yte[s0:s0 + 1000]).sum())
    name = getattr(dev, "device_name", Device.DEFAULT).replace(" ", "_")
    print(f"peer=tinygrad model={a.model} batch={a.batch} epochs={a.epochs} "
          f"samples_per_s={timed / seconds:.1f} test_acc={correct / len(xte):.4f} "
          f"loss={final_loss:.4f} device={name}")


if __name__ == "__main__":
    main()
