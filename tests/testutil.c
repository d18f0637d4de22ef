// testutil.c: shared helpers of the Check suites (see testutil.h).
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int ct_test_run(Suite *s, int nofork) {
  SRunner *sr = srunner_create(s);
  if (nofork) srunner_set_fork_status(sr, CK_NOFORK);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}

void ct_test_device(const char *spec, ct_device *dev) {
  const char *env = getenv("CLTRAIN_TEST_DEVICE");
  if (env && *env && !strcmp(spec, "auto")) spec = env;
  ct_status st = ct_device_open_spec(spec, 0, 0, dev);
  if (st == CT_ERR_NOTFOUND) {
    fprintf(stderr, "SKIP: no OpenCL device for '%s': %s\n", spec, ct_error_text());
    exit(CT_TEST_SKIP);
  }
  if (st != CT_OK) {
    fprintf(stderr, "cannot open device '%s': %s\n", spec, ct_error_message());
    exit(1);
  }
}

void ct_test_devices(ct_device_list *list) {
  ct_status st = ct_device_list_init(list);
  if (st != CT_OK) {
    fprintf(stderr, "cannot list devices: %s\n", ct_error_message());
    exit(1);
  }
  if (list->count == 0) {
    fprintf(stderr, "SKIP: no OpenCL devices\n");
    exit(CT_TEST_SKIP);
  }
}

uint64_t ct_test_rand_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

float ct_test_rand_uniform(uint64_t *s, float lo, float hi) {
  return lo + (hi - lo) * (float)((ct_test_rand_u64(s) >> 40) * (1.0 / 16777216.0));
}

void ct_test_rand_fill(float *x, size_t n, uint64_t seed, float lo, float hi) {
  uint64_t s = seed;
  for (size_t i = 0; i < n; i++) x[i] = ct_test_rand_uniform(&s, lo, hi);
}

int ct_test_close(const float *a, const float *b, size_t n, float rtol, float atol,
                  const char *what) {
  for (size_t i = 0; i < n; i++) {
    float d = fabsf(a[i] - b[i]);
    if (!(d <= atol + rtol * fabsf(b[i]))) {
      fprintf(stderr, "%s: element %zu of %zu: got %.9g, want %.9g (|diff| %.3g)\n", what, i, n,
              (double)a[i], (double)b[i], (double)d);
      return 0;
    }
  }
  return 1;
}

void ct_test_oclgrind_child(const char *name, int uninitialized) {
  char log[] = "/tmp/cltrain_test_oclgrind_XXXXXX";
  int fd = mkstemp(log);
  ck_assert_int_ge(fd, 0);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    dup2(fd, 2);
    setenv("OCLGRIND_DATA_RACES", "1", 1);
    if (uninitialized) setenv("OCLGRIND_UNINITIALIZED", "1", 1);
    execl("/proc/self/exe", name, "--oclgrind-child", (char *)NULL);
    _exit(127);
  }
  close(fd);
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  FILE *f = fopen(log, "r");
  ck_assert_ptr_nonnull(f);
  char line[1024];
  int bad = 0;
  while (fgets(line, sizeof line, f)) {
    fputs(line, stderr);
    if (strstr(line, "Invalid read") || strstr(line, "Invalid write") ||
        strstr(line, "out of bounds") || strstr(line, "out-of-bounds") ||
        strstr(line, "data race") || strstr(line, "Uninitialized"))
      bad++;
  }
  fclose(f);
  unlink(log);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == CT_TEST_SKIP) {
    fprintf(stderr, "%s under Oclgrind: SKIPPED (no Oclgrind device)\n", name);
    return;
  }
  ck_assert_msg(bad == 0, "Oclgrind reported %d invalid accesses, races or uninitialised reads "
                "(see above)", bad);
  ck_assert_msg(code == 0, "the Oclgrind run of %s failed (exit status %d, see above)", name, code);
}
