// launch.h: what the op files under src/ops/ share to launch their kernels: range checks,
// kernel-argument macros and the enqueue of a 1-D or 2-D range on dev->queue (profiled).
// Internal to the library (not under include/).
//
// Defines: CT_OPS_WG (work-group size of element-wise kernels), ct_ops_fits_u32,
// ct_ops_positive, ct_ops_enqueue1, ct_ops_enqueue2 (+ ct_ops_enqueue_failed), CT_ARG_MEM,
// CT_ARG_U, CT_ARG_F.
#ifndef CLTRAIN_OPS_LAUNCH_H
#define CLTRAIN_OPS_LAUNCH_H

#include <stddef.h>
#include <stdint.h>

#include "cltrain/device.h"
#include "cltrain/prof.h"
#include "cltrain/program.h"

#define CT_OPS_WG 256   // element-wise kernels; clamped to the device's maximum

#define CT_ARG_MEM(k, i, m) CL_CHECK(clSetKernelArg((k), (i), sizeof(cl_mem), &(m)))
#define CT_ARG_U(k, i, v)                                          \
  do {                                                             \
    cl_uint ct_arg_ = (cl_uint)(v);                                \
    CL_CHECK(clSetKernelArg((k), (i), sizeof ct_arg_, &ct_arg_));  \
  } while (0)
#define CT_ARG_F(k, i, v)                                          \
  do {                                                             \
    cl_float ct_arg_ = (cl_float)(v);                              \
    CL_CHECK(clSetKernelArg((k), (i), sizeof ct_arg_, &ct_arg_));  \
  } while (0)

// Kernels index with 32-bit integers: every index, offset included, must stay below 2^32.
// `end` is one past the last float an operand occupies (offset + count).
static inline ct_status ct_ops_fits_u32(const char *op, size_t end) {
  if (end > UINT32_MAX)
    return CT_FAIL(CT_ERR_INTERNAL, "%s: an operand ends at float %zu, past 2^32 (kernels index "
                   "with 32 bits)", op, end);
  return CT_OK;
}

static inline ct_status ct_ops_positive(const char *op, int a, int b, int c) {
  if (a < 1 || b < 1 || c < 1)
    return CT_FAIL(CT_ERR_INTERNAL, "%s called with a non-positive size (%d, %d, %d)", op, a, b,
                   c);
  return CT_OK;
}

static inline ct_status ct_ops_enqueue_failed(ct_device *dev, const char *name, size_t g0,
                                              size_t g1, cl_int err) {
  return CT_FAIL(err == CL_OUT_OF_RESOURCES || err == CL_MEM_OBJECT_ALLOCATION_FAILURE ||
                         err == CL_OUT_OF_HOST_MEMORY
                     ? CT_ERR_NOMEM
                     : CT_ERR_CL,
                 "clEnqueueNDRangeKernel(%s, %zu x %zu) on %s failed: %s", name, g0, g1,
                 dev->info.name, ct_cl_errname(err));
}

// k over n work-items in groups of wg (clamped to the device's maximum, a power of two stays
// one), the range rounded up to a whole group: kernels guard their tail.
static inline ct_status ct_ops_enqueue1(ct_device *dev, cl_kernel k, const char *name, size_t n,
                                        size_t wg) {
  size_t max = dev->info.max_wg ? dev->info.max_wg : 1;
  while (wg > max) wg >>= 1;
  if (!wg) wg = 1;
  size_t global = (n + wg - 1) / wg * wg;
  cl_int err = clEnqueueNDRangeKernel(dev->queue, k, 1, NULL, &global, &wg, 0, NULL,
                                      ct_prof_event(dev, name, 0, CT_PROF_KERNEL));
  return err == CL_SUCCESS ? CT_OK : ct_ops_enqueue_failed(dev, name, global, 1, err);
}

// k over an exact (g0, g1) range, the work-group size left to the implementation (no integer
// division in the kernel: dimension 0 runs along a row's channels, dimension 1 over rows).
static inline ct_status ct_ops_enqueue2(ct_device *dev, cl_kernel k, const char *name, size_t g0,
                                        size_t g1) {
  size_t global[2] = {g0, g1};
  cl_int err = clEnqueueNDRangeKernel(dev->queue, k, 2, NULL, global, NULL, 0, NULL,
                                      ct_prof_event(dev, name, 0, CT_PROF_KERNEL));
  return err == CL_SUCCESS ? CT_OK : ct_ops_enqueue_failed(dev, name, g0, g1, err);
}

#endif
