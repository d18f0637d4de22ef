// dense.c: the fully connected op. y = x w^T + b over the rows of a sample: an image or a
// vector is flattened into one row of features, a sequence (T, C) is T rows of C.
// Token "dense:N" (N outputs); a ReLU right after it is fused into the bias pass (fuse_next).
// Tensors: "weight" (N, in) and "bias" (N), both decayed (as PyTorch's SGD decays every
// parameter), initialised He-normal when a ReLU follows, else Xavier-normal; bias zero.
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "cltrain/layers.h"
#include "ops.h"

typedef struct {
  int out;      // outputs per row
  int bias;     // 1: with a bias (the --arch token always has one)
  int relu;     // a ReLU fused into the bias pass (set by the planner)
} dense_cfg;

static int claims(const char *tok) { return !strncmp(tok, "dense", 5); }

static ct_status parse(const char *tok, int index, ct_node *n) {
  dense_cfg *c = (dense_cfg *)n->cfg;
  const char *s = tok + 5;
  int v;
  if (*s++ != ':' || !ct_ops_parse_int(&s, 1, 1 << 24, &v) || (*s && strcmp(s, "/nobias")))
    return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': expected dense:N with 1 <= N <= %d",
                   index, tok, 1 << 24);
  c->out = v;
  c->bias = *s == 0;
  snprintf(n->token, sizeof n->token, "dense:%d%s", v, c->bias ? "" : "/nobias");
  return CT_OK;
}

// Rows per sample and features per row of the input.
static void rows_of(const ct_shape *in, size_t *rows, size_t *feat) {
  if (in->nd == 2) *rows = (size_t)in->d[0], *feat = (size_t)in->d[1];
  else *rows = 1, *feat = ct_shape_count(in);
}

static ct_status shape(ct_graph *g, ct_node *n, const ct_shape *const *in, const char *tok,
                       const char *prev, int index, ct_shape *out) {
  (void)tok, (void)prev, (void)index;
  const dense_cfg *c = (const dense_cfg *)n->cfg;
  size_t rows, feat;
  rows_of(in[0], &rows, &feat);
  if (feat > 0x7fffffff) return CT_OK;   // the planner names the size
  memset(out, 0, sizeof *out);
  if (in[0]->nd == 2) out->nd = 2, out->d[0] = (int)rows, out->d[1] = c->out;
  else out->nd = 1, out->d[0] = c->out;
  long long ws[2] = {c->out, (long long)feat}, bs[1] = {c->out};
  ct_init w = {CT_INIT_HE_OR_XAVIER, 0, (double)feat, (double)c->out};
  ct_init zero = {CT_INIT_ZERO, 0, 0, 0};
  CT_TRY(ct_graph_param(g, n, "weight", 2, ws, 1, w));
  if (c->bias) CT_TRY(ct_graph_param(g, n, "bias", 1, bs, 1, zero));
  return CT_OK;
}

static ct_status forward(const ct_node *n, const ct_op_io *io) {
  const dense_cfg *c = (const dense_cfg *)n->cfg;
  const ct_tensor *w = ct_op_io_tensor(io, n, 0);
  int in = (int)w->shape[1];
  int rows = io->batch * (int)(ct_op_io_value_count(io, n->out) / (size_t)c->out);
  return ct_dense_forward(io->dev, rows, in, c->out, io->x[0], io->params, io->p[0],
                          c->bias ? io->params : NULL, c->bias ? io->p[1] : 0, io->y, c->relu);
}

static ct_status backward(const ct_node *n, const ct_op_io *io) {
  const dense_cfg *c = (const dense_cfg *)n->cfg;
  const ct_tensor *w = ct_op_io_tensor(io, n, 0);
  int in = (int)w->shape[1];
  int rows = io->batch * (int)(ct_op_io_value_count(io, n->out) / (size_t)c->out);
  // the fused ReLU's output is this node's own (its output buffer is the ReLU's)
  return ct_dense_backward_acc(io->dev, rows, in, c->out, io->x[0], io->params, io->p[0], io->dy,
                               io->grads, io->p[0], c->bias ? io->grads : NULL,
                               c->bias ? io->p[1] : 0,
                               io->dx_mode[0] == CT_GRAD_NONE ? NULL : io->dx[0],
                               c->relu ? io->y : NULL, io->dp_mode[0] == CT_GRAD_ADD,
                               io->dx_mode[0] == CT_GRAD_ADD);
}

static void flops(const ct_node *n, const ct_graph *g, double f[3]) {
  const ct_tensor *w = ct_graph_tensor(g, n->param[0]);
  const dense_cfg *c = (const dense_cfg *)n->cfg;
  double rows = (double)ct_shape_count(&g->values[n->out].shape) / c->out;
  f[0] = f[1] = f[2] = 2.0 * rows * (double)w->shape[0] * (double)w->shape[1];
}

static int fuse_next(ct_node *n, const ct_node *next) {
  dense_cfg *c = (dense_cfg *)n->cfg;
  if (!c->bias || !(next->op->flags & CT_OP_RELU)) return 0;
  c->relu = 1;
  return 1;
}

const ct_op ct_op_dense = {
    .name = "dense",
    .syntax = "dense:N",
    .doc = "fully connected: y = x w^T + b, per row (images and vectors are one row)",
    .claims = claims,
    .parse = parse,
    .shape = shape,
    .forward = forward,
    .backward = backward,
    .flops = flops,
    .fuse_next = fuse_next,
    .can_add_dx = 1,
    .can_add_dp = 1,
};
