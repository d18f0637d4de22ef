// layernorm.c: LayerNorm over each row's channels (gpt_kernels.h), kernels in cl/layernorm.cl.
//
//   forward:   one work-item per row: mean, rstd (saved), y            range (rows)
//   backward:  dx, one work-item per row                                range (rows)
//              dw, db, one work-item per 8 channels, rows in order      range ceil(C / 8)
// The rows and the 8 channels run on float8 (a scalar tail). dw and db have little parallelism
// (C / 8 work-items, each over every row): enough for CPUs; a GPU would want the rows split
// into chunks summed in a second pass (still in a fixed order).
#include "cltrain/gpt_kernels.h"
#include "launch.h"
#include <stdio.h>
#include <string.h>
#include "ops.h"

#define WG_ROWS 64   // work-group size of the per-row and per-channel kernels

static ct_status check_sizes(const char *op, int rows, int channels) {
  CT_TRY(ct_ops_positive(op, rows, channels, 1));
  if ((size_t)rows > UINT32_MAX / (size_t)channels)
    return CT_FAIL(CT_ERR_INTERNAL, "%s: %d rows of %d channels is too large", op, rows,
                   channels);
  return CT_OK;
}

ct_status ct_layernorm_forward(ct_device *dev, int rows, int channels, ct_slice x, ct_slice w,
                               ct_slice b, ct_slice y, ct_slice mean, ct_slice rstd) {
  const char *op = "layernorm forward";
  CT_TRY(check_sizes(op, rows, channels));
  size_t nx = (size_t)rows * channels;
  CT_TRY(ct_ops_fits_u32(op, x.off + nx));
  CT_TRY(ct_ops_fits_u32(op, y.off + nx));
  CT_TRY(ct_ops_fits_u32(op, w.off + (size_t)channels));
  CT_TRY(ct_ops_fits_u32(op, b.off + (size_t)channels));
  CT_TRY(ct_ops_fits_u32(op, mean.off + (size_t)rows));
  CT_TRY(ct_ops_fits_u32(op, rstd.off + (size_t)rows));
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "layernorm", "layernorm_forward", &k));
  CT_ARG_MEM(k, 0, x.mem);
  CT_ARG_U(k, 1, x.off);
  CT_ARG_MEM(k, 2, w.mem);
  CT_ARG_U(k, 3, w.off);
  CT_ARG_MEM(k, 4, b.mem);
  CT_ARG_U(k, 5, b.off);
  CT_ARG_MEM(k, 6, y.mem);
  CT_ARG_U(k, 7, y.off);
  CT_ARG_MEM(k, 8, mean.mem);
  CT_ARG_U(k, 9, mean.off);
  CT_ARG_MEM(k, 10, rstd.mem);
  CT_ARG_U(k, 11, rstd.off);
  CT_ARG_U(k, 12, rows);
  CT_ARG_U(k, 13, channels);
  return ct_ops_enqueue1(dev, k, "layernorm_forward", (size_t)rows, WG_ROWS);
}

ct_status ct_layernorm_backward(ct_device *dev, int rows, int channels, ct_slice x, ct_slice w,
                                ct_slice mean, ct_slice rstd, ct_slice dy, ct_slice dx,
                                int acc_dx, ct_slice dw, ct_slice db) {
  const char *op = "layernorm backward";
  CT_TRY(check_sizes(op, rows, channels));
  size_t nx = (size_t)rows * channels;
  CT_TRY(ct_ops_fits_u32(op, x.off + nx));
  CT_TRY(ct_ops_fits_u32(op, dy.off + nx));
  CT_TRY(ct_ops_fits_u32(op, w.off + (size_t)channels));
  CT_TRY(ct_ops_fits_u32(op, mean.off + (size_t)rows));
  CT_TRY(ct_ops_fits_u32(op, rstd.off + (size_t)rows));
  CT_TRY(ct_ops_fits_u32(op, dw.off + (size_t)channels));
  CT_TRY(ct_ops_fits_u32(op, db.off + (size_t)channels));
  cl_kernel k;
  if (dx.mem) {
    CT_TRY(ct_ops_fits_u32(op, dx.off + nx));
    CT_TRY(ct_kernel(dev, "layernorm", "layernorm_backward_dx", &k));
    CT_ARG_MEM(k, 0, x.mem);
    CT_ARG_U(k, 1, x.off);
    CT_ARG_MEM(k, 2, w.mem);
    CT_ARG_U(k, 3, w.off);
    CT_ARG_MEM(k, 4, mean.mem);
    CT_ARG_U(k, 5, mean.off);
    CT_ARG_MEM(k, 6, rstd.mem);
    CT_ARG_U(k, 7, rstd.off);
    CT_ARG_MEM(k, 8, dy.mem);
    CT_ARG_U(k, 9, dy.off);
    CT_ARG_MEM(k, 10, dx.mem);
    CT_ARG_U(k, 11, dx.off);
    CT_ARG_U(k, 12, rows);
    CT_ARG_U(k, 13, channels);
    CT_ARG_U(k, 14, !!acc_dx);
    CT_TRY(ct_ops_enqueue1(dev, k, "layernorm_backward_dx", (size_t)rows, WG_ROWS));
  }
  CT_TRY(ct_kernel(dev, "layernorm", "layernorm_backward_dwdb", &k));
  CT_ARG_MEM(k, 0, x.mem);
  CT_ARG_U(k, 1, x.off);
  CT_ARG_MEM(k, 2, mean.mem);
  CT_ARG_U(k, 3, mean.off);
  CT_ARG_MEM(k, 4, rstd.mem);
  CT_ARG_U(k, 5, rstd.off);
  CT_ARG_MEM(k, 6, dy.mem);
  CT_ARG_U(k, 7, dy.off);
  CT_ARG_MEM(k, 8, dw.mem);
  CT_ARG_U(k, 9, dw.off);
  CT_ARG_MEM(k, 10, db.mem);
  CT_ARG_U(k, 11, db.off);
  CT_ARG_U(k, 12, rows);
  CT_ARG_U(k, 13, channels);
  return ct_ops_enqueue1(dev, k, "layernorm_backward_dwdb", ((size_t)channels + 7) / 8,
                         WG_ROWS);
}

// ---- the op: "layernorm" --------------------------------------------------------------------
// Over the last dimension C of its input: tensors "weight" (C, one) and "bias" (C, zero), not
// decayed; saves each row's mean and rstd.

static int claims(const char *tok) { return !strcmp(tok, "layernorm"); }

static int channels_of(const ct_shape *s) { return s->d[s->nd - 1]; }

static ct_status shape(ct_graph *g, ct_node *n, const ct_shape *const *in, const char *tok,
                       const char *prev, int index, ct_shape *out) {
  (void)tok, (void)prev, (void)index;
  *out = *in[0];
  long long cs[1] = {channels_of(in[0])};
  ct_init one = {CT_INIT_ONE, 0, 0, 0}, zero = {CT_INIT_ZERO, 0, 0, 0};
  CT_TRY(ct_graph_param(g, n, "weight", 1, cs, 0, one));
  CT_TRY(ct_graph_param(g, n, "bias", 1, cs, 0, zero));
  size_t rows = ct_shape_count(in[0]) / (size_t)channels_of(in[0]);
  ct_node_saved(n, rows, 0);   // mean
  ct_node_saved(n, rows, 0);   // rstd
  return CT_OK;
}

static void dims(const ct_node *n, const ct_op_io *io, int *rows, int *c) {
  const ct_shape *s = &io->g->values[n->in[0]].shape;
  *c = channels_of(s);
  *rows = io->batch * (int)(ct_shape_count(s) / (size_t)*c);
}

static ct_status forward(const ct_node *n, const ct_op_io *io) {
  int rows, c;
  dims(n, io, &rows, &c);
  return ct_layernorm_forward(io->dev, rows, c, ct_slice_of(io->x[0], 0),
                              ct_slice_of(io->params, io->p[0]), ct_slice_of(io->params, io->p[1]),
                              ct_slice_of(io->y, 0), ct_slice_of(io->saved[0], 0),
                              ct_slice_of(io->saved[1], 0));
}

static ct_status backward(const ct_node *n, const ct_op_io *io) {
  int rows, c;
  dims(n, io, &rows, &c);
  return ct_layernorm_backward(io->dev, rows, c, ct_slice_of(io->x[0], 0),
                               ct_slice_of(io->params, io->p[0]), ct_slice_of(io->saved[0], 0),
                               ct_slice_of(io->saved[1], 0), ct_slice_of(io->dy, 0),
                               ct_slice_of(io->dx_mode[0] == CT_GRAD_NONE ? NULL : io->dx[0], 0),
                               io->dx_mode[0] == CT_GRAD_ADD, ct_slice_of(io->grads, io->p[0]),
                               ct_slice_of(io->grads, io->p[1]));
}

const ct_op ct_op_layernorm = {
    .name = "layernorm",
    .doc = "LayerNorm over the last dimension, eps 1e-5, with weight and bias",
    .claims = claims,
    .parse = ct_ops_parse_plain,
    .shape = shape,
    .forward = forward,
    .backward = backward,
    .can_add_dx = 1,
};
