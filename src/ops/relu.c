// relu.c: y = max(x, 0). Token "relu". Right after a dense or conv node the planner fuses it
// into that node's bias pass (its forward and backward then do nothing here); elsewhere it runs
// its own kernels. Its backward reads its own output (y > 0 where the gradient passes).
#include <stdio.h>
#include <string.h>

#include "cltrain/layers.h"
#include "ops.h"

static int claims(const char *tok) { return !strcmp(tok, "relu"); }

static ct_status parse(const char *tok, int index, ct_node *n) {
  (void)tok, (void)index;
  snprintf(n->token, sizeof n->token, "relu");
  return CT_OK;
}

static ct_status shape(ct_graph *g, ct_node *n, const ct_shape *const *in, const char *tok,
                       const char *prev, int index, ct_shape *out) {
  (void)g, (void)n, (void)tok, (void)prev, (void)index;
  *out = *in[0];
  return CT_OK;
}

static size_t count(const ct_node *n, const ct_op_io *io) {
  return (size_t)io->batch * ct_op_io_value_count(io, n->out);
}

static ct_status forward(const ct_node *n, const ct_op_io *io) {
  return ct_relu_forward(io->dev, count(n, io), io->x[0], io->y);
}

static ct_status backward(const ct_node *n, const ct_op_io *io) {
  return ct_relu_backward(io->dev, count(n, io), io->y, io->dy, io->dx[0]);
}

const ct_op ct_op_relu = {
    .name = "relu",
    .syntax = "relu",
    .doc = "max(x, 0); fused into a dense or conv node right before it",
    .claims = claims,
    .parse = parse,
    .shape = shape,
    .forward = forward,
    .backward = backward,
    .flags = CT_OP_RELU,
};
