// bench_attention.c: the two attention implementations (gpt_kernels.h: cltrain's own kernels,
// CLBlast's batched GEMM) timed against each other on one device, interleaved, so that a busy
// machine slows both alike. Not a test (tests/bench.cmake builds it; nothing runs it).
//
//   build/tests/bench_attention [--device SPEC] [--shape B,T,C,H] [--reps R] [--iters K]
//                               [--profile]
//
// Each repetition times K forward passes, then K backward passes, of each implementation in
// turn (after a warm-up of each), with clFinish around; it prints one table row per
// implementation and pass: median, min and max milliseconds per call over the R repetitions.
// --profile adds the device time of each kernel and CLBlast routine per call.
// Exits 1 when the two implementations disagree (|diff| > 1e-4 max(1, max |value|)).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/gpt_kernels.h"
#include "cltrain/prof.h"
#include "cltrain/timer.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static cl_mem upload(ct_device *dev, const float *h, size_t n) {
  cl_int err;
  cl_mem m = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE | (h ? CL_MEM_COPY_HOST_PTR : 0),
                            n * sizeof(float), (void *)h, &err);
  if (err != CL_SUCCESS) {
    fprintf(stderr, "bench_attention: clCreateBuffer: %s\n", ct_cl_errname(err));
    exit(1);
  }
  return m;
}

static void check(ct_status st) {
  if (st != CT_OK) {
    fprintf(stderr, "bench_attention: %s\n", ct_error_message());
    exit(ct_exit_code(st));
  }
}

static float *download(ct_device *dev, cl_mem m, size_t n) {
  float *h = malloc(n * sizeof *h);
  if (clEnqueueReadBuffer(dev->queue, m, CL_TRUE, 0, n * sizeof *h, h, 0, NULL, NULL) !=
      CL_SUCCESS) {
    fprintf(stderr, "bench_attention: clEnqueueReadBuffer failed\n");
    exit(1);
  }
  return h;
}

static double max_diff(const float *a, const float *b, size_t n, double *scale) {
  double d = 0;
  *scale = 1;
  for (size_t i = 0; i < n; i++) {
    d = fmax(d, fabs((double)a[i] - b[i]));
    *scale = fmax(*scale, fabs((double)b[i]));
  }
  return d;
}

int main(int argc, char **argv) {
  const char *spec = "auto";
  ct_attn_dims d = {12, 64, 128, 4};
  int reps = 15, iters = 20, profile = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--device") && i + 1 < argc) spec = argv[++i];
    else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
      if (sscanf(argv[++i], "%d,%d,%d,%d", &d.batch, &d.seq, &d.channels, &d.heads) != 4) {
        fprintf(stderr, "bench_attention: --shape: expected B,T,C,H\n");
        return 2;
      }
    } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--profile")) profile = 1;
    else {
      fprintf(stderr, "usage: bench_attention [--device SPEC] [--shape B,T,C,H] [--reps R] "
              "[--iters K] [--profile]\n");
      return 2;
    }
  }
  if (reps < 1 || iters < 1 || d.heads < 1 || d.channels % d.heads) {
    fprintf(stderr, "bench_attention: bad --reps, --iters or --shape\n");
    return 2;
  }
  ct_device dev;
  check(ct_device_open_spec(spec, 0, 0, &dev));
  size_t n = (size_t)d.batch * d.seq, nqkv = n * 3 * d.channels, ny = n * d.channels;
  size_t natt = (size_t)d.batch * d.heads * d.seq * d.seq;
  float *h = malloc(nqkv * sizeof *h);
  uint64_t s = 1;
  for (size_t i = 0; i < nqkv; i++) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    h[i] = (float)((s >> 40) * (1.0 / 16777216.0)) * 2 - 1;
  }
  cl_mem qkv = upload(&dev, h, nqkv), dy = upload(&dev, h, ny);
  cl_mem att[2] = {upload(&dev, NULL, natt), upload(&dev, NULL, natt)};
  cl_mem y[2] = {upload(&dev, NULL, ny), upload(&dev, NULL, ny)};
  cl_mem dqkv[2] = {upload(&dev, NULL, nqkv), upload(&dev, NULL, nqkv)};
  cl_mem scratch = upload(&dev, NULL, natt);
  const ct_attn_impl impls[2] = {CT_ATTN_OWN, CT_ATTN_CLBLAST};
  // warm-up (kernel builds, CLBlast's compilation) and the agreement check
  for (int v = 0; v < 2; v++)
    for (int w = 0; w < 3; w++) {
      check(ct_attention_forward(&dev, &d, impls[v], ct_slice_of(qkv, 0), ct_slice_of(att[v], 0),
                                 ct_slice_of(y[v], 0)));
      check(ct_attention_backward(&dev, &d, impls[v], ct_slice_of(qkv, 0),
                                  ct_slice_of(att[v], 0), ct_slice_of(dy, 0),
                                  ct_slice_of(scratch, 0), ct_slice_of(dqkv[v], 0), 0));
    }
  clFinish(dev.queue);
  int bad = 0;
  cl_mem *pairs[2] = {y, dqkv};
  size_t sizes[2] = {ny, nqkv};
  for (int p = 0; p < 2; p++) {
    float *a = download(&dev, pairs[p][0], sizes[p]), *b = download(&dev, pairs[p][1], sizes[p]);
    double scale, diff = max_diff(a, b, sizes[p], &scale);
    if (!(diff <= 1e-4 * scale)) {
      fprintf(stderr, "bench_attention: own and clblast %s differ by %g (scale %g)\n",
              p ? "dqkv" : "y", diff, scale);
      bad = 1;
    }
    free(a), free(b);
  }
  if (profile) check(ct_prof_init(&dev));
  double *ms = malloc((size_t)reps * 4 * sizeof *ms);   // [impl][pass][rep]
  for (int r = 0; r < reps; r++)
    for (int v = 0; v < 2; v++) {
      double t0 = ct_now();
      for (int k = 0; k < iters; k++)
        check(ct_attention_forward(&dev, &d, impls[v], ct_slice_of(qkv, 0),
                                   ct_slice_of(att[v], 0), ct_slice_of(y[v], 0)));
      clFinish(dev.queue);
      double t1 = ct_now();
      for (int k = 0; k < iters; k++)
        check(ct_attention_backward(&dev, &d, impls[v], ct_slice_of(qkv, 0),
                                    ct_slice_of(att[v], 0), ct_slice_of(dy, 0),
                                    ct_slice_of(scratch, 0), ct_slice_of(dqkv[v], 0), 0));
      clFinish(dev.queue);
      double t2 = ct_now();
      ms[(v * 2 + 0) * reps + r] = (t1 - t0) * 1e3 / iters;
      ms[(v * 2 + 1) * reps + r] = (t2 - t1) * 1e3 / iters;
    }
  printf("# %s [%s], B %d T %d C %d H %d, %d reps of %d calls, interleaved\n", dev.info.name,
         dev.info.platform_name, d.batch, d.seq, d.channels, d.heads, reps, iters);
  printf("%-8s %-9s %10s %10s %10s\n", "impl", "pass", "median_ms", "min_ms", "max_ms");
  for (int v = 0; v < 2; v++)
    for (int p = 0; p < 2; p++) {
      double *x = ms + (v * 2 + p) * reps;
      qsort(x, (size_t)reps, sizeof *x, cmp_double);
      printf("%-8s %-9s %10.3f %10.3f %10.3f\n", ct_attn_impl_name(impls[v]),
             p ? "backward" : "forward", x[reps / 2], x[0], x[reps - 1]);
    }
  if (profile) {
    check(ct_prof_collect(&dev, 1));
    int nrows;
    const ct_prof_row *rows = ct_prof_rows(&dev, &nrows);
    printf("%-28s %8s %12s\n", "kernel", "calls", "device_ms");
    for (int i = 0; i < nrows; i++)
      printf("%-28s %8ld %12.4f\n", rows[i].name, rows[i].calls,
             rows[i].seconds * 1e3 / (double)rows[i].calls);
    ct_prof_free(&dev);
  }
  free(ms), free(h);
  clReleaseMemObject(qkv), clReleaseMemObject(dy), clReleaseMemObject(scratch);
  for (int v = 0; v < 2; v++)
    clReleaseMemObject(att[v]), clReleaseMemObject(y[v]), clReleaseMemObject(dqkv[v]);
  ct_device_close(&dev);
  return bad;
}
