// test_blas.c: ct_gemm (CLBlast) against a plain-C reference for every transpose combination,
// awkward shapes and offsets, on every device present.
#include <math.h>
#include <stdlib.h>

#include "cltrain/blas.h"
#include "testutil.h"

static void ref_gemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *a,
                     size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc) {
  for (size_t i = 0; i < m; i++)
    for (size_t j = 0; j < n; j++) {
      double s = 0;
      for (size_t p = 0; p < k; p++)
        s += (double)(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
      c[i * ldc + j] = (float)(alpha * s + beta * c[i * ldc + j]);
    }
}

static void check_device(ct_device *dev) {
  const size_t shapes[][3] = {{1, 1, 1}, {7, 13, 5}, {33, 1, 17}, {65, 31, 129}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        size_t lda = (ta ? m : k), ldb = (tb ? k : n), ldc = n, off = 3;
        size_t na = off + (ta ? k : m) * lda, nb = off + (tb ? n : k) * ldb, nc = off + m * ldc;
        float *a = malloc(na * 4), *b = malloc(nb * 4), *c = malloc(nc * 4), *want = malloc(nc * 4);
        ct_test_rand_fill(a, na, 1 + s, -1, 1);
        ct_test_rand_fill(b, nb, 2 + s, -1, 1);
        ct_test_rand_fill(c, nc, 3 + s, -1, 1);
        for (size_t i = 0; i < nc; i++) want[i] = c[i];
        ref_gemm(ta, tb, m, n, k, 0.5f, a + off, lda, b + off, ldb, 2.0f, want + off, ldc);
        cl_int err;
        cl_mem da = clCreateBuffer(dev->ctx, CL_MEM_COPY_HOST_PTR, na * 4, a, &err);
        ck_assert_int_eq(err, CL_SUCCESS);
        cl_mem db = clCreateBuffer(dev->ctx, CL_MEM_COPY_HOST_PTR, nb * 4, b, &err);
        ck_assert_int_eq(err, CL_SUCCESS);
        cl_mem dc = clCreateBuffer(dev->ctx, CL_MEM_COPY_HOST_PTR, nc * 4, c, &err);
        ck_assert_int_eq(err, CL_SUCCESS);
        ck_assert_ct(ct_gemm(dev, "test", ta, tb, m, n, k, 0.5f, da, off, lda, db, off, ldb, 2.0f, dc, off, ldc));
        ck_assert_int_eq(clEnqueueReadBuffer(dev->queue, dc, CL_TRUE, 0, nc * 4, c, 0, NULL, NULL), CL_SUCCESS);
        ck_assert_msg(ct_test_close(c, want, nc, 1e-4f, 1e-5f, "gemm"),
                      "gemm m=%zu n=%zu k=%zu ta=%d tb=%d on %s", m, n, k, ta, tb, dev->info.name);
        clReleaseMemObject(da);
        clReleaseMemObject(db);
        clReleaseMemObject(dc);
        free(a), free(b), free(c), free(want);
      }
}

START_TEST(gemm_matches_reference_on_every_device) {
  ct_device_list list;
  ct_test_devices(&list);
  for (int i = 0; i < list.count; i++) {
    ct_device dev;
    ck_assert_ct(ct_device_open(&list.dev[i], &dev));
    check_device(&dev);
    ct_device_close(&dev);
  }
  ct_device_list_free(&list);
}
END_TEST

int main(void) {
  Suite *s = suite_create("blas");
  TCase *tc = tcase_create("gemm");
  tcase_set_timeout(tc, 900);
  tcase_add_test(tc, gemm_matches_reference_on_every_device);
  suite_add_tcase(s, tc);
  return ct_test_run(s, 1);
}
