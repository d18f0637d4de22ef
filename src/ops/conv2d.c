// conv2d.c: the 2-D convolution op over NCHW images: im2col over the whole batch, one GEMM per
// product (layers.c). Token "convKxK:N[/sS][/pP]": N output channels, a square kernel K,
// stride S (1), zero padding P (K/2 by default, < K). A ReLU right after it is fused into its
// output pass. Tensors: "weight" (N, C, K, K) and "bias" (N), both decayed; weight He-normal
// when a ReLU follows, else Xavier-normal; bias zero. Scratch: the im2col matrix and the GEMM
// output, shared by every convolution of the model; the last convolution's im2col survives
// until its backward, which then does not compute it again.
#include <stdio.h>
#include <string.h>

#include "cltrain/layers.h"
#include "ops.h"

typedef struct {
  int out, k, stride, pad;
  int relu;     // fused (set by the planner)
} conv_cfg;

static int claims(const char *tok) { return !strncmp(tok, "conv", 4); }

static ct_status parse(const char *tok, int index, ct_node *n) {
  conv_cfg *c = (conv_cfg *)n->cfg;
  const char *s = tok + 4;
  int k1, k2, v;
  if (!ct_ops_parse_int(&s, 1, 1 << 16, &k1) || *s++ != 'x' ||
      !ct_ops_parse_int(&s, 1, 1 << 16, &k2) || *s++ != ':' ||
      !ct_ops_parse_int(&s, 1, 1 << 24, &v))
    return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': expected convKxK:N[/sS][/pP]",
                   index, tok);
  if (k1 != k2)
    return CT_FAIL(CT_ERR_USAGE,
                   "--arch: token %d '%.60s': expected a square kernel convKxK:N (got %dx%d)",
                   index, tok, k1, k2);
  int stride = -1, pad = -1;
  while (*s) {
    int x;
    char which = s[0] == '/' ? s[1] : 0;
    if ((which != 's' && which != 'p') || (s += 2, !ct_ops_parse_int(&s, 0, 1 << 16, &x)))
      return CT_FAIL(CT_ERR_USAGE,
                     "--arch: token %d '%.60s': expected convKxK:N with optional /sS (stride) "
                     "and /pP (padding)", index, tok);
    int *slot = which == 's' ? &stride : &pad;
    if (*slot >= 0)
      return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': %s given twice", index, tok,
                     which == 's' ? "stride" : "padding");
    *slot = x;
  }
  if (stride < 0) stride = 1;
  if (pad < 0) pad = k1 / 2;
  if (stride < 1)
    return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': stride must be >= 1", index, tok);
  if (pad >= k1)
    return CT_FAIL(CT_ERR_USAGE,
                   "--arch: token %d '%.60s': padding %d must be smaller than the kernel size %d",
                   index, tok, pad, k1);
  c->out = v, c->k = k1, c->stride = stride, c->pad = pad;
  int len = snprintf(n->token, sizeof n->token, "conv%dx%d:%d", k1, k1, v);
  if (stride != 1 && len > 0 && (size_t)len < sizeof n->token)
    len += snprintf(n->token + len, sizeof n->token - (size_t)len, "/s%d", stride);
  if (pad != k1 / 2 && len > 0 && (size_t)len < sizeof n->token)
    snprintf(n->token + len, sizeof n->token - (size_t)len, "/p%d", pad);
  return CT_OK;
}

static ct_conv_geom geom(const ct_node *n, const ct_shape *in, int batch) {
  const conv_cfg *c = (const conv_cfg *)n->cfg;
  ct_conv_geom g = {batch, in->d[0], in->d[1], in->d[2], c->out,
                    ct_conv_out_size(in->d[1], c->k, c->stride, c->pad),
                    ct_conv_out_size(in->d[2], c->k, c->stride, c->pad), c->k, c->stride, c->pad};
  return g;
}

// Shared with maxpool: the message for an input that is not an image, or one that is too small.
ct_status ct_ops_window_shape(const ct_shape *in, const char *what, int k, int stride, int pad,
                              const char *tok, const char *prev, int index, int *oh, int *ow);

static ct_status shape(ct_graph *g, ct_node *n, const ct_shape *const *in, const char *tok,
                       const char *prev, int index, ct_shape *out) {
  const conv_cfg *c = (const conv_cfg *)n->cfg;
  int oh, ow;
  CT_TRY(ct_ops_window_shape(in[0], "a convolution", c->k, c->stride, c->pad, tok, prev, index,
                             &oh, &ow));
  size_t wc, kk = (size_t)c->k * (size_t)c->k;
  if (__builtin_mul_overflow((size_t)c->out * (size_t)in[0]->d[0], kk, &wc) ||
      wc > 0xffffffffULL)
    return CT_FAIL(CT_ERR_USAGE,
                   "--arch: token %d '%.60s': the layer would have more than %u parameters",
                   index, tok, 0xffffffffU);
  memset(out, 0, sizeof *out);
  out->nd = 3, out->d[0] = c->out, out->d[1] = oh, out->d[2] = ow;
  long long ws[4] = {c->out, in[0]->d[0], c->k, c->k}, bs[1] = {c->out};
  ct_init w = {CT_INIT_HE_OR_XAVIER, 0, (double)in[0]->d[0] * c->k * c->k,
               (double)c->out * c->k * c->k};
  ct_init zero = {CT_INIT_ZERO, 0, 0, 0};
  CT_TRY(ct_graph_param(g, n, "weight", 4, ws, 1, w));
  CT_TRY(ct_graph_param(g, n, "bias", 1, bs, 1, zero));
  ct_conv_geom one = geom(n, in[0], 1);
  ct_conv_scratch_size s = ct_conv2d_scratch_floats(&one);
  ct_node_scratch(n, CT_SCRATCH_CONV_COL, s.col);
  ct_node_scratch(n, CT_SCRATCH_CONV_T, s.t);
  return CT_OK;
}

static ct_status forward(const ct_node *n, const ct_op_io *io) {
  const conv_cfg *c = (const conv_cfg *)n->cfg;
  ct_conv_geom g = geom(n, &io->g->values[n->in[0]].shape, io->batch);
  ct_conv_scratch cs = {io->scratch[0], io->scratch[1]};
  return ct_conv2d_forward(io->dev, &g, io->x[0], io->params, io->p[0], io->params, io->p[1], &cs,
                           io->y, c->relu);
}

static ct_status backward(const ct_node *n, const ct_op_io *io) {
  const conv_cfg *c = (const conv_cfg *)n->cfg;
  ct_conv_geom g = geom(n, &io->g->values[n->in[0]].shape, io->batch);
  ct_conv_scratch cs = {io->scratch[0], io->scratch[1]};
  return ct_conv2d_backward(io->dev, &g, io->x[0], io->params, io->p[0], io->dy, io->grads,
                            io->p[0], io->grads, io->p[1], &cs,
                            io->dx_mode[0] == CT_GRAD_NONE ? NULL : io->dx[0],
                            c->relu ? io->y : NULL, io->scratch_valid[0]);
}

static void flops(const ct_node *n, const ct_graph *gr, double f[3]) {
  const conv_cfg *c = (const conv_cfg *)n->cfg;
  const ct_shape *in = &gr->values[n->in[0]].shape, *o = &gr->values[n->out].shape;
  f[0] = f[1] = f[2] = 2.0 * c->out * (double)o->d[1] * o->d[2] * in->d[0] * c->k * c->k;
}

static void describe(const ct_node *n, char *buf, size_t size) {
  const conv_cfg *c = (const conv_cfg *)n->cfg;
  snprintf(buf, size, "  k %d stride %d pad %d", c->k, c->stride, c->pad);
}

static int fuse_next(ct_node *n, const ct_node *next) {
  if (!(next->op->flags & CT_OP_RELU)) return 0;
  ((conv_cfg *)n->cfg)->relu = 1;
  return 1;
}

const ct_op ct_op_conv2d = {
    .name = "conv2d",
    .syntax = "convKxK:N[/sS][/pP]",
    .doc = "2-D convolution over NCHW images (im2col and GEMM), square kernel, zero padding",
    .claims = claims,
    .parse = parse,
    .shape = shape,
    .forward = forward,
    .backward = backward,
    .flops = flops,
    .describe = describe,
    .fuse_next = fuse_next,
};
