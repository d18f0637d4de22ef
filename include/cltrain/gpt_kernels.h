// gpt_kernels.h: the kernels of a GPT-2-style language model that the existing layers lack,
// each a forward / backward pair enqueued on dev->queue: token + position embedding,
// LayerNorm, multi-head causal self-attention (with its causal softmax), tanh GELU and the
// residual add. Kernels in cl/embedding.cl, layernorm.cl, attention.cl, gelu.cl, residual.cl;
// host sides in src/ops/<op>.c. The linear layers are ct_dense_forward/_backward and the
// per-token cross-entropy ct_softmax_xent (layers.h), over N rows.
//
// Defines: ct_slice (+ ct_slice_of), ct_embedding_index_len, ct_embedding_index,
// ct_embedding_index_device,
// ct_embedding_forward/_backward, ct_layernorm_forward/_backward,
// ct_attn_dims, ct_attn_impl (+ ct_attn_impl_name, ct_attn_impl_parse, ct_attn_impl_default),
// ct_attention_forward/_backward, ct_causal_softmax_forward/_backward, ct_gelu_forward/_backward,
// ct_residual_forward/_backward.
//
// Shapes (row-major): B samples of T positions give N = B*T rows, row r = b*T + t, each of C
// channels: x (N, C). Token embedding wte (V, C), position embedding wpe (>= T, C), attention
// input qkv (N, 3C) as nanoGPT's c_attn output (q | k | v, each H heads x hd, C = H*hd), the
// probabilities att (B, H, T, T).
//
// Every tensor is a ct_slice: a buffer and an offset into it, counted in elements (floats;
// ints for tokens and the embedding index); kernels index with 32 bits, so offset + size must
// stay below 2^32. Nothing here blocks or copies between host and device; the queue is in-order.
//
// Gradients. A backward pass that writes an input's gradient takes a flag `acc...`: 0
// overwrites it, 1 adds into what it holds (a tensor that feeds two consumers: the residual
// stream, the tied token embedding whose lm_head GEMM writes its gradient first). Parameter
// gradients (LayerNorm's dw, db) are overwritten, as in layers.h; the embedding's are the
// parameters' and take flags too. A NULL mem in an optional output skips it.
//
// Determinism: no atomics; every sum runs in a fixed order within one work-item, so a device
// gives the same bits on every run (the embedding's backward needs the host's sorted index for
// that: ct_embedding_index).
#ifndef CLTRAIN_GPT_KERNELS_H
#define CLTRAIN_GPT_KERNELS_H

#include <stddef.h>

#include "cltrain/device.h"

// A tensor: elements [off, off + count) of mem (count known from the call's sizes).
typedef struct {
  cl_mem mem;
  size_t off;
} ct_slice;

static inline ct_slice ct_slice_of(cl_mem mem, size_t off) {
  ct_slice s = {mem, off};
  return s;
}

// ---- embedding: out[b,t,:] = wte[tok[b,t],:] + wpe[t,:] ------------------------------------
// The backward pass sums the rows of each token without atomics: the host sorts the batch's
// rows by token once per batch (a counting sort, as llm.c's encoder backward does) and uploads
// that index with the tokens.

// Ints the index of n rows over a vocabulary of vocab tokens takes: vocab + 1 + n.
size_t ct_embedding_index_len(int n, int vocab);
// tok[0..n) -> index[0..ct_embedding_index_len): index[v] .. index[v+1] is the range of
// index[vocab + 1 + ...] that lists token v's rows, in increasing order. A token outside
// [0, vocab) is CT_ERR_INTERNAL (the data loader checks tokens first).
ct_status ct_embedding_index(const int *tok, int n, int vocab, int *index);

// The same index computed on the device from the tokens there (embedding_index in
// cl/embedding.cl): what a model does each step, so the host never waits for its tokens.
ct_status ct_embedding_index_device(ct_device *dev, int n, int vocab, ct_slice tok,
                                    ct_slice index);

// tok (B*T) int, wte (V, C), wpe (>= T, C) -> out (B*T, C). A token outside [0, V) gives a
// row of NaN (never a read out of bounds).
ct_status ct_embedding_forward(ct_device *dev, int batch, int seq, int channels, int vocab,
                               ct_slice tok, ct_slice wte, ct_slice wpe, ct_slice out);
// index (ct_embedding_index of the same tokens) int, dout (B*T, C) -> dwte (V, C) (acc_wte = 1:
// added into it), dwpe rows 0..T-1 (acc_wpe likewise; rows T and beyond are not written).
// Either gradient may be skipped with a NULL mem.
ct_status ct_embedding_backward(ct_device *dev, int batch, int seq, int channels, int vocab,
                                ct_slice index, ct_slice dout, ct_slice dwte, int acc_wte,
                                ct_slice dwpe, int acc_wpe);

// ---- layernorm over the C channels of each row: y = (x - mean) rstd w + b -----------------
// rstd = 1 / sqrt(var + eps), var the biased variance, eps 1e-5 as torch.nn.LayerNorm's default
// (LN_EPS of cl/layernorm.cl, the one place it is set).

// x (rows, C), w (C), b (C) -> y (rows, C), and for the backward pass mean (rows), rstd (rows).
// y may not be x.
ct_status ct_layernorm_forward(ct_device *dev, int rows, int channels, ct_slice x, ct_slice w,
                               ct_slice b, ct_slice y, ct_slice mean, ct_slice rstd);
// x, w, mean, rstd as in the forward pass, dy (rows, C) -> dx (rows, C) (acc_dx = 1: added into
// it; NULL mem: skipped), dw (C), db (C) (overwritten).
ct_status ct_layernorm_backward(ct_device *dev, int rows, int channels, ct_slice x, ct_slice w,
                                ct_slice mean, ct_slice rstd, ct_slice dy, ct_slice dx,
                                int acc_dx, ct_slice dw, ct_slice db);

// ---- attention: multi-head causal self-attention from a fused qkv ---------------------------
typedef struct {
  int batch, seq, channels, heads;   // B, T, C, H; H divides C (hd = C / H, any size)
} ct_attn_dims;

// Two implementations give the same results (within float rounding): cltrain's own kernels
// (one query row, or for dk and dv one key row, of one head per work-item, float8 along the
// head), and CLBlast's SgemmStridedBatched over the batch (one call per head and product) around
// the causal softmax kernels. The own kernels measured 6-22x faster on PoCL and Intel's CPU
// runtime at the default model's size (src/ops/attention.c has the figures). CT_ATTN_DEFAULT
// takes ct_attn_impl_default.
typedef enum { CT_ATTN_DEFAULT = 0, CT_ATTN_OWN, CT_ATTN_CLBLAST } ct_attn_impl;
const char *ct_attn_impl_name(ct_attn_impl impl);       // "own", "clblast", "default"
// "own" or "clblast" (case-insensitive); CT_ERR_USAGE naming the value otherwise.
ct_status ct_attn_impl_parse(const char *name, ct_attn_impl *impl);
// The measured faster one on CPUs (PoCL, Intel): CT_ATTN_OWN; the environment variable
// CLTRAIN_ATTENTION=clblast selects the other (for measurements; any other value: CT_ATTN_OWN).
ct_attn_impl ct_attn_impl_default(const ct_device *dev);

// qkv (N, 3C) -> att (B, H, T, T) (saved for the backward pass), y (N, C). att and y may not
// overlap qkv.
ct_status ct_attention_forward(ct_device *dev, const ct_attn_dims *d, ct_attn_impl impl,
                               ct_slice qkv, ct_slice att, ct_slice y);
// qkv, att as in the forward pass, dy (N, C) -> dqkv (N, 3C) (acc = 1: added into it).
// datt (B, H, T, T): scratch (the scores' gradient; its contents on return are of no use).
ct_status ct_attention_backward(ct_device *dev, const ct_attn_dims *d, ct_attn_impl impl,
                                ct_slice qkv, ct_slice att, ct_slice dy, ct_slice datt,
                                ct_slice dqkv, int acc);

// The causal softmax of mats matrices (T, T), row t over columns j <= t, in place: s holds
// scores and becomes probabilities (0 above the diagonal).
ct_status ct_causal_softmax_forward(ct_device *dev, int mats, int seq, ct_slice s);
// p: the forward's probabilities; dp holds dL/dp and becomes alpha * dL/dscores (0 above the
// diagonal): alpha is the factor the scores were multiplied by before the softmax.
ct_status ct_causal_softmax_backward(ct_device *dev, int mats, int seq, float alpha, ct_slice p,
                                     ct_slice dp);

// ---- GELU, tanh approximation (PyTorch's approximate="tanh"), n elements ---------------------
// y may be x.
ct_status ct_gelu_forward(ct_device *dev, size_t n, ct_slice x, ct_slice y);
// x: the forward input; dx (acc = 1: added into it) may be dy when acc = 0.
ct_status ct_gelu_backward(ct_device *dev, size_t n, ct_slice x, ct_slice dy, ct_slice dx,
                           int acc);

// ---- residual add: y = a + b, n elements ---------------------------------------------------
// y may be a or b.
ct_status ct_residual_forward(ct_device *dev, size_t n, ct_slice a, ct_slice b, ct_slice y);
// dy goes to both inputs' gradients: da = dy (acc_a = 1: da += dy), db likewise; a NULL mem
// skips one. da or db may be dy itself (the same buffer and offset).
ct_status ct_residual_backward(ct_device *dev, size_t n, ct_slice dy, ct_slice da, int acc_a,
                               ct_slice db, int acc_b);

#endif
