// test_layers.c: every layer's forward and backward pass (layers.h) against a plain-C reference
// in double precision, on awkward shapes (nothing a multiple of a tile), batch 1 and 7, with
// parameters at odd offsets of a larger buffer whose other elements must stay untouched.
// Dropout: determinism per seed, the host mirror of the mask, keep rate, backward scaling.
// Softmax cross-entropy: reference values, huge logits stay finite, bad labels. The non-finite
// count finds NaN and infinities at every position, and nothing in finite extremes.
//
// The suite runs on "auto" (PoCL here). A small subset (one shape per layer, batch 2) runs
// again on Oclgrind in a child process (this executable with --oclgrind-child) whose stderr
// goes to a file; the test fails when Oclgrind reported an invalid access there. Without
// Oclgrind that part is skipped (and says so).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cltrain/layers.h"
#include "testutil.h"

static ct_device g_dev;
static int g_small;   // the Oclgrind subset: one small shape per layer
static const float SENTINEL = 12345.0f;

// ---- helpers ---------------------------------------------------------------------------------

static cl_mem buf_new(const void *host, size_t bytes) {
  cl_int err;
  if (bytes == 0) bytes = 4;
  cl_mem m = clCreateBuffer(g_dev.ctx, CL_MEM_READ_WRITE | (host ? CL_MEM_COPY_HOST_PTR : 0),
                            bytes, (void *)host, &err);
  ck_assert_msg(err == CL_SUCCESS, "clCreateBuffer(%zu): %s", bytes, ct_cl_errname(err));
  return m;
}

static cl_mem buf_fill(size_t n, float value) {
  float *h = malloc((n ? n : 1) * sizeof *h);
  for (size_t i = 0; i < n; i++) h[i] = value;
  cl_mem m = buf_new(h, n * sizeof *h);
  free(h);
  return m;
}

static float *buf_read(cl_mem m, size_t n) {
  float *h = malloc((n ? n : 1) * sizeof *h);
  ck_assert_int_eq(clEnqueueReadBuffer(g_dev.queue, m, CL_TRUE, 0, n * sizeof *h, h, 0, NULL,
                                       NULL), CL_SUCCESS);
  return h;
}

static float *rand_array(size_t n, uint64_t seed, float lo, float hi) {
  float *x = malloc((n ? n : 1) * sizeof *x);
  ct_test_rand_fill(x, n, seed, lo, hi);
  return x;
}

// got vs the double reference: |got - want| <= 1e-4 |want| + 1e-5 max(1, max |want|).
static void expect_close(const float *got, const double *want, size_t n, const char *what) {
  double scale = 1.0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
  float *w = malloc((n ? n : 1) * sizeof *w);
  for (size_t i = 0; i < n; i++) w[i] = (float)want[i];
  int ok = ct_test_close(got, w, n, 1e-4f, (float)(1e-5 * scale), what);
  free(w);
  ck_assert_msg(ok, "%s differs from the reference", what);
}

// A parameter buffer of `total` floats: the slices [w_off, w_off+wn) and [b_off, b_off+bn) get
// w and b, everything else SENTINEL. Returns the buffer; *layout receives the host copy.
static cl_mem param_buffer(size_t total, size_t w_off, const float *w, size_t wn, size_t b_off,
                           const float *b, size_t bn) {
  float *h = malloc(total * sizeof *h);
  for (size_t i = 0; i < total; i++) h[i] = SENTINEL;
  if (w) memcpy(h + w_off, w, wn * sizeof *w);
  if (b) memcpy(h + b_off, b, bn * sizeof *b);
  cl_mem m = buf_new(h, total * sizeof *h);
  free(h);
  return m;
}

// Reads a gradient buffer laid out like param_buffer, checks the slices and that every other
// element still holds SENTINEL.
static void expect_grad_slices(cl_mem m, size_t total, size_t w_off, const double *dw, size_t wn,
                               size_t b_off, const double *db, size_t bn, const char *what) {
  float *h = buf_read(m, total);
  for (size_t i = 0; i < total; i++) {
    int in_w = i >= w_off && i < w_off + wn, in_b = i >= b_off && i < b_off + bn;
    if (!in_w && !in_b)
      ck_assert_msg(h[i] == SENTINEL, "%s: element %zu outside the slices was written (%g)", what,
                    i, (double)h[i]);
  }
  char name[128];
  snprintf(name, sizeof name, "%s dw", what);
  expect_close(h + w_off, dw, wn, name);
  snprintf(name, sizeof name, "%s db", what);
  expect_close(h + b_off, db, bn, name);
  free(h);
}

// ---- dense -----------------------------------------------------------------------------------

// relu = 1: the layer with a ReLU fused after it (forward: max(., 0); backward: dy masked).
static void check_dense(int batch, int in, int out, int relu) {
  char what[96];
  snprintf(what, sizeof what, "dense%s batch %d in %d out %d", relu ? "+relu" : "", batch, in, out);
  size_t wn = (size_t)out * in, w_off = 3, b_off = w_off + wn + 5, total = b_off + out + 2;
  float *x = rand_array((size_t)batch * in, 11 + batch, -1, 1);
  float *w = rand_array(wn, 12 + in, -1, 1);
  float *b = rand_array((size_t)out, 13 + out, -1, 1);
  float *dy = rand_array((size_t)batch * out, 14, -1, 1);
  double *y_ref = calloc((size_t)batch * out, sizeof *y_ref);
  double *dw_ref = calloc(wn, sizeof *dw_ref), *db_ref = calloc((size_t)out, sizeof *db_ref);
  double *dx_ref = calloc((size_t)batch * in, sizeof *dx_ref);
  for (int n = 0; n < batch; n++)
    for (int o = 0; o < out; o++) {
      double s = b[o];
      for (int i = 0; i < in; i++) s += (double)x[n * in + i] * w[o * in + i];
      y_ref[n * out + o] = relu ? fmax(s, 0.0) : s;
      double g = relu && !(s > 0) ? 0.0 : dy[n * out + o];
      db_ref[o] += g;
      for (int i = 0; i < in; i++) {
        dw_ref[o * in + i] += g * x[n * in + i];
        dx_ref[n * in + i] += g * w[o * in + i];
      }
    }
  cl_mem dparams = param_buffer(total, w_off, w, wn, b_off, b, (size_t)out);
  cl_mem dgrads = param_buffer(total, 0, NULL, 0, 0, NULL, 0);
  cl_mem dx_in = buf_new(x, (size_t)batch * in * 4), dy_in = buf_new(dy, (size_t)batch * out * 4);
  cl_mem dout = buf_fill((size_t)batch * out, -7.0f), ddx = buf_fill((size_t)batch * in, -7.0f);
  ck_assert_ct(ct_dense_forward(&g_dev, batch, in, out, dx_in, dparams, w_off, dparams, b_off,
                                dout, relu));
  float *y = buf_read(dout, (size_t)batch * out);
  expect_close(y, y_ref, (size_t)batch * out, what);
  ck_assert_ct(ct_dense_backward(&g_dev, batch, in, out, dx_in, dparams, w_off, dy_in, dgrads,
                                 w_off, dgrads, b_off, ddx, relu ? dout : NULL));
  expect_grad_slices(dgrads, total, w_off, dw_ref, wn, b_off, db_ref, (size_t)out, what);
  float *dx = buf_read(ddx, (size_t)batch * in);
  expect_close(dx, dx_ref, (size_t)batch * in, what);
  // Without dx: the parameter gradients are the same, dx untouched.
  cl_mem dgrads2 = param_buffer(total, 0, NULL, 0, 0, NULL, 0);
  ck_assert_ct(ct_dense_backward(&g_dev, batch, in, out, dx_in, dparams, w_off, dy_in, dgrads2,
                                 w_off, dgrads2, b_off, NULL, relu ? dout : NULL));
  expect_grad_slices(dgrads2, total, w_off, dw_ref, wn, b_off, db_ref, (size_t)out, what);
  clReleaseMemObject(dgrads2);
  clReleaseMemObject(dparams), clReleaseMemObject(dgrads), clReleaseMemObject(dx_in);
  clReleaseMemObject(dy_in), clReleaseMemObject(dout), clReleaseMemObject(ddx);
  free(x), free(w), free(b), free(dy), free(y), free(dx);
  free(y_ref), free(dw_ref), free(db_ref), free(dx_ref);
}

START_TEST(dense_matches_reference) {
  if (g_small) {
    check_dense(2, 5, 3, 0);
    check_dense(2, 5, 3, 1);
    return;
  }
  const int shapes[][3] = {{1, 37, 19}, {7, 37, 19}, {7, 1, 1}, {3, 130, 65}, {1, 1, 10}};
  for (int relu = 0; relu < 2; relu++)
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
      check_dense(shapes[s][0], shapes[s][1], shapes[s][2], relu);
}
END_TEST

// ---- conv2d ----------------------------------------------------------------------------------

static void check_conv(int batch, int c, int h, int w, int oc, int k, int stride, int pad,
                       int relu) {
  char what[128];
  snprintf(what, sizeof what, "conv2d%s batch %d in %dx%dx%d oc %d k %d stride %d pad %d",
           relu ? "+relu" : "", batch, c, h, w, oc, k, stride, pad);
  ct_conv_geom g = {batch, c, h, w, oc, ct_conv_out_size(h, k, stride, pad),
                    ct_conv_out_size(w, k, stride, pad), k, stride, pad};
  ck_assert_msg(g.oh > 0 && g.ow > 0, "%s: empty output", what);
  int oh = g.oh, ow = g.ow;
  size_t nx = (size_t)batch * c * h * w, ny = (size_t)batch * oc * oh * ow;
  size_t wn = (size_t)oc * c * k * k, w_off = 7, b_off = w_off + wn + 1, total = b_off + oc + 4;
  float *x = rand_array(nx, 21 + batch + k, -1, 1);
  float *wt = rand_array(wn, 22 + k, -1, 1);
  float *b = rand_array((size_t)oc, 23, -1, 1);
  float *dy = rand_array(ny, 24 + stride, -1, 1);
  double *y_ref = calloc(ny, sizeof *y_ref), *dx_ref = calloc(nx, sizeof *dx_ref);
  double *dw_ref = calloc(wn, sizeof *dw_ref), *db_ref = calloc((size_t)oc, sizeof *db_ref);
#define X(n, ci, yy, xx) x[(((size_t)(n) * c + (ci)) * h + (yy)) * w + (xx)]
#define WT(o, ci, ki, kj) (((size_t)(o) * c + (ci)) * k + (ki)) * k + (kj)
  for (int pass = 0; pass < 2; pass++)   // the output first (the ReLU's mask needs it)
  for (int n = 0; n < batch; n++)
    for (int o = 0; o < oc; o++)
      for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
          size_t yi = (((size_t)n * oc + o) * oh + oy) * ow + ox;
          double s = b[o], g1 = relu && !(y_ref[yi] > 0) ? 0.0 : dy[yi];
          if (pass) db_ref[o] += g1;
          for (int ci = 0; ci < c; ci++)
            for (int ki = 0; ki < k; ki++)
              for (int kj = 0; kj < k; kj++) {
                int yy = oy * stride - pad + ki, xx = ox * stride - pad + kj;
                if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                if (!pass) {
                  s += (double)X(n, ci, yy, xx) * wt[WT(o, ci, ki, kj)];
                  continue;
                }
                dw_ref[WT(o, ci, ki, kj)] += g1 * X(n, ci, yy, xx);
                dx_ref[(((size_t)n * c + ci) * h + yy) * w + xx] += g1 * wt[WT(o, ci, ki, kj)];
              }
          if (!pass) y_ref[yi] = relu ? fmax(s, 0.0) : s;
        }
#undef X
#undef WT
  cl_mem dparams = param_buffer(total, w_off, wt, wn, b_off, b, (size_t)oc);
  cl_mem dgrads = param_buffer(total, 0, NULL, 0, 0, NULL, 0);
  cl_mem dxin = buf_new(x, nx * 4), ddy = buf_new(dy, ny * 4);
  cl_mem dout = buf_fill(ny, -7.0f), ddx = buf_fill(nx, -7.0f);
  ct_conv_scratch_size ss = ct_conv2d_scratch_floats(&g);
  ct_conv_scratch sc = {buf_fill(ss.col, -7.0f), buf_fill(ss.t, -7.0f)};
  ck_assert_ct(ct_conv2d_forward(&g_dev, &g, dxin, dparams, w_off, dparams, b_off, &sc, dout, relu));
  float *y = buf_read(dout, ny);
  expect_close(y, y_ref, ny, what);
  // right after the forward: its im2col is still in sc.col
  ck_assert_ct(ct_conv2d_backward(&g_dev, &g, dxin, dparams, w_off, ddy, dgrads, w_off, dgrads,
                                  b_off, &sc, ddx, relu ? dout : NULL, 1));
  expect_grad_slices(dgrads, total, w_off, dw_ref, wn, b_off, db_ref, (size_t)oc, what);
  float *dx = buf_read(ddx, nx);
  expect_close(dx, dx_ref, nx, what);
  cl_mem dgrads2 = param_buffer(total, 0, NULL, 0, 0, NULL, 0);
  // sc.col now holds dcol: the im2col is computed again
  ck_assert_ct(ct_conv2d_backward(&g_dev, &g, dxin, dparams, w_off, ddy, dgrads2, w_off, dgrads2,
                                  b_off, &sc, NULL, relu ? dout : NULL, 0));
  expect_grad_slices(dgrads2, total, w_off, dw_ref, wn, b_off, db_ref, (size_t)oc, what);
  clReleaseMemObject(dgrads2);
  clReleaseMemObject(dparams), clReleaseMemObject(dgrads), clReleaseMemObject(dxin);
  clReleaseMemObject(ddy), clReleaseMemObject(dout), clReleaseMemObject(ddx);
  clReleaseMemObject(sc.col), clReleaseMemObject(sc.t);
  free(x), free(wt), free(b), free(dy), free(y), free(dx);
  free(y_ref), free(dx_ref), free(dw_ref), free(db_ref);
}

START_TEST(conv2d_matches_reference) {
  if (g_small) {
    check_conv(2, 2, 5, 4, 3, 3, 2, 1, 0);
    check_conv(2, 22, 3, 3, 2, 3, 1, 1, 0);   // c*k*k = 198: a long row of col
    check_conv(2, 2, 5, 4, 3, 3, 2, 1, 1);
    return;
  }
  // batch, c, h, w, oc, k, stride, pad
  const int shapes[][8] = {
      {1, 3, 13, 11, 5, 3, 1, 1}, {7, 3, 13, 11, 5, 3, 1, 1}, {7, 3, 13, 11, 4, 5, 2, 2},
      {1, 3, 13, 11, 4, 3, 2, 0}, {7, 3, 13, 11, 2, 5, 1, 0}, {7, 3, 13, 11, 6, 5, 1, 2},
      {2, 2, 5, 4, 3, 1, 1, 0},   {3, 1, 4, 5, 3, 3, 3, 2},   {7, 1, 12, 12, 8, 3, 1, 1},
      {3, 22, 6, 5, 3, 3, 1, 1} /* c*k*k 198 */, {2, 9, 5, 5, 4, 5, 2, 1}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int *v = shapes[s];
    check_conv(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], 0);
    if (s % 3 == 1) check_conv(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], 1);
  }
}
END_TEST

// ---- max pooling -----------------------------------------------------------------------------

static void check_maxpool(int batch, int c, int h, int w, int k, int stride, int constant) {
  char what[128];
  snprintf(what, sizeof what, "maxpool batch %d in %dx%dx%d k %d stride %d%s", batch, c, h, w, k,
           stride, constant ? " (all ties)" : "");
  ct_conv_geom g = {batch, c, h, w, c, ct_conv_out_size(h, k, stride, 0),
                    ct_conv_out_size(w, k, stride, 0), k, stride, 0};
  int oh = g.oh, ow = g.ow;
  size_t nx = (size_t)batch * c * h * w, ny = (size_t)batch * c * oh * ow;
  float *x = rand_array(nx, 31 + h, -1, 1);
  if (constant)
    for (size_t i = 0; i < nx; i++) x[i] = 0.5f;
  float *dy = rand_array(ny, 32 + w, -1, 1);
  double *y_ref = calloc(ny, sizeof *y_ref), *dx_ref = calloc(nx, sizeof *dx_ref);
  for (int p = 0; p < batch * c; p++)
    for (int oy = 0; oy < oh; oy++)
      for (int ox = 0; ox < ow; ox++) {
        const float *xp = x + (size_t)p * h * w;
        int best = oy * stride * w + ox * stride;
        for (int ki = 0; ki < k; ki++)
          for (int kj = 0; kj < k; kj++) {
            int q = (oy * stride + ki) * w + ox * stride + kj;
            if (xp[q] > xp[best]) best = q;
          }
        size_t o = ((size_t)p * oh + oy) * ow + ox;
        y_ref[o] = xp[best];
        dx_ref[(size_t)p * h * w + best] += dy[o];
      }
  cl_mem dxin = buf_new(x, nx * 4), ddy = buf_new(dy, ny * 4);
  cl_mem dout = buf_fill(ny, -7.0f), ddx = buf_fill(nx, -7.0f), didx = buf_fill(ny, -7.0f);
  ck_assert_ct(ct_maxpool_forward(&g_dev, &g, dxin, dout, didx));
  float *y = buf_read(dout, ny);
  expect_close(y, y_ref, ny, what);
  ck_assert_ct(ct_maxpool_backward(&g_dev, &g, ddy, didx, ddx));
  float *dx = buf_read(ddx, nx);
  expect_close(dx, dx_ref, nx, what);
  clReleaseMemObject(dxin), clReleaseMemObject(ddy), clReleaseMemObject(dout);
  clReleaseMemObject(ddx), clReleaseMemObject(didx);
  free(x), free(dy), free(y), free(dx), free(y_ref), free(dx_ref);
}

START_TEST(maxpool_matches_reference) {
  if (g_small) {
    check_maxpool(2, 2, 5, 5, 2, 2, 0);   // scatter, remainder zeroed
    check_maxpool(2, 2, 4, 4, 2, 1, 0);   // overlapping windows: gather
    return;
  }
  // batch, c, h, w, k, stride, constant
  const int shapes[][7] = {{1, 3, 13, 11, 2, 2, 0}, {7, 3, 13, 11, 2, 2, 0},
                           {7, 2, 9, 7, 3, 3, 0},   {1, 1, 5, 5, 5, 5, 0},
                           {2, 3, 7, 6, 3, 1, 0},   {7, 2, 8, 9, 2, 2, 1},
                           {2, 2, 8, 9, 2, 3, 0}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int *v = shapes[s];
    check_maxpool(v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
  }
}
END_TEST

// ---- ReLU ------------------------------------------------------------------------------------

START_TEST(relu_matches_reference) {
  size_t n = g_small ? 37 : 1003;
  float *x = rand_array(n, 41, -1, 1), *dy = rand_array(n, 42, -1, 1);
  double *y_ref = malloc(n * sizeof *y_ref), *dx_ref = malloc(n * sizeof *dx_ref);
  for (size_t i = 0; i < n; i++) {
    y_ref[i] = x[i] > 0 ? x[i] : 0;
    dx_ref[i] = x[i] > 0 ? dy[i] : 0;
  }
  cl_mem dxin = buf_new(x, n * 4), ddy = buf_new(dy, n * 4);
  cl_mem dout = buf_fill(n, -7.0f), ddx = buf_fill(n, -7.0f);
  ck_assert_ct(ct_relu_forward(&g_dev, n, dxin, dout));
  float *y = buf_read(dout, n);
  expect_close(y, y_ref, n, "relu forward");
  ck_assert_ct(ct_relu_backward(&g_dev, n, dout, ddy, ddx));
  float *dx = buf_read(ddx, n);
  expect_close(dx, dx_ref, n, "relu backward");
  clReleaseMemObject(dxin), clReleaseMemObject(ddy), clReleaseMemObject(dout);
  clReleaseMemObject(ddx);
  free(x), free(dy), free(y), free(dx), free(y_ref), free(dx_ref);
}
END_TEST

// ---- dropout ---------------------------------------------------------------------------------

static float *dropout_run(cl_mem dxin, size_t n, float p, uint64_t seed, uint32_t first) {
  cl_mem dout = buf_fill(n, -7.0f);
  ck_assert_ct(ct_dropout_forward(&g_dev, n, p, seed, first, dxin, dout));
  float *y = buf_read(dout, n);
  clReleaseMemObject(dout);
  return y;
}

START_TEST(dropout_is_seeded_and_scaled) {
  size_t n = g_small ? 301 : 100003;
  const float p = 0.3f;
  const float scale = ct_dropout_scale(p);
  ck_assert_float_eq_tol(scale, 1.0f / 0.7f, 1e-6f);
  float *x = rand_array(n, 51, 0.5f, 1.0f), *dy = rand_array(n, 52, 0.5f, 1.0f);
  cl_mem dxin = buf_new(x, n * 4), ddy = buf_new(dy, n * 4);
  float *a = dropout_run(dxin, n, p, 42, 0), *a2 = dropout_run(dxin, n, p, 42, 0);
  float *c = dropout_run(dxin, n, p, 43, 0), *id = dropout_run(dxin, n, 0.0f, 42, 0);
  float *sh = dropout_run(dxin, n, p, 42, 1000);   // element i as element 1000 + i
  size_t kept = 0, differ = 0;
  for (size_t i = 0; i < n; i++) {
    int keep = ct_dropout_keeps(42, (uint32_t)i, p);
    float want = keep ? x[i] * scale : 0.0f;
    ck_assert_msg(a[i] == a2[i], "dropout: the same seed gave a different value at %zu", i);
    ck_assert_msg(fabsf(a[i] - want) <= 1e-6f * fabsf(want),
                  "dropout: element %zu is %g, the host mask says %g", i, (double)a[i],
                  (double)want);
    ck_assert_msg(id[i] == x[i], "dropout p = 0 changed element %zu", i);
    float want_sh = ct_dropout_keeps(42, (uint32_t)(1000 + i), p) ? x[i] * scale : 0.0f;
    ck_assert_msg(sh[i] == want_sh, "dropout with first = 1000: element %zu is %g, want %g", i,
                  (double)sh[i], (double)want_sh);
    kept += keep;
    differ += (a[i] != 0) != (c[i] != 0);
  }
  double rate = (double)kept / (double)n;
  if (!g_small) {
    ck_assert_msg(fabs(rate - 0.7) < 0.01, "dropout keep rate %.4f, expected about 0.7", rate);
    ck_assert_msg(differ > n / 5, "seeds 42 and 43 gave masks differing in only %zu of %zu", differ,
                  n);
  } else {
    ck_assert_msg(differ > 0, "seeds 42 and 43 gave the same mask");
  }
  // Backward: the same mask and scale applied to dy.
  cl_mem ddx = buf_fill(n, -7.0f);
  ck_assert_ct(ct_dropout_backward(&g_dev, n, p, 42, 0, ddy, ddx));
  float *dx = buf_read(ddx, n);
  for (size_t i = 0; i < n; i++) {
    float want = ct_dropout_keeps(42, (uint32_t)i, p) ? dy[i] * scale : 0.0f;
    ck_assert_msg(fabsf(dx[i] - want) <= 1e-6f * fabsf(want),
                  "dropout backward: element %zu is %g, want %g", i, (double)dx[i], (double)want);
  }
  // The hash is a pure function of (seed, index): spot values fixed for every device.
  ck_assert_uint_eq(ct_dropout_hash(42, 0), ct_dropout_hash(42, 0));
  ck_assert_uint_ne(ct_dropout_hash(42, 0), ct_dropout_hash(42, 1));
  ck_assert_uint_ne(ct_dropout_hash(42, 0), ct_dropout_hash(42ULL << 32, 0));
  clReleaseMemObject(dxin), clReleaseMemObject(ddy), clReleaseMemObject(ddx);
  free(x), free(dy), free(a), free(a2), free(c), free(id), free(sh), free(dx);
}
END_TEST

// ---- softmax cross-entropy -------------------------------------------------------------------

static void softmax_ref(const float *z, const int *y, int batch, int classes, double scale,
                        double *loss, double *dz) {
  for (int i = 0; i < batch; i++) {
    const float *zi = z + (size_t)i * classes;
    double m = zi[0], s = 0;
    for (int j = 1; j < classes; j++) m = fmax(m, zi[j]);
    for (int j = 0; j < classes; j++) s += exp(zi[j] - m);
    loss[i] = log(s) - (zi[y[i]] - m);
    for (int j = 0; j < classes; j++)
      dz[(size_t)i * classes + j] = scale * (exp(zi[j] - m) / s - (j == y[i]));
  }
}

static void check_softmax(int batch, int classes, const float *z, const int *y, float scale,
                          const char *what) {
  size_t nz = (size_t)batch * classes;
  double *loss_ref = malloc((size_t)batch * sizeof *loss_ref);
  double *dz_ref = malloc(nz * sizeof *dz_ref);
  softmax_ref(z, y, batch, classes, scale, loss_ref, dz_ref);
  cl_mem dz_in = buf_new(z, nz * 4), dy = buf_new(y, (size_t)batch * sizeof(int));
  cl_mem dloss = buf_fill((size_t)batch, -7.0f), ddz = buf_fill(nz, -7.0f);
  ck_assert_ct(ct_softmax_xent(&g_dev, batch, classes, dz_in, dy, scale, dloss, ddz));
  float *loss = buf_read(dloss, (size_t)batch), *dz = buf_read(ddz, nz);
  for (int i = 0; i < batch; i++)
    ck_assert_msg(isfinite(loss[i]), "%s: loss %d not finite", what, i);
  for (size_t i = 0; i < nz; i++)
    ck_assert_msg(isfinite(dz[i]), "%s: dlogit %zu not finite", what, i);
  expect_close(loss, loss_ref, (size_t)batch, what);
  expect_close(dz, dz_ref, nz, what);
  clReleaseMemObject(dz_in), clReleaseMemObject(dy), clReleaseMemObject(dloss);
  clReleaseMemObject(ddz);
  free(loss), free(dz), free(loss_ref), free(dz_ref);
}

START_TEST(softmax_xent_matches_reference) {
  int batch = g_small ? 2 : 7, classes = g_small ? 3 : 10;
  float *z = rand_array((size_t)batch * classes, 61, -5, 5);
  int y[7];
  uint64_t s = 62;
  for (int i = 0; i < batch; i++) y[i] = (int)(ct_test_rand_u64(&s) % (uint64_t)classes);
  check_softmax(batch, classes, z, y, 0.5f, "softmax_xent");
  free(z);
  if (g_small) return;
  check_softmax(1, 1, (const float[]){3.0f}, (const int[]){0}, 1.0f, "softmax_xent 1 class");
}
END_TEST

START_TEST(softmax_xent_large_logits_stay_finite) {
  // Rows of +-1000: exp would overflow without the max shift.
  const float z[3 * 4] = {1000, 0, -1000, 999, 1000, 0, -1000, 999, -1000, -1000, -1000, -1000};
  const int y[3] = {0, 2, 1};
  check_softmax(3, 4, z, y, 1.0f, "softmax_xent large logits");
  float loss[3];
  cl_mem dz_in = buf_new(z, sizeof z), dy = buf_new(y, sizeof y);
  cl_mem dloss = buf_fill(3, 0.0f), ddz = buf_fill(12, 0.0f);
  ck_assert_ct(ct_softmax_xent(&g_dev, 3, 4, dz_in, dy, 1.0f, dloss, ddz));
  ck_assert_int_eq(clEnqueueReadBuffer(g_dev.queue, dloss, CL_TRUE, 0, sizeof loss, loss, 0, NULL,
                                       NULL), CL_SUCCESS);
  ck_assert_float_eq_tol(loss[0], (float)log1p(exp(-1.0)), 1e-5f);   // 1000 vs 999
  ck_assert_float_eq_tol(loss[1], 2000.0f + (float)log1p(exp(-1.0)), 1e-2f);
  ck_assert_float_eq_tol(loss[2], (float)log(4.0), 1e-5f);
  clReleaseMemObject(dz_in), clReleaseMemObject(dy), clReleaseMemObject(dloss);
  clReleaseMemObject(ddz);
}
END_TEST

START_TEST(softmax_xent_bad_label_gives_nan) {
  const float z[2 * 3] = {1, 2, 3, 4, 5, 6};
  const int y[2] = {1, 3};
  float loss[2], dz[6];
  cl_mem dz_in = buf_new(z, sizeof z), dy = buf_new(y, sizeof y);
  cl_mem dloss = buf_fill(2, 0.0f), ddz = buf_fill(6, 9.0f);
  ck_assert_ct(ct_softmax_xent(&g_dev, 2, 3, dz_in, dy, 1.0f, dloss, ddz));
  ck_assert_int_eq(clEnqueueReadBuffer(g_dev.queue, dloss, CL_TRUE, 0, sizeof loss, loss, 0, NULL,
                                       NULL), CL_SUCCESS);
  ck_assert_int_eq(clEnqueueReadBuffer(g_dev.queue, ddz, CL_TRUE, 0, sizeof dz, dz, 0, NULL, NULL),
                   CL_SUCCESS);
  ck_assert(isfinite(loss[0]));
  ck_assert(isnan(loss[1]));
  for (int j = 3; j < 6; j++) ck_assert_float_eq(dz[j], 0.0f);
  clReleaseMemObject(dz_in), clReleaseMemObject(dy), clReleaseMemObject(dloss);
  clReleaseMemObject(ddz);
}
END_TEST

// The non-finite count (the step's guard): a NaN or an infinity anywhere in x[0..n) is found,
// at the first, a middle and the last element, for sizes around the kernel's 8-float loads and
// its per-item chunks; finite extremes (FLT_MAX, denormals, -0) are not. The counter sits
// after x in the same buffer, as the trainer's does.
static unsigned count_bad(const float *x, size_t n) {
  cl_mem m = buf_new(NULL, (n + 1) * sizeof(float));
  ck_assert_int_eq(clEnqueueWriteBuffer(g_dev.queue, m, CL_TRUE, 0, n * sizeof *x, x, 0, NULL,
                                        NULL), CL_SUCCESS);
  const cl_uint zero = 0;
  ck_assert_int_eq(clEnqueueWriteBuffer(g_dev.queue, m, CL_TRUE, n * sizeof(float), sizeof zero,
                                        &zero, 0, NULL, NULL), CL_SUCCESS);
  ck_assert_ct(ct_count_nonfinite(&g_dev, m, n, m, n));
  cl_uint got;
  ck_assert_int_eq(clEnqueueReadBuffer(g_dev.queue, m, CL_TRUE, n * sizeof(float), sizeof got,
                                       &got, 0, NULL, NULL), CL_SUCCESS);
  clReleaseMemObject(m);
  return got;
}

START_TEST(count_nonfinite_finds_every_position) {
  static const size_t sizes_big[] = {1, 7, 8, 9, 31, 33, 4099, 100003};
  static const size_t sizes_small[] = {1, 9, 33};
  const size_t *sizes = g_small ? sizes_small : sizes_big;
  size_t ns = g_small ? 3 : sizeof sizes_big / sizeof *sizes_big;
  const float bad[3] = {NAN, INFINITY, -INFINITY};
  for (size_t t = 0; t < ns; t++) {
    size_t n = sizes[t];
    float *x = rand_array(n, 70 + t, -1e38f, 1e38f);   // (hi - lo stays finite)
    x[0] = 3.4028235e38f;
    if (n > 1) x[1] = 1e-45f;    // the smallest denormal
    if (n > 2) x[2] = -0.0f;
    ck_assert_msg(count_bad(x, n) == 0, "n %zu: finite values counted as non-finite", n);
    size_t where[3] = {0, n / 2, n - 1};
    for (int w = 0; w < 3; w++)
      for (int b = 0; b < 3; b++) {
        float keep = x[where[w]];
        x[where[w]] = bad[b];
        ck_assert_msg(count_bad(x, n) > 0, "n %zu: %g at %zu not found", n, (double)bad[b],
                      where[w]);
        x[where[w]] = keep;
      }
    free(x);
  }
}
END_TEST

START_TEST(conv_out_size_and_bad_geometry) {
  ck_assert_int_eq(ct_conv_out_size(28, 3, 1, 1), 28);
  ck_assert_int_eq(ct_conv_out_size(13, 5, 2, 2), 7);
  ck_assert_int_eq(ct_conv_out_size(7, 2, 2, 0), 3);
  ck_assert_int_le(ct_conv_out_size(2, 5, 1, 0), 0);
  ct_conv_geom g = {2, 1, 5, 5, 2, 4 /* wrong: 5 */, 5, 3, 1, 1};
  cl_mem m = buf_fill(1000, 0.0f);
  ct_conv_scratch sc = {m, m};
  ck_assert_int_eq(ct_conv2d_forward(&g_dev, &g, m, m, 0, m, 0, &sc, m, 0), CT_ERR_INTERNAL);
  ct_error_clear();
  ck_assert_int_eq(ct_dense_forward(&g_dev, 0, 3, 3, m, m, 0, m, 0, m, 0), CT_ERR_INTERNAL);
  ct_error_clear();
  ck_assert_int_eq(ct_dropout_forward(&g_dev, 10, 1.0f, 1, 0, m, m), CT_ERR_INTERNAL);
  ct_error_clear();
  clReleaseMemObject(m);
}
END_TEST

// ---- Oclgrind --------------------------------------------------------------------------------

// Runs this executable with --oclgrind-child, stderr into a file; fails on any invalid access
// Oclgrind reports there (it keeps running after one, so the exit code alone would not tell).
START_TEST(oclgrind_subset_has_no_invalid_access) {
  ct_test_oclgrind_child("test_layers", 0);
}
END_TEST

static Suite *layers_suite(void) {
  Suite *s = suite_create(g_small ? "layers-oclgrind" : "layers");
  TCase *tc = tcase_create("layers");
  tcase_set_timeout(tc, 900);
  tcase_add_test(tc, dense_matches_reference);
  tcase_add_test(tc, conv2d_matches_reference);
  tcase_add_test(tc, maxpool_matches_reference);
  tcase_add_test(tc, relu_matches_reference);
  tcase_add_test(tc, dropout_is_seeded_and_scaled);
  tcase_add_test(tc, softmax_xent_matches_reference);
  tcase_add_test(tc, count_nonfinite_finds_every_position);
  if (!g_small) {
    tcase_add_test(tc, softmax_xent_large_logits_stay_finite);
    tcase_add_test(tc, softmax_xent_bad_label_gives_nan);
    tcase_add_test(tc, conv_out_size_and_bad_geometry);
    tcase_add_test(tc, oclgrind_subset_has_no_invalid_access);
  }
  suite_add_tcase(s, tc);
  return s;
}

int main(int argc, char **argv) {
  g_small = argc > 1 && !strcmp(argv[1], "--oclgrind-child");
  ct_test_device(g_small ? "oclgrind" : "auto", &g_dev);
  int rc = ct_test_run(layers_suite(), 1);
  ct_device_close(&g_dev);
  return rc;
}
