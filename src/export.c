// export.c: safetensors. See export.h.
#include "cltrain/export.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/metrics.h"

static ct_status tensor(ct_json *h, int layer, const char *what, const long long *shape, int nd,
                        size_t off, size_t count) {
  char name[32], buf[256];
  snprintf(name, sizeof name, "%d.%s", layer, what);
  int n = snprintf(buf, sizeof buf, "{\"dtype\":\"F32\",\"shape\":[");
  for (int d = 0; d < nd; d++) n += snprintf(buf + n, sizeof buf - (size_t)n, "%s%lld", d ? "," : "", shape[d]);
  snprintf(buf + n, sizeof buf - (size_t)n, "],\"data_offsets\":[%zu,%zu]}", off * sizeof(float),
           (off + count) * sizeof(float));
  ct_json_raw(h, name, buf);
  return CT_OK;
}

ct_status ct_safetensors_build(const ct_arch *arch, const float *params, float norm_mean,
                               float norm_std, void **out, size_t *bytes) {
  *out = NULL, *bytes = 0;
  ct_json h, meta;
  ct_json_begin(&h);
  ct_json_begin(&meta);
  char norm[64], input[64];
  if (norm_std > 0) snprintf(norm, sizeof norm, "%.9g,%.9g", norm_mean, norm_std);
  else snprintf(norm, sizeof norm, "none");
  snprintf(input, sizeof input, "%d,%d,%d", arch->in_c, arch->in_h, arch->in_w);
  ct_json_str(&meta, "format", "pt");
  ct_json_str(&meta, "arch", arch->text);
  ct_json_str(&meta, "normalize", norm);
  ct_json_str(&meta, "input", input);
  ct_json_str(&meta, "producer", "cltrain");
  ct_status st = ct_json_end(&meta);
  if (st == CT_OK) ct_json_raw(&h, "__metadata__", meta.buf);
  free(meta.buf);
  size_t expect = 0;   // the tensors must tile the parameter buffer in order
  for (int i = 0; i < arch->n && st == CT_OK; i++) {
    const ct_layer *L = &arch->layers[i];
    if (L->w_count + L->b_count == 0) continue;
    long long shape[4];
    int nd;
    if (L->kind == CT_LAYER_CONV2D) {
      shape[0] = L->out_c, shape[1] = L->in_c, shape[2] = L->k, shape[3] = L->k, nd = 4;
    } else {
      shape[0] = L->out_c, shape[1] = (long long)(L->w_count / (size_t)L->out_c), nd = 2;
    }
    if (L->w_off != expect || L->b_off != L->w_off + L->w_count)
      st = CT_FAIL(CT_ERR_INTERNAL, "layer %d's parameters are not where export expects them", i);
    if (st == CT_OK) st = tensor(&h, i, "weight", shape, nd, L->w_off, L->w_count);
    long long bshape[1] = {(long long)L->b_count};
    if (st == CT_OK) st = tensor(&h, i, "bias", bshape, 1, L->b_off, L->b_count);
    expect = L->b_off + L->b_count;
  }
  if (st == CT_OK && expect != arch->param_count)
    st = CT_FAIL(CT_ERR_INTERNAL, "export covers %zu of %zu parameters", expect,
                 arch->param_count);
  if (st == CT_OK) st = ct_json_end(&h);
  if (st != CT_OK) {
    free(h.buf);
    return st;
  }
  size_t hl = (h.len + 7) / 8 * 8, data = arch->param_count * sizeof(float);
  unsigned char *p = malloc(8 + hl + (data ? data : 1));
  if (!p) {
    free(h.buf);
    return CT_FAIL(CT_ERR_NOMEM, "out of host memory (safetensors of %zu bytes)", data);
  }
  for (int b = 0; b < 8; b++) p[b] = (unsigned char)((uint64_t)hl >> (8 * b));
  memcpy(p + 8, h.buf, h.len);
  memset(p + 8 + h.len, ' ', hl - h.len);
  memcpy(p + 8 + hl, params, data);   // float32 little-endian (every host cltrain builds on)
  free(h.buf);
  *out = p, *bytes = 8 + hl + data;
  return CT_OK;
}
