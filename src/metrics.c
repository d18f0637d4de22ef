// metrics.c: JSON Lines records. See metrics.h.
#include "cltrain/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void put(ct_json *j, const char *s, size_t n) {
  if (j->oom) return;
  if (j->len + n + 1 > j->cap) {
    size_t cap = j->cap ? j->cap : 256;
    while (cap < j->len + n + 1) cap *= 2;
    char *p = realloc(j->buf, cap);
    if (!p) {
      j->oom = 1;
      return;
    }
    j->buf = p, j->cap = cap;
  }
  memcpy(j->buf + j->len, s, n);
  j->len += n;
  j->buf[j->len] = 0;
}
static void puts_(ct_json *j, const char *s) { put(j, s, strlen(s)); }

void ct_json_escape(const char *s, char *out, size_t size) {
  size_t o = 0;
  if (size < 3) {
    if (size) out[0] = 0;
    return;
  }
  out[o++] = '"';
  for (const unsigned char *p = (const unsigned char *)s; *p && o + 8 < size; p++) {
    unsigned char c = *p;
    if (c == '"' || c == '\\') out[o++] = '\\', out[o++] = (char)c;
    else if (c == '\n') out[o++] = '\\', out[o++] = 'n';
    else if (c == '\t') out[o++] = '\\', out[o++] = 't';
    else if (c < 0x20) o += (size_t)snprintf(out + o, size - o, "\\u%04x", c);
    else out[o++] = (char)c;   // UTF-8 passes through
  }
  out[o++] = '"';
  out[o] = 0;
}

static void key(ct_json *j, const char *k) {
  if (j->n++) puts_(j, ",");
  if (!k) return;
  char buf[256];
  ct_json_escape(k, buf, sizeof buf);
  puts_(j, buf);
  puts_(j, ":");
}

void ct_json_begin(ct_json *j) {
  memset(j, 0, sizeof *j);
  puts_(j, "{");
}

void ct_json_str(ct_json *j, const char *k, const char *value) {
  key(j, k);
  // (ct_json_escape takes a character only with room for its longest escape, 6 bytes, the
  // closing quote and the end after it: 6 per character and 9 more, or a 1-byte value is lost)
  size_t size = strlen(value) * 6 + 9;
  char *buf = malloc(size);
  if (!buf) {
    j->oom = 1;
    return;
  }
  ct_json_escape(value, buf, size);
  puts_(j, buf);
  free(buf);
}

void ct_json_num(ct_json *j, const char *k, double value) {
  key(j, k);
  char buf[64];
  if (isfinite(value) && fabs(value) >= 1e9) snprintf(buf, sizeof buf, "%.3f", value);  // times
  else if (isfinite(value)) snprintf(buf, sizeof buf, "%.9g", value);
  else snprintf(buf, sizeof buf, "null");
  puts_(j, buf);
}

void ct_json_int(ct_json *j, const char *k, long long value) {
  key(j, k);
  char buf[32];
  snprintf(buf, sizeof buf, "%lld", value);
  puts_(j, buf);
}

void ct_json_raw(ct_json *j, const char *k, const char *value) {
  key(j, k);
  puts_(j, value);
}

ct_status ct_json_end(ct_json *j) {
  puts_(j, "}");
  return j->oom ? CT_FAIL(CT_ERR_NOMEM, "out of host memory (a metrics record)") : CT_OK;
}

void ct_json_item(ct_json *items, ct_json *one) {
  if (ct_json_end(one) == CT_OK) ct_json_raw(items, NULL, one->buf);
  else items->oom = 1;
  free(one->buf);
  one->buf = NULL;
}

void ct_json_array(ct_json *j, const char *k, ct_json *items) {
  size_t n = (items->buf ? items->len : 0) + 3;
  char *arr = items->oom ? NULL : malloc(n);
  if (arr) {
    snprintf(arr, n, "[%s]", items->buf ? items->buf : "");
    ct_json_raw(j, k, arr);
  } else {
    j->oom = 1;
  }
  free(arr);
  free(items->buf);
  memset(items, 0, sizeof *items);
}

ct_status ct_metrics_open(ct_metrics *m, const char *path) {
  memset(m, 0, sizeof *m);
  snprintf(m->path, sizeof m->path, "%s", path);
  m->f = fopen(path, "w");
  if (!m->f)
    return CT_FAIL(CT_ERR_IO, "--metrics: cannot create '%s': %s", path, strerror(errno));
  return CT_OK;
}

ct_status ct_metrics_write(ct_metrics *m, const ct_json *r) {
  if (!m->f) return CT_OK;
  if (fwrite(r->buf, 1, r->len, m->f) != r->len || fputc('\n', m->f) == EOF || fflush(m->f))
    return CT_FAIL(CT_ERR_IO, "--metrics: writing '%s' failed: %s", m->path, strerror(errno));
  return CT_OK;
}

ct_status ct_metrics_close(ct_metrics *m) {
  if (!m->f) return CT_OK;
  int bad = fclose(m->f) != 0;
  m->f = NULL;
  if (bad) return CT_FAIL(CT_ERR_IO, "--metrics: closing '%s' failed: %s", m->path, strerror(errno));
  return CT_OK;
}
