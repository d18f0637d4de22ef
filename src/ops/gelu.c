// gelu.c: GELU, tanh approximation (gpt_kernels.h), kernels in cl/gelu.cl: one work-item per
// element.
#include "cltrain/gpt_kernels.h"
#include "launch.h"
#include <stdio.h>
#include <string.h>
#include "ops.h"

ct_status ct_gelu_forward(ct_device *dev, size_t n, ct_slice x, ct_slice y) {
  if (n == 0) return CT_OK;
  CT_TRY(ct_ops_fits_u32("gelu forward", x.off + n));
  CT_TRY(ct_ops_fits_u32("gelu forward", y.off + n));
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "gelu", "gelu_forward", &k));
  CT_ARG_MEM(k, 0, x.mem);
  CT_ARG_U(k, 1, x.off);
  CT_ARG_MEM(k, 2, y.mem);
  CT_ARG_U(k, 3, y.off);
  CT_ARG_U(k, 4, n);
  return ct_ops_enqueue1(dev, k, "gelu_forward", (n + 7) / 8, CT_OPS_WG);
}

ct_status ct_gelu_backward(ct_device *dev, size_t n, ct_slice x, ct_slice dy, ct_slice dx,
                           int acc) {
  if (n == 0) return CT_OK;
  CT_TRY(ct_ops_fits_u32("gelu backward", x.off + n));
  CT_TRY(ct_ops_fits_u32("gelu backward", dy.off + n));
  CT_TRY(ct_ops_fits_u32("gelu backward", dx.off + n));
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "gelu", "gelu_backward", &k));
  CT_ARG_MEM(k, 0, x.mem);
  CT_ARG_U(k, 1, x.off);
  CT_ARG_MEM(k, 2, dy.mem);
  CT_ARG_U(k, 3, dy.off);
  CT_ARG_MEM(k, 4, dx.mem);
  CT_ARG_U(k, 5, dx.off);
  CT_ARG_U(k, 6, n);
  CT_ARG_U(k, 7, !!acc);
  return ct_ops_enqueue1(dev, k, "gelu_backward", (n + 7) / 8, CT_OPS_WG);
}

// ---- the op: "gelu" ------------------------------------------------------------------------------

static int claims(const char *tok) { return !strcmp(tok, "gelu"); }

static ct_status forward(const ct_node *n, const ct_op_io *io) {
  return ct_gelu_forward(io->dev, ct_ops_elems(n, io), ct_slice_of(io->x[0], 0), ct_slice_of(io->y, 0));
}

static ct_status backward(const ct_node *n, const ct_op_io *io) {
  return ct_gelu_backward(io->dev, ct_ops_elems(n, io), ct_slice_of(io->x[0], 0),
                          ct_slice_of(io->dy, 0), ct_slice_of(io->dx[0], 0),
                          io->dx_mode[0] == CT_GRAD_ADD);
}

const ct_op ct_op_gelu = {
    .name = "gelu",
    .doc = "GELU, tanh approximation (as PyTorch's approximate=\"tanh\")",
    .claims = claims,
    .parse = ct_ops_parse_plain,
    .shape = ct_ops_shape_same,
    .forward = forward,
    .backward = backward,
    .can_add_dx = 1,
};
