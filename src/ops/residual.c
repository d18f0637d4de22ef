// residual.c: the residual add y = a + b and its backward routing (gpt_kernels.h), kernels in
// cl/residual.cl: one work-item per element.
#include "cltrain/gpt_kernels.h"
#include "launch.h"
#include <stdio.h>
#include <string.h>
#include "ops.h"

ct_status ct_residual_forward(ct_device *dev, size_t n, ct_slice a, ct_slice b, ct_slice y) {
  if (n == 0) return CT_OK;
  CT_TRY(ct_ops_fits_u32("residual forward", a.off + n));
  CT_TRY(ct_ops_fits_u32("residual forward", b.off + n));
  CT_TRY(ct_ops_fits_u32("residual forward", y.off + n));
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "residual", "residual_forward", &k));
  CT_ARG_MEM(k, 0, a.mem);
  CT_ARG_U(k, 1, a.off);
  CT_ARG_MEM(k, 2, b.mem);
  CT_ARG_U(k, 3, b.off);
  CT_ARG_MEM(k, 4, y.mem);
  CT_ARG_U(k, 5, y.off);
  CT_ARG_U(k, 6, n);
  return ct_ops_enqueue1(dev, k, "residual_forward", (n + 7) / 8, CT_OPS_WG);
}

ct_status ct_residual_backward(ct_device *dev, size_t n, ct_slice dy, ct_slice da, int acc_a,
                               ct_slice db, int acc_b) {
  if (n == 0 || (!da.mem && !db.mem)) return CT_OK;
  CT_TRY(ct_ops_fits_u32("residual backward", dy.off + n));
  if (da.mem) CT_TRY(ct_ops_fits_u32("residual backward", da.off + n));
  if (db.mem) CT_TRY(ct_ops_fits_u32("residual backward", db.off + n));
  // an absent output still needs a buffer argument: dy's (never written)
  cl_mem a = da.mem ? da.mem : dy.mem, b = db.mem ? db.mem : dy.mem;
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "residual", "residual_backward", &k));
  CT_ARG_MEM(k, 0, dy.mem);
  CT_ARG_U(k, 1, dy.off);
  CT_ARG_MEM(k, 2, a);
  CT_ARG_U(k, 3, da.off);
  CT_ARG_U(k, 4, da.mem != NULL);
  CT_ARG_U(k, 5, !!acc_a);
  CT_ARG_MEM(k, 6, b);
  CT_ARG_U(k, 7, db.off);
  CT_ARG_U(k, 8, db.mem != NULL);
  CT_ARG_U(k, 9, !!acc_b);
  CT_ARG_U(k, 10, n);
  return ct_ops_enqueue1(dev, k, "residual_backward", (n + 7) / 8, CT_OPS_WG);
}

// ---- the op: "add" -------------------------------------------------------------------------------
// y = a + b (a residual connection): the output's gradient goes to both inputs unchanged, so
// the planner lets one of them share its buffer; the other gets a copy (or an addition).

static int claims(const char *tok) { return !strcmp(tok, "add"); }

static ct_status shape(ct_graph *g, ct_node *n, const ct_shape *const *in, const char *tok,
                       const char *prev, int index, ct_shape *out) {
  (void)g, (void)n, (void)prev;
  if (memcmp(in[0], in[1], sizeof *in[0]) != 0)
    return CT_FAIL(CT_ERR_USAGE, "node %d '%.60s': adds values of different shapes", index, tok);
  *out = *in[0];
  return CT_OK;
}

static ct_status forward(const ct_node *n, const ct_op_io *io) {
  return ct_residual_forward(io->dev, ct_ops_elems(n, io), ct_slice_of(io->x[0], 0),
                             ct_slice_of(io->x[1], 0), ct_slice_of(io->y, 0));
}

static ct_slice grad_of(const ct_op_io *io, int j) {   // NULL: nothing to do for input j
  int act = io->dx_mode[j] == CT_GRAD_WRITE || io->dx_mode[j] == CT_GRAD_ADD;
  return ct_slice_of(act ? io->dx[j] : NULL, 0);
}

static ct_status backward(const ct_node *n, const ct_op_io *io) {
  return ct_residual_backward(io->dev, ct_ops_elems(n, io), ct_slice_of(io->dy, 0), grad_of(io, 0),
                              io->dx_mode[0] == CT_GRAD_ADD, grad_of(io, 1),
                              io->dx_mode[1] == CT_GRAD_ADD);
}

static int passes_grad(const ct_node *n, int i) {
  (void)n, (void)i;
  return 1;
}

const ct_op ct_op_add = {
    .name = "add",
    .doc = "y = a + b (a residual connection)",
    .claims = claims,
    .parse = ct_ops_parse_plain,
    .shape = shape,
    .forward = forward,
    .backward = backward,
    .passes_grad = passes_grad,
    .can_add_dx = 1,
};
