// test_program.c: every embedded kernel family builds on every device present; kernels are
// cached; CLTRAIN_KERNEL_DIR overrides a family; a build failure reports device and log.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cltrain/program.h"
#include "testutil.h"

START_TEST(every_family_builds_on_every_device) {
  ct_device_list list;
  ct_test_devices(&list);
  ck_assert_int_gt(ct_cl_source_count, 0);
  for (int i = 0; i < list.count; i++) {
    ct_device dev;
    ck_assert_ct(ct_device_open(&list.dev[i], &dev));
    for (int f = 0; f < ct_cl_source_count; f++) {
      cl_program p = NULL, again = NULL;
      ck_assert_ct(ct_program_build(&dev, ct_cl_sources[f].name, "", &p));
      ck_assert_ptr_nonnull(p);
      ck_assert_ct(ct_program_build(&dev, ct_cl_sources[f].name, "", &again));
      ck_assert_ptr_eq(p, again);   // cached, not rebuilt
      cl_uint nk = 0;
      ck_assert_int_eq(clCreateKernelsInProgram(p, 0, NULL, &nk), CL_SUCCESS);
      ck_assert_uint_gt(nk, 0);
      cl_kernel *ks = calloc(nk, sizeof *ks);   // every kernel of the family can be created
      ck_assert_int_eq(clCreateKernelsInProgram(p, nk, ks, NULL), CL_SUCCESS);
      for (cl_uint j = 0; j < nk; j++) clReleaseKernel(ks[j]);
      free(ks);
    }
    ct_device_close(&dev);
  }
  ct_device_list_free(&list);
}
END_TEST

START_TEST(kernel_runs_and_is_cached) {
  ct_device dev;
  ct_test_device("auto", &dev);
  cl_kernel k1, k2;
  ck_assert_ct(ct_kernel(&dev, "util", "fill_f32", &k1));
  ck_assert_ct(ct_kernel(&dev, "util", "fill_f32", &k2));
  ck_assert_ptr_eq(k1, k2);
  cl_int err;
  const cl_uint n = 1000;
  cl_mem buf = clCreateBuffer(dev.ctx, CL_MEM_READ_WRITE, n * sizeof(float), NULL, &err);
  ck_assert_int_eq(err, CL_SUCCESS);
  float v = 2.5f;
  ck_assert_int_eq(clSetKernelArg(k1, 0, sizeof buf, &buf), CL_SUCCESS);
  ck_assert_int_eq(clSetKernelArg(k1, 1, sizeof n, &n), CL_SUCCESS);
  ck_assert_int_eq(clSetKernelArg(k1, 2, sizeof v, &v), CL_SUCCESS);
  size_t global = 1024;
  ck_assert_int_eq(clEnqueueNDRangeKernel(dev.queue, k1, 1, NULL, &global, NULL, 0, NULL, NULL), CL_SUCCESS);
  float host[1000];
  ck_assert_int_eq(clEnqueueReadBuffer(dev.queue, buf, CL_TRUE, 0, sizeof host, host, 0, NULL, NULL), CL_SUCCESS);
  for (cl_uint i = 0; i < n; i++) ck_assert_float_eq(host[i], 2.5f);
  clReleaseMemObject(buf);
  ct_error_clear();
  ck_assert_int_eq(ct_kernel(&dev, "util", "no_such_kernel", &k1), CT_ERR_CL);
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "CL_INVALID_KERNEL_NAME"));
  ct_error_clear();
  ck_assert_int_eq(ct_kernel(&dev, "no_such_family", "x", &k1), CT_ERR_NOTFOUND);
  ct_device_close(&dev);
}
END_TEST

START_TEST(kernel_dir_override_and_build_log) {
  char dir[] = "/tmp/cltrain-kdir-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/util.cl", dir);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs("__kernel void fill_f32(__global float *x) { this is not C; }\n", f);
  fclose(f);
  setenv("CLTRAIN_KERNEL_DIR", dir, 1);
  ct_device dev;
  ct_test_device("auto", &dev);
  cl_kernel k;
  ct_error_clear();
  ck_assert_int_eq(ct_kernel(&dev, "util", "fill_f32", &k), CT_ERR_CL);
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "CL_BUILD_PROGRAM_FAILURE"));
  ck_assert_ptr_nonnull(strstr(ct_error_text(), dev.info.name));
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "cl/util.cl"));
  ct_device_close(&dev);
  unsetenv("CLTRAIN_KERNEL_DIR");
  unlink(path);
  rmdir(dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("program");
  TCase *tc = tcase_create("program");
  tcase_set_timeout(tc, 900);
  tcase_add_test(tc, every_family_builds_on_every_device);
  tcase_add_test(tc, kernel_runs_and_is_cached);
  tcase_add_test(tc, kernel_dir_override_and_build_log);
  suite_add_tcase(s, tc);
  return ct_test_run(s, 1);
}
