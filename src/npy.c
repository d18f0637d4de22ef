// npy.c: the NumPy .npy reader (format versions 1.0, 2.0 and 3.0), strict. See data.h.
//
// A .npy file is the magic "\x93NUMPY", a major and a minor version byte, the header's length
// (little-endian uint16 in version 1, uint32 in 2 and 3), then the header: a Python dict
// literal with exactly the keys 'descr', 'fortran_order' and 'shape', padded with spaces and
// ended by '\n', then the array's bytes. ct_npy_parse accepts only what numpy.save writes for a
// C-ordered array of a plain numeric type: any other key, a repeated key, a structured or
// object dtype, fortran_order True, a shape that does not match the file's size (short or
// long) is an error naming the file and what was expected. It allocates nothing (for fuzzing).
#include "cltrain/data.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
  while (c->p < c->end && *c->p == ' ') c->p++;
}

static int eat(cursor *c, char ch) {
  skip_ws(c);
  if (c->p < c->end && *c->p == ch) {
    c->p++;
    return 1;
  }
  return 0;
}

// A Python string literal in single or double quotes, no escapes (none of the values cltrain
// reads has one). Copies it to out (size bytes); 0 when there is none or it is too long.
static int string_lit(cursor *c, char *out, size_t size) {
  skip_ws(c);
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
  char q = *c->p++;
  size_t n = 0;
  while (c->p < c->end && *c->p != q) {
    if (*c->p == '\\' || n + 1 >= size) return 0;
    out[n++] = *c->p++;
  }
  if (c->p >= c->end) return 0;
  c->p++;
  out[n] = 0;
  return 1;
}

static int word(cursor *c, const char *w) {
  skip_ws(c);
  size_t n = strlen(w);
  if ((size_t)(c->end - c->p) >= n && !memcmp(c->p, w, n) &&
      ((size_t)(c->end - c->p) == n || !isalnum((unsigned char)c->p[n]) )) {
    c->p += n;
    return 1;
  }
  return 0;
}

// A non-negative decimal integer (Python writes no sign, no leading zeros but for 0).
static int integer(cursor *c, uint64_t *v) {
  skip_ws(c);
  if (c->p >= c->end || !isdigit((unsigned char)*c->p)) return 0;
  uint64_t x = 0;
  int digits = 0;
  while (c->p < c->end && isdigit((unsigned char)*c->p)) {
    if (++digits > 18) return 0;   // > 10^18: absurd for any dimension
    x = x * 10 + (uint64_t)(*c->p++ - '0');
  }
  *v = x;
  return 1;
}

static ct_status parse_descr(const char *d, const char *name, ct_npy_info *info) {
  // byte order, kind, item size: '<f4', '|u1', '>i8', ...
  size_t n = strlen(d);
  if (n < 3 || n > 4 || !strchr("<>|=", d[0]) || !strchr("uif", d[1]) || !isdigit((unsigned char)d[2]) ||
      (n == 4 && !isdigit((unsigned char)d[3])))
    return CT_FAIL(CT_ERR_FORMAT,
                   "%s: dtype '%s' is not a plain number type (expected e.g. '|u1', '<f4', '<i8')",
                   name, d);
  int size = atoi(d + 2);
  int ok = d[1] == 'f' ? (size == 4 || size == 8) : (size == 1 || size == 2 || size == 4 || size == 8);
  if (!ok) return CT_FAIL(CT_ERR_FORMAT, "%s: dtype '%s' has no supported item size", name, d);
  if (d[0] == '=')
    return CT_FAIL(CT_ERR_FORMAT, "%s: dtype '%s' has native byte order ('='); numpy writes '<' or '>'",
                   name, d);
  if (d[0] == '|' && size != 1)
    return CT_FAIL(CT_ERR_FORMAT, "%s: dtype '%s' of %d bytes needs a byte order '<' or '>'", name,
                   d, size);
  info->kind = d[1];
  info->item = size;
  info->big_endian = d[0] == '>' && size > 1;
  return CT_OK;
}

// The magic, the version and the header's length; the header's bytes checked (printable ASCII,
// one newline at its end). *start: where the header starts, *hlen: its length.
static ct_status parse_preamble(const uint8_t *buf, size_t size, const char *name, size_t *start,
                                uint64_t *hlen) {
  static const uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 10)
    return CT_FAIL(CT_ERR_FORMAT, "%s: holds %zu bytes, too short for a .npy header", name, size);
  if (memcmp(buf, magic, 6))
    return CT_FAIL(CT_ERR_FORMAT, "%s: not a .npy file: it does not start with \\x93NUMPY", name);
  int major = buf[6], minor = buf[7];
  if (major < 1 || major > 3 || minor != 0)
    return CT_FAIL(CT_ERR_FORMAT, "%s: .npy format version %d.%d; expected 1.0, 2.0 or 3.0", name,
                   major, minor);
  *start = major == 1 ? 10 : 12;
  if (size < *start)
    return CT_FAIL(CT_ERR_FORMAT, "%s: truncated header: holds %zu bytes", name, size);
  *hlen = major == 1 ? (uint64_t)buf[8] | (uint64_t)buf[9] << 8
                     : (uint64_t)buf[8] | (uint64_t)buf[9] << 8 | (uint64_t)buf[10] << 16 |
                           (uint64_t)buf[11] << 24;
  if (*hlen > size - *start)
    return CT_FAIL(CT_ERR_FORMAT, "%s: truncated header: it says %llu bytes, the file holds %zu",
                   name, (unsigned long long)*hlen, size - *start);
  if (*hlen == 0 || buf[*start + *hlen - 1] != '\n')
    return CT_FAIL(CT_ERR_FORMAT, "%s: the header does not end with a newline", name);
  for (size_t i = *start; i < *start + *hlen - 1; i++)   // one newline, at the end; no tabs
    if (buf[i] < 0x20)
      return CT_FAIL(CT_ERR_FORMAT, "%s: the header holds a control byte 0x%02x at offset %zu",
                     name, buf[i], i);
    else if (buf[i] >= 0x7f)
      return CT_FAIL(CT_ERR_FORMAT, "%s: the header holds a non-ASCII byte 0x%02x at offset %zu",
                     name, buf[i], i);
  return CT_OK;
}

// The value of 'shape': a tuple of non-negative integers ('(N,)' for one dimension). *bad: what
// was expected instead, or NULL.
static ct_status parse_shape(cursor *c, const char *name, ct_npy_info *info, const char **bad) {
  if (!eat(c, '(')) {
    *bad = "a tuple after 'shape'";
    return CT_OK;
  }
  while (!*bad && !eat(c, ')')) {
    uint64_t v;
    if (info->ndim == CT_NPY_MAX_DIMS)
      return CT_FAIL(CT_ERR_FORMAT, "%s: the shape has more than %d dimensions", name,
                     CT_NPY_MAX_DIMS);
    if (!integer(c, &v)) {
      *bad = "a non-negative integer in the shape";
      break;
    }
    info->shape[info->ndim++] = v;
    if (!eat(c, ',')) {
      if (!eat(c, ')')) *bad = "',' or ')' in the shape";
      else if (info->ndim == 1) *bad = "'(N,)' for a shape of one dimension";
      break;
    }
  }
  return CT_OK;
}

// One key's value (the cursor after its ':'); seen[3]: descr, fortran_order, shape so far.
static ct_status parse_value(cursor *c, const char *key, const char *name, ct_npy_info *info,
                             int *seen, const char **bad) {
  char val[32];
  if (!strcmp(key, "descr")) {
    if (seen[0]++) return CT_FAIL(CT_ERR_FORMAT, "%s: the header repeats 'descr'", name);
    if (!string_lit(c, val, sizeof val)) {
      *bad = "a dtype string after 'descr' (structured dtypes are not supported)";
      return CT_OK;
    }
    return parse_descr(val, name, info);
  }
  if (!strcmp(key, "fortran_order")) {
    if (seen[1]++) return CT_FAIL(CT_ERR_FORMAT, "%s: the header repeats 'fortran_order'", name);
    if (word(c, "True"))
      return CT_FAIL(CT_ERR_FORMAT, "%s: the array is in Fortran order; save a C-ordered one "
                     "(numpy.ascontiguousarray)", name);
    if (!word(c, "False")) *bad = "True or False after 'fortran_order'";
    return CT_OK;
  }
  if (!strcmp(key, "shape")) {
    if (seen[2]++) return CT_FAIL(CT_ERR_FORMAT, "%s: the header repeats 'shape'", name);
    return parse_shape(c, name, info, bad);
  }
  return CT_FAIL(CT_ERR_FORMAT, "%s: the header has a key '%s'; expected only 'descr', "
                 "'fortran_order' and 'shape'", name, key);
}

// The header's dict: exactly the keys 'descr', 'fortran_order' and 'shape', once each.
static ct_status parse_dict(cursor *c, const char *name, ct_npy_info *info) {
  const char *bad = NULL;
  int seen[3] = {0, 0, 0};
  if (!eat(c, '{')) bad = "a dict starting with '{'";
  while (!bad) {
    if (eat(c, '}')) break;
    char key[32];
    if (!string_lit(c, key, sizeof key)) {
      bad = "a quoted key or '}'";
      break;
    }
    if (!eat(c, ':')) {
      bad = "':' after a key";
      break;
    }
    CT_TRY(parse_value(c, key, name, info, seen, &bad));
    if (bad) break;
    if (!eat(c, ',')) {
      if (!eat(c, '}')) bad = "',' or '}' after a value";
      break;
    }
  }
  if (!bad) {
    skip_ws(c);
    if (c->p != c->end) bad = "only spaces after the dict";
  }
  if (bad) return CT_FAIL(CT_ERR_FORMAT, "%s: malformed header: expected %s", name, bad);
  if (!seen[0] || !seen[1] || !seen[2])
    return CT_FAIL(CT_ERR_FORMAT, "%s: the header lacks '%s'", name,
                   !seen[0] ? "descr" : !seen[1] ? "fortran_order" : "shape");
  return CT_OK;
}

// The element count of the shape within the limit, and the data's size against the file's.
static ct_status check_sizes(size_t size, const char *name, ct_npy_info *info) {
  uint64_t count = 1;
  for (int i = 0; i < info->ndim; i++) {
    if (info->shape[i] > (uint64_t)INT_MAX)
      return CT_FAIL(CT_ERR_FORMAT, "%s: dimension %d is %llu, more than %d", name, i,
                     (unsigned long long)info->shape[i], INT_MAX);
    count *= info->shape[i];   // each <= 2^31 and count <= the limit: no overflow
    if (count * (uint64_t)info->item > CT_NPY_MAX_BYTES)
      return CT_FAIL(CT_ERR_FORMAT, "%s: the shape is absurd: more than the limit of %llu bytes",
                     name, (unsigned long long)CT_NPY_MAX_BYTES);
  }
  info->count = count;
  uint64_t bytes = count * (uint64_t)info->item, have = size - info->offset;
  char shape[160] = "(";
  for (int i = 0; i < info->ndim; i++) {
    size_t len = strlen(shape);
    snprintf(shape + len, sizeof shape - len, "%s%llu", i ? ", " : "",
             (unsigned long long)info->shape[i]);
  }
  strncat(shape, info->ndim == 1 ? ",)" : ")", sizeof shape - strlen(shape) - 1);
  if (have < bytes)
    return CT_FAIL(CT_ERR_FORMAT, "%s: truncated: holds %llu bytes of data, shape %s needs %llu",
                   name, (unsigned long long)have, shape, (unsigned long long)bytes);
  if (have > bytes)
    return CT_FAIL(CT_ERR_FORMAT,
                   "%s: trailing garbage: holds %llu bytes of data, shape %s needs %llu", name,
                   (unsigned long long)have, shape, (unsigned long long)bytes);
  return CT_OK;
}

ct_status ct_npy_parse(const uint8_t *buf, size_t size, const char *name, ct_npy_info *info) {
  memset(info, 0, sizeof *info);
  size_t start = 0;
  uint64_t hlen = 0;
  CT_TRY(parse_preamble(buf, size, name, &start, &hlen));
  cursor c = {(const char *)buf + start, (const char *)buf + start + hlen - 1};
  CT_TRY(parse_dict(&c, name, info));
  info->offset = start + (size_t)hlen;
  return check_sizes(size, name, info);
}

// Item i of an integer array, as int64 (unsigned 64-bit values above INT64_MAX become -1, which
// every caller rejects as out of range).
// The bits of item i, in the file's byte order.
static uint64_t item_bits(const ct_npy_info *info, const uint8_t *data, uint64_t i) {
  const uint8_t *p = data + i * (uint64_t)info->item;
  uint64_t u = 0;
  for (int b = 0; b < info->item; b++) {
    int k = info->big_endian ? info->item - 1 - b : b;
    u |= (uint64_t)p[k] << (8 * b);
  }
  return u;
}

int64_t ct_npy_int(const ct_npy_info *info, const uint8_t *data, uint64_t i) {
  uint64_t u = item_bits(info, data, i);
  if (info->kind == 'i' && info->item < 8) {
    uint64_t sign = (uint64_t)1 << (8 * info->item - 1);
    return (int64_t)((u ^ sign) - sign);
  }
  if (info->kind == 'u' && u > (uint64_t)INT64_MAX) return -1;
  return (int64_t)u;
}

double ct_npy_float(const ct_npy_info *info, const uint8_t *data, uint64_t i) {
  uint64_t u = item_bits(info, data, i);
  if (info->item == 4) {
    uint32_t w = (uint32_t)u;
    float f;
    memcpy(&f, &w, 4);
    return f;
  }
  double d;
  memcpy(&d, &u, 8);
  return d;
}
