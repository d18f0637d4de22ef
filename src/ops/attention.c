// attention.c: multi-head causal self-attention from a fused qkv (gpt_kernels.h), kernels in
// cl/attention.cl, in two implementations:
//
//   own (default)   one query row of one (b, h) per work-item, float8 along hd, range (T, B*H):
//                   forward:  attn_forward         scores q.k_j (j <= t), softmax, y = P v
//                   backward: attn_backward_query  dP = dy.v_j, dS (into datt), dq = dS k
//                             attn_backward_key    (one key row j) dk = dS^T q, dv = P^T dy
//   clblast         each product a CLBlast SgemmStridedBatched over the B samples, one call
//                   per head (the heads' slices of qkv are not a fixed stride apart in the
//                   (b, h) order), around the causal softmax kernels:
//                     S = scale Q K^T -> softmax -> Y = P V
//                     dP = dY V^T, dV = P^T dY, dS = softmax' (scale), dQ = dS K, dK = dS^T Q
//
// Where the head h of sample b lies (offsets in floats, hd = C / H, C3 = 3C):
//   q: qkv + b*T*C3 + h*hd (ld C3)   k: + C   v: + 2C     y, dy: b*T*C + h*hd (ld C)
//   att, datt: (b*H + h)*T*T (ld T)
// Measured (tests/bench_attention: both interleaved, 3 runs of 15 x 20 calls each, on a 2-core
// machine shared with other work at a load of about 2; ms per call: the median of the 3 runs'
// medians, and the fastest call in parentheses):
//                                       own fwd / bwd               clblast fwd / bwd
//   B12 T64 C128 H4  PoCL, 1 thread    1.03 (0.76) / 1.39 (1.00)   6.38 (4.83) / 12.2 (8.70)
//                    PoCL, 2 threads   0.64 (0.43) / 1.01 (0.64)   4.56 (2.66) / 8.50 (4.93)
//                    Intel, 1 thread   0.69 (0.58) / 1.05 (0.87)   11.5 (8.82) / 22.5 (17.6)
//                    Intel, 2 threads  0.62 (0.30) / 0.93 (0.46)   9.09 (4.66) / 18.9 (9.01)
//   B4 T16 C32 H2    PoCL, 1 thread    .022 (.015) / .026 (.016)   .088 (.069) / .149 (.120)
//                    PoCL, 2 threads   .035 (.016) / .029 (.017)   .088 (.066) / .193 (.111)
//                    Intel, 1 thread   .018 (.012) / .015 (.012)   .297 (.269) / .553 (.515)
//                    Intel, 2 threads  .017 (.010) / .018 (.012)   .299 (.170) / .659 (.334)
// The own kernels win everywhere: 6-9x on PoCL and 15-22x on Intel at the default size, 2.5-37x
// at the small one (CLBlast's batched routines pay per call: 2 per head forward, 4 backward, each
// with its own padding and copies), hence the default.
#include <math.h>
#include <stdlib.h>
#include <strings.h>

#include <clblast_c.h>

#include "cltrain/gpt_kernels.h"
#include "launch.h"
#include <stdio.h>
#include <string.h>
#include "ops.h"


const char *ct_attn_impl_name(ct_attn_impl impl) {
  return impl == CT_ATTN_OWN ? "own" : impl == CT_ATTN_CLBLAST ? "clblast" : "default";
}

ct_status ct_attn_impl_parse(const char *name, ct_attn_impl *impl) {
  if (name && !strcasecmp(name, "own")) { *impl = CT_ATTN_OWN; return CT_OK; }
  if (name && !strcasecmp(name, "clblast")) { *impl = CT_ATTN_CLBLAST; return CT_OK; }
  return CT_FAIL(CT_ERR_USAGE, "attention implementation '%s': expected own or clblast",
                 name ? name : "");
}

ct_attn_impl ct_attn_impl_default(const ct_device *dev) {
  (void)dev;   // the same on every device measured (PoCL, Intel); GPUs may choose otherwise
  const char *env = getenv("CLTRAIN_ATTENTION");
  if (env && !strcasecmp(env, "clblast")) return CT_ATTN_CLBLAST;
  return CT_ATTN_OWN;
}

// Checks the sizes and every operand's extent; hd = C / H.
static ct_status check_dims(const char *op, const ct_attn_dims *d) {
  CT_TRY(ct_ops_positive(op, d->batch, d->seq, d->channels));
  CT_TRY(ct_ops_positive(op, d->heads, 1, 1));
  if (d->channels % d->heads)
    return CT_FAIL(CT_ERR_INTERNAL, "%s: %d heads do not divide %d channels", op, d->heads,
                   d->channels);
  size_t n = (size_t)d->batch * d->seq, mats = (size_t)d->batch * d->heads;
  if (n > UINT32_MAX / (3 * (size_t)d->channels) ||
      mats > UINT32_MAX / ((size_t)d->seq * (size_t)d->seq))
    return CT_FAIL(CT_ERR_INTERNAL, "%s: B %d T %d C %d H %d is too large (kernels index with "
                   "32 bits)", op, d->batch, d->seq, d->channels, d->heads);
  return CT_OK;
}

static ct_status fits(const char *op, const ct_attn_dims *d, ct_slice qkv, ct_slice att,
                      ct_slice y) {
  size_t n = (size_t)d->batch * d->seq, c = (size_t)d->channels;
  size_t natt = (size_t)d->batch * d->heads * d->seq * d->seq;
  CT_TRY(ct_ops_fits_u32(op, qkv.off + 3 * n * c));
  CT_TRY(ct_ops_fits_u32(op, att.off + natt));
  CT_TRY(ct_ops_fits_u32(op, y.off + n * c));
  return CT_OK;
}

static float attn_scale(const ct_attn_dims *d) {
  return (float)(1.0 / sqrt((double)(d->channels / d->heads)));
}

// ---- CLBlast: one SgemmStridedBatched over the batch per head ------------------------------

// A strided batch of B matrices: offset of sample 0's head h, leading dimension, stride.
typedef struct {
  cl_mem mem;
  size_t off, ld, stride;
} strided;

static ct_status sgemm_batched(ct_device *dev, const char *role, int ta, int tb, size_t m,
                               size_t n, size_t k, float alpha, strided a, strided b, float beta,
                               strided c, size_t batch) {
  cl_event *ev = NULL;   // profiling: the routine's span, as ct_gemm's CLBlast calls
  CT_TRY(ct_prof_span(dev, role, 2.0 * (double)m * (double)n * (double)k * (double)batch,
                      CT_PROF_GEMM, &ev));
  CLBlastStatusCode s = CLBlastSgemmStridedBatched(
      CLBlastLayoutRowMajor, ta ? CLBlastTransposeYes : CLBlastTransposeNo,
      tb ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, alpha, a.mem, a.off, a.ld,
      a.stride, b.mem, b.off, b.ld, b.stride, beta, c.mem, c.off, c.ld, c.stride, batch,
      &dev->queue, ev);
  if (s != CLBlastSuccess)
    return CT_FAIL(s == CLBlastTempBufferAllocFailure ? CT_ERR_NOMEM : CT_ERR_CL,
                   "CLBlastSgemmStridedBatched(%s, m=%zu n=%zu k=%zu ta=%d tb=%d batch=%zu) on "
                   "%s failed: %s", role, m, n, k, ta, tb, batch, dev->info.name,
                   ct_cl_errname(s));
  return CT_OK;
}

// The head h of every sample: q, k, v slices of qkv; y-like (ld C); att-like (ld T).
static strided head_qkv(const ct_attn_dims *d, ct_slice qkv, int part, int h) {
  size_t c3 = 3 * (size_t)d->channels, hd = (size_t)(d->channels / d->heads);
  strided s = {qkv.mem, qkv.off + (size_t)part * d->channels + h * hd, c3, (size_t)d->seq * c3};
  return s;
}
static strided head_rows(const ct_attn_dims *d, ct_slice x, int h) {
  size_t hd = (size_t)(d->channels / d->heads);
  strided s = {x.mem, x.off + h * hd, (size_t)d->channels, (size_t)d->seq * d->channels};
  return s;
}
static strided head_att(const ct_attn_dims *d, ct_slice a, int h) {
  size_t tt = (size_t)d->seq * d->seq;
  strided s = {a.mem, a.off + h * tt, (size_t)d->seq, (size_t)d->heads * tt};
  return s;
}

static ct_status forward_clblast(ct_device *dev, const ct_attn_dims *d, ct_slice qkv,
                                 ct_slice att, ct_slice y) {
  size_t T = (size_t)d->seq, hd = (size_t)(d->channels / d->heads), B = (size_t)d->batch;
  for (int h = 0; h < d->heads; h++)   // S = scale Q K^T   (T, T) per (b, h)
    CT_TRY(sgemm_batched(dev, "attention scores", 0, 1, T, T, hd, attn_scale(d),
                         head_qkv(d, qkv, 0, h), head_qkv(d, qkv, 1, h), 0.0f, head_att(d, att, h),
                         B));
  CT_TRY(ct_causal_softmax_forward(dev, d->batch * d->heads, d->seq, att));
  for (int h = 0; h < d->heads; h++)   // Y = P V   (T, hd)
    CT_TRY(sgemm_batched(dev, "attention values", 0, 0, T, hd, T, 1.0f, head_att(d, att, h),
                         head_qkv(d, qkv, 2, h), 0.0f, head_rows(d, y, h), B));
  return CT_OK;
}

static ct_status backward_clblast(ct_device *dev, const ct_attn_dims *d, ct_slice qkv,
                                  ct_slice att, ct_slice dy, ct_slice datt, ct_slice dqkv,
                                  float beta) {
  size_t T = (size_t)d->seq, hd = (size_t)(d->channels / d->heads), B = (size_t)d->batch;
  for (int h = 0; h < d->heads; h++) {
    // dP = dY V^T (T, T); dV = P^T dY (T, hd)
    CT_TRY(sgemm_batched(dev, "attention dP", 0, 1, T, T, hd, 1.0f, head_rows(d, dy, h),
                         head_qkv(d, qkv, 2, h), 0.0f, head_att(d, datt, h), B));
    CT_TRY(sgemm_batched(dev, "attention dV", 1, 0, T, hd, T, 1.0f, head_att(d, att, h),
                         head_rows(d, dy, h), beta, head_qkv(d, dqkv, 2, h), B));
  }
  CT_TRY(ct_causal_softmax_backward(dev, d->batch * d->heads, d->seq, attn_scale(d), att, datt));
  for (int h = 0; h < d->heads; h++) {
    // dQ = dS K, dK = dS^T Q (T, hd)
    CT_TRY(sgemm_batched(dev, "attention dQ", 0, 0, T, hd, T, 1.0f, head_att(d, datt, h),
                         head_qkv(d, qkv, 1, h), beta, head_qkv(d, dqkv, 0, h), B));
    CT_TRY(sgemm_batched(dev, "attention dK", 1, 0, T, hd, T, 1.0f, head_att(d, datt, h),
                         head_qkv(d, qkv, 0, h), beta, head_qkv(d, dqkv, 1, h), B));
  }
  return CT_OK;
}

// ---- cltrain's own kernels -----------------------------------------------------------------

// The own kernels' range: (T, B*H), one query (or key) row per work-item.
static ct_status enqueue_rows(ct_device *dev, cl_kernel k, const char *name,
                              const ct_attn_dims *d) {
  return ct_ops_enqueue2(dev, k, name, (size_t)d->seq, (size_t)d->batch * d->heads);
}

static ct_status forward_own(ct_device *dev, const ct_attn_dims *d, ct_slice qkv, ct_slice att,
                             ct_slice y) {
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "attention", "attn_forward", &k));
  CT_ARG_MEM(k, 0, qkv.mem);
  CT_ARG_U(k, 1, qkv.off);
  CT_ARG_MEM(k, 2, att.mem);
  CT_ARG_U(k, 3, att.off);
  CT_ARG_MEM(k, 4, y.mem);
  CT_ARG_U(k, 5, y.off);
  CT_ARG_U(k, 6, d->seq);
  CT_ARG_U(k, 7, d->channels);
  CT_ARG_U(k, 8, d->heads);
  CT_ARG_U(k, 9, d->batch);
  CT_ARG_F(k, 10, attn_scale(d));
  return enqueue_rows(dev, k, "attn_forward", d);
}

static ct_status backward_own(ct_device *dev, const ct_attn_dims *d, ct_slice qkv, ct_slice att,
                              ct_slice dy, ct_slice datt, ct_slice dqkv, int acc) {
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "attention", "attn_backward_query", &k));
  CT_ARG_MEM(k, 0, qkv.mem);
  CT_ARG_U(k, 1, qkv.off);
  CT_ARG_MEM(k, 2, att.mem);
  CT_ARG_U(k, 3, att.off);
  CT_ARG_MEM(k, 4, dy.mem);
  CT_ARG_U(k, 5, dy.off);
  CT_ARG_MEM(k, 6, datt.mem);
  CT_ARG_U(k, 7, datt.off);
  CT_ARG_MEM(k, 8, dqkv.mem);
  CT_ARG_U(k, 9, dqkv.off);
  CT_ARG_U(k, 10, d->seq);
  CT_ARG_U(k, 11, d->channels);
  CT_ARG_U(k, 12, d->heads);
  CT_ARG_U(k, 13, d->batch);
  CT_ARG_F(k, 14, attn_scale(d));
  CT_ARG_U(k, 15, !!acc);
  CT_TRY(enqueue_rows(dev, k, "attn_backward_query", d));
  CT_TRY(ct_kernel(dev, "attention", "attn_backward_key", &k));
  CT_ARG_MEM(k, 0, qkv.mem);
  CT_ARG_U(k, 1, qkv.off);
  CT_ARG_MEM(k, 2, att.mem);
  CT_ARG_U(k, 3, att.off);
  CT_ARG_MEM(k, 4, dy.mem);
  CT_ARG_U(k, 5, dy.off);
  CT_ARG_MEM(k, 6, datt.mem);
  CT_ARG_U(k, 7, datt.off);
  CT_ARG_MEM(k, 8, dqkv.mem);
  CT_ARG_U(k, 9, dqkv.off);
  CT_ARG_U(k, 10, d->seq);
  CT_ARG_U(k, 11, d->channels);
  CT_ARG_U(k, 12, d->heads);
  CT_ARG_U(k, 13, d->batch);
  CT_ARG_U(k, 14, !!acc);
  return enqueue_rows(dev, k, "attn_backward_key", d);
}

// ---- the public functions ------------------------------------------------------------------

ct_status ct_attention_forward(ct_device *dev, const ct_attn_dims *d, ct_attn_impl impl,
                               ct_slice qkv, ct_slice att, ct_slice y) {
  const char *op = "attention forward";
  CT_TRY(check_dims(op, d));
  CT_TRY(fits(op, d, qkv, att, y));
  if (impl == CT_ATTN_DEFAULT) impl = ct_attn_impl_default(dev);
  return impl == CT_ATTN_CLBLAST ? forward_clblast(dev, d, qkv, att, y)
                                 : forward_own(dev, d, qkv, att, y);
}

ct_status ct_attention_backward(ct_device *dev, const ct_attn_dims *d, ct_attn_impl impl,
                                ct_slice qkv, ct_slice att, ct_slice dy, ct_slice datt,
                                ct_slice dqkv, int acc) {
  const char *op = "attention backward";
  CT_TRY(check_dims(op, d));
  CT_TRY(fits(op, d, qkv, att, dy));
  CT_TRY(fits(op, d, dqkv, datt, dy));
  if (impl == CT_ATTN_DEFAULT) impl = ct_attn_impl_default(dev);
  return impl == CT_ATTN_CLBLAST
             ? backward_clblast(dev, d, qkv, att, dy, datt, dqkv, acc ? 1.0f : 0.0f)
             : backward_own(dev, d, qkv, att, dy, datt, dqkv, acc);
}

// ---- the causal softmax --------------------------------------------------------------------

ct_status ct_causal_softmax_forward(ct_device *dev, int mats, int seq, ct_slice s) {
  const char *op = "causal softmax forward";
  CT_TRY(ct_ops_positive(op, mats, seq, 1));
  if ((size_t)mats > UINT32_MAX / ((size_t)seq * seq))
    return CT_FAIL(CT_ERR_INTERNAL, "%s: %d matrices of %d x %d is too large", op, mats, seq, seq);
  CT_TRY(ct_ops_fits_u32(op, s.off + (size_t)mats * seq * seq));
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "attention", "causal_softmax_forward", &k));
  CT_ARG_MEM(k, 0, s.mem);
  CT_ARG_U(k, 1, s.off);
  CT_ARG_U(k, 2, seq);
  CT_ARG_U(k, 3, mats);
  return ct_ops_enqueue2(dev, k, "causal_softmax_forward", (size_t)seq, (size_t)mats);
}

ct_status ct_causal_softmax_backward(ct_device *dev, int mats, int seq, float alpha, ct_slice p,
                                     ct_slice dp) {
  const char *op = "causal softmax backward";
  CT_TRY(ct_ops_positive(op, mats, seq, 1));
  if ((size_t)mats > UINT32_MAX / ((size_t)seq * seq))
    return CT_FAIL(CT_ERR_INTERNAL, "%s: %d matrices of %d x %d is too large", op, mats, seq, seq);
  CT_TRY(ct_ops_fits_u32(op, p.off + (size_t)mats * seq * seq));
  CT_TRY(ct_ops_fits_u32(op, dp.off + (size_t)mats * seq * seq));
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "attention", "causal_softmax_backward", &k));
  CT_ARG_MEM(k, 0, p.mem);
  CT_ARG_U(k, 1, p.off);
  CT_ARG_MEM(k, 2, dp.mem);
  CT_ARG_U(k, 3, dp.off);
  CT_ARG_U(k, 4, seq);
  CT_ARG_U(k, 5, mats);
  CT_ARG_F(k, 6, alpha);
  return ct_ops_enqueue2(dev, k, "causal_softmax_backward", (size_t)seq, (size_t)mats);
}

// ---- the op: "attention:H" ------------------------------------------------------------------
// Multi-head causal self-attention of a fused qkv (T, 3C) into (T, C), H heads (H divides C);
// saves the probabilities (H, T, T) for backward, whose scores' gradient goes into a shared
// scratch slot. No tensors: the projections around it are dense nodes.

typedef struct {
  int heads;
} attn_cfg;

static int claims(const char *tok) { return !strncmp(tok, "attention:", 10); }

static ct_status parse(const char *tok, int index, ct_node *n) {
  attn_cfg *c = (attn_cfg *)n->cfg;
  const char *s = tok + 10;
  if (!ct_ops_parse_int(&s, 1, 1 << 16, &c->heads) || *s)
    return CT_FAIL(CT_ERR_USAGE, "node %d '%.60s': expected attention:HEADS", index, tok);
  snprintf(n->token, sizeof n->token, "attention:%d", c->heads);
  return CT_OK;
}

static ct_status shape(ct_graph *g, ct_node *n, const ct_shape *const *in, const char *tok,
                       const char *prev, int index, ct_shape *out) {
  (void)g, (void)prev;
  const attn_cfg *c = (const attn_cfg *)n->cfg;
  if (in[0]->nd != 2 || in[0]->d[1] % 3 || (in[0]->d[1] / 3) % c->heads)
    return CT_FAIL(CT_ERR_USAGE, "node %d '%.60s': needs (T, 3C) with %d heads dividing C", index,
                   tok, c->heads);
  size_t T = (size_t)in[0]->d[0];
  memset(out, 0, sizeof *out);
  out->nd = 2, out->d[0] = in[0]->d[0], out->d[1] = in[0]->d[1] / 3;
  ct_node_saved(n, (size_t)c->heads * T * T, 0);   // the probabilities
  ct_node_scratch(n, CT_SCRATCH_ATTN, (size_t)c->heads * T * T);
  return CT_OK;
}

static ct_attn_dims dims(const ct_node *n, const ct_op_io *io) {
  const ct_shape *o = &io->g->values[n->out].shape;
  ct_attn_dims d = {io->batch, o->d[0], o->d[1], ((const attn_cfg *)n->cfg)->heads};
  return d;
}

static ct_status forward(const ct_node *n, const ct_op_io *io) {
  ct_attn_dims d = dims(n, io);
  return ct_attention_forward(io->dev, &d, CT_ATTN_DEFAULT, ct_slice_of(io->x[0], 0),
                              ct_slice_of(io->saved[0], 0), ct_slice_of(io->y, 0));
}

static ct_status backward(const ct_node *n, const ct_op_io *io) {
  ct_attn_dims d = dims(n, io);
  return ct_attention_backward(io->dev, &d, CT_ATTN_DEFAULT, ct_slice_of(io->x[0], 0),
                               ct_slice_of(io->saved[0], 0), ct_slice_of(io->dy, 0),
                               ct_slice_of(io->scratch[0], 0), ct_slice_of(io->dx[0], 0),
                               io->dx_mode[0] == CT_GRAD_ADD);
}

// q k^T and att v: 2 T T hd FLOPs each per head, computed whole (the causal half too, as
// PyTorch's matmuls do); backward for the input: the four products of dq, dk, datt and dv.
static void flops(const ct_node *n, const ct_graph *g, double f[3]) {
  const ct_shape *o = &g->values[n->out].shape;
  double T = o->d[0], C = o->d[1];
  f[0] = 4.0 * T * T * C;
  f[1] = 0;
  f[2] = 8.0 * T * T * C;
}

const ct_op ct_op_attention = {
    .name = "attention",
    .doc = "multi-head causal self-attention from a fused qkv (q | k | v)",
    .claims = claims,
    .parse = parse,
    .shape = shape,
    .forward = forward,
    .backward = backward,
    .flops = flops,
    .can_add_dx = 1,
};
