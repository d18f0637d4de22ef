// test_tune.c: the GEMM tuning cache and the shapes a model issues: a cache written and read
// back is the same; damaged and stale caches are one warning and the defaults (never a failure);
// a valid one is applied; the GEMMs the mlp preset issues are the ones its layers imply; a short
// tuning run gives a plan for every shape and a cache that loads.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cltrain/model.h"
#include "cltrain/tune.h"
#include "testutil.h"

static char g_dir[] = "/tmp/cltrain_test_tune_XXXXXX";

static void fill_cache(const ct_device *dev, ct_tune_cache *c) {
  memset(c, 0, sizeof *c);
  snprintf(c->platform, sizeof c->platform, "%s", dev->info.platform_name);
  snprintf(c->device, sizeof c->device, "%s", dev->info.name);
  snprintf(c->driver, sizeof c->driver, "%s", dev->info.driver);
  ct_clblast_version(c->clblast, sizeof c->clblast);
  c->best_gflops = 61.25;
  c->has_xgemm = 1;
  memcpy(c->xgemm, ct_blas_cpu_xgemm, sizeof c->xgemm);
  c->has_routine = 1;
  c->min_indirect = 384;
  c->nplans = 2;
  c->plans = calloc(2, sizeof *c->plans);
  ct_gemm_plan *p = c->plans;
  p[0].ta = 0, p[0].tb = 1, p[0].m = 128, p[0].n = 512, p[0].k = 784;
  p[0].impl = CT_GEMM_OWN, p[0].tile = (ct_gemm_tile){4, 3, 8, 32, 256, 1};
  p[0].gflops = 55.5, p[0].gflops_default = 20.25;
  p[1].ta = 1, p[1].tb = 0, p[1].m = 64, p[1].n = 384, p[1].k = 25088;
  p[1].impl = CT_GEMM_CLBLAST, p[1].gflops = 30, p[1].gflops_default = 30;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
}

START_TEST(cache_round_trip) {
  ct_device dev;
  ct_test_device("auto", &dev);
  ct_tune_cache c, back;
  fill_cache(&dev, &c);
  char path[1024];
  snprintf(path, sizeof path, "%s/sub/folder/x.txt", g_dir);   // folders are created
  ck_assert_ct(ct_tune_cache_write(path, &c));
  ck_assert_ct(ct_tune_cache_read(path, &back));
  ck_assert_str_eq(back.platform, c.platform);
  ck_assert_str_eq(back.device, c.device);
  ck_assert_str_eq(back.driver, c.driver);
  ck_assert_str_eq(back.clblast, c.clblast);
  ck_assert(back.has_xgemm && back.has_routine && !back.has_xgemm_direct);
  ck_assert_int_eq(memcmp(back.xgemm, c.xgemm, sizeof c.xgemm), 0);
  ck_assert_int_eq((int)back.min_indirect, 384);
  ck_assert_int_eq(back.nplans, 2);
  ck_assert_int_eq(back.plans[0].impl, CT_GEMM_OWN);
  ck_assert_int_eq(back.plans[0].tile.mr, 4);
  ck_assert_int_eq(back.plans[0].tile.nv, 3);
  ck_assert_int_eq(back.plans[0].tile.kb, 256);
  ck_assert_int_eq(back.plans[0].tile.at, 1);
  ck_assert_int_eq(back.plans[1].impl, CT_GEMM_CLBLAST);
  ck_assert_int_eq((int)back.plans[1].k, 25088);
  ck_assert(back.best_gflops > 61.2 && back.best_gflops < 61.3);
  ct_tune_cache_free(&back);
  ct_tune_cache_free(&c);
  ct_device_close(&dev);
}
END_TEST

static int load(ct_device *dev, char *warning, size_t size) {
  int status = 99;
  ck_assert_ct(ct_tune_load(dev, &status, warning, size));
  return status;
}

START_TEST(load_valid_stale_damaged_missing) {
  ct_device dev;
  ct_test_device("auto", &dev);
  char path[1024], warning[1024];
  ck_assert_ct(ct_tune_cache_path(&dev.info, path, sizeof path));
  ck_assert_msg(strncmp(path, g_dir, strlen(g_dir)) == 0, "CLTRAIN_CACHE_DIR not used: %s", path);
  unlink(path);
  ck_assert_int_eq(load(&dev, warning, sizeof warning), 0);   // none: defaults, no warning
  ck_assert_str_eq(warning, "");
  ck_assert_int_eq(dev.blas->nplans, 0);

  ct_tune_cache c;
  fill_cache(&dev, &c);
  // only a cache tuned at other compute-unit counts: the nearest one is used
  char other[1100], far[1100];
  size_t cut = strlen(path) - strlen("cu.txt");
  while (cut > 0 && path[cut - 1] != '-') cut--;
  snprintf(other, sizeof other, "%.*s%ucu.txt", (int)cut, path, dev.info.compute_units + 1);
  snprintf(far, sizeof far, "%.*s%ucu.txt", (int)cut, path, dev.info.compute_units + 50);
  ck_assert_ct(ct_tune_cache_write(other, &c));
  write_text(far, "damaged\n");
  ck_assert_int_eq(load(&dev, warning, sizeof warning), 1);
  ck_assert_str_eq(dev.blas->source, other);
  unlink(other);
  unlink(far);
  ck_assert_ct(ct_blas_set_plans(&dev, NULL, 0));
  ck_assert_ct(ct_tune_cache_write(path, &c));
  ck_assert_int_eq(load(&dev, warning, sizeof warning), 1);   // valid: applied
  ck_assert_int_eq(dev.blas->nplans, 2);
  ck_assert(dev.blas->best_gflops > 61);
  ck_assert_str_eq(dev.blas->source, path);
  ck_assert_ptr_nonnull(ct_blas_find_plan(&dev, 0, 1, 128, 512, 784));

  c.driver[0] = c.driver[0] == 'x' ? 'y' : 'x';   // another driver: stale
  ck_assert_ct(ct_tune_cache_write(path, &c));
  ck_assert_ct(ct_blas_set_plans(&dev, NULL, 0));
  ck_assert_int_eq(load(&dev, warning, sizeof warning), -1);
  ck_assert_msg(strstr(warning, "stale") && strstr(warning, "driver") && strstr(warning, path),
                "warning: %s", warning);
  ck_assert_ptr_null(strchr(warning, '\n'));
  ck_assert_int_eq(dev.blas->nplans, 0);
  ct_tune_cache_free(&c);

  // damaged in several ways: one line naming the file, defaults kept
  static const char *const damaged[] = {
      "",                                                   // empty
      "format 1\nplatform x\n",                             // incomplete
      "format 2\n",                                         // unknown format
      "format 1\nbogus 3\n",                                // unknown setting
      "format 1\ngemm NX 1 2 3 own MR=4\n",                 // malformed plan
      "format 1\ngemm NT 1 2 3 own MR=4 NV=3 VW=8 LM=32\n", // tile incomplete
      "format 1\ngemm TN 1 2 3 own MR=4 NV=3 VW=8 LM=32 KB=8 AT=2\n",   // AT is 0 or 1
      "format 1\nxgemm KWG=16\n",                           // parameters missing
      "format 1\ngemm NT 0 2 3 clblast\n",                  // empty shape
      ("\x7f" "ELF\x01\x02\x03 garbage \xff\xfe\n"),         // not text at all
  };
  for (size_t i = 0; i < sizeof damaged / sizeof damaged[0]; i++) {
    write_text(path, damaged[i]);
    ck_assert_int_eq(load(&dev, warning, sizeof warning), -1);
    ck_assert_msg(strstr(warning, "damaged") && strstr(warning, path), "case %zu: %s", i, warning);
    ck_assert_ptr_null(strchr(warning, '\n'));
    ck_assert_int_eq(dev.blas->nplans, 0);
  }
  unlink(path);
  ct_device_close(&dev);
}
END_TEST

START_TEST(mlp_shapes) {
  ct_device dev;
  ct_test_device("auto", &dev);
  ct_arch arch;
  ck_assert_ct(ct_arch_parse("mlp", 1, 28, 28, 10, &arch));
  int batches[2] = {128, 64};
  ct_tune_shape *s = NULL;
  int n = 0;
  ck_assert_ct(ct_tune_model_shapes(&dev, &arch, batches, 1, &s, &n));
  // forward: 3 (NT), backward: 3 weights (TN) + 2 inputs (NN; the first layer needs none)
  ck_assert_int_eq(n, 8);
  int found = 0;
  for (int i = 0; i < n; i++) {
    if (!s[i].ta && s[i].tb && s[i].m == 128 && s[i].n == 512 && s[i].k == 784) found |= 1;
    if (s[i].ta && !s[i].tb && s[i].m == 512 && s[i].n == 784 && s[i].k == 128) found |= 2;
    if (!s[i].ta && !s[i].tb && s[i].m == 128 && s[i].n == 512 && s[i].k == 512) found |= 4;
    ck_assert(!(!s[i].ta && !s[i].tb && s[i].n == 784));   // no input gradient of layer 1
  }
  ck_assert_int_eq(found, 7);
  free(s);
  ck_assert_ct(ct_tune_model_shapes(&dev, &arch, batches, 2, &s, &n));
  ck_assert_int_eq(n, 16);   // both shares
  free(s);
  ct_device_close(&dev);
}
END_TEST

START_TEST(short_tuning_run) {
  ct_device dev;
  ct_test_device("auto", &dev);
  ct_arch arch;
  ck_assert_ct(ct_arch_parse("dense:24,relu,dense:10", 1, 6, 6, 10, &arch));
  int batches[1] = {16};
  ct_tune_shape *s = NULL;
  int n = 0;
  ck_assert_ct(ct_tune_model_shapes(&dev, &arch, batches, 1, &s, &n));
  ck_assert_int_eq(n, 5);
  ct_tune_options o;
  ct_tune_options_defaults(&o);
  o.budget_s = 2;
  o.clblast_search = 0;
  char path[1024];
  ck_assert_ct(ct_tune_cache_path(&dev.info, path, sizeof path));
  unlink(path);
  ct_tune_cache c;
  ck_assert_ct(ct_tune_and_save(&dev, s, n, &o, path, &c));
  ck_assert_int_eq(c.nplans, n);
  for (int i = 0; i < n; i++) {
    ck_assert_msg(s[i].gflops_before > 0 && s[i].gflops_after > 0, "shape %d not measured", i);
    ck_assert_ptr_nonnull(ct_blas_find_plan(&dev, s[i].ta, s[i].tb, s[i].m, s[i].n, s[i].k));
  }
  ct_tune_cache_free(&c);
  ct_blas_set_plans(&dev, NULL, 0);
  char warning[1024];
  ck_assert_int_eq(load(&dev, warning, sizeof warning), 1);
  ck_assert_int_eq(dev.blas->nplans, n);
  unlink(path);
  free(s);
  ct_device_close(&dev);
}
END_TEST

int main(void) {
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  setenv("CLTRAIN_CACHE_DIR", g_dir, 1);
  Suite *s = suite_create("tune");
  TCase *tc = tcase_create("tune");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, cache_round_trip);
  tcase_add_test(tc, load_valid_stale_damaged_missing);
  tcase_add_test(tc, mlp_shapes);
  tcase_add_test(tc, short_tuning_run);
  suite_add_tcase(s, tc);
  int rc = ct_test_run(s, 1);
  char cmd[1100];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", g_dir);
  return rc;
}
