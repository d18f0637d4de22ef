// test_status.c: status names, OpenCL/CLBlast error-name mapping, the last-error message.
#include <string.h>

#include "cltrain/status.h"
#include "testutil.h"

START_TEST(cl_error_names) {
  ck_assert_str_eq(ct_cl_errname(CL_SUCCESS), "CL_SUCCESS");
  ck_assert_str_eq(ct_cl_errname(CL_OUT_OF_RESOURCES), "CL_OUT_OF_RESOURCES");
  ck_assert_str_eq(ct_cl_errname(-5), "CL_OUT_OF_RESOURCES");
  ck_assert_str_eq(ct_cl_errname(CL_INVALID_KERNEL_NAME), "CL_INVALID_KERNEL_NAME");
  ck_assert_str_eq(ct_cl_errname(CL_BUILD_PROGRAM_FAILURE), "CL_BUILD_PROGRAM_FAILURE");
  ck_assert_str_eq(ct_cl_errname(-1001), "CL_PLATFORM_NOT_FOUND_KHR");
  ck_assert_str_eq(ct_cl_errname(-1017), "CLBlastInvalidDimension");
  ck_assert_str_eq(ct_cl_errname(12345), "CL_UNKNOWN_ERROR");
  // every code from 0 down to -68 that the 1.2 headers define has a name of its own
  int named = 0;
  for (int e = 0; e >= -68; e--)
    if (strcmp(ct_cl_errname(e), "CL_UNKNOWN_ERROR") != 0) named++;
  ck_assert_int_ge(named, 58);
}
END_TEST

static ct_status fails_cl(void) {
  CL_CHECK(CL_INVALID_MEM_OBJECT);
  return CT_OK;
}

static ct_status outer(void) {
  CT_TRY(fails_cl());
  return CT_OK;
}

START_TEST(cl_check_records_name_and_place) {
  ct_error_clear();
  ck_assert_int_eq(outer(), CT_ERR_CL);
  const char *m = ct_error_message();
  ck_assert_ptr_nonnull(strstr(m, "CL_INVALID_MEM_OBJECT"));
  ck_assert_ptr_nonnull(strstr(m, "test_status.c:"));
  ck_assert_ptr_null(strstr(ct_error_text(), "test_status.c:"));
  // the first error is kept while unwinding; replace overrides it
  CT_FAIL(CT_ERR_IO, "second");
  ck_assert_ptr_nonnull(strstr(ct_error_message(), "CL_INVALID_MEM_OBJECT"));
  ct_error_replace(CT_ERR_IO, "f.c", 3, "third %d", 3);
  ck_assert_str_eq(ct_error_message(), "f.c:3: third 3");
  // a replacement that quotes the message it replaces (a flag put in front of it)
  ct_error_replace(CT_ERR_IO, "src/g.c", 12, "--init-from: %s", ct_error_text());
  ck_assert_str_eq(ct_error_message(), "g.c:12: --init-from: third 3");
  ck_assert_str_eq(ct_error_text(), "--init-from: third 3");
  ct_error_clear();
  ck_assert_str_eq(ct_error_message(), "");
}
END_TEST

START_TEST(status_names_and_exit_codes) {
  for (int s = CT_OK; s <= CT_ERR_INTERNAL; s++)
    ck_assert_str_ne(ct_strerror((ct_status)s), "unknown status");
  ck_assert_int_eq(ct_exit_code(CT_OK), 0);
  ck_assert_int_eq(ct_exit_code(CT_ERR_USAGE), 2);
  ck_assert_int_eq(ct_exit_code(CT_ERR_FORMAT), 1);
  ck_assert_int_eq(ct_exit_code(CT_ERR_CL), 1);
}
END_TEST

int main(void) {
  Suite *s = suite_create("status");
  TCase *tc = tcase_create("status");
  tcase_add_test(tc, cl_error_names);
  tcase_add_test(tc, cl_check_records_name_and_place);
  tcase_add_test(tc, status_names_and_exit_codes);
  suite_add_tcase(s, tc);
  return ct_test_run(s, 0);
}
