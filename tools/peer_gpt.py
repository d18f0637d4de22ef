#!/usr/bin/python3
"""cltrain's PyTorch peer for the language model: a character-level GPT trained by PyTorch on the
CPU, on the same work as `cltrain --model gpt`, so that both can be run and compared in one go
(losses per step, validation loss, tokens/s). Needs Debian's python3-torch (and
libopenblas0-pthread for a fast BLAS): `tools/install-deps.sh --bench`.

  tools/peer_gpt.py --text FILE [--layers 4 --channels 128 --heads 4 --seq 64 --batch 12]
                    [--steps 200] [--threads 1] [--seed 0] [--no-shuffle]
                    [--lr 1e-3 --min-lr 0 --warmup 0 --schedule cosine|constant]
                    [--wd 0.1 --beta1 0.9 --beta2 0.99 --eps 1e-8 --clip 0]
                    [--eval-windows N] [--init FILE.safetensors] [--save FILE.safetensors]
                    [--log-every 10]

Prints `step K loss X` (K from 1; every --log-every steps and the last), then `val loss X`, then
`tokens/s X` (training steps after the first 5, from the batch's forward pass to the end of the
optimizer step).

The model is GPT-2's: learned token and position embeddings; per block pre-LayerNorm (eps 1e-5),
causal multi-head self-attention with a fused qkv linear (c_attn) and an output projection
(c_proj), a 4C MLP with tanh GELU; residual connections; a final LayerNorm; an lm_head tied to
the token embedding; biases everywhere; no dropout. Initialisation as nanoGPT's: N(0, 0.02) for
matrices and embeddings, N(0, 0.02/sqrt(2L)) for the residual projections (c_proj), zero biases,
LayerNorm weights 1. The modules are built in a fixed order (token and position embeddings,
then per block: c_attn, c_proj, c_fc, c_proj, then the lm_head) and PyTorch's default
initialisation runs first, so a seed gives the same weights on every run.

The data contract (cltrain's language model follows it too):
- vocabulary: the sorted distinct bytes of the file; a token is its byte's rank there;
- split: the first floor(0.9 n) bytes train, the rest validate;
- window i of a split: its tokens [i*T, i*T + T] (T + 1 tokens: T inputs, each followed by its
  target), for i < (len - 1) // T;
- an epoch: every training window once, in a permutation drawn from numpy's default_rng(seed)
  at each epoch's start, or in order with --no-shuffle; step k takes the next B windows (an
  epoch's last partial batch is skipped);
- validation loss: the mean cross-entropy per token over the first --eval-windows validation
  windows (all when 0).

AdamW decays only the tensors of two or more dimensions (embeddings and linear weights);
--clip X clips the global gradient norm to X; the learning rate warms up linearly over --warmup
steps, then follows a cosine from --lr to --min-lr over the remaining steps (or stays at --lr
with --schedule constant).

--init and --save read and write safetensors files (F32) with nanoGPT's names and layouts
(transformer.wte.weight (V, C), transformer.h.0.attn.c_attn.weight (3C, C), ...; the tied
lm_head.weight is not stored); --save's metadata holds n_layer, n_head, n_embd, block_size and
the vocabulary (a JSON list of byte values).
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np

WARMUP_STEPS = 5   # steps not counted in tokens/s


# ---- safetensors (F32 and I32 tensors, a JSON header) ----------------------------------------

DTYPES = {"F32": "<f4", "I32": "<i4"}


def load_safetensors(path):
    """{name: numpy array}, metadata dict."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: not a safetensors file (too short)")
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    data = raw[8 + hlen:]
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] not in DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {t['dtype']} (F32 or I32 expected)")
        lo, hi = t["data_offsets"]
        a = np.frombuffer(data[lo:hi], dtype=DTYPES[t["dtype"]])
        tensors[name] = a.reshape(t["shape"]).copy()
    return tensors, header.get("__metadata__", {})


def save_safetensors(path, tensors, metadata):
    """tensors: {name: numpy array of float32 or int32}, written in the dict's order."""
    header, blobs, at = {"__metadata__": {k: str(v) for k, v in metadata.items()}}, [], 0
    for name, a in tensors.items():
        kind = "I32" if a.dtype.kind in "iu" else "F32"
        b = np.ascontiguousarray(a, dtype=DTYPES[kind]).tobytes()
        header[name] = {"dtype": kind, "shape": list(a.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)   # data aligned to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---- data ------------------------------------------------------------------------------------

def read_text(path):
    """(train tokens, validation tokens, vocabulary bytes) of a text file, per the contract."""
    raw = np.fromfile(path, dtype=np.uint8)
    vocab = np.unique(raw)                      # sorted distinct bytes
    rank = np.zeros(256, dtype=np.int64)
    rank[vocab] = np.arange(len(vocab))
    tokens = rank[raw]
    cut = int(0.9 * len(tokens))
    return tokens[:cut], tokens[cut:], vocab


def window_count(tokens, T):
    return (len(tokens) - 1) // T


def windows(tokens, T, which):
    """inputs (len(which), T) and targets (len(which), T) of the windows `which`."""
    rows = np.stack([tokens[i * T: i * T + T + 1] for i in which])
    return rows[:, :-1], rows[:, 1:]


def batches(n_windows, B, seed, shuffle):
    """The windows of each step, forever: epochs of n_windows // B whole batches."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n_windows) if shuffle else np.arange(n_windows)
        for k in range(n_windows // B):
            yield order[k * B:(k + 1) * B]


# ---- the model -------------------------------------------------------------------------------

def build_model(torch, L, C, H, T, V):
    nn, F = torch.nn, torch.nn.functional
    hd = C // H

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(C, 3 * C)    # q | k | v, each H heads of hd
            self.c_proj = nn.Linear(C, C)
            self.register_buffer("future", torch.ones(T, T, dtype=torch.bool).triu(1),
                                 persistent=False)

        def forward(self, x):
            B, Tn, _ = x.shape
            heads = [t.view(B, Tn, H, hd).transpose(1, 2) for t in self.c_attn(x).split(C, 2)]
            q, k, v = heads                         # (B, H, T, hd)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
            att = att.masked_fill(self.future[:Tn, :Tn], float("-inf")).softmax(-1)
            return self.c_proj((att @ v).transpose(1, 2).reshape(B, Tn, C))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(C, 4 * C)
            self.c_proj = nn.Linear(4 * C, C)

        def forward(self, x):
            return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))

    class Block(nn.Module):
        # the LayerNorms are registered first: the parameters' order (which sets the order of
        # the gradient norm's sum) is ln_1, ln_2, attn, mlp, as in the peer it reproduces
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(C, eps=1e-5)
            self.ln_2 = nn.LayerNorm(C, eps=1e-5)
            self.attn = SelfAttention()
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(V, C), wpe=nn.Embedding(T, C),
                h=nn.ModuleList([Block() for _ in range(L)]), ln_f=nn.LayerNorm(C, eps=1e-5)))
            self.lm_head = nn.Linear(C, V, bias=False)
            self.lm_head.weight = self.transformer.wte.weight   # tied
            for name, p in self.named_parameters():
                if p.dim() >= 2:
                    std = 0.02 / math.sqrt(2 * L) if name.endswith("c_proj.weight") else 0.02
                    nn.init.normal_(p, mean=0.0, std=std)
                elif name.endswith(".bias"):
                    nn.init.zeros_(p)

        def logits(self, idx):
            t = self.transformer
            x = t.wte(idx) + t.wpe(torch.arange(idx.shape[1]))
            for block in t.h:
                x = block(x)
            return self.lm_head(t.ln_f(x))

        def forward(self, idx, targets):
            z = self.logits(idx)
            return F.cross_entropy(z.reshape(-1, z.shape[-1]), targets.reshape(-1))

    return GPT()


def state_tensors(model):
    """nanoGPT's names -> numpy float32, without the tied lm_head."""
    return {n: p.detach().float().numpy() for n, p in model.state_dict().items()
            if n != "lm_head.weight"}


def load_weights(torch, model, path):
    """Copies a safetensors file's tensors into the model; exits naming a missing or misshapen
    tensor."""
    try:
        w, _ = load_safetensors(path)
    except (OSError, ValueError) as e:
        sys.exit(f"peer_gpt.py: --init {path}: {e}")
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if name == "lm_head.weight":
                continue
            if name not in w:
                sys.exit(f"peer_gpt.py: --init {path}: no tensor {name}")
            if tuple(w[name].shape) != tuple(p.shape):
                sys.exit(f"peer_gpt.py: --init {path}: {name} is {tuple(w[name].shape)}, "
                         f"{tuple(p.shape)} expected")
            p.copy_(torch.from_numpy(w[name]))


def make_optimizer(torch, model, lr, betas, eps, wd):
    """AdamW decaying only the tensors of two or more dimensions."""
    params = list(model.named_parameters())
    groups = [{"params": [p for _, p in params if p.dim() >= 2], "weight_decay": wd},
              {"params": [p for _, p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def learning_rate(k, a):
    """The rate of step k (from 0): linear warm-up, then cosine to --min-lr, or constant."""
    if k < a.warmup:
        return a.lr * (k + 1) / a.warmup
    if a.schedule == "constant":
        return a.lr
    done = min(1.0, (k - a.warmup) / max(1, a.steps - a.warmup))
    return a.min_lr + 0.5 * (a.lr - a.min_lr) * (1.0 + math.cos(math.pi * done))


def train_step(torch, model, opt, x, y, lr, clip):
    """One step: forward, backward, optional clipping, AdamW. Returns the loss (a float)."""
    for g in opt.param_groups:
        g["lr"] = lr
    loss = model(torch.from_numpy(x), torch.from_numpy(y))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss.item()


def validation_loss(torch, model, tokens, T, limit):
    n = window_count(tokens, T)
    if limit:
        n = min(n, limit)
    total = 0.0
    model.eval()
    with torch.no_grad():
        for first in range(0, n, 64):
            which = np.arange(first, min(n, first + 64))
            x, y = windows(tokens, T, which)
            total += model(torch.from_numpy(x), torch.from_numpy(y)).item() * len(which)
    model.train()
    return total / max(1, n)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--text", required=True)
    for name, default in (("layers", 4), ("channels", 128), ("heads", 4), ("seq", 64),
                          ("batch", 12), ("steps", 200), ("warmup", 0), ("threads", 1),
                          ("seed", 0), ("eval-windows", 0), ("log-every", 10)):
        ap.add_argument("--" + name, type=int, default=default)
    for name, default in (("lr", 1e-3), ("min-lr", 0.0), ("wd", 0.1), ("beta1", 0.9),
                          ("beta2", 0.99), ("eps", 1e-8), ("clip", 0.0)):
        ap.add_argument("--" + name, type=float, default=default)
    ap.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
    ap.add_argument("--no-shuffle", action="store_true")
    ap.add_argument("--init")
    ap.add_argument("--save")
    a = ap.parse_args(argv)
    if min(a.layers, a.channels, a.heads, a.seq, a.batch, a.threads) < 1 or a.steps < 0:
        ap.error("--layers, --channels, --heads, --seq, --batch and --threads must be >= 1")
    if a.channels % a.heads:
        ap.error(f"--heads {a.heads} does not divide --channels {a.channels}")
    return a


def main(argv=None):
    a = parse_args(argv)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):   # before torch loads its BLAS
        os.environ[var] = str(a.threads)
    import torch
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    try:
        train, val, vocab = read_text(a.text)
    except OSError as e:
        sys.exit(f"peer_gpt.py: --text {a.text}: {e.strerror}")
    L, C, H, T, B = a.layers, a.channels, a.heads, a.seq, a.batch
    n_train = window_count(train, T)
    if n_train < B:
        sys.exit(f"peer_gpt.py: --text {a.text}: {n_train} training windows of {T + 1} tokens, "
                 f"fewer than a batch of {B}")
    model = build_model(torch, L, C, H, T, len(vocab))
    if a.init:
        load_weights(torch, model, a.init)
    opt = make_optimizer(torch, model, a.lr, (a.beta1, a.beta2), a.eps, a.wd)
    order = batches(n_train, B, a.seed, not a.no_shuffle)
    timed = 0.0
    for k in range(a.steps):
        x, y = windows(train, T, next(order))
        t0 = time.perf_counter()
        loss = train_step(torch, model, opt, x, y, learning_rate(k, a), a.clip)
        if k >= WARMUP_STEPS:
            timed += time.perf_counter() - t0
        if a.log_every and (k % a.log_every == 0 or k == a.steps - 1):
            print(f"step {k + 1} loss {loss:.6f}", flush=True)
    print(f"val loss {validation_loss(torch, model, val, T, a.eval_windows):.6f}", flush=True)
    if a.steps > WARMUP_STEPS:
        print(f"tokens/s {(a.steps - WARMUP_STEPS) * B * T / timed:.1f}")
    if a.save:
        save_safetensors(a.save, state_tensors(model),
                         {"n_layer": L, "n_head": H, "n_embd": C, "block_size": T,
                          "vocab": json.dumps([int(b) for b in vocab])})


if __name__ == "__main__":
    main()
