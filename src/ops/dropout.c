// dropout.c: inverted dropout. Token "dropout:P" (0 <= P < 1): while training, each element is
// kept when ct_dropout_hash(seed, index in the global batch) >= P * 2^32, and scaled by
// 1/(1-P); evaluation and P = 0 pass the values through (P = 0: the gradient too, in place).
// The mask is integer arithmetic on the node's seed, so it is the same on every device and for
// every way of cutting the global batch into shares.
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/layers.h"
#include "ops.h"

typedef struct {
  float p;
} dropout_cfg;

static int claims(const char *tok) { return !strncmp(tok, "dropout", 7); }

static ct_status parse(const char *tok, int index, ct_node *n) {
  dropout_cfg *c = (dropout_cfg *)n->cfg;
  const char *s = tok + 7;
  int ok = *s++ == ':' && *s;
  for (const char *q = s; ok && *q; q++)
    if (!isdigit((unsigned char)*q) && !strchr(".eE+-", *q)) ok = 0;
  double p = 0;
  if (ok) {
    char *end;
    errno = 0;
    p = strtod(s, &end);
    ok = !*end && !errno && p >= 0.0 && p < 1.0 && (float)p < 1.0f;
  }
  if (!ok)
    return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': expected dropout:P with 0 <= P < 1",
                   index, tok);
  c->p = p > 0.0 ? (float)p : 0.0f;   // no -0
  char num[32];
  ct_ops_format_float(c->p, num, sizeof num);
  snprintf(n->token, sizeof n->token, "dropout:%s", num);
  return CT_OK;
}

// Index (mod 2^32) of the first element of a share starting at sample `offset` of the batch.
static uint32_t first(const ct_node *n, const ct_op_io *io) {
  return io->sample_offset * (uint32_t)ct_op_io_value_count(io, n->out);
}

static ct_status forward(const ct_node *n, const ct_op_io *io) {
  float p = ((const dropout_cfg *)n->cfg)->p;
  return ct_dropout_forward(io->dev, ct_ops_elems(n, io), io->train ? p : 0.0f, io->seed, first(n, io),
                            io->x[0], io->y);
}

static ct_status backward(const ct_node *n, const ct_op_io *io) {
  float p = ((const dropout_cfg *)n->cfg)->p;   // (p = 0 passes the gradient: never called)
  return ct_dropout_backward(io->dev, ct_ops_elems(n, io), io->train ? p : 0.0f, io->seed,
                             first(n, io), io->dy, io->dx[0]);
}

static int passes_grad(const ct_node *n, int i) {
  (void)i;
  return ((const dropout_cfg *)n->cfg)->p == 0.0f;
}

static void describe(const ct_node *n, char *buf, size_t size) {
  snprintf(buf, size, "  p %g", (double)((const dropout_cfg *)n->cfg)->p);
}

const ct_op ct_op_dropout = {
    .name = "dropout",
    .syntax = "dropout:P",
    .doc = "inverted dropout with a seeded, device-independent mask",
    .claims = claims,
    .parse = parse,
    .shape = ct_ops_shape_same,
    .forward = forward,
    .backward = backward,
    .describe = describe,
    .passes_grad = passes_grad,
    .flags = CT_OP_SHAPE_ONLY,
};
