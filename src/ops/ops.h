// ops.h (internal to src/ops/): the op table entries, and small helpers their parsers share.
//
// Defines: the ct_op_* entries of src/ops/*.c, ct_ops_parse_int, ct_ops_format_float.
#ifndef CLTRAIN_OPS_INTERNAL_H
#define CLTRAIN_OPS_INTERNAL_H

#include <stddef.h>

#include "cltrain/model.h"
#include "cltrain/op.h"

extern const ct_op ct_op_dense, ct_op_conv2d, ct_op_relu, ct_op_maxpool, ct_op_flatten,
    ct_op_dropout, ct_op_softmax_xent, ct_op_embedding, ct_op_layernorm, ct_op_attention,
    ct_op_gelu, ct_op_add;

// Parses a decimal integer in [lo, hi] at *s (digits only, no sign); advances *s. 0 on failure.
int ct_ops_parse_int(const char **s, long lo, long hi, int *out);
// The shortest "%.*g" that reads back as the same float.
void ct_ops_format_float(float v, char *buf, size_t size);
// For ops with no settings: the token is the op's name as written ("relu").
ct_status ct_ops_parse_plain(const char *tok, int index, ct_node *n);
// For element-wise ops: the output has input 0's shape.
ct_status ct_ops_shape_same(ct_graph *g, ct_node *n, const ct_shape *const *in, const char *tok,
                            const char *prev, int index, ct_shape *out);
// The elements of the node's output over the batch.
size_t ct_ops_elems(const ct_node *n, const ct_op_io *io);

#endif
