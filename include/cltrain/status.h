// status.h: status codes and the per-thread last error of cltrain.
//
// Defines: ct_status (CT_OK, CT_ERR_*), ct_strerror, ct_error_set / ct_error_message /
// ct_error_clear, ct_cl_errname, and the macros CT_FAIL, CT_TRY, CL_CHECK, CL_TRY.
//
// Library code returns a ct_status; only main() in tools/ exits. The first failure records a
// one-line message with file:line (CT_FAIL / CL_CHECK); callers pass the status up (CT_TRY).
// Tools print ct_error_message() and exit 2 for CT_ERR_USAGE, 1 for everything else.
#ifndef CLTRAIN_STATUS_H
#define CLTRAIN_STATUS_H

#include <CL/cl.h>

#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001   // cl_khr_icd: the loader found no platform
#endif

typedef enum {
  CT_OK = 0,
  CT_ERR_USAGE,      // a user's mistake on the command line (exit code 2)
  CT_ERR_IO,         // a file could not be opened, read or written
  CT_ERR_FORMAT,     // a file's content is damaged or not what was expected
  CT_ERR_CL,         // an OpenCL or CLBlast call failed
  CT_ERR_MPI,        // an MPI call failed
  CT_ERR_NOMEM,      // host or device memory could not be allocated
  CT_ERR_NOTFOUND,   // a device, kernel or file that was asked for does not exist
  CT_ERR_MISMATCH,   // ranks, files or buffers disagree (count, checksum, architecture)
  CT_ERR_NONFINITE,  // NaN or Inf where a finite value is required
  CT_ERR_INTERNAL,   // a bug: an invariant did not hold
} ct_status;

const char *ct_strerror(ct_status st);
// Name of an OpenCL (or CLBlast, for codes <= -1024) status: "CL_OUT_OF_RESOURCES".
const char *ct_cl_errname(cl_int err);

// Records the message for this thread (only when none is pending, so the root cause survives
// the unwinding) and returns st. The message reads "file:line: text".
ct_status ct_error_set(ct_status st, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
// Overwrites whatever is pending (for errors that supersede an earlier one); its arguments may
// quote the pending message (ct_error_text()).
ct_status ct_error_replace(ct_status st, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *ct_error_message(void);          // "" when none is pending
const char *ct_error_text(void);             // the message without its "file:line: " prefix
void ct_error_clear(void);

#define CT_FAIL(st, ...) ct_error_set((st), __FILE__, __LINE__, __VA_ARGS__)

// Evaluates a call returning ct_status; returns it from the enclosing function on failure.
#define CT_TRY(call)                          \
  do {                                        \
    ct_status ct_try_st_ = (call);            \
    if (ct_try_st_ != CT_OK) return ct_try_st_; \
  } while (0)

// Evaluates an OpenCL call (an expression of type cl_int); on failure records the call's text
// and the error's name and returns CT_ERR_CL. Create-style calls:
//   CL_CHECK((k = clCreateKernel(p, "x", &err), err));
#define CL_CHECK(call)                                                                     \
  do {                                                                                     \
    cl_int ct_cl_err_ = (call);                                                            \
    if (ct_cl_err_ != CL_SUCCESS)                                                          \
      return ct_error_set(ct_cl_err_ == CL_OUT_OF_HOST_MEMORY ||                           \
                                  ct_cl_err_ == CL_MEM_OBJECT_ALLOCATION_FAILURE           \
                              ? CT_ERR_NOMEM                                               \
                              : CT_ERR_CL,                                                 \
                          __FILE__, __LINE__, "%s failed: %s", #call,                      \
                          ct_cl_errname(ct_cl_err_));                                      \
  } while (0)

// The same, but jumps to a cleanup label with `st` set instead of returning.
#define CL_GOTO(call, st, label)                                                           \
  do {                                                                                     \
    cl_int ct_cl_err_ = (call);                                                            \
    if (ct_cl_err_ != CL_SUCCESS) {                                                        \
      (st) = ct_error_set(CT_ERR_CL, __FILE__, __LINE__, "%s failed: %s", #call,           \
                          ct_cl_errname(ct_cl_err_));                                      \
      goto label;                                                                          \
    }                                                                                      \
  } while (0)

#define CT_GOTO(call, st, label)  \
  do {                            \
    (st) = (call);                \
    if ((st) != CT_OK) goto label; \
  } while (0)

// Exit code a tool returns for a status: 0, 2 (usage) or 1.
static inline int ct_exit_code(ct_status st) {
  return st == CT_OK ? 0 : st == CT_ERR_USAGE ? 2 : 1;
}

#endif
