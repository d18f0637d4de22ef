// args.c: strict parsing of command-line values (see args.h).
#include "cltrain/args.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ct_status ct_arg_long(const char *flag, const char *text, long min, long max, long *out) {
  char *end = NULL;
  errno = 0;
  long v = text && *text && !isspace((unsigned char)*text) ? strtol(text, &end, 10) : 0;
  if (!text || !*text || isspace((unsigned char)*text) || *end || errno == ERANGE || v < min ||
      v > max)
    return CT_FAIL(CT_ERR_USAGE, "%s: expected an integer in %ld..%ld, got '%s'", flag, min, max,
                   text ? text : "");
  *out = v;
  return CT_OK;
}

ct_status ct_arg_u64(const char *flag, const char *text, uint64_t *out) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = 0;
  int ok = text && isdigit((unsigned char)*text);
  if (ok) v = strtoull(text, &end, 10);
  if (!ok || *end || errno == ERANGE)
    return CT_FAIL(CT_ERR_USAGE, "%s: expected a non-negative integer below 2^64, got '%s'", flag,
                   text ? text : "");
  *out = (uint64_t)v;
  return CT_OK;
}

ct_status ct_arg_float(const char *flag, const char *text, double min, int min_open, double max,
                       int max_open, float *out) {
  char *end = NULL;
  errno = 0;
  double v = text && *text && !isspace((unsigned char)*text) ? strtod(text, &end) : NAN;
  int ok = text && *text && end && !*end && errno != ERANGE && isfinite(v) &&
           (min_open ? v > min : v >= min) && (max_open ? v < max : v <= max) &&
           isfinite((float)v);
  if (!ok)
    return CT_FAIL(CT_ERR_USAGE, "%s: expected a number in %s%.10g, %.10g%s, got '%s'", flag,
                   min_open ? "(" : "[", min, max, max_open ? ")" : "]", text ? text : "");
  *out = (float)v;
  return CT_OK;
}

ct_status ct_arg_choice(const char *flag, const char *text, const char *const *choices, int *out) {
  for (int i = 0; choices[i]; i++)
    if (text && !strcmp(text, choices[i])) {
      *out = i;
      return CT_OK;
    }
  char list[256] = "";
  size_t off = 0;
  for (int i = 0; choices[i] && off < sizeof list; i++) {
    int n = snprintf(list + off, sizeof list - off, "%s%s", i ? "|" : "", choices[i]);
    if (n < 0) break;
    off += (size_t)n;
  }
  return CT_FAIL(CT_ERR_USAGE, "%s: expected one of %s, got '%s'", flag, list, text ? text : "");
}
