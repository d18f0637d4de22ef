// layers.c: host side of the layers (see layers.h): argument checks, kernel launches and the
// ct_gemm calls of dense and conv2d. Everything is enqueued on dev->queue; nothing blocks.
#include "cltrain/layers.h"

#include <stdint.h>

#include "cltrain/blas.h"
#include "cltrain/prof.h"
#include "cltrain/program.h"

#define WG_1D 256   // work-group size of element-wise kernels (clamped to the device's maximum)
#define WG_FEW 64   // work-group size of kernels with few work-items (one per column, sample)
#define WG_RED 64   // work-group size of bias_grad_rows (RWG in cl/conv.cl)

// ---- launching ----------------------------------------------------------------------------

static size_t clamp_wg(const ct_device *dev, size_t want) {
  size_t max = dev->info.max_wg ? dev->info.max_wg : 1;
  while (want > max) want >>= 1;   // powers of two stay powers of two
  return want ? want : 1;
}

// Enqueues k over a 1-D range of n work-items, rounded up to the work-group size wg.
static ct_status enqueue(ct_device *dev, cl_kernel k, const char *name, size_t n, size_t wg) {
  size_t local = clamp_wg(dev, wg);
  size_t global = (n + local - 1) / local * local;
  cl_int err = clEnqueueNDRangeKernel(dev->queue, k, 1, NULL, &global, &local, 0, NULL,
                                      ct_prof_event(dev, name, 0, CT_PROF_KERNEL));
  if (err != CL_SUCCESS)
    return CT_FAIL(err == CL_OUT_OF_RESOURCES || err == CL_MEM_OBJECT_ALLOCATION_FAILURE ||
                           err == CL_OUT_OF_HOST_MEMORY
                       ? CT_ERR_NOMEM
                       : CT_ERR_CL,
                   "clEnqueueNDRangeKernel(%s, %zu) on %s failed: %s", name, global,
                   dev->info.name, ct_cl_errname(err));
  return CT_OK;
}

// Enqueues k over an exact (g0, g1, g2) range with the work-group size left to the
// implementation (kernels over image coordinates, which avoid integer division this way).
static ct_status enqueue3(ct_device *dev, cl_kernel k, const char *name, size_t g0, size_t g1,
                          size_t g2) {
  size_t global[3] = {g0, g1, g2};
  cl_int err = clEnqueueNDRangeKernel(dev->queue, k, 3, NULL, global, NULL, 0, NULL,
                                      ct_prof_event(dev, name, 0, CT_PROF_KERNEL));
  if (err != CL_SUCCESS)
    return CT_FAIL(err == CL_OUT_OF_RESOURCES || err == CL_MEM_OBJECT_ALLOCATION_FAILURE ||
                           err == CL_OUT_OF_HOST_MEMORY
                       ? CT_ERR_NOMEM
                       : CT_ERR_CL,
                   "clEnqueueNDRangeKernel(%s, %zu x %zu x %zu) on %s failed: %s", name, g0, g1,
                   g2, dev->info.name, ct_cl_errname(err));
  return CT_OK;
}

#define ARG_MEM(k, i, m) CL_CHECK(clSetKernelArg((k), (i), sizeof(cl_mem), &(m)))
#define ARG_U(k, i, v)                                          \
  do {                                                          \
    cl_uint ct_arg_ = (cl_uint)(v);                             \
    CL_CHECK(clSetKernelArg((k), (i), sizeof ct_arg_, &ct_arg_)); \
  } while (0)
#define ARG_F(k, i, v)                                          \
  do {                                                          \
    cl_float ct_arg_ = (cl_float)(v);                           \
    CL_CHECK(clSetKernelArg((k), (i), sizeof ct_arg_, &ct_arg_)); \
  } while (0)

// Kernels index with 32-bit integers: every tensor must have fewer than 2^32 elements.
static ct_status fits_u32(const char *layer, size_t a, size_t b, size_t c) {
  const size_t lim = UINT32_MAX;
  if (a > lim || b > lim || c > lim || (b && a > lim / b) || (c && a * b > lim / c))
    return CT_FAIL(CT_ERR_INTERNAL, "%s: a tensor of %zu x %zu x %zu elements is too large "
                   "(kernels index with 32 bits)", layer, a, b, c);
  return CT_OK;
}

static ct_status check_positive(const char *layer, int a, int b, int c) {
  if (a < 1 || b < 1 || c < 1)
    return CT_FAIL(CT_ERR_INTERNAL, "%s called with a non-positive size (%d, %d, %d)", layer, a,
                   b, c);
  return CT_OK;
}

int ct_conv_out_size(int in, int k, int stride, int pad) {
  if (stride < 1 || k < 1) return 0;
  long span = (long)in + 2L * pad - k;
  if (span < 0) return 0;
  return (int)(span / stride + 1);
}

static ct_status check_geom(const char *layer, const ct_conv_geom *g) {
  if (g->batch < 1 || g->c < 1 || g->h < 1 || g->w < 1 || g->oc < 1 || g->k < 1 ||
      g->stride < 1 || g->pad < 0 || g->oh != ct_conv_out_size(g->h, g->k, g->stride, g->pad) ||
      g->ow != ct_conv_out_size(g->w, g->k, g->stride, g->pad) || g->oh < 1 || g->ow < 1)
    return CT_FAIL(CT_ERR_INTERNAL,
                   "%s: inconsistent geometry batch %d, in %dx%dx%d, out %dx%dx%d, k %d, "
                   "stride %d, pad %d", layer, g->batch, g->c, g->h, g->w, g->oc, g->oh, g->ow,
                   g->k, g->stride, g->pad);
  size_t ncol = (size_t)g->batch * g->oh * g->ow;
  CT_TRY(fits_u32(layer, (size_t)g->c * g->k * g->k, ncol, 1));
  CT_TRY(fits_u32(layer, (size_t)g->oc, ncol, 1));
  CT_TRY(fits_u32(layer, (size_t)g->batch * g->c, (size_t)g->h, (size_t)g->w));
  return CT_OK;
}

ct_status ct_fill(ct_device *dev, cl_mem x, size_t n, float value) {
  if (n == 0) return CT_OK;
  CT_TRY(fits_u32("fill", n, 1, 1));
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "util", "fill_f32", &k));
  ARG_MEM(k, 0, x);
  ARG_U(k, 1, n);
  ARG_F(k, 2, value);
  return enqueue(dev, k, "fill_f32", n, WG_1D);
}

ct_status ct_axpy(ct_device *dev, cl_mem y, cl_mem x, size_t n, float alpha) {
  if (n == 0) return CT_OK;
  CT_TRY(fits_u32("axpy", n, 1, 1));
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "util", "axpy_f32", &k));
  ARG_MEM(k, 0, y);
  ARG_MEM(k, 1, x);
  ARG_U(k, 2, n);
  ARG_F(k, 3, alpha);
  return enqueue(dev, k, "axpy_f32", n, WG_1D);
}

ct_status ct_count_nonfinite(ct_device *dev, cl_mem x, size_t n, cl_mem counter, size_t at) {
  if (n == 0) return CT_OK;
  CT_TRY(fits_u32("non-finite count", n, 1, 1));
  CT_TRY(fits_u32("non-finite count", at + 1, 1, 1));
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "util", "count_nonfinite_f32", &k));
  ARG_MEM(k, 0, x);
  ARG_U(k, 1, n);
  ARG_MEM(k, 2, counter);
  ARG_U(k, 3, at);
  // a GPU: many work-items, the runtime's group size; a CPU: a few contiguous chunks per core
  // in groups of one, so that a runtime that vectorizes across work-items (Intel's) does not
  // turn each item's float8 loads into gathers (0.23-0.33 -> 0.09-0.18 ms a call for the mlp's
  // 670k gradients on Intel's runtime with one thread; PoCL about the same either way)
  int cpu = (dev->info.type & CL_DEVICE_TYPE_CPU) != 0;
  size_t cus = dev->info.compute_units ? dev->info.compute_units : 1;
  return enqueue(dev, k, "count_nonfinite_f32", cpu ? 4 * cus : 256 * 16, cpu ? 1 : WG_1D);
}

// ---- dense ----------------------------------------------------------------------------------

ct_status ct_dense_forward(ct_device *dev, int batch, int in, int out, cl_mem x, cl_mem w,
                           size_t w_off, cl_mem b, size_t b_off, cl_mem y, int relu) {
  CT_TRY(check_positive("dense forward", batch, in, out));
  CT_TRY(fits_u32("dense forward", (size_t)batch, (size_t)(in > out ? in : out), 1));
  if (b) CT_TRY(fits_u32("dense forward", b_off + (size_t)out, 1, 1));
  // y (batch, out) = x (batch, in) * w^T, w (out, in)
  CT_TRY(ct_gemm(dev, "dense fwd", 0, 1, (size_t)batch, (size_t)out, (size_t)in, 1.0f, x, 0,
                 (size_t)in, w, w_off, (size_t)in, 0.0f, y, 0, (size_t)out));
  if (!b) {
    if (relu) return CT_FAIL(CT_ERR_INTERNAL, "dense forward: a fused ReLU needs the bias pass");
    return CT_OK;
  }
  // eight columns per work-item where they divide the row (the language model's widths, the
  // mlp's hidden layers): 3.6x faster on PoCL in the language model's step, the same adds
  int by8 = out % 8 == 0;
  const char *name = relu ? (by8 ? "bias_relu_rows8" : "bias_relu_rows")
                          : (by8 ? "bias_add_rows8" : "bias_add_rows");
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "dense", name, &k));
  ARG_MEM(k, 0, y);
  ARG_MEM(k, 1, b);
  ARG_U(k, 2, b_off);
  ARG_U(k, 3, batch);
  ARG_U(k, 4, out);
  return enqueue3(dev, k, name, by8 ? (size_t)out / 8 : (size_t)out, (size_t)batch, 1);
}

ct_status ct_dense_backward(ct_device *dev, int batch, int in, int out, cl_mem x, cl_mem w,
                            size_t w_off, cl_mem dy, cl_mem dw, size_t dw_off, cl_mem db,
                            size_t db_off, cl_mem dx, cl_mem relu_y) {
  return ct_dense_backward_acc(dev, batch, in, out, x, w, w_off, dy, dw, dw_off, db, db_off, dx,
                               relu_y, 0, 0);
}

ct_status ct_dense_backward_acc(ct_device *dev, int batch, int in, int out, cl_mem x, cl_mem w,
                                size_t w_off, cl_mem dy, cl_mem dw, size_t dw_off, cl_mem db,
                                size_t db_off, cl_mem dx, cl_mem relu_y, int dw_add,
                                int dx_add) {
  CT_TRY(check_positive("dense backward", batch, in, out));
  CT_TRY(fits_u32("dense backward", (size_t)batch, (size_t)(in > out ? in : out), 1));
  if (db) CT_TRY(fits_u32("dense backward", db_off + (size_t)out, 1, 1));
  // db (out) = column sums of dy; with relu_y, dy is first masked in place (same pass)
  cl_kernel k;
  if (relu_y) {
    if (!db) return CT_FAIL(CT_ERR_INTERNAL, "dense backward: a fused ReLU needs the bias pass");
    CT_TRY(ct_kernel(dev, "dense", "relu_bias_grad_cols", &k));
    ARG_MEM(k, 0, dy);
    ARG_MEM(k, 1, relu_y);
    ARG_U(k, 2, batch);
    ARG_U(k, 3, out);
    ARG_MEM(k, 4, db);
    ARG_U(k, 5, db_off);
    ARG_U(k, 6, dw_add ? 1 : 0);
    CT_TRY(enqueue(dev, k, "relu_bias_grad_cols", ((size_t)out + 7) / 8, WG_FEW));
  } else if (db) {
    CT_TRY(ct_kernel(dev, "dense", "bias_grad_cols", &k));
    ARG_MEM(k, 0, dy);
    ARG_U(k, 1, batch);
    ARG_U(k, 2, out);
    ARG_MEM(k, 3, db);
    ARG_U(k, 4, db_off);
    ARG_U(k, 5, dw_add ? 1 : 0);
    CT_TRY(enqueue(dev, k, "bias_grad_cols", ((size_t)out + 7) / 8, WG_FEW));
  }
  // dw (out, in) = dy^T (out, batch) * x (batch, in)
  CT_TRY(ct_gemm(dev, "dense bwd-w", 1, 0, (size_t)out, (size_t)in, (size_t)batch, 1.0f, dy, 0,
                 (size_t)out, x, 0, (size_t)in, dw_add ? 1.0f : 0.0f, dw, dw_off, (size_t)in));
  // dx (batch, in) = dy (batch, out) * w (out, in)
  if (dx)
    CT_TRY(ct_gemm(dev, "dense bwd-x", 0, 0, (size_t)batch, (size_t)in, (size_t)out, 1.0f, dy, 0,
                   (size_t)out, w, w_off, (size_t)in, dx_add ? 1.0f : 0.0f, dx, 0, (size_t)in));
  return CT_OK;
}

// ---- conv2d ---------------------------------------------------------------------------------
//
//        x (N,C,H,W)                        col (C*K*K, N*OH*OW)
//   +-----------------+   im2col     row (c,ki,kj) | one column per output pixel (n,oy,ox)
//   | window at       | ---------->  ---------------+--------------------------------------
//   | (oy*S-P, ox*S-P)|                             |  x[n, c, oy*S-P+ki, ox*S-P+kj] or 0
//   +-----------------+
//   forward:  t (OC, N*OH*OW) = w (OC, C*K*K) * col;  y (N,OC,OH,OW) = t permuted + b
//   backward: t = dy permuted (OC, N*OH*OW);  db = row sums of t
//             dw (OC, C*K*K) = t * col^T                 (col: the forward's, or again)
//             dcol (C*K*K, N*OH*OW) = w^T * t;  dx = col2im(dcol)
// Every operand is read in the layout it is stored in (ct_gemm's transposes), so no transposed
// copy of the big im2col matrix is ever made.

static ct_status set_geom_args(cl_kernel k, cl_uint first, const ct_conv_geom *g) {
  ARG_U(k, first + 0, g->batch);
  ARG_U(k, first + 1, g->c);
  ARG_U(k, first + 2, g->h);
  ARG_U(k, first + 3, g->w);
  ARG_U(k, first + 4, g->oh);
  ARG_U(k, first + 5, g->ow);
  ARG_U(k, first + 6, g->k);
  ARG_U(k, first + 7, g->stride);
  ARG_U(k, first + 8, g->pad);
  return CT_OK;
}

ct_conv_scratch_size ct_conv2d_scratch_floats(const ct_conv_geom *g) {
  size_t ncol = (size_t)g->batch * g->oh * g->ow, ckk = (size_t)g->c * g->k * g->k;
  ct_conv_scratch_size s = {ncol * ckk, (size_t)g->oc * ncol};
  return s;
}

// col (C*K*K, N*OH*OW) = im2col(x). Range (OH, C*K*K*N): each work-item writes one output row of
// one image for one (c, ki, kj): OW contiguous floats; a work-group's rows are contiguous too.
static ct_status im2col(ct_device *dev, const ct_conv_geom *g, cl_mem x, cl_mem col) {
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "conv", "im2col", &k));
  ARG_MEM(k, 0, x);
  ARG_MEM(k, 1, col);
  CT_TRY(set_geom_args(k, 2, g));
  return enqueue3(dev, k, "im2col", (size_t)g->oh, (size_t)g->c * g->k * g->k * g->batch, 1);
}

ct_status ct_conv2d_forward(ct_device *dev, const ct_conv_geom *g, cl_mem x, cl_mem w,
                            size_t w_off, cl_mem b, size_t b_off, const ct_conv_scratch *s,
                            cl_mem y, int relu) {
  CT_TRY(check_geom("conv2d forward", g));
  CT_TRY(fits_u32("conv2d forward", b_off + (size_t)g->oc, 1, 1));
  size_t npix = (size_t)g->oh * g->ow, ncol = (size_t)g->batch * npix;
  size_t ckk = (size_t)g->c * g->k * g->k;
  CT_TRY(im2col(dev, g, x, s->col));
  // t (OC, N*OH*OW) = w (OC, C*K*K) * col
  CT_TRY(ct_gemm(dev, "conv fwd", 0, 0, (size_t)g->oc, ncol, ckk, 1.0f, w, w_off, ckk, s->col, 0,
                 ncol, 0.0f, s->t, 0, ncol));
  // y (N, OC, OH, OW) = t permuted + b
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "conv", "conv_out_forward", &k));
  ARG_MEM(k, 0, s->t);
  ARG_MEM(k, 1, b);
  ARG_U(k, 2, b_off);
  ARG_MEM(k, 3, y);
  ARG_U(k, 4, g->batch);
  ARG_U(k, 5, g->oc);
  ARG_U(k, 6, npix);
  ARG_U(k, 7, relu ? 1 : 0);
  return enqueue3(dev, k, "conv_out_forward", (size_t)g->oc, (size_t)g->batch, 1);
}

ct_status ct_conv2d_backward(ct_device *dev, const ct_conv_geom *g, cl_mem x, cl_mem w,
                             size_t w_off, cl_mem dy, cl_mem dw, size_t dw_off, cl_mem db,
                             size_t db_off, const ct_conv_scratch *s, cl_mem dx, cl_mem relu_y,
                             int col_valid) {
  CT_TRY(check_geom("conv2d backward", g));
  CT_TRY(fits_u32("conv2d backward", db_off + (size_t)g->oc, 1, 1));
  size_t npix = (size_t)g->oh * g->ow, ncol = (size_t)g->batch * npix;
  size_t ckk = (size_t)g->c * g->k * g->k;
  cl_kernel k;
  // t (OC, N*OH*OW) = dy (N, OC, OH, OW) permuted (masked by the fused ReLU's output)
  CT_TRY(ct_kernel(dev, "conv", "conv_dy_permute", &k));
  ARG_MEM(k, 0, dy);
  ARG_MEM(k, 1, s->t);
  ARG_U(k, 2, g->batch);
  ARG_U(k, 3, g->oc);
  ARG_U(k, 4, npix);
  cl_mem mask = relu_y ? relu_y : dy;
  ARG_MEM(k, 5, mask);
  ARG_U(k, 6, relu_y ? 1 : 0);
  CT_TRY(enqueue3(dev, k, "conv_dy_permute", (size_t)g->oc, (size_t)g->batch, 1));
  // db (OC) = row sums of t: one work-group per row
  CT_TRY(ct_kernel(dev, "conv", "bias_grad_rows", &k));
  ARG_MEM(k, 0, s->t);
  ARG_U(k, 1, g->oc);
  ARG_U(k, 2, ncol);
  ARG_MEM(k, 3, db);
  ARG_U(k, 4, db_off);
  size_t wg = clamp_wg(dev, WG_RED);
  CT_TRY(enqueue(dev, k, "bias_grad_rows", (size_t)g->oc * wg, wg));
  // dw (OC, C*K*K) = t (OC, N*OH*OW) * col^T, col (C*K*K, N*OH*OW)
  if (!col_valid) CT_TRY(im2col(dev, g, x, s->col));
  CT_TRY(ct_gemm(dev, "conv bwd-w", 0, 1, (size_t)g->oc, ckk, ncol, 1.0f, s->t, 0, ncol, s->col,
                 0, ncol, 0.0f, dw, dw_off, ckk));
  if (!dx) return CT_OK;
  // dcol (C*K*K, N*OH*OW) = w^T * t, then gathered into dx
  CT_TRY(ct_gemm(dev, "conv bwd-x", 1, 0, ckk, ncol, (size_t)g->oc, 1.0f, w, w_off, ckk, s->t, 0,
                 ncol, 0.0f, s->col, 0, ncol));
  CT_TRY(ct_kernel(dev, "conv", "col2im", &k));
  ARG_MEM(k, 0, s->col);
  ARG_MEM(k, 1, dx);
  CT_TRY(set_geom_args(k, 2, g));
  return enqueue3(dev, k, "col2im", (size_t)g->h, (size_t)g->batch * g->c, 1);
}

// ---- max pooling ----------------------------------------------------------------------------

static ct_status check_pool(const char *layer, const ct_conv_geom *g) {
  if (g->pad != 0 || g->oc != g->c)
    return CT_FAIL(CT_ERR_INTERNAL, "%s: pooling needs pad 0 and oc = c (got %d, %d/%d)", layer,
                   g->pad, g->oc, g->c);
  return check_geom(layer, g);
}

static ct_status set_pool_args(cl_kernel k, cl_uint first, const ct_conv_geom *g, int two) {
  ARG_U(k, first + 0, (size_t)g->batch * g->c);
  ARG_U(k, first + 1, g->h);
  ARG_U(k, first + 2, g->w);
  ARG_U(k, first + 3, g->oh);
  ARG_U(k, first + 4, g->ow);
  if (two) return CT_OK;   // the 2 x 2 kernel knows its window
  ARG_U(k, first + 5, g->k);
  ARG_U(k, first + 6, g->stride);
  return CT_OK;
}

// The 2 x 2 window with stride 2 has a backward kernel of its own, one output per work-item.
static int pool_2x2(const ct_conv_geom *g) { return g->k == 2 && g->stride == 2; }

ct_status ct_maxpool_forward(ct_device *dev, const ct_conv_geom *g, cl_mem x, cl_mem y,
                             cl_mem idx) {
  CT_TRY(check_pool("maxpool forward", g));
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "pool", "maxpool_forward", &k));
  ARG_MEM(k, 0, x);
  ARG_MEM(k, 1, y);
  ARG_MEM(k, 2, idx);
  CT_TRY(set_pool_args(k, 3, g, 0));
  return enqueue3(dev, k, "maxpool_forward", (size_t)g->oh, (size_t)g->batch * g->c, 1);
}

ct_status ct_maxpool_backward(ct_device *dev, const ct_conv_geom *g, cl_mem dy, cl_mem idx,
                              cl_mem dx) {
  CT_TRY(check_pool("maxpool backward", g));
  // Windows that do not overlap: scatter from the outputs (zeroing first what no window covers).
  int scatter = g->stride >= g->k;
  int covered = g->stride == g->k && g->oh * g->k == g->h && g->ow * g->k == g->w;
  if (scatter && !covered)
    CT_TRY(ct_fill(dev, dx, (size_t)g->batch * g->c * g->h * g->w, 0.0f));
  int two = pool_2x2(g);
  const char *name = two ? "maxpool2_backward"
                         : scatter ? "maxpool_backward_scatter" : "maxpool_backward_gather";
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "pool", name, &k));
  ARG_MEM(k, 0, dy);
  ARG_MEM(k, 1, idx);
  ARG_MEM(k, 2, dx);
  CT_TRY(set_pool_args(k, 3, g, two));
  if (two) return enqueue3(dev, k, name, (size_t)g->ow, (size_t)g->oh, (size_t)g->batch * g->c);
  if (scatter) return enqueue3(dev, k, name, (size_t)g->oh, (size_t)g->batch * g->c, 1);
  return enqueue3(dev, k, name, (size_t)g->w, (size_t)g->h, (size_t)g->batch * g->c);
}

// ---- ReLU -----------------------------------------------------------------------------------

ct_status ct_relu_forward(ct_device *dev, size_t n, cl_mem x, cl_mem y) {
  if (n == 0) return CT_FAIL(CT_ERR_INTERNAL, "relu forward with n = 0");
  CT_TRY(fits_u32("relu forward", n, 1, 1));
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "activation", "relu_forward", &k));
  ARG_MEM(k, 0, x);
  ARG_MEM(k, 1, y);
  ARG_U(k, 2, n);
  return enqueue(dev, k, "relu_forward", n, WG_1D);
}

ct_status ct_relu_backward(ct_device *dev, size_t n, cl_mem y, cl_mem dy, cl_mem dx) {
  if (n == 0) return CT_FAIL(CT_ERR_INTERNAL, "relu backward with n = 0");
  CT_TRY(fits_u32("relu backward", n, 1, 1));
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "activation", "relu_backward", &k));
  ARG_MEM(k, 0, y);
  ARG_MEM(k, 1, dy);
  ARG_MEM(k, 2, dx);
  ARG_U(k, 3, n);
  return enqueue(dev, k, "relu_backward", n, WG_1D);
}

// ---- dropout --------------------------------------------------------------------------------

static uint32_t mix32(uint32_t x) {   // lowbias32; the same as ct_mix32 in cl/activation.cl
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

uint32_t ct_dropout_hash(uint64_t seed, uint32_t i) {
  uint32_t key = mix32((uint32_t)seed ^ mix32((uint32_t)(seed >> 32) ^ 0x9e3779b9U));
  return mix32(mix32(i ^ key) + key);
}

uint32_t ct_dropout_threshold(float p) {
  if (!(p > 0.0f)) return 0;
  double t = (double)p * 4294967296.0;
  return t >= 4294967295.0 ? UINT32_MAX : (uint32_t)t;
}

float ct_dropout_scale(float p) { return (float)(1.0 / (1.0 - (double)p)); }

int ct_dropout_keeps(uint64_t seed, uint32_t i, float p) {
  return ct_dropout_hash(seed, i) >= ct_dropout_threshold(p);
}

static ct_status dropout(ct_device *dev, const char *name, size_t n, float p, uint64_t seed,
                         uint32_t first, cl_mem in, cl_mem out) {
  if (n == 0) return CT_FAIL(CT_ERR_INTERNAL, "%s with n = 0", name);
  if (!(p >= 0.0f && p < 1.0f))
    return CT_FAIL(CT_ERR_INTERNAL, "%s with p = %g (expected 0 <= p < 1)", name, (double)p);
  CT_TRY(fits_u32(name, n, 1, 1));
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "activation", name, &k));
  ARG_MEM(k, 0, in);
  ARG_MEM(k, 1, out);
  ARG_U(k, 2, n);
  ARG_U(k, 3, (uint32_t)seed);
  ARG_U(k, 4, (uint32_t)(seed >> 32));
  ARG_U(k, 5, first);
  ARG_U(k, 6, ct_dropout_threshold(p));
  ARG_F(k, 7, ct_dropout_scale(p));
  return enqueue(dev, k, name, n, WG_1D);
}

ct_status ct_dropout_forward(ct_device *dev, size_t n, float p, uint64_t seed, uint32_t first,
                             cl_mem x, cl_mem y) {
  return dropout(dev, "dropout_forward", n, p, seed, first, x, y);
}

ct_status ct_dropout_backward(ct_device *dev, size_t n, float p, uint64_t seed, uint32_t first,
                              cl_mem dy, cl_mem dx) {
  return dropout(dev, "dropout_backward", n, p, seed, first, dy, dx);
}

// ---- softmax cross-entropy ------------------------------------------------------------------

ct_status ct_softmax_xent(ct_device *dev, int batch, int classes, cl_mem logits, cl_mem labels,
                          float scale, cl_mem losses, cl_mem dlogits) {
  CT_TRY(check_positive("softmax_xent", batch, classes, 1));
  CT_TRY(fits_u32("softmax_xent", (size_t)batch, (size_t)classes, 1));
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "loss", "softmax_xent", &k));
  ARG_MEM(k, 0, logits);
  ARG_MEM(k, 1, labels);
  ARG_MEM(k, 2, losses);
  ARG_MEM(k, 3, dlogits);
  ARG_U(k, 4, batch);
  ARG_U(k, 5, classes);
  ARG_F(k, 6, scale);
  return enqueue(dev, k, "softmax_xent", (size_t)batch, WG_FEW);
}
