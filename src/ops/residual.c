// residual.c: the residual add y = a + b and its backward routing (gpt_kernels.h), kernels in
// cl/residual.cl: one work-item per element.
#include "cltrain/gpt_kernels.h"
#include "launch.h"

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
