// flatten.c: (C, H, W) -> (C*H*W) features. Token "flatten". A no-op on NCHW memory: its
// output is its input's buffer, and its input's gradient is its output's.
#include <stdio.h>
#include <string.h>

#include "ops.h"

static int claims(const char *tok) { return !strcmp(tok, "flatten"); }

static ct_status shape(ct_graph *g, ct_node *n, const ct_shape *const *in, const char *tok,
                       const char *prev, int index, ct_shape *out) {
  (void)g, (void)n, (void)tok, (void)prev, (void)index;
  size_t feat = ct_shape_count(in[0]);
  memset(out, 0, sizeof *out);
  out->nd = 1;
  out->d[0] = feat > 0x7fffffff ? 0 : (int)feat;   // (too large: the planner names the size)
  return CT_OK;
}

static ct_status nothing(const ct_node *n, const ct_op_io *io) {
  (void)n, (void)io;
  return CT_OK;
}

// The planner shares the gradient's buffer (CT_GRAD_SHARED) unless the input's gradient was
// written already (then the model adds through its temporary): a copy is all that is left.
static ct_status backward(const ct_node *n, const ct_op_io *io) {
  if (io->dx_mode[0] != CT_GRAD_WRITE) return CT_OK;
  size_t bytes = (size_t)io->batch * ct_op_io_value_count(io, n->out) * sizeof(float);
  CL_CHECK(clEnqueueCopyBuffer(io->dev->queue, io->dy, io->dx[0], 0, 0, bytes, 0, NULL, NULL));
  return CT_OK;
}

static int passes_grad(const ct_node *n, int i) {
  (void)n, (void)i;
  return 1;
}

const ct_op ct_op_flatten = {
    .name = "flatten",
    .syntax = "flatten",
    .doc = "(C, H, W) -> (C*H*W) features; no data moves",
    .claims = claims,
    .parse = ct_ops_parse_plain,
    .shape = shape,
    .forward = nothing,
    .backward = backward,
    .passes_grad = passes_grad,
    .flags = CT_OP_SHAPE_ONLY,
    .out_aliases_in = 1,
};
