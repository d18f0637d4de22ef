// maxpool.c: max pooling over NCHW images. Token "maxpoolK": window K, stride K, no padding
// (the remainder of a row or column is dropped). Saves the argmax of each window (int) for
// backward.
#include <stdio.h>
#include <string.h>

#include "cltrain/layers.h"
#include "ops.h"

typedef struct {
  int k;
} pool_cfg;

ct_status ct_ops_window_shape(const ct_shape *in, const char *what, int k, int stride, int pad,
                              const char *tok, const char *prev, int index, int *oh, int *ow);

static int claims(const char *tok) { return !strncmp(tok, "maxpool", 7); }

static ct_status parse(const char *tok, int index, ct_node *n) {
  pool_cfg *c = (pool_cfg *)n->cfg;
  const char *s = tok + 7;
  int k;
  if (!ct_ops_parse_int(&s, 1, 1 << 16, &k) || *s)
    return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': expected maxpoolK with K >= 1",
                   index, tok);
  c->k = k;
  snprintf(n->token, sizeof n->token, "maxpool%d", k);
  return CT_OK;
}

static ct_status shape(ct_graph *g, ct_node *n, const ct_shape *const *in, const char *tok,
                       const char *prev, int index, ct_shape *out) {
  (void)g;
  const pool_cfg *c = (const pool_cfg *)n->cfg;
  int oh, ow;
  CT_TRY(ct_ops_window_shape(in[0], "max pooling", c->k, c->k, 0, tok, prev, index, &oh, &ow));
  memset(out, 0, sizeof *out);
  out->nd = 3, out->d[0] = in[0]->d[0], out->d[1] = oh, out->d[2] = ow;
  ct_node_saved(n, ct_shape_count(out), 1);   // the argmax of each window
  return CT_OK;
}

static ct_conv_geom geom(const ct_node *n, const ct_op_io *io) {
  const pool_cfg *c = (const pool_cfg *)n->cfg;
  const ct_shape *in = &io->g->values[n->in[0]].shape, *o = &io->g->values[n->out].shape;
  ct_conv_geom g = {io->batch, in->d[0], in->d[1], in->d[2], in->d[0], o->d[1], o->d[2],
                    c->k, c->k, 0};
  return g;
}

static ct_status forward(const ct_node *n, const ct_op_io *io) {
  ct_conv_geom g = geom(n, io);
  return ct_maxpool_forward(io->dev, &g, io->x[0], io->y, io->saved[0]);
}

static ct_status backward(const ct_node *n, const ct_op_io *io) {
  ct_conv_geom g = geom(n, io);
  return ct_maxpool_backward(io->dev, &g, io->dy, io->saved[0], io->dx[0]);
}

static void describe(const ct_node *n, char *buf, size_t size) {
  snprintf(buf, size, "  window %d", ((const pool_cfg *)n->cfg)->k);
}

const ct_op ct_op_maxpool = {
    .name = "maxpool",
    .syntax = "maxpoolK",
    .doc = "max pooling, window K, stride K, no padding",
    .claims = claims,
    .parse = parse,
    .shape = shape,
    .forward = forward,
    .backward = backward,
    .describe = describe,
};
