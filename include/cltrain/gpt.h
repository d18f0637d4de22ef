// gpt.h: the GPT-2-style language model, built as a graph of ops (model.h, op.h).
//
// Defines: ct_gpt_config (+ ct_gpt_parse, ct_gpt_is_spec), ct_gpt_build.
//
// The model (GPT-2's block, as nanoGPT writes it), over T positions of token ids:
//   x = wte[tok] + wpe[pos]                                      transformer.wte / .wpe
//   L times:  x = x + attn.c_proj(attention(attn.c_attn(ln_1(x))))   transformer.h.<l>.
//             x = x + mlp.c_proj(gelu(mlp.c_fc(ln_2(x))))
//   logits = ln_f(x) wte^T                                       transformer.ln_f; lm_head tied
//   loss = mean over positions of cross-entropy(logits, next token)
// Pre-LayerNorm (eps 1e-5), multi-head causal self-attention with a fused qkv projection (3C, C)
// and an output projection, a 4C MLP with tanh GELU, biases everywhere but the tied lm_head.
// Tensor names and layouts are nanoGPT's state_dict (nn.Linear weights (out, in)); the tied
// lm_head is the token embedding, stored once. Initialisation as GPT-2/nanoGPT: N(0, 0.02),
// the residual projections (attn.c_proj, mlp.c_proj) N(0, 0.02/sqrt(2L)), biases zero,
// LayerNorm weights one. Weight decay applies to the matrices and embeddings only (the
// tensors of two dimensions), not to biases or LayerNorm weights.
//
// Spec: "gpt" or "gpt:KEY=VALUE,..." with keys layers, channels, heads, seq in any order; a
// missing key takes its default (layers=4,channels=128,heads=4,seq=64).
#ifndef CLTRAIN_GPT_H
#define CLTRAIN_GPT_H

#include "cltrain/model.h"

typedef struct {
  int layers, channels, heads, seq;   // L, C, H, T
  int vocab;                          // V: set by the caller from the data
} ct_gpt_config;

// Whether spec names the language model ("gpt" or "gpt:...").
int ct_gpt_is_spec(const char *spec);
// Parses spec into *cfg (vocab left 0). CT_ERR_USAGE naming --model and the key on a bad spec:
// an unknown or repeated key, a value out of range, heads that do not divide the channels.
ct_status ct_gpt_parse(const char *spec, ct_gpt_config *cfg);
// Builds the graph for cfg (vocab >= 1) into *arch; arch->text is the canonical spec.
ct_status ct_gpt_build(const ct_gpt_config *cfg, ct_arch *arch);

#endif
