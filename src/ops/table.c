// table.c: the op table (op.h), and what the ops' parsers share. Adding an op: its file under
// src/ops/ with one `const ct_op` entry, a line here, its kernels in cl/.
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/layers.h"
#include "ops.h"

// --arch messages list the tokens in this order.
const ct_op *const ct_ops[] = {
    &ct_op_dense, &ct_op_conv2d, &ct_op_relu, &ct_op_maxpool, &ct_op_flatten, &ct_op_dropout,
    &ct_op_softmax_xent, &ct_op_embedding, &ct_op_layernorm, &ct_op_attention, &ct_op_gelu,
    &ct_op_add,
};
const int ct_op_count = (int)(sizeof ct_ops / sizeof *ct_ops);

const ct_op *ct_op_find(const char *name) {
  for (int i = 0; i < ct_op_count; i++)
    if (!strcmp(ct_ops[i]->name, name)) return ct_ops[i];
  return NULL;
}

void ct_op_list(char *buf, size_t size) {
  if (!size) return;
  buf[0] = 0;
  int total = 0, k = 0;
  for (int i = 0; i < ct_op_count; i++) total += ct_ops[i]->syntax != NULL;
  size_t len = 0;
  for (int i = 0; i < ct_op_count && len < size; i++) {
    if (!ct_ops[i]->syntax) continue;
    const char *sep = k == 0 ? "" : k == total - 1 ? " or " : ", ";
    int w = snprintf(buf + len, size - len, "%s%s", sep, ct_ops[i]->syntax);
    if (w < 0) return;
    len += (size_t)w;
    k++;
  }
}

int ct_ops_parse_int(const char **s, long lo, long hi, int *out) {
  const char *p = *s;
  if (!isdigit((unsigned char)*p)) return 0;
  long v = 0;
  while (isdigit((unsigned char)*p)) {
    v = v * 10 + (*p - '0');
    if (v > 1000000000L) return 0;
    p++;
  }
  if (v < lo || v > hi) return 0;
  *out = (int)v;
  *s = p;
  return 1;
}

void ct_ops_format_float(float v, char *buf, size_t size) {
  for (int prec = 1; prec <= 9; prec++) {
    snprintf(buf, size, "%.*g", prec, (double)v);
    if ((float)strtod(buf, NULL) == v) return;
  }
}

// Convolution and pooling: the input must be an image, and the window must fit in it.
ct_status ct_ops_window_shape(const ct_shape *in, const char *what, int k, int stride, int pad,
                              const char *tok, const char *prev, int index, int *oh, int *ow) {
  if (in->nd != 3)
    return CT_FAIL(CT_ERR_USAGE,
                   "--arch: token %d '%.60s': %s needs an image (C x H x W) input, but gets "
                   "%lld features (after '%.60s')", index, tok, what,
                   (long long)ct_shape_count(in), prev);
  *oh = ct_conv_out_size(in->d[1], k, stride, pad);
  *ow = ct_conv_out_size(in->d[2], k, stride, pad);
  if (*oh < 1 || *ow < 1)
    return CT_FAIL(CT_ERR_USAGE,
                   "--arch: token %d '%.60s': input %dx%dx%d is too small for %s with window "
                   "%d, stride %d and padding %d (the output would be empty)", index, tok,
                   in->d[0], in->d[1], in->d[2], what, k, stride, pad);
  return CT_OK;
}

ct_status ct_ops_parse_plain(const char *tok, int index, ct_node *n) {
  (void)index;
  snprintf(n->token, sizeof n->token, "%s", tok);
  return CT_OK;
}

ct_status ct_ops_shape_same(ct_graph *g, ct_node *n, const ct_shape *const *in, const char *tok,
                            const char *prev, int index, ct_shape *out) {
  (void)g, (void)n, (void)tok, (void)prev, (void)index;
  *out = *in[0];
  return CT_OK;
}

size_t ct_ops_elems(const ct_node *n, const ct_op_io *io) {
  return (size_t)io->batch * ct_op_io_value_count(io, n->out);
}
