// testutil.h: shared helpers of the Check suites.
//
// Defines: CT_TEST_SKIP (77), ct_test_run (runs a suite, no fork when asked), ct_test_device
// (opens a device by spec or exits 77), ct_test_devices (every device present), ck_assert_ct
// (asserts a ct_status is CT_OK and prints the recorded error otherwise), ct_test_oclgrind_child,
// random helpers.
#ifndef CLTRAIN_TESTUTIL_H
#define CLTRAIN_TESTUTIL_H

#include <check.h>
#include <stdint.h>

#include "cltrain/device.h"

#define CT_TEST_SKIP 77

// Runs the suite; nofork = 1 for suites that hold OpenCL contexts or MPI. Returns the exit code.
int ct_test_run(Suite *s, int nofork);

// Opens the device `spec` selects (CLTRAIN_TEST_DEVICE overrides the spec "auto"); exits 77 with
// a message when no device matches, so ctest reports the suite as skipped.
void ct_test_device(const char *spec, ct_device *dev);
// Lists every device; exits 77 when there are none.
void ct_test_devices(ct_device_list *list);

#define ck_assert_ct(call)                                                             \
  do {                                                                                 \
    ct_status ct_test_st_ = (call);                                                    \
    ck_assert_msg(ct_test_st_ == CT_OK, "%s -> %s: %s", #call, ct_strerror(ct_test_st_), \
                  ct_error_message());                                                 \
  } while (0)

// Runs this executable again as `name --oclgrind-child` (the suite's own Oclgrind mode) with
// stderr in a file, Oclgrind's data-race check on (and its uninitialised-value check when
// `uninitialized`), echoes what it printed, and fails on any invalid access, race or
// uninitialised read Oclgrind reported there (it keeps running after one, so the exit code
// alone would not tell) or on a failed child. A child that exits 77 (no Oclgrind) is a skip.
void ct_test_oclgrind_child(const char *name, int uninitialized);

// Deterministic pseudo-random numbers for test inputs (splitmix64).
uint64_t ct_test_rand_u64(uint64_t *state);
float ct_test_rand_uniform(uint64_t *state, float lo, float hi);
void ct_test_rand_fill(float *x, size_t n, uint64_t seed, float lo, float hi);
// |a-b| <= atol + rtol*|b| for all i; on failure prints the first bad index and returns 0.
int ct_test_close(const float *a, const float *b, size_t n, float rtol, float atol,
                  const char *what);

#endif
