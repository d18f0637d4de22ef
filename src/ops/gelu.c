// gelu.c: GELU, tanh approximation (gpt_kernels.h), kernels in cl/gelu.cl: one work-item per
// element.
#include "cltrain/gpt_kernels.h"
#include "launch.h"

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
