// softmax_xent.c: the loss op: softmax cross-entropy of each row of its input against an int
// label per row. A classifier's logits (classes) are one row per sample with one label; a
// language model's (T, vocabulary) are T rows with T labels. Its output is the losses, one per
// row (unscaled); backward writes them and the gradient scale * (softmax - onehot) of its input
// in one pass. A label outside [0, classes) gives a NaN loss and zero gradients for its row.
#include <stdio.h>
#include <string.h>

#include "cltrain/layers.h"
#include "ops.h"

static int claims(const char *tok) { return !strcmp(tok, "softmax_xent"); }

static ct_status shape(ct_graph *g, ct_node *n, const ct_shape *const *in, const char *tok,
                       const char *prev, int index, ct_shape *out) {
  (void)g, (void)n, (void)tok, (void)prev, (void)index;
  memset(out, 0, sizeof *out);
  out->nd = 1;
  out->d[0] = in[0]->nd == 2 ? in[0]->d[0] : 1;   // one loss per row
  return CT_OK;
}

static void rows_classes(const ct_node *n, const ct_op_io *io, int *rows, int *classes) {
  const ct_shape *s = &io->g->values[n->in[0]].shape;
  *rows = io->batch * (s->nd == 2 ? s->d[0] : 1);
  *classes = (int)(ct_shape_count(s) / (size_t)(s->nd == 2 ? s->d[0] : 1));
}

// Evaluation: the losses (the gradient goes to io->dx[0], scratch the model provides).
static ct_status forward(const ct_node *n, const ct_op_io *io) {
  int rows, classes;
  rows_classes(n, io, &rows, &classes);
  return ct_softmax_xent(io->dev, rows, classes, io->x[0], io->labels, 0.0f, io->y, io->dx[0]);
}

static ct_status backward(const ct_node *n, const ct_op_io *io) {
  int rows, classes;
  rows_classes(n, io, &rows, &classes);
  return ct_softmax_xent(io->dev, rows, classes, io->x[0], io->labels, io->loss_scale, io->y,
                         io->dx[0]);
}

const ct_op ct_op_softmax_xent = {
    .name = "softmax_xent",
    .doc = "softmax cross-entropy per row against int labels (the loss)",
    .claims = claims,
    .parse = ct_ops_parse_plain,
    .shape = shape,
    .forward = forward,
    .backward = backward,
    .is_loss = 1,
};
