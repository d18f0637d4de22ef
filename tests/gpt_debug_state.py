#!/usr/bin/python3
"""Writes the GPT debug state that cltrain's language-model test compares against, in the manner
of llm.c's test_gpt2.c: a tiny model's inputs, initial weights, logits, loss, every gradient and
the losses of 10 AdamW steps, computed by PyTorch. The state is checked in beside this script,
so the test itself needs no PyTorch.

  tests/gpt_debug_state.py [--text tests/gpt_debug_text.txt]
                           [--out tests/gpt_debug_state.safetensors]

Needs Debian's python3-torch. The model and data follow tools/peer_gpt.py (imported from there):
L=2, C=32, H=2, T=16, B=4; the vocabulary is the sorted distinct bytes of the text (an excerpt
of Hamlet, Act I, from the corpus); the weights are nanoGPT's initialisation drawn with
torch.manual_seed(SEED) as peer_gpt.py draws them. Step k (0..9) trains on the training split's
windows k*B .. k*B+B-1 in order (--no-shuffle): window i is tokens [i*T, i*T + T] of the first
floor(0.9 n) bytes, T inputs each followed by its target. AdamW: learning rate 1e-3 (constant),
betas 0.9 / 0.99, eps 1e-8, weight decay 0.1 on the tensors of 2 or more dimensions only,
global-norm clipping to 1.0.

Everything after the initial weights is computed in double precision (the float32 initial
weights widened), then stored as float32: a reference free of PyTorch's float32 rounding.

The file is safetensors: an 8-byte little-endian header length, a JSON header naming each
tensor's dtype (F32 or I32), shape and byte range, then the data (little-endian, row-major).
Tensors:
  transformer.wte.weight (V, C), transformer.wpe.weight (T, C),
  transformer.h.<l>.ln_1.weight / .bias (C), .attn.c_attn.weight (3C, C) / .bias (3C),
  .attn.c_proj.weight (C, C) / .bias (C), .ln_2.weight / .bias (C), .mlp.c_fc.weight (4C, C) /
  .bias (4C), .mlp.c_proj.weight (C, 4C) / .bias (C), transformer.ln_f.weight / .bias (C):
      the initial weights (the tied lm_head.weight is wte, not stored)
  grad.<each name above>: the gradient of step 0's loss (grad.transformer.wte.weight holds both
      the embedding's and the lm_head's part)
  debug.inputs (10, B, T) I32, debug.targets (10, B, T) I32: the tokens of steps 0..9
  debug.logits (B, T, V): step 0's logits at the initial weights
  debug.loss (1): step 0's mean cross-entropy per token
  debug.losses (10): the loss of each of the 10 steps, before its update (losses[0] = loss)
  debug.val_loss (1): the mean loss per token over every validation window, initial weights
The metadata (strings) holds the sizes (n_layer, n_head, n_embd, block_size, batch, vocab_size),
the vocabulary (a JSON list of byte values), the text's file name and sha256, and the
optimizer's settings.
"""
import argparse
import hashlib
import importlib.util
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
L, C, H, T, B = 2, 32, 2, 16, 4
STEPS, SEED = 10, 1337
LR, BETAS, EPS, WD, CLIP = 1e-3, (0.9, 0.99), 1e-8, 0.1, 1.0


def peer():
    """tools/peer_gpt.py as a module."""
    spec = importlib.util.spec_from_file_location(
        "peer_gpt", os.path.join(HERE, "..", "tools", "peer_gpt.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--text", default=os.path.join(HERE, "gpt_debug_text.txt"))
    ap.add_argument("--out", default=os.path.join(HERE, "gpt_debug_state.safetensors"))
    a = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"
    pg = peer()
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    train, val, vocab = pg.read_text(a.text)
    V = len(vocab)
    model = pg.build_model(torch, L, C, H, T, V)
    out = dict(pg.state_tensors(model))                 # the float32 initial weights
    model.double()                                      # (the lm_head stays tied to wte)
    steps = [pg.windows(train, T, np.arange(k * B, (k + 1) * B)) for k in range(STEPS)]
    x0, y0 = (torch.from_numpy(t) for t in steps[0])

    logits = model.logits(x0)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), y0.reshape(-1))
    loss.backward()
    grads = {f"grad.{n}": p.grad.detach().float().numpy()
             for n, p in model.named_parameters()}     # the tied lm_head is not listed twice
    model.zero_grad(set_to_none=True)
    val_loss = pg.validation_loss(torch, model, val, T, 0)

    opt = pg.make_optimizer(torch, model, LR, BETAS, EPS, WD)
    losses = [pg.train_step(torch, model, opt, x, y, LR, CLIP) for x, y in steps]

    out.update(grads)
    out["debug.inputs"] = np.stack([x for x, _ in steps]).astype(np.int32)
    out["debug.targets"] = np.stack([y for _, y in steps]).astype(np.int32)
    out["debug.logits"] = logits.detach().float().numpy()
    out["debug.loss"] = np.array([loss.item()], dtype=np.float32)
    out["debug.losses"] = np.array(losses, dtype=np.float32)
    out["debug.val_loss"] = np.array([val_loss], dtype=np.float32)
    with open(a.text, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    meta = {"n_layer": L, "n_head": H, "n_embd": C, "block_size": T, "batch": B,
            "vocab_size": V, "vocab": json.dumps([int(b) for b in vocab]),
            "text": os.path.basename(a.text), "text_sha256": sha, "seed": SEED, "steps": STEPS,
            "lr": LR, "beta1": BETAS[0], "beta2": BETAS[1], "eps": EPS, "weight_decay": WD,
            "clip_norm": CLIP, "generator": "tests/gpt_debug_state.py"}
    pg.save_safetensors(a.out, out, meta)
    print(f"{a.out}: {os.path.getsize(a.out)} bytes; V {V}, loss {loss.item():.6f}, "
          f"losses {' '.join(f'{x:.6f}' for x in losses)}")


if __name__ == "__main__":
    main()
