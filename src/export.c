// export.c: safetensors. See export.h.
#include "cltrain/export.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/metrics.h"

static void tensor(ct_json *h, const ct_tensor *t, size_t at) {
  char buf[256];
  int n = snprintf(buf, sizeof buf, "{\"dtype\":\"F32\",\"shape\":[");
  for (int d = 0; d < t->nd; d++)
    n += snprintf(buf + n, sizeof buf - (size_t)n, "%s%lld", d ? "," : "", t->shape[d]);
  snprintf(buf + n, sizeof buf - (size_t)n, "],\"data_offsets\":[%zu,%zu]}", at * sizeof(float),
           (at + t->count) * sizeof(float));
  ct_json_raw(h, t->name, buf);
}

ct_status ct_safetensors_build(const ct_arch *arch, const float *params, const char *const *meta,
                               int n_meta, void **out, size_t *bytes) {
  *out = NULL, *bytes = 0;
  ct_json h, mj;
  ct_json_begin(&h);
  ct_json_begin(&mj);
  ct_json_str(&mj, "format", "pt");
  ct_json_str(&mj, "arch", arch->text);
  for (int i = 0; i < n_meta; i++) ct_json_str(&mj, meta[2 * i], meta[2 * i + 1]);
  ct_json_str(&mj, "producer", "cltrain");
  ct_status st = ct_json_end(&mj);
  if (st == CT_OK) ct_json_raw(&h, "__metadata__", mj.buf);
  free(mj.buf);
  size_t data = 0;   // the exported tensors, in table order
  for (int t = 0; t < arch->nt && st == CT_OK; t++) {
    const ct_tensor *x = &arch->tensors[t];
    if (!x->exported) continue;
    tensor(&h, x, data);
    data += x->count;
  }
  if (st == CT_OK) st = ct_json_end(&h);
  if (st != CT_OK) {
    free(h.buf);
    return st;
  }
  size_t hl = (h.len + 7) / 8 * 8;
  data *= sizeof(float);
  unsigned char *p = malloc(8 + hl + (data ? data : 1));
  if (!p) {
    free(h.buf);
    return CT_FAIL(CT_ERR_NOMEM, "out of host memory (safetensors of %zu bytes)", data);
  }
  for (int b = 0; b < 8; b++) p[b] = (unsigned char)((uint64_t)hl >> (8 * b));
  memcpy(p + 8, h.buf, h.len);
  memset(p + 8 + h.len, ' ', hl - h.len);
  unsigned char *d = p + 8 + hl;
  for (int t = 0; t < arch->nt; t++) {   // float32 little-endian (every host cltrain builds on)
    const ct_tensor *x = &arch->tensors[t];
    if (!x->exported) continue;
    memcpy(d, params + x->off, x->count * sizeof(float));
    d += x->count * sizeof(float);
  }
  free(h.buf);
  *out = p, *bytes = 8 + hl + data;
  return CT_OK;
}

void ct_st_classifier_meta(ct_st_meta *m, const ct_arch *arch, float norm_mean, float norm_std) {
  if (norm_std > 0) snprintf(m->buf[0], sizeof m->buf[0], "%.9g,%.9g", norm_mean, norm_std);
  else snprintf(m->buf[0], sizeof m->buf[0], "none");
  snprintf(m->buf[1], sizeof m->buf[1], "%d,%d,%d", arch->in_c, arch->in_h, arch->in_w);
  m->kv[0] = "normalize", m->kv[1] = m->buf[0], m->kv[2] = "input", m->kv[3] = m->buf[1];
  m->n = 2;
}

