// op_ref.h: plain-C references of the ops (op.h), in double precision, one table entry per op
// kind, for the op test table (test_ops.c) and the whole-model reference (test_model.c).
//
// Defines: ct_ref_ctx, ct_ref_op, ct_ref_find.
//
// A reference reads a node's settings from its canonical token (n->token), not from the op's
// private configuration, so that it checks the op's parser too. Buffers are (batch, per-sample
// shape) row-major, as on the device; `params` is the whole flat parameter array, the node's
// tensors at a->tensors[n->param[k]].off. backward ADDS into dx[j] (NULL: not wanted) and
// dparams (NULL: not wanted); callers zero them first.
#ifndef CLTRAIN_OP_REF_H
#define CLTRAIN_OP_REF_H

#include <stdint.h>

#include "cltrain/model.h"

typedef struct {
  int batch;
  int train;               // dropout applies
  uint64_t seed;           // the node's dropout seed
  uint32_t offset;         // the batch's first sample in the global batch
  const int *labels;       // the loss: (batch, rows) int labels
  double loss_scale;       // the loss: gradients of loss_scale * sum(losses)
} ct_ref_ctx;

typedef struct {
  const char *op;          // the op's name in op.h's table
  void (*forward)(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c, const double *const *x,
                  const double *params, double *y);
  void (*backward)(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                   const double *const *x, const double *params, const double *y,
                   const double *dy, double *const *dx, double *dparams);
} ct_ref_op;

// The reference of the op called `op`; NULL when there is none (a test then fails).
const ct_ref_op *ct_ref_find(const char *op);

#endif
