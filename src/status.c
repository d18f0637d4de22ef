// status.c: status names, OpenCL/CLBlast error names, the per-thread last-error message.
#include "cltrain/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_msg[1024];
static _Thread_local int last_text_off;

const char *ct_strerror(ct_status st) {
  switch (st) {
    case CT_OK: return "ok";
    case CT_ERR_USAGE: return "usage error";
    case CT_ERR_IO: return "I/O error";
    case CT_ERR_FORMAT: return "bad file format";
    case CT_ERR_CL: return "OpenCL error";
    case CT_ERR_MPI: return "MPI error";
    case CT_ERR_NOMEM: return "out of memory";
    case CT_ERR_NOTFOUND: return "not found";
    case CT_ERR_MISMATCH: return "mismatch";
    case CT_ERR_NONFINITE: return "non-finite value";
    case CT_ERR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

const char *ct_cl_errname(cl_int err) {
#define N(x) case x: return #x
  switch (err) {
    N(CL_SUCCESS); N(CL_DEVICE_NOT_FOUND); N(CL_DEVICE_NOT_AVAILABLE);
    N(CL_COMPILER_NOT_AVAILABLE); N(CL_MEM_OBJECT_ALLOCATION_FAILURE); N(CL_OUT_OF_RESOURCES);
    N(CL_OUT_OF_HOST_MEMORY); N(CL_PROFILING_INFO_NOT_AVAILABLE); N(CL_MEM_COPY_OVERLAP);
    N(CL_IMAGE_FORMAT_MISMATCH); N(CL_IMAGE_FORMAT_NOT_SUPPORTED); N(CL_BUILD_PROGRAM_FAILURE);
    N(CL_MAP_FAILURE); N(CL_MISALIGNED_SUB_BUFFER_OFFSET);
    N(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST); N(CL_COMPILE_PROGRAM_FAILURE);
    N(CL_LINKER_NOT_AVAILABLE); N(CL_LINK_PROGRAM_FAILURE); N(CL_DEVICE_PARTITION_FAILED);
    N(CL_KERNEL_ARG_INFO_NOT_AVAILABLE); N(CL_INVALID_VALUE); N(CL_INVALID_DEVICE_TYPE);
    N(CL_INVALID_PLATFORM); N(CL_INVALID_DEVICE); N(CL_INVALID_CONTEXT);
    N(CL_INVALID_QUEUE_PROPERTIES); N(CL_INVALID_COMMAND_QUEUE); N(CL_INVALID_HOST_PTR);
    N(CL_INVALID_MEM_OBJECT); N(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR); N(CL_INVALID_IMAGE_SIZE);
    N(CL_INVALID_SAMPLER); N(CL_INVALID_BINARY); N(CL_INVALID_BUILD_OPTIONS);
    N(CL_INVALID_PROGRAM); N(CL_INVALID_PROGRAM_EXECUTABLE); N(CL_INVALID_KERNEL_NAME);
    N(CL_INVALID_KERNEL_DEFINITION); N(CL_INVALID_KERNEL); N(CL_INVALID_ARG_INDEX);
    N(CL_INVALID_ARG_VALUE); N(CL_INVALID_ARG_SIZE); N(CL_INVALID_KERNEL_ARGS);
    N(CL_INVALID_WORK_DIMENSION); N(CL_INVALID_WORK_GROUP_SIZE); N(CL_INVALID_WORK_ITEM_SIZE);
    N(CL_INVALID_GLOBAL_OFFSET); N(CL_INVALID_EVENT_WAIT_LIST); N(CL_INVALID_EVENT);
    N(CL_INVALID_OPERATION); N(CL_INVALID_GL_OBJECT); N(CL_INVALID_BUFFER_SIZE);
    N(CL_INVALID_MIP_LEVEL); N(CL_INVALID_GLOBAL_WORK_SIZE); N(CL_INVALID_PROPERTY);
    N(CL_INVALID_IMAGE_DESCRIPTOR); N(CL_INVALID_COMPILER_OPTIONS); N(CL_INVALID_LINKER_OPTIONS);
    N(CL_INVALID_DEVICE_PARTITION_COUNT);
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    // CLBlast's own codes (clblast_c.h)
    case -1024: return "CLBlastNotImplemented";
    case -1022: return "CLBlastInvalidMatrixA";
    case -1021: return "CLBlastInvalidMatrixB";
    case -1020: return "CLBlastInvalidMatrixC";
    case -1019: return "CLBlastInvalidVectorX";
    case -1018: return "CLBlastInvalidVectorY";
    case -1017: return "CLBlastInvalidDimension";
    case -1016: return "CLBlastInvalidLeadDimA";
    case -1015: return "CLBlastInvalidLeadDimB";
    case -1014: return "CLBlastInvalidLeadDimC";
    case -1013: return "CLBlastInvalidIncrementX";
    case -1012: return "CLBlastInvalidIncrementY";
    case -1011: return "CLBlastInsufficientMemoryA";
    case -1010: return "CLBlastInsufficientMemoryB";
    case -1009: return "CLBlastInsufficientMemoryC";
    case -1008: return "CLBlastInsufficientMemoryX";
    case -1007: return "CLBlastInsufficientMemoryY";
    case -2050: return "CLBlastInsufficientMemoryTemp";
    case -2049: return "CLBlastInvalidBatchCount";
    case -2048: return "CLBlastInvalidOverrideKernel";
    case -2047: return "CLBlastMissingOverrideParameter";
    case -2046: return "CLBlastInvalidLocalMemUsage";
    case -2045: return "CLBlastNoHalfPrecision";
    case -2044: return "CLBlastNoDoublePrecision";
    case -2043: return "CLBlastInvalidVectorScalar";
    case -2042: return "CLBlastInsufficientMemoryScalar";
    case -2041: return "CLBlastDatabaseError";
    case -2040: return "CLBlastUnknownError";
    case -2039: return "CLBlastUnexpectedError";
  }
#undef N
  return "CL_UNKNOWN_ERROR";
}

// (formatted aside first: a replacement may quote the message it replaces, ct_error_text())
static ct_status set_v(ct_status st, const char *file, int line, const char *fmt, va_list ap) {
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  char msg[sizeof last_msg];
  int n = snprintf(msg, sizeof msg, "%s:%d: ", base, line);
  if (n < 0 || n >= (int)sizeof msg) n = 0;
  vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
  memcpy(last_msg, msg, sizeof msg);
  last_text_off = n;
  return st;
}

ct_status ct_error_set(ct_status st, const char *file, int line, const char *fmt, ...) {
  if (last_msg[0]) return st;   // keep the root cause
  va_list ap;
  va_start(ap, fmt);
  set_v(st, file, line, fmt, ap);
  va_end(ap);
  return st;
}

ct_status ct_error_replace(ct_status st, const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  set_v(st, file, line, fmt, ap);
  va_end(ap);
  return st;
}

const char *ct_error_message(void) { return last_msg; }
const char *ct_error_text(void) { return last_msg + last_text_off; }
void ct_error_clear(void) { last_msg[0] = 0; last_text_off = 0; }
