// embedding.c: token + position embedding (gpt_kernels.h), kernels in cl/embedding.cl.
//
//   forward:   out[r, :] = wte[tok[r], :] + wpe[r % T, :]                   range (C/8, N)
//   backward:  dwte[v, :] = sum of dout[r, :] over token v's rows            range (C/8, V)
//              dwpe[t, :] = sum over b of dout[b*T + t, :]                   range (C/8, T)
// (C/8: ceil(C / 8) work-items per row, each owning 8 channels.)
// The token sums need no atomics: the host's index (a counting sort of the rows by token,
// stable, so each token's rows stay in increasing order) tells each work-item which rows to
// add, in which order.
#include <string.h>

#include "cltrain/gpt_kernels.h"
#include "launch.h"
#include <stdio.h>
#include "ops.h"

size_t ct_embedding_index_len(int n, int vocab) {
  return (size_t)(vocab > 0 ? vocab : 0) + 1 + (size_t)(n > 0 ? n : 0);
}

ct_status ct_embedding_index(const int *tok, int n, int vocab, int *index) {
  if (n < 1 || vocab < 1)
    return CT_FAIL(CT_ERR_INTERNAL, "embedding index of %d rows over %d tokens", n, vocab);
  int *start = index, *rows = index + vocab + 1;
  memset(start, 0, ((size_t)vocab + 1) * sizeof *start);
  for (int r = 0; r < n; r++) {
    if (tok[r] < 0 || tok[r] >= vocab)
      return CT_FAIL(CT_ERR_INTERNAL, "embedding index: token %d at row %d is outside [0, %d)",
                     tok[r], r, vocab);
    start[tok[r] + 1]++;
  }
  for (int v = 0; v < vocab; v++) start[v + 1] += start[v];   // start[v]: token v's first slot
  // place each row at its token's next free slot: rows[start[v] ..] in increasing r; start[v]
  // walks up to the old start[v + 1] and is then restored from its neighbour
  for (int r = 0; r < n; r++) rows[start[tok[r]]++] = r;
  for (int v = vocab; v > 0; v--) start[v] = start[v - 1];
  start[0] = 0;
  return CT_OK;
}

static ct_status check_sizes(const char *op, int batch, int seq, int channels, int vocab) {
  CT_TRY(ct_ops_positive(op, batch, seq, channels));
  CT_TRY(ct_ops_positive(op, vocab, 1, 1));
  size_t n = (size_t)batch * seq;
  if (n > UINT32_MAX / (size_t)channels || (size_t)vocab > UINT32_MAX / (size_t)channels)
    return CT_FAIL(CT_ERR_INTERNAL, "%s: %zu rows or %d tokens of %d channels is too large", op,
                   n, vocab, channels);
  return CT_OK;
}

ct_status ct_embedding_forward(ct_device *dev, int batch, int seq, int channels, int vocab,
                               ct_slice tok, ct_slice wte, ct_slice wpe, ct_slice out) {
  const char *op = "embedding forward";
  CT_TRY(check_sizes(op, batch, seq, channels, vocab));
  size_t n = (size_t)batch * seq, c = (size_t)channels;
  CT_TRY(ct_ops_fits_u32(op, tok.off + n));
  CT_TRY(ct_ops_fits_u32(op, wte.off + (size_t)vocab * c));
  CT_TRY(ct_ops_fits_u32(op, wpe.off + (size_t)seq * c));
  CT_TRY(ct_ops_fits_u32(op, out.off + n * c));
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "embedding", "embedding_forward", &k));
  CT_ARG_MEM(k, 0, tok.mem);
  CT_ARG_U(k, 1, tok.off);
  CT_ARG_MEM(k, 2, wte.mem);
  CT_ARG_U(k, 3, wte.off);
  CT_ARG_MEM(k, 4, wpe.mem);
  CT_ARG_U(k, 5, wpe.off);
  CT_ARG_MEM(k, 6, out.mem);
  CT_ARG_U(k, 7, out.off);
  CT_ARG_U(k, 8, n);
  CT_ARG_U(k, 9, seq);
  CT_ARG_U(k, 10, channels);
  CT_ARG_U(k, 11, vocab);
  return ct_ops_enqueue2(dev, k, "embedding_forward", (c + 7) / 8, n);
}

ct_status ct_embedding_backward(ct_device *dev, int batch, int seq, int channels, int vocab,
                                ct_slice index, ct_slice dout, ct_slice dwte, int acc_wte,
                                ct_slice dwpe, int acc_wpe) {
  const char *op = "embedding backward";
  CT_TRY(check_sizes(op, batch, seq, channels, vocab));
  size_t n = (size_t)batch * seq, c = (size_t)channels;
  CT_TRY(ct_ops_fits_u32(op, index.off + ct_embedding_index_len((int)n, vocab)));
  CT_TRY(ct_ops_fits_u32(op, dout.off + n * c));
  cl_kernel k;
  if (dwte.mem) {
    CT_TRY(ct_ops_fits_u32(op, dwte.off + (size_t)vocab * c));
    CT_TRY(ct_kernel(dev, "embedding", "embedding_backward_wte", &k));
    CT_ARG_MEM(k, 0, index.mem);
    CT_ARG_U(k, 1, index.off);
    CT_ARG_MEM(k, 2, dout.mem);
    CT_ARG_U(k, 3, dout.off);
    CT_ARG_MEM(k, 4, dwte.mem);
    CT_ARG_U(k, 5, dwte.off);
    CT_ARG_U(k, 6, channels);
    CT_ARG_U(k, 7, vocab);
    CT_ARG_U(k, 8, !!acc_wte);
    CT_TRY(ct_ops_enqueue2(dev, k, "embedding_backward_wte", (c + 7) / 8, (size_t)vocab));
  }
  if (dwpe.mem) {
    CT_TRY(ct_ops_fits_u32(op, dwpe.off + (size_t)seq * c));
    CT_TRY(ct_kernel(dev, "embedding", "embedding_backward_wpe", &k));
    CT_ARG_MEM(k, 0, dout.mem);
    CT_ARG_U(k, 1, dout.off);
    CT_ARG_MEM(k, 2, dwpe.mem);
    CT_ARG_U(k, 3, dwpe.off);
    CT_ARG_U(k, 4, batch);
    CT_ARG_U(k, 5, seq);
    CT_ARG_U(k, 6, channels);
    CT_ARG_U(k, 7, !!acc_wpe);
    CT_TRY(ct_ops_enqueue2(dev, k, "embedding_backward_wpe", (c + 7) / 8, (size_t)seq));
  }
  return CT_OK;
}

ct_status ct_embedding_index_device(ct_device *dev, int n, int vocab, ct_slice tok,
                                    ct_slice index) {
  const char *op = "embedding index";
  CT_TRY(ct_ops_positive(op, n, vocab, 1));
  CT_TRY(ct_ops_fits_u32(op, tok.off + (size_t)n));
  CT_TRY(ct_ops_fits_u32(op, index.off + ct_embedding_index_len(n, vocab)));
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "embedding", "embedding_index", &k));
  CT_ARG_MEM(k, 0, tok.mem);
  CT_ARG_U(k, 1, tok.off);
  CT_ARG_U(k, 2, n);
  CT_ARG_U(k, 3, vocab);
  CT_ARG_MEM(k, 4, index.mem);
  CT_ARG_U(k, 5, index.off);
  return ct_ops_enqueue1(dev, k, "embedding_index", (size_t)vocab + 1, 64);
}

// ---- the op: "embedding:V/C" --------------------------------------------------------------------
// Token ids (T) int -> (T, C): tensors "wte.weight" (V, C) and "wpe.weight" (T, C) (decayed,
// N(0, 0.02) unless the builder says otherwise); saves the index of the batch's rows by token,
// computed on the device in the forward pass, for the backward's sums.

typedef struct {
  int vocab, channels;
} emb_cfg;

static int claims(const char *tok) { return !strncmp(tok, "embedding:", 10); }

static ct_status parse(const char *tok, int index, ct_node *n) {
  emb_cfg *c = (emb_cfg *)n->cfg;
  const char *s = tok + 10;
  if (!ct_ops_parse_int(&s, 1, 1 << 20, &c->vocab) || *s++ != '/' ||
      !ct_ops_parse_int(&s, 1, 1 << 16, &c->channels) || *s)
    return CT_FAIL(CT_ERR_USAGE, "node %d '%.60s': expected embedding:VOCAB/CHANNELS", index, tok);
  snprintf(n->token, sizeof n->token, "embedding:%d/%d", c->vocab, c->channels);
  return CT_OK;
}

static ct_status shape(ct_graph *g, ct_node *n, const ct_shape *const *in, const char *tok,
                       const char *prev, int index, ct_shape *out) {
  (void)prev;
  const emb_cfg *c = (const emb_cfg *)n->cfg;
  if (in[0]->nd != 1 || !in[0]->is_int)
    return CT_FAIL(CT_ERR_USAGE, "node %d '%.60s': needs a sequence of token ids", index, tok);
  int T = in[0]->d[0];
  memset(out, 0, sizeof *out);
  out->nd = 2, out->d[0] = T, out->d[1] = c->channels;
  long long te[2] = {c->vocab, c->channels}, pe[2] = {T, c->channels};
  ct_init w = {CT_INIT_NORMAL, 0.02, 0, 0};
  CT_TRY(ct_graph_param(g, n, "wte.weight", 2, te, 1, w));
  CT_TRY(ct_graph_param(g, n, "wpe.weight", 2, pe, 1, w));
  ct_node_saved(n, (size_t)c->vocab + 1 + (size_t)T, 1);   // the index (per sample: an upper bound)
  return CT_OK;
}

static int seq_of(const ct_node *n, const ct_op_io *io) {
  return io->g->values[n->in[0]].shape.d[0];
}

static ct_status forward(const ct_node *n, const ct_op_io *io) {
  const emb_cfg *c = (const emb_cfg *)n->cfg;
  int T = seq_of(n, io);
  CT_TRY(ct_embedding_forward(io->dev, io->batch, T, c->channels, c->vocab,
                              ct_slice_of(io->x[0], 0), ct_slice_of(io->params, io->p[0]),
                              ct_slice_of(io->params, io->p[1]), ct_slice_of(io->y, 0)));
  if (!io->train) return CT_OK;   // (evaluation: no backward follows)
  return ct_embedding_index_device(io->dev, io->batch * T, c->vocab, ct_slice_of(io->x[0], 0),
                                   ct_slice_of(io->saved[0], 0));
}

static ct_status backward(const ct_node *n, const ct_op_io *io) {
  const emb_cfg *c = (const emb_cfg *)n->cfg;
  int T = seq_of(n, io);
  if (!io->train)   // the index is made by a training forward
    CT_TRY(ct_embedding_index_device(io->dev, io->batch * T, c->vocab, ct_slice_of(io->x[0], 0),
                                     ct_slice_of(io->saved[0], 0)));
  return ct_embedding_backward(io->dev, io->batch, T, c->channels, c->vocab,
                               ct_slice_of(io->saved[0], 0), ct_slice_of(io->dy, 0),
                               ct_slice_of(io->grads, io->p[0]), io->dp_mode[0] == CT_GRAD_ADD,
                               ct_slice_of(io->grads, io->p[1]), io->dp_mode[1] == CT_GRAD_ADD);
}

const ct_op ct_op_embedding = {
    .name = "embedding",
    .doc = "token and position embedding: wte[token] + wpe[position]",
    .claims = claims,
    .parse = parse,
    .shape = shape,
    .forward = forward,
    .backward = backward,
    .can_add_dp = 1,
};
