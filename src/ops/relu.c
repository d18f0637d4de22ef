// relu.c: y = max(x, 0). Token "relu". Right after a dense or conv node the planner fuses it
// into that node's bias pass (its forward and backward then do nothing here); elsewhere it runs
// its own kernels. Its backward reads its own output (y > 0 where the gradient passes).
#include <stdio.h>
#include <string.h>

#include "cltrain/layers.h"
#include "ops.h"

static int claims(const char *tok) { return !strcmp(tok, "relu"); }

static ct_status forward(const ct_node *n, const ct_op_io *io) {
  return ct_relu_forward(io->dev, ct_ops_elems(n, io), io->x[0], io->y);
}

static ct_status backward(const ct_node *n, const ct_op_io *io) {
  return ct_relu_backward(io->dev, ct_ops_elems(n, io), io->y, io->dy, io->dx[0]);
}

const ct_op ct_op_relu = {
    .name = "relu",
    .syntax = "relu",
    .doc = "max(x, 0); fused into a dense or conv node right before it",
    .claims = claims,
    .parse = ct_ops_parse_plain,
    .shape = ct_ops_shape_same,
    .forward = forward,
    .backward = backward,
    .flags = CT_OP_RELU,
};
