// test_blas.c: every GEMM implementation against a plain-C reference: CLBlast (ct_gemm_clblast)
// and cltrain's own kernel (ct_gemm_own, cl/gemm.cl) over several tiles, for every transpose
// combination, awkward shapes (1, primes, past the tile edges, tiny and long k), offsets, padded
// leading dimensions, alpha/beta, and beta = 0 over a C full of NaN (which must not be read), on
// every device present. The own kernel also runs under Oclgrind in a child process whose stderr
// is scanned for invalid accesses and local-memory races (it keeps running after one). Then
// ct_gemm's dispatch: with a plan table, exact and nearby shapes take the planned kernel.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cltrain/blas.h"
#include "testutil.h"

static int g_small;   // the Oclgrind child: small shapes, own kernel only

static void ref_gemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *a,
                     size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc) {
  for (size_t i = 0; i < m; i++)
    for (size_t j = 0; j < n; j++) {
      double s = 0;
      for (size_t p = 0; p < k; p++)
        s += (double)(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
      c[i * ldc + j] = beta == 0.0f ? (float)(alpha * s) : (float)(alpha * s + beta * c[i * ldc + j]);
    }
}

// impl: -1 CLBlast, otherwise the index of a tile in `tiles`; dispatch: through ct_gemm.
// (the last: a transposed A transposed ahead, gemm_transpose)
static const ct_gemm_tile tiles[] = {{4, 3, 8, 32, 256, 0}, {2, 4, 8, 8, 16, 0}, {3, 1, 4, 4, 5, 0},
                                     {5, 2, 8, 16, 7, 0},   {1, 1, 16, 2, 64, 0}, {3, 2, 8, 4, 5, 1}};

static void check_one(ct_device *dev, int impl, int dispatch, int ta, int tb, size_t m, size_t n,
                      size_t k, float beta, int pad) {
  size_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad, off = 3;
  size_t na = off + (ta ? k : m) * lda, nb = off + (tb ? n : k) * ldb, nc = off + m * ldc;
  float *a = malloc(na * 4), *b = malloc(nb * 4), *c = malloc(nc * 4), *want = malloc(nc * 4);
  ct_test_rand_fill(a, na, 1 + m, -1, 1);
  ct_test_rand_fill(b, nb, 2 + n, -1, 1);
  ct_test_rand_fill(c, nc, 3 + k, -1, 1);
  if (beta == 0.0f)   // C must not be read: NaN in it must not show through
    for (size_t i = 0; i < m; i++)
      for (size_t j = 0; j < n; j++) c[off + i * ldc + j] = NAN;
  for (size_t i = 0; i < nc; i++) want[i] = c[i];
  ref_gemm(ta, tb, m, n, k, 0.5f, a + off, lda, b + off, ldb, beta, want + off, ldc);
  cl_int err;
  cl_mem da = clCreateBuffer(dev->ctx, CL_MEM_COPY_HOST_PTR, na * 4, a, &err);
  ck_assert_int_eq(err, CL_SUCCESS);
  cl_mem db = clCreateBuffer(dev->ctx, CL_MEM_COPY_HOST_PTR, nb * 4, b, &err);
  ck_assert_int_eq(err, CL_SUCCESS);
  cl_mem dc = clCreateBuffer(dev->ctx, CL_MEM_COPY_HOST_PTR, nc * 4, c, &err);
  ck_assert_int_eq(err, CL_SUCCESS);
  if (dispatch)
    ck_assert_ct(ct_gemm(dev, "test", ta, tb, m, n, k, 0.5f, da, off, lda, db, off, ldb, beta, dc,
                         off, ldc));
  else if (impl < 0)
    ck_assert_ct(ct_gemm_clblast(dev, ta, tb, m, n, k, 0.5f, da, off, lda, db, off, ldb, beta,
                                 dc, off, ldc, NULL));
  else
    ck_assert_ct(ct_gemm_own(dev, &tiles[impl], ta, tb, m, n, k, 0.5f, da, off, lda, db, off, ldb,
                             beta, dc, off, ldc, NULL));
  ck_assert_int_eq(clEnqueueReadBuffer(dev->queue, dc, CL_TRUE, 0, nc * 4, c, 0, NULL, NULL),
                   CL_SUCCESS);
  char what[320];
  snprintf(what, sizeof what, "gemm %s m=%zu n=%zu k=%zu ta=%d tb=%d beta=%g pad=%d on %s",
           dispatch ? "ct_gemm" : impl < 0 ? "clblast" : "own", m, n, k, ta, tb, (double)beta, pad,
           dev->info.name);
  if (impl >= 0 && !dispatch) {
    char t[64];
    snprintf(t, sizeof t, " tile %d", impl);
    strncat(what, t, sizeof what - strlen(what) - 1);
  }
  ck_assert_msg(ct_test_close(c, want, nc, 1e-4f, 1e-5f, what), "%s differs", what);
  clReleaseMemObject(da), clReleaseMemObject(db), clReleaseMemObject(dc);
  free(a), free(b), free(c), free(want);
}

static void check_device(ct_device *dev, int small) {
  static const size_t big[][3] = {{1, 1, 1}, {7, 13, 5}, {33, 1, 17}, {65, 31, 129},
                                  {10, 50, 300}, {128, 24, 9}, {3, 100, 1}};
  static const size_t tiny[][3] = {{1, 1, 1}, {7, 13, 5}, {9, 17, 11}};
  const size_t(*shapes)[3] = small ? tiny : big;
  int nshapes = small ? 3 : 7;
  int first_impl = small ? 0 : -1, ntiles = (int)(sizeof tiles / sizeof tiles[0]);
  // Under Oclgrind: the tiles with a transpose ahead only in the child that does not track
  // uninitialised values (Oclgrind 21.10's tracking reported the transposed values as
  // uninitialised, though the products matched the reference, and crashed in its vector
  // shuffles), the others only in the child that does
  const char *uninit = getenv("OCLGRIND_UNINITIALIZED");
  int tracked = uninit && *uninit;
  for (int impl = first_impl; impl < ntiles; impl++) {
    if (small && impl >= 0 && tiles[impl].at == tracked) continue;
    if (impl >= 0 && ct_gemm_tile_check(dev, &tiles[impl]) != CT_OK) {   // LM too large, etc.
      ct_error_clear();
      continue;
    }
    for (int s = 0; s < nshapes; s++)
      for (int ta = impl >= 0 && tiles[impl].at; ta < 2; ta++)   // (at: only for a transposed A)
        for (int tb = 0; tb < 2; tb++) {
          int variant = (s + ta + 2 * tb) % 3;   // cover beta 0, beta 2, padded ld among them
          check_one(dev, impl, 0, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2],
                    variant == 0 ? 0.0f : 2.0f, variant == 2 ? 3 : 0);
        }
  }
}

START_TEST(gemm_matches_reference_on_every_device) {
  ct_device_list list;
  ct_test_devices(&list);
  for (int i = 0; i < list.count; i++) {
    if (list.dev[i].simulator) continue;   // Oclgrind: the child below
    ct_device dev;
    ck_assert_ct(ct_device_open(&list.dev[i], &dev));
    check_device(&dev, 0);
    ct_device_close(&dev);
  }
  ct_device_list_free(&list);
}
END_TEST

// A plan table routes exact and nearby shapes to the planned implementation; far ones to CLBlast.
START_TEST(dispatch_follows_the_plans) {
  ct_device dev;
  ct_test_device("auto", &dev);
  ck_assert_ptr_null(ct_blas_find_plan(&dev, 0, 1, 128, 512, 784));
  ct_gemm_plan plans[2];
  memset(plans, 0, sizeof plans);
  plans[0].ta = 0, plans[0].tb = 1, plans[0].m = 128, plans[0].n = 512, plans[0].k = 784;
  plans[0].impl = CT_GEMM_OWN, plans[0].tile = tiles[0];
  plans[1].ta = 1, plans[1].tb = 0, plans[1].m = 512, plans[1].n = 784, plans[1].k = 128;
  plans[1].impl = CT_GEMM_CLBLAST;
  ck_assert_ct(ct_blas_set_plans(&dev, plans, 2));
  const ct_gemm_plan *p = ct_blas_find_plan(&dev, 0, 1, 128, 512, 784);
  ck_assert_ptr_nonnull(p);
  ck_assert_int_eq(p->impl, CT_GEMM_OWN);
  p = ct_blas_find_plan(&dev, 0, 1, 96, 512, 784);   // the epoch's shorter last batch
  ck_assert_ptr_nonnull(p);
  ck_assert_int_eq((int)p->m, 128);
  ck_assert_ptr_nonnull(ct_blas_find_plan(&dev, 0, 1, 4, 512, 784));   // a small share: any M
  ck_assert_ptr_null(ct_blas_find_plan(&dev, 0, 1, 128, 64, 784));     // 8x fewer columns
  ck_assert_ptr_null(ct_blas_find_plan(&dev, 0, 1, 128, 512, 8000));   // 10x longer k
  ck_assert_ptr_null(ct_blas_find_plan(&dev, 0, 0, 128, 512, 784));    // other transposes
  ck_assert_int_eq(ct_blas_find_plan(&dev, 1, 0, 512, 784, 128)->impl, CT_GEMM_CLBLAST);
  // through ct_gemm: right results either way, and recorded
  ck_assert_ct(ct_blas_record(&dev, 1));
  check_one(&dev, 0, 1, 0, 1, 96, 40, 70, 2.0f, 1);   // no plan near it: the device's default
  check_one(&dev, 0, 1, 0, 1, 100, 300, 500, 0.0f, 0);   // nearest plan: own kernel
  check_one(&dev, 0, 1, 1, 0, 300, 500, 100, 2.0f, 0);   // nearest plan: CLBlast
  // other row counts than the plan's: the work-group is fitted to them (on a CPU: the number of
  // groups of the plan's size nearest to the rows, each just big enough), results still right
  const size_t rows[] = {128, 150, 200, 96, 40, 1};
  const int lm_cpu[] = {32, 38, 25, 24, 10, 1};
  for (int i = 0; i < 6; i++) {
    ct_gemm_tile t = ct_gemm_fit_tile(&dev, &plans[0], rows[i]);
    ck_assert_int_eq(t.mr, tiles[0].mr);
    ck_assert_int_eq(t.kb, tiles[0].kb);
    if (dev.info.type & CL_DEVICE_TYPE_CPU) ck_assert_int_eq(t.lm, lm_cpu[i]);
    else ck_assert_int_le(t.lm, tiles[0].lm);
    const ct_gemm_plan *q = ct_blas_find_plan(&dev, 0, 1, rows[i], 200, 300);
    ck_assert_ptr_nonnull(q);
    ck_assert_int_eq(q->impl, CT_GEMM_OWN);
    check_one(&dev, 0, 1, 0, 1, rows[i], 200, 300, i % 2 ? 2.0f : 0.0f, i % 3 == 2 ? 3 : 0);
  }
  ck_assert_ct(ct_blas_record(&dev, 0));
  ck_assert_int_eq(dev.blas->nrecord, 9);
  ck_assert_str_eq(dev.blas->record[1].role, "test");
  ck_assert_int_eq((int)dev.blas->record[1].m, 100);
  ck_assert_ct(ct_blas_set_plans(&dev, NULL, 0));
  ck_assert_ptr_null(ct_blas_find_plan(&dev, 0, 1, 128, 512, 784));
  // a tile the kernel cannot take is refused with a usage error, not a crash
  ct_gemm_tile bad = {4, 3, 7, 32, 256, 0};
  ck_assert_int_eq(ct_gemm_tile_check(&dev, &bad), CT_ERR_USAGE);
  ct_error_clear();
  ct_gemm_tile huge = {4, 3, 8, 32, 1 << 12, 0};
  if (dev.info.local_mem < (cl_ulong)(4 << 12) * 24) {
    ck_assert_int_eq(ct_gemm_tile_check(&dev, &huge), CT_ERR_USAGE);
    ct_error_clear();
  }
  ct_device_close(&dev);
}
END_TEST

// Without a plan, a CPU runs the own kernel with the default tile (the mlp's and cnn's shapes
// at small shares, odd sizes, both transposes, beta 0 and 2, padded leading dimensions: right
// results); other devices, and CLTRAIN_BLAS_DEFAULTS, keep CLBlast.
START_TEST(cpu_default_is_the_own_kernel) {
  ct_device_list list;
  ct_test_devices(&list);
  for (int i = 0; i < list.count; i++) {
    if (list.dev[i].simulator) continue;
    ct_device dev;
    ck_assert_ct(ct_device_open(&list.dev[i], &dev));
    const ct_gemm_plan *d = ct_blas_default_plan(&dev);
    if (dev.info.type & CL_DEVICE_TYPE_CPU) {
      ck_assert_ptr_nonnull(d);
      ck_assert_int_eq(d->impl, CT_GEMM_OWN);
      ck_assert_ct(ct_gemm_tile_check(&dev, &d->tile));
    } else {
      ck_assert_ptr_null(d);
    }
    static const size_t shapes[][3] = {{64, 512, 784}, {24, 10, 512}, {32, 9, 300},
                                       {1, 1, 1}, {72, 13, 9}, {130, 31, 5}};
    ck_assert_int_eq(dev.blas->nkernels, 0);
    for (int s = 0; s < 6; s++)
      for (int t = 0; t < 4; t++)
        check_one(&dev, 0, 1, t & 1, t >> 1, shapes[s][0], shapes[s][1], shapes[s][2],
                  (s + t) % 2 ? 2.0f : 0.0f, (s + t) % 3 == 2 ? 3 : 0);
    // ct_gemm took the default: the own kernel was built (CLBlast's kernels are not counted)
    if (d) ck_assert_int_gt(dev.blas->nkernels, 0);
    else ck_assert_int_eq(dev.blas->nkernels, 0);
    ct_device_close(&dev);
    setenv("CLTRAIN_BLAS_DEFAULTS", "1", 1);
    ck_assert_ct(ct_device_open(&list.dev[i], &dev));
    ck_assert_ptr_null(ct_blas_default_plan(&dev));
    check_one(&dev, 0, 1, 0, 1, 24, 10, 512, 0.0f, 0);
    ck_assert_int_eq(dev.blas->nkernels, 0);   // CLBlast ran it
    ct_device_close(&dev);
    unsetenv("CLTRAIN_BLAS_DEFAULTS");
  }
  ct_device_list_free(&list);
}
END_TEST

// A transposed A transposed ahead (tile.at) is the same product in the same order: the same
// bits as the kernel reading it transposed, over shapes past the 8 x 8 blocks, offsets and
// padding, the scratch buffer growing and then reused by a smaller product.
START_TEST(transposed_ahead_same_bits) {
  ct_device dev;
  ct_test_device("auto", &dev);
  static const size_t shapes[][3] = {{8, 16, 8}, {33, 20, 17}, {130, 31, 64}, {7, 5, 3}};
  for (int s = 0; s < 4; s++)
    for (int tb = 0; tb < 2; tb++) {
      size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2], pad = s % 2 ? 5 : 0, off = 3;
      size_t lda = m + pad, ldb = (tb ? k : n) + pad, ldc = n;
      size_t na = off + k * lda, nb = off + (tb ? n : k) * ldb, nc = off + m * ldc;
      float *a = malloc(na * 4), *b = malloc(nb * 4), *c[2] = {malloc(nc * 4), malloc(nc * 4)};
      ct_test_rand_fill(a, na, 11 + m, -1, 1);
      ct_test_rand_fill(b, nb, 12 + n, -1, 1);
      cl_int err;
      cl_mem da = clCreateBuffer(dev.ctx, CL_MEM_COPY_HOST_PTR, na * 4, a, &err);
      ck_assert_int_eq(err, CL_SUCCESS);
      cl_mem db = clCreateBuffer(dev.ctx, CL_MEM_COPY_HOST_PTR, nb * 4, b, &err);
      ck_assert_int_eq(err, CL_SUCCESS);
      for (int at = 0; at < 2; at++) {
        ct_test_rand_fill(c[at], nc, 13, -1, 1);
        cl_mem dc = clCreateBuffer(dev.ctx, CL_MEM_COPY_HOST_PTR, nc * 4, c[at], &err);
        ck_assert_int_eq(err, CL_SUCCESS);
        ct_gemm_tile t = {4, 2, 8, 8, 16, at};
        ck_assert_ct(ct_gemm_own(&dev, &t, 1, tb, m, n, k, 0.5f, da, off, lda, db, off, ldb, 2.0f,
                                 dc, off, ldc, NULL));
        ck_assert_int_eq(clEnqueueReadBuffer(dev.queue, dc, CL_TRUE, 0, nc * 4, c[at], 0, NULL,
                                             NULL), CL_SUCCESS);
        clReleaseMemObject(dc);
      }
      ck_assert_msg(!memcmp(c[0], c[1], nc * 4), "m=%zu n=%zu k=%zu tb=%d: transposed ahead, "
                    "other bits", m, n, k, tb);
      ck_assert_uint_ge(dev.blas->scratch_floats, m * k);
      clReleaseMemObject(da), clReleaseMemObject(db);
      free(a), free(b), free(c[0]), free(c[1]);
    }
  ck_assert_uint_eq(dev.blas->scratch_floats, 130 * 64);   // grown once, then reused
  ct_device_close(&dev);
}
END_TEST

// The own kernel under Oclgrind in a child: any invalid access or race it reports fails (and
// any uninitialised value, but for the tiles with a transpose ahead: check_device).
START_TEST(oclgrind_finds_no_invalid_access) {
  ct_test_oclgrind_child("test_blas", 1);
  ct_test_oclgrind_child("test_blas", 0);
}
END_TEST

START_TEST(own_kernel_on_oclgrind) {
  ct_device dev;
  ct_test_device("oclgrind", &dev);
  check_device(&dev, 1);
  ct_device_close(&dev);
}
END_TEST

int main(int argc, char **argv) {
  g_small = argc > 1 && !strcmp(argv[1], "--oclgrind-child");
  Suite *s = suite_create(g_small ? "blas-oclgrind" : "blas");
  TCase *tc = tcase_create("gemm");
  tcase_set_timeout(tc, 900);
  if (g_small) {
    tcase_add_test(tc, own_kernel_on_oclgrind);
  } else {
    tcase_add_test(tc, gemm_matches_reference_on_every_device);
    tcase_add_test(tc, dispatch_follows_the_plans);
    tcase_add_test(tc, transposed_ahead_same_bits);
    tcase_add_test(tc, cpu_default_is_the_own_kernel);
    tcase_add_test(tc, oclgrind_finds_no_invalid_access);
  }
  suite_add_tcase(s, tc);
  return ct_test_run(s, 1);
}
